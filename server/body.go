package server

// Request bodies of the HTTP ingest routes. A body is first read whole, as
// the client sent it (maybe compressed), under the body read deadline and
// without an ingest slot, so that a slow client holds no slot; then, holding
// a slot, it is decoded. Every buffer a body takes, as received or decoded, is
// reserved from the Limiter's budget of body bytes (MaxBodyBytesInflight)
// before it is allocated, and grows only as data really arrives: a
// Content-Length and a snappy header are claims, not facts.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// bodyChunk is the first buffer of a body read.
const bodyChunk = 64 << 10

// bodyMem is what one request holds of the body budget. Not safe for
// concurrent use; release it when the request's buffers are dropped.
type bodyMem struct {
	lm   *Limiter // nil: no budget
	held int64
	wait time.Duration // how long take waits for room (0: it does not)
}

func (lm *Limiter) bodyMem() *bodyMem { return &bodyMem{lm: lm} }

// take reserves n more bytes, or answers ResourceExhausted.
func (m *bodyMem) take(n int64) error {
	if m.lm == nil || n <= 0 {
		return nil
	}
	limit := m.lm.l.MaxBodyBytesInflight
	if m.held+n > limit {
		return &tooLarge{limit: limit, msg: fmt.Sprintf("request body needs more than the %d bytes allowed for all request bodies at once", limit)}
	}
	var deadline time.Time
	for {
		used := m.lm.body.Load()
		if used+n > limit && m.wait > 0 {
			if deadline.IsZero() {
				deadline = time.Now().Add(m.wait)
			}
			if time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
				continue
			}
		}
		if used+n > limit {
			return exhausted(fmt.Sprintf("server busy: request bodies in flight hold %d of the %d bytes allowed, this one needs %d more; retry shortly",
				used, limit, n), time.Second)
		}
		if m.lm.body.CompareAndSwap(used, used+n) {
			m.held += n
			return nil
		}
	}
}

// give returns n of the bytes held.
func (m *bodyMem) give(n int64) {
	if m.lm == nil || n <= 0 {
		return
	}
	n = min(n, m.held)
	m.held -= n
	m.lm.body.Add(-n)
}

func (m *bodyMem) release() { m.give(m.held) }

// BodyBytesInflight is the bytes of request bodies held now.
func (lm *Limiter) BodyBytesInflight() int64 { return lm.body.Load() }

// readAll appends what rd yields to buf (whose capacity m already holds) until
// EOF, growing buf as data arrives, each new buffer reserved before it is
// made. More than limit bytes is a *http.MaxBytesError.
func (m *bodyMem) readAll(buf []byte, rd io.Reader, limit int64) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) > limit {
				return nil, &http.MaxBytesError{Limit: limit}
			}
			// One byte beyond the limit shows a body over it.
			n := min(max(2*int64(cap(buf)), bodyChunk), limit+1)
			if err := m.take(n); err != nil {
				return nil, err
			}
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			m.give(int64(cap(buf)))
			buf = nb
		}
		k, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err == io.EOF {
			if int64(len(buf)) > limit {
				return nil, &http.MaxBytesError{Limit: limit}
			}
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// contentEncoding is the request's Content-Encoding: "" (none) or "gzip";
// anything else is refused.
func contentEncoding(r *http.Request) (string, error) {
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return "", nil
	case "gzip", "x-gzip":
		return "gzip", nil
	default:
		return "", invalid("Content-Encoding %q is not supported (want gzip or none)", enc)
	}
}

// readRaw reads the body as sent, up to limit bytes, into a buffer that grows
// as the bytes arrive.
func (m *bodyMem) readRaw(r *http.Request, limit int64) ([]byte, error) {
	b, err := m.readAll(nil, r.Body, limit)
	if err != nil {
		return nil, bodyReadError(err)
	}
	return b, nil
}

// bodyReadError keeps the errors the error table knows (over the limit, over
// budget, too slow) and words the rest as a broken body.
func bodyReadError(err error) error {
	var mbe *http.MaxBytesError
	var bte *bodyTimeoutError
	if errors.As(err, &mbe) || errors.As(err, &bte) {
		return err
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return invalid("reading the body: %v", err)
}

// decode undoes enc (as contentEncoding gives it) on raw, to at most limit
// bytes. The caller gives raw's bytes back when it drops raw.
func (m *bodyMem) decode(enc string, raw []byte, limit int64) ([]byte, error) {
	if enc == "" {
		if int64(len(raw)) > limit {
			return nil, &http.MaxBytesError{Limit: limit}
		}
		return raw, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, invalid("gzip body: %v", err)
	}
	defer zr.Close()
	out, err := m.readAll(nil, zr, limit)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &tooLarge{limit: limit, msg: fmt.Sprintf("body decompresses to more than the limit of %d bytes", limit)}
		}
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, invalid("gzip body: %v", err)
	}
	return out, nil
}

// maxSnappyLen is the most that n bytes of snappy's block format can decode
// to: its most productive element, a copy with a 2-byte offset, makes 64
// bytes of 3 (a 1-byte-offset copy makes 11 of 2, a literal less than it
// takes). A header that claims more is not snappy.
func maxSnappyLen(n int) int64 { return (int64(n)*64 + 2) / 3 }

// unsnappy decodes a snappy block (as Prometheus remote write and Loki's
// protobuf push send), after checking the length its header claims against
// limit and against what the compressed bytes can hold, and reserving it.
func (m *bodyMem) unsnappy(src []byte, limit int64) ([]byte, error) {
	n, hdr := binary.Uvarint(src)
	if hdr <= 0 || n > 1<<32-1 {
		return nil, invalid("body is not snappy-compressed (block format): bad length header")
	}
	if int64(n) > limit {
		return nil, &tooLarge{limit: limit, msg: fmt.Sprintf("body decompresses to %d bytes, over the limit of %d", n, limit)}
	}
	if most := maxSnappyLen(len(src) - hdr); int64(n) > most {
		return nil, invalid("body is not snappy-compressed (block format): its header claims %d bytes, more than %d compressed bytes can hold (%d)",
			n, len(src), most)
	}
	if err := m.take(int64(n)); err != nil {
		return nil, err
	}
	out, err := s2.Decode(make([]byte, n), src)
	if err != nil {
		return nil, invalid("body is not snappy-compressed (block format): %v", err)
	}
	return out, nil
}

// tooLarge is a body over a limit, with the words of which; a
// *http.MaxBytesError for the error table (413).
type tooLarge struct {
	limit int64
	msg   string
}

func (e *tooLarge) Error() string { return e.msg }

func (e *tooLarge) As(target any) bool {
	if p, ok := target.(**http.MaxBytesError); ok {
		*p = &http.MaxBytesError{Limit: e.limit}
		return true
	}
	return false
}

// bodyTimeoutError is a body that did not arrive within the body read
// timeout: HTTP 408.
type bodyTimeoutError struct{ after time.Duration }

func (e *bodyTimeoutError) Error() string {
	return fmt.Sprintf("the request body did not arrive within %s", e.after)
}

func (e *bodyTimeoutError) GRPCStatus() *status.Status {
	return status.New(codes.DeadlineExceeded, e.Error())
}

// deadlineBody is a request body read under a deadline set when the request
// came in; the deadline is lifted once the whole body is read, so that the
// request itself (a long query, a stream) is not cut by it.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	done    bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && !b.done:
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		// The deadline stays: net/http's discarding of the unread body
		// after the handler must not wait for the client either.
		err = &bodyTimeoutError{after: b.timeout}
	}
	return n, err
}

// bodyDeadline sets the read deadline of a request with a body.
func bodyDeadline(w http.ResponseWriter, r *http.Request, timeout time.Duration) {
	if timeout <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, timeout: timeout}
}

// grpcGzip decompresses gzip-encoded gRPC messages (OTLP exporters may send
// them) in the body budget: the message grows as output comes, each buffer
// reserved before it is made (waiting up to a second for room: gRPC can only
// answer a decompressor's error as Internal), up to one byte over the
// message limit, which gRPC then refuses as ResourceExhausted. The bytes are
// given back once the message is decompressed; the codec turns it into the
// request as it does an uncompressed one.
type grpcGzip struct {
	lm  *Limiter
	max int64
}

func (grpcGzip) Type() string { return "gzip" }

func (d grpcGzip) Do(r io.Reader) ([]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	mem := d.lm.bodyMem()
	mem.wait = time.Second
	defer mem.release()
	return mem.readAll(nil, io.LimitReader(zr, d.max+1), d.max+1)
}

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
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

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

// bodySegment is the size of the pieces a body of unknown length is read
// into before it is joined.
const bodySegment = 256 << 10

// bodySegments are pieces of bodies being read, reused: a body of unknown
// length is read into them and joined into one buffer of its exact length,
// rather than grown by doubling, which leaves as much garbage as it keeps (a
// storm of large bodies then took the heap to twice the body budget and
// more).
var bodySegments = sync.Pool{New: func() any { return new([bodySegment]byte) }}

// readAll appends what rd yields to buf (whose capacity m already holds) until
// EOF. What does not fit in buf is read into segments, each reserved before
// it is taken, and the whole is then copied into one buffer of its length
// (reserved too). More than limit bytes is a *http.MaxBytesError.
func (m *bodyMem) readAll(buf []byte, rd io.Reader, limit int64) ([]byte, error) {
	var segs []*[bodySegment]byte
	defer func() {
		for _, sg := range segs {
			bodySegments.Put(sg)
			m.give(bodySegment)
		}
	}()
	n := int64(len(buf))
	for {
		var p []byte
		if len(buf) < cap(buf) {
			p = buf[len(buf):cap(buf)]
		} else {
			sn := n - int64(len(buf)) // bytes in segments
			if sn == int64(len(segs))*bodySegment {
				if n > limit {
					return nil, &http.MaxBytesError{Limit: limit}
				}
				if err := m.take(bodySegment); err != nil {
					return nil, err
				}
				segs = append(segs, bodySegments.Get().(*[bodySegment]byte))
			}
			p = segs[len(segs)-1][sn-int64(len(segs)-1)*bodySegment:]
		}
		k, err := rd.Read(p)
		n += int64(k)
		if len(segs) == 0 {
			buf = buf[:len(buf)+k]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if n > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if len(segs) == 0 {
		return buf, nil
	}
	if err := m.take(n); err != nil {
		return nil, err
	}
	out := make([]byte, n)
	k := copy(out, buf)
	for _, sg := range segs {
		k += copy(out[k:], sg[:])
	}
	m.give(int64(cap(buf)))
	return out, nil
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
	buf, err := m.gzipBuffer(raw, limit)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, invalid("gzip body: %v", err)
	}
	defer zr.Close()
	out, err := m.readAll(buf, zr, limit)
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

// maxDeflateRatio is the most deflate makes of one byte: a 258-byte match
// coded in as little as two bits, about 1032 to 1.
const maxDeflateRatio = 1032

// gzipBuffer is the buffer (reserved from the budget) to decompress the gzip
// body raw into, sized by the length its trailer gives, so that it is made
// once rather than grown by doubling (which leaves as much garbage as it
// keeps). The trailer's ISIZE is the last member's length modulo 2^32, so
// a body whose ISIZE is over limit is over it too (were it a lie, the body
// would fail gzip's own check): it is refused before any work. A length the
// compressed bytes cannot hold is no hint (nil buffer: it grows); a length
// under the truth (more members) only starts the growth.
func (m *bodyMem) gzipBuffer(raw []byte, limit int64) ([]byte, error) {
	if len(raw) < 18 { // a header and a trailer
		return nil, nil
	}
	n := int64(binary.LittleEndian.Uint32(raw[len(raw)-4:]))
	if n > limit {
		return nil, &tooLarge{limit: limit, msg: fmt.Sprintf("body decompresses to %d bytes (its gzip trailer says), over the limit of %d", n, limit)}
	}
	if n > int64(len(raw))*maxDeflateRatio {
		return nil, nil
	}
	// One byte more, so that the end is seen without growing.
	if err := m.take(n + 1); err != nil {
		return nil, err
	}
	return make([]byte, 0, n+1), nil
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
	mem := d.lm.bodyMem()
	mem.wait = time.Second
	defer mem.release()
	// The compressed message is read whole first (it is within the message
	// limit already), so that its trailer can size the output.
	var raw []byte
	if rr, ok := r.(interface{ Remaining() int }); ok && int64(rr.Remaining()) <= d.max {
		if err := mem.take(int64(rr.Remaining()) + 1); err != nil {
			return nil, err
		}
		raw = make([]byte, 0, rr.Remaining()+1)
	}
	raw, err := mem.readAll(raw, r, d.max)
	if err != nil {
		return nil, err
	}
	// Over the limit, one byte more is made (not refused here), so that
	// gRPC answers ResourceExhausted: its answer to a decompressor's error
	// is Internal.
	buf, err := mem.gzipBuffer(raw, d.max)
	if errors.As(err, new(*tooLarge)) {
		buf, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return mem.readAll(buf, io.LimitReader(zr, d.max+1), d.max+1)
}

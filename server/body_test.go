package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func testBodyLimiter(t testing.TB, budget int64) *Limiter {
	t.Helper()
	l := DefaultLimits()
	l.MaxBodyBytesInflight = budget
	return NewLimiter(context.Background(), l, nil)
}

// allocated is the bytes the Go heap handed out while f ran.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// The most compressible snappy input real encoders can make stays within
// maxSnappyLen, and close to it: the bound is what valid input can do.
func TestMaxSnappyLen(t *testing.T) {
	for _, n := range []int{1, 64, 1000, 1 << 20, 8 << 20} {
		zeros := make([]byte, n)
		for name, enc := range map[string][]byte{
			"snappy":        s2.EncodeSnappy(nil, zeros),
			"snappy better": s2.EncodeSnappyBetter(nil, zeros),
			"snappy best":   s2.EncodeSnappyBest(nil, zeros),
		} {
			_, hdr := binary.Uvarint(enc)
			if most := maxSnappyLen(len(enc) - hdr); int64(n) > most {
				t.Errorf("%s: %d zeros encode to %d bytes, more than maxSnappyLen allows (%d)", name, n, len(enc), most)
			}
		}
	}
	// The densest valid block, built by hand: one literal zero, then copies
	// of 64 bytes at offset 1 (3 bytes each). It decodes, and to exactly
	// what maxSnappyLen allows for its size (s2's encoders stop near 20x).
	const copies = 1 << 17
	n := 1 + copies*64
	enc := binary.AppendUvarint(nil, uint64(n))
	hdr := len(enc)
	enc = append(enc, 0<<2|0, 0) // a literal of length 1: the byte 0
	for range copies {
		enc = append(enc, (64-1)<<2|2, 1, 0) // copy, 2-byte offset 1, length 64
	}
	out, err := s2.Decode(nil, enc)
	if err != nil || len(out) != n || !bytes.Equal(out, make([]byte, n)) {
		t.Fatalf("hand-made block: %d bytes, %v", len(out), err)
	}
	if most := maxSnappyLen(len(enc) - hdr); int64(n) > most || int64(n) < most-64 {
		t.Errorf("the densest block of %d bytes holds %d bytes; maxSnappyLen says %d", len(enc)-hdr, n, most)
	}
}

// A snappy header is a claim: one over the limit, or over what the
// compressed bytes can hold, is refused before anything is allocated.
func TestUnsnappyRefusesClaims(t *testing.T) {
	lm := testBodyLimiter(t, 512<<20)
	claim := func(n uint64, extra int) []byte {
		b := binary.AppendUvarint(nil, n)
		return append(b, make([]byte, extra)...)
	}
	cases := []struct {
		name  string
		body  []byte
		limit int64
		want  func(error) bool
	}{
		{"9 bytes claiming 256MiB", claim(256<<20, 5), 256 << 20, func(err error) bool { return errors.Is(err, errInvalid) }},
		{"claim over the limit", claim(65<<20, 5), 64 << 20, func(err error) bool {
			var mbe *http.MaxBytesError
			return errors.As(err, &mbe) && mbe.Limit == 64<<20
		}},
		{"1MiB claim in 1000 bytes", claim(1<<20, 1000), 64 << 20, func(err error) bool { return errors.Is(err, errInvalid) }},
		{"bad header", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 64 << 20, func(err error) bool { return errors.Is(err, errInvalid) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := lm.bodyMem()
			var err error
			got := allocated(func() { _, err = mem.unsnappy(c.body, c.limit) })
			if err == nil || !c.want(err) {
				t.Fatalf("err = %v", err)
			}
			if got > 1<<20 {
				t.Errorf("allocated %d bytes to refuse it", got)
			}
			if mem.held != 0 || lm.BodyBytesInflight() != 0 {
				t.Errorf("holds %d bytes (limiter: %d)", mem.held, lm.BodyBytesInflight())
			}
		})
	}
	// A real body decodes, its bytes held until released.
	want := bytes.Repeat([]byte("remote write "), 10000)
	mem := lm.bodyMem()
	out, err := mem.unsnappy(s2.EncodeSnappy(nil, want), 1<<20)
	if err != nil || !bytes.Equal(out, want) {
		t.Fatalf("decode: %v", err)
	}
	if lm.BodyBytesInflight() != int64(len(want)) {
		t.Errorf("holds %d bytes, want %d", lm.BodyBytesInflight(), len(want))
	}
	mem.release()
	if lm.BodyBytesInflight() != 0 {
		t.Errorf("holds %d bytes after release", lm.BodyBytesInflight())
	}
}

// A gzip bomb decodes into a buffer that grows as data comes, up to the
// limit and no further.
func TestDecodeGzipBomb(t *testing.T) {
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write(make([]byte, 32<<20))
	_ = zw.Close()
	lm := testBodyLimiter(t, 512<<20)
	mem := lm.bodyMem()
	var err error
	got := allocated(func() { _, err = mem.decode("gzip", zb.Bytes(), 4<<20) })
	var dtl *tooLarge
	var mbe *http.MaxBytesError
	if !errors.As(err, &dtl) || !errors.As(err, &mbe) {
		t.Fatalf("%d-byte bomb: err = %v, want the decoded limit", zb.Len(), err)
	}
	if got > 16<<20 {
		t.Errorf("allocated %d bytes decoding to a 4MiB limit", got)
	}
	mem.release()

	// Within the limit it decodes.
	zb.Reset()
	zw.Reset(&zb)
	_, _ = zw.Write([]byte("hello"))
	_ = zw.Close()
	out, err := mem.decode("gzip", zb.Bytes(), 4<<20)
	if err != nil || string(out) != "hello" {
		t.Fatalf("decode = %q, %v", out, err)
	}
	mem.release()
	if _, err := mem.decode("gzip", []byte("not gzip"), 4<<20); !errors.Is(err, errInvalid) {
		t.Errorf("not gzip: %v", err)
	}
}

// trickle yields n bytes, one Read at a time of at most k.
type trickle struct{ n, k int }

func (r *trickle) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	m := min(r.n, r.k, len(p))
	r.n -= m
	return m, nil
}

// readAll grows with what arrives (not with a claim), and the bodies in
// flight share one budget: past it, ResourceExhausted.
func TestBodyBudget(t *testing.T) {
	lm := testBodyLimiter(t, 2<<20)
	a := lm.bodyMem()
	small, err := a.readAll(nil, &trickle{n: 10, k: 10}, 64<<20)
	if err != nil || len(small) != 10 || cap(small) != 10 {
		t.Fatalf("10 bytes: len %d cap %d err %v", len(small), cap(small), err)
	}
	a.release()
	big, err := a.readAll(nil, &trickle{n: 900 << 10, k: 4096}, 64<<20)
	if err != nil || len(big) != 900<<10 || cap(big) != 900<<10 {
		t.Fatalf("900KiB: len %d cap %d %v", len(big), cap(big), err)
	}
	if held := lm.BodyBytesInflight(); held != 900<<10 {
		t.Errorf("900KiB body holds %d bytes of the budget", held)
	}
	b := lm.bodyMem()
	_, err = b.readAll(nil, &trickle{n: 900 << 10, k: 4096}, 64<<20)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second 900KiB body in a 2MiB budget: %v", err)
	}
	b.release()
	a.release()
	if _, err := b.readAll(nil, &trickle{n: 900 << 10, k: 4096}, 64<<20); err != nil {
		t.Fatalf("after the first was released: %v", err)
	}
	b.release()
	if _, err := b.readAll(nil, &trickle{n: 2000, k: 100}, 1000); !errors.As(err, new(*http.MaxBytesError)) {
		t.Errorf("over the limit: %v", err)
	}
	b.release()
	if lm.BodyBytesInflight() != 0 {
		t.Errorf("%d bytes held after every release", lm.BodyBytesInflight())
	}
}

// FuzzUnsnappy: any body decodes to at most what snappy's format allows and
// the limit, or is refused; the budget is whole again after release.
func FuzzUnsnappy(f *testing.F) {
	f.Add(s2.EncodeSnappy(nil, []byte("hello hello hello hello")))
	f.Add(s2.EncodeSnappy(nil, make([]byte, 5000)))
	f.Add(binary.AppendUvarint(nil, 256<<20))
	lm := testBodyLimiter(f, 1<<20)
	f.Fuzz(func(t *testing.T, body []byte) {
		mem := lm.bodyMem()
		defer func() {
			mem.release()
			if n := lm.BodyBytesInflight(); n != 0 {
				t.Fatalf("%d bytes held after release", n)
			}
		}()
		out, err := mem.unsnappy(body, 64<<10)
		if err != nil {
			return
		}
		if int64(len(out)) > 64<<10 || int64(len(out)) > maxSnappyLen(len(body)) {
			t.Fatalf("%d bytes decoded to %d", len(body), len(out))
		}
	})
}

// A body that does not arrive within the read timeout is answered 408 and
// the connection closed; one that arrives lifts the deadline, so a handler
// running longer than it (a query, a stream) is not cut.
func TestBodyReadDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	lm := testBodyLimiter(t, 1<<20)
	h := limitBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mem := lm.bodyMem()
		defer mem.release()
		b, err := mem.readRaw(r, 1<<20)
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		select { // a long answer after the body
		case <-time.After(3 * timeout):
		case <-r.Context().Done():
			writeHTTPError(w, r.Context().Err())
			return
		}
		_, _ = w.Write(b)
	}), 1<<20, timeout)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	send := func(req string) string {
		t.Helper()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return string(b)
	}
	if got := send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf"); !strings.HasPrefix(got, "HTTP/1.1 408") ||
		!strings.Contains(got, "did not arrive within") {
		t.Errorf("slow body: %q", got)
	}
	if got := send("POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nwhole"); !strings.HasPrefix(got, "HTTP/1.1 200") ||
		!strings.HasSuffix(got, "whole") {
		t.Errorf("whole body, long answer: %q", got)
	}
}

// gRPC's gzip messages decompress in the budget: within the message limit
// they decode; over it, one byte more comes back (which gRPC refuses as
// ResourceExhausted) and no further; the bytes are given back after.
func TestGRPCGzip(t *testing.T) {
	gz := func(b []byte) io.Reader {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return &zb
	}
	lm := testBodyLimiter(t, 8<<20)
	d := grpcGzip{lm: lm, max: 1 << 20}
	if out, err := d.Do(gz([]byte("hello"))); err != nil || string(out) != "hello" {
		t.Fatalf("Do = %q, %v", out, err)
	}
	if out, err := d.Do(gz(make([]byte, 32<<20))); err != nil || len(out) != 1<<20+1 {
		t.Fatalf("bomb: %d bytes, %v", len(out), err)
	}
	if n := lm.BodyBytesInflight(); n != 0 {
		t.Errorf("%d bytes held after", n)
	}
	// With the budget taken, it waits (up to a second), then refuses. The
	// budget is atomics and the wait a sleep loop, so in a synctest bubble
	// the release surely comes while Do waits, and no real second passes.
	synctest.Test(t, func(t *testing.T) {
		hog := lm.bodyMem()
		if err := hog.take(8<<20 - 1000); err != nil {
			t.Fatal(err)
		}
		go func() { time.Sleep(100 * time.Millisecond); hog.release() }()
		start := time.Now()
		if _, err := d.Do(gz(make([]byte, 100<<10))); err != nil {
			t.Fatalf("after waiting for room: %v", err)
		}
		if waited := time.Since(start); waited < 100*time.Millisecond {
			t.Errorf("done after %v, before the room was made", waited)
		}
		_ = hog.take(8<<20 - 1000)
		if _, err := d.Do(gz(make([]byte, 100<<10))); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("no room: %v", err)
		}
		hog.release()
	})
}

// A gzip body decompresses into one buffer of the length its trailer gives;
// a trailer over the limit is refused before any work, one the compressed
// bytes cannot hold is no hint, one that lies fails gzip's own check, and a
// body of more members than the last (whose length the trailer gives) still
// decodes whole.
func TestGzipTrailer(t *testing.T) {
	gz := func(parts ...[]byte) []byte {
		var zb bytes.Buffer
		for _, p := range parts {
			zw := gzip.NewWriter(&zb)
			_, _ = zw.Write(p)
			_ = zw.Close()
		}
		return zb.Bytes()
	}
	lm := testBodyLimiter(t, 64<<20)
	mem := lm.bodyMem()
	defer mem.release()
	text := bytes.Repeat([]byte("a line of text\n"), 10000)
	out, err := mem.decode("gzip", gz(text), 4<<20)
	if err != nil || !bytes.Equal(out, text) || cap(out) != len(text)+1 {
		t.Fatalf("decode: len %d cap %d err %v", len(out), cap(out), err)
	}
	if held := lm.BodyBytesInflight(); held != int64(len(text))+1 {
		t.Errorf("holds %d bytes for a body of %d", held, len(text))
	}
	mem.release()

	// Two members: the trailer gives the second's length only.
	out, err = mem.decode("gzip", gz(text, []byte("end\n")), 4<<20)
	if err != nil || len(out) != len(text)+4 || string(out[len(out)-4:]) != "end\n" {
		t.Fatalf("two members: len %d err %v", len(out), err)
	}
	mem.release()

	// A trailer over the limit: 413 at once.
	body := gz(make([]byte, 5<<20))
	_, err = mem.decode("gzip", body, 4<<20)
	if !errors.As(err, new(*http.MaxBytesError)) || !strings.Contains(err.Error(), "gzip trailer") {
		t.Errorf("trailer over the limit: %v", err)
	}
	mem.release()

	// A lying trailer: no more is reserved than the bytes can hold, and the
	// body fails gzip's check.
	small := gz([]byte("hello"))
	binary.LittleEndian.PutUint32(small[len(small)-4:], 3<<20)
	if _, err := mem.decode("gzip", small, 4<<20); !errors.Is(err, errInvalid) {
		t.Errorf("lying trailer: %v", err)
	}
	mem.release()
	binary.LittleEndian.PutUint32(small[len(small)-4:], 2)
	if _, err := mem.decode("gzip", small, 4<<20); !errors.Is(err, errInvalid) {
		t.Errorf("trailer under the truth: %v", err)
	}
	mem.release()
	if n := lm.BodyBytesInflight(); n != 0 {
		t.Errorf("%d bytes held after every release", n)
	}
}

// FuzzGzipBody: a gzip body decodes to what gzip itself reads from it, or is
// refused when gzip refuses it or it is over the limit; the budget is whole
// again after release.
func FuzzGzipBody(f *testing.F) {
	for _, parts := range [][]string{{"hello"}, {"a", "b"}, {strings.Repeat("x", 70000)}, {""}} {
		var zb bytes.Buffer
		for _, p := range parts {
			zw := gzip.NewWriter(&zb)
			_, _ = zw.Write([]byte(p))
			_ = zw.Close()
		}
		f.Add(zb.Bytes())
	}
	lm := testBodyLimiter(f, 8<<20)
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, raw []byte) {
		mem := lm.bodyMem()
		out, err := mem.decode("gzip", raw, limit)
		var want []byte
		var werr error
		if zr, zerr := gzip.NewReader(bytes.NewReader(raw)); zerr != nil {
			werr = zerr
		} else {
			want, werr = io.ReadAll(io.LimitReader(zr, limit+1))
		}
		switch {
		case werr == nil && len(want) <= limit:
			if err != nil || !bytes.Equal(out, want) {
				t.Fatalf("decode = %d bytes, %v; gzip reads %d bytes", len(out), err, len(want))
			}
		case err == nil:
			t.Fatalf("decoded %d bytes of a body gzip refuses (%v, %d bytes)", len(out), werr, len(want))
		}
		mem.release()
		if n := lm.BodyBytesInflight(); n != 0 {
			t.Fatalf("%d bytes held after release", n)
		}
	})
}

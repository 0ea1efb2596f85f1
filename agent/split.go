package agent

import "bytes"

// splitter cuts a byte stream into lines. Lines longer than max are cut to max
// bytes (truncated) and the rest of them skipped up to the newline. It is fed
// with Write and hands each complete line, without its newline, to fn with the
// stream offset just past that newline.
type splitter struct {
	max       int
	buf       []byte
	truncated bool  // the line in buf was cut
	off       int64 // stream offset of the next byte to arrive
	fn        func(line []byte, truncated bool, end int64)
}

func newSplitter(max int, fn func(line []byte, truncated bool, end int64)) *splitter {
	return &splitter{max: max, fn: fn}
}

// Write feeds p; it never fails.
func (sp *splitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			sp.keep(p)
			sp.off += int64(len(p))
			break
		}
		sp.off += int64(i + 1)
		var line []byte
		if len(sp.buf) == 0 && !sp.truncated && i <= sp.max {
			line = p[:i] // the whole line is in p: no copy
		} else {
			sp.keep(p[:i])
			line = sp.buf
		}
		sp.fn(line, sp.truncated, sp.off)
		sp.buf, sp.truncated = sp.buf[:0], false
		p = p[i+1:]
	}
	return n, nil
}

func (sp *splitter) keep(b []byte) {
	if sp.truncated {
		return
	}
	if room := sp.max - len(sp.buf); len(b) > room {
		sp.buf = append(sp.buf, b[:room]...)
		sp.truncated = true
		return
	}
	sp.buf = append(sp.buf, b...)
}

// Pending reports the bytes of an unfinished line held.
func (sp *splitter) Pending() bool { return len(sp.buf) > 0 || sp.truncated }

// Flush hands on an unfinished last line (one with no newline after it).
func (sp *splitter) Flush() {
	if !sp.Pending() {
		return
	}
	sp.fn(sp.buf, sp.truncated, sp.off)
	sp.buf, sp.truncated = sp.buf[:0], false
}

// Reset forgets any unfinished line and restarts counting at off.
func (sp *splitter) Reset(off int64) {
	sp.buf, sp.truncated, sp.off = sp.buf[:0], false, off
}

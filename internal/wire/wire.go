// Package wire reads and writes the varint-framed binary formats of shiplog:
// the WAL payloads, chunk and catalog values of the store, the cluster's batch
// messages and the agent's spool files. It is encoding/binary's varints with a
// sticky error, and the one definition of a string on the wire: its length as
// a uvarint, then its bytes.
//
// A Reader never panics on bad input: the first read past the end or of a
// malformed varint sets its error, and every later read returns the zero
// value, so a decoder reads a whole record and checks Err once.
package wire

import (
	"encoding/binary"
	"errors"
	"unsafe"
)

// ErrCorrupt is the error of a Reader made with no error of its own.
var ErrCorrupt = errors.New("corrupt encoding")

// AppendUvarint appends v as a uvarint.
func AppendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// AppendVarint appends v as a zig-zag varint.
func AppendVarint(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

// AppendString appends s as its uvarint length and its bytes.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBytes appends p as its uvarint length and its bytes.
func AppendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// A Reader decodes from a byte slice; the zero Reader is empty. It keeps an
// offset into the slice rather than reslicing it, so that advancing writes
// no pointer (no GC write barrier on a decoder's hot path).
type Reader struct {
	b       []byte
	off     int
	err     error
	corrupt error
}

// NewReader returns a Reader of b whose Err, once input is bad, is corrupt
// (ErrCorrupt when nil). Pass a prebuilt error: the Reader does not wrap it,
// so a hot decoder allocates nothing.
func NewReader(b []byte, corrupt error) Reader {
	return Reader{b: b, corrupt: corrupt}
}

// Err is nil, or the Reader's corrupt error once a read failed.
func (r *Reader) Err() error { return r.err }

// Len is the number of bytes not read yet.
func (r *Reader) Len() int { return len(r.b) - r.off }

// Rest returns the bytes not read yet (aliasing the input).
func (r *Reader) Rest() []byte { return r.b[r.off:] }

// Fail marks the input bad (a decoder's own check failed).
func (r *Reader) Fail() {
	if r.corrupt == nil {
		r.FailWith(ErrCorrupt)
		return
	}
	r.FailWith(r.corrupt)
}

// FailWith marks the input bad with err, unless it is bad already. Every
// later read returns the zero value.
func (r *Reader) FailWith(err error) {
	if r.err == nil {
		r.err = err
	}
	r.off = len(r.b)
}

// Uvarint reads a uvarint. One- and two-byte values (most lengths and
// deltas) take a fast path.
func (r *Reader) Uvarint() uint64 {
	if r.off < len(r.b) && r.b[r.off] < 0x80 {
		r.off++
		return uint64(r.b[r.off-1])
	}
	if r.off+1 < len(r.b) && r.b[r.off+1] < 0x80 {
		v := uint64(r.b[r.off]&0x7f) | uint64(r.b[r.off+1])<<7
		r.off += 2
		return v
	}
	v, k := binary.Uvarint(r.b[r.off:])
	if k <= 0 {
		r.Fail()
		return 0
	}
	r.off += k
	return v
}

// Varint reads a zig-zag varint.
func (r *Reader) Varint() int64 {
	u := r.Uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if r.off >= len(r.b) {
		r.Fail()
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

// Next reads n raw bytes (aliasing the input).
func (r *Reader) Next(n int) []byte {
	if n < 0 || r.Len() < n {
		r.Fail()
		return nil
	}
	p := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

// Uint32BE reads a big-endian uint32.
func (r *Reader) Uint32BE() uint32 {
	if r.Len() < 4 {
		r.Fail()
		return 0
	}
	r.off += 4
	return binary.BigEndian.Uint32(r.b[r.off-4:])
}

// Uint64BE reads a big-endian uint64.
func (r *Reader) Uint64BE() uint64 {
	if r.Len() < 8 {
		r.Fail()
		return 0
	}
	r.off += 8
	return binary.BigEndian.Uint64(r.b[r.off-8:])
}

// Uint64LE reads a little-endian uint64.
func (r *Reader) Uint64LE() uint64 {
	if r.Len() < 8 {
		r.Fail()
		return 0
	}
	r.off += 8
	return binary.LittleEndian.Uint64(r.b[r.off-8:])
}

// Bytes reads what AppendBytes (or AppendString) wrote, aliasing the input.
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if n > uint64(len(r.b)-r.off) {
		r.Fail()
		return nil
	}
	end := r.off + int(n)
	p := r.b[r.off:end:end]
	r.off = end
	return p
}

// Str reads what AppendString wrote, as a copy.
func (r *Reader) Str() string { return string(r.Bytes()) }

// StrAlias reads what AppendString wrote without copying: the string shares
// the input's memory, which must then never change.
func (r *Reader) StrAlias() string {
	p := r.Bytes()
	if len(p) == 0 {
		return ""
	}
	return unsafe.String(&p[0], len(p))
}

// Count reads a uvarint count of items that each take at least min bytes
// (min >= 1), failing when the bytes left cannot hold them: a corrupt count
// cannot make the caller allocate more than the input's size.
func (r *Reader) Count(min int) int {
	n := r.Uvarint()
	if n > uint64(r.Len()/max(min, 1)) {
		r.Fail()
		return 0
	}
	return int(n)
}

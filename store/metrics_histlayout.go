package store

import (
	"errors"
	"fmt"
)

// checkHistogramLayout bounds what reading a native histogram chunk (data,
// as chunkenc wrote it: a 3-byte header, then the layout of its first
// sample) will allocate. Prometheus' iterator sizes its bucket slices from
// the layout's span lengths, so a corrupt chunk of 16 bytes could claim 2^32
// buckets per span and allocate gigabytes. Every bucket of the first sample
// takes at least one bit of the chunk, so a layout claiming more buckets
// than the chunk has bits is corrupt.
func checkHistogramLayout(data []byte) error {
	if len(data) < 3 {
		return fmt.Errorf("%w: histogram chunk header", errCorrupt)
	}
	if data[0] == 0 && data[1] == 0 {
		return nil // no samples: the layout is never read
	}
	r := bitReader{b: data[3:]}
	// The zero threshold: one byte, or 255 and 8 more.
	if z := r.bits(8); z == 255 {
		r.bits(64)
	}
	r.varbit() // the schema
	limit := uint64(len(data)) * 8
	var buckets uint64
	for range 2 { // positive, then negative spans
		n := r.varbit()
		for i := uint64(0); i < n && r.err == nil; i++ {
			buckets += r.varbit() // length
			r.varbit()            // offset
			if buckets > limit {
				return fmt.Errorf("%w: histogram chunk claims %d+ buckets in %d bytes", errCorrupt, buckets, len(data))
			}
		}
	}
	if r.err != nil {
		return fmt.Errorf("%w: histogram chunk layout", errCorrupt)
	}
	return nil
}

var errShortBits = errors.New("short")

// bitReader reads bits most significant first, as chunkenc's bstream writes.
type bitReader struct {
	b   []byte
	pos uint64 // bit position
	err error
}

func (r *bitReader) bits(n uint8) uint64 {
	if r.err != nil || r.pos+uint64(n) > uint64(len(r.b))*8 {
		r.err = errShortBits
		return 0
	}
	var v uint64
	for i := uint8(0); i < n; i++ {
		byt := r.b[r.pos/8]
		v = v<<1 | uint64(byt>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

// varbit reads a value written by chunkenc's putVarbitUint (or the bits of
// one written by putVarbitInt, as an unsigned number): up to eight 1 bits
// ended by a 0 say how many bits follow.
func (r *bitReader) varbit() uint64 {
	ones := 0
	for ones < 8 && r.bits(1) == 1 {
		ones++
	}
	size := [...]uint8{0, 3, 6, 9, 12, 18, 25, 56, 64}[ones]
	if size == 0 {
		return 0
	}
	return r.bits(size)
}

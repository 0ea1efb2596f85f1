package store

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/shiplog/shiplog/internal/wire"
)

// Times (t value version 2) and message lengths (c value version 4).
//
// A chunk's times are deltas from the line before (the first from MinT).
// Version 1 stored them as zig-zag varints, compressed: nanosecond deltas of
// seconds take five varint bytes a line, whose low bytes are noise zstd
// cannot shrink and whose high bytes it codes badly between them. Version 2
// (encodeTimes) divides the deltas by their greatest common divisor (a
// million for millisecond stamps), zig-zags them and splits each into its
// low shift bits, shift/8 bytes a line stored apart, and the rest, a small
// uvarint a line, compressed: the times column is codec byte 0, then
//
//	divisor uvarint, shift byte (0, 8, ... 56)
//	high parts: stored length uvarint, stored bytes (codec byte and data)
//	low parts: the rest (codec byte and data): n x shift/8 bytes, little-endian
//
// shift is the least multiple of 8 that leaves the high parts' mean under
// 256. On gen_logs.py's lines: 4.9 B/line in version 1, 4.3 in version 2.
//
// Message lengths of c value version 4 (appendLenPlanes) are p bytes a line,
// little-endian, p the bytes of the longest (1-4), stored plane by plane:
// the raw column is p, then the n low bytes, the n next ones... so that
// zstd codes each plane on its own (1.5 B/line as uvarints, 0.9 as planes).
// Since c value version 6 a chunk whose messages hold no NUL stores none:
// each message is followed by a NUL in its block (msgSeparated), which
// costs less than the lengths (c values 34.4 -> 33.3 B/line).

// encodeTimes returns the stored times column (version 2) of ts.
func encodeTimes(ts []int64, minT int64) []byte {
	var div uint64
	prev := minT
	for _, t := range ts {
		d := t - prev
		prev = t
		if d < 0 {
			d = -d
		}
		if d != 0 && div != 1 {
			div = gcd(div, uint64(d))
		}
	}
	if div == 0 {
		div = 1
	}
	zs := make([]uint64, len(ts))
	var mean float64
	prev = minT
	for i, t := range ts {
		d := (t - prev) / int64(div)
		prev = t
		zs[i] = uint64(d<<1) ^ uint64(d>>63)
		mean += float64(zs[i])
	}
	mean /= float64(max(1, len(ts)))
	shift := 0
	for shift < 56 && mean >= float64(uint64(256)<<shift) {
		shift += 8
	}
	hi := make([]byte, 0, 2*len(ts))
	lo := make([]byte, 0, len(ts)*shift/8)
	for _, z := range zs {
		hi = wire.AppendUvarint(hi, z>>shift)
		for i := 0; i < shift; i += 8 {
			lo = append(lo, byte(z>>i))
		}
	}
	his, los := compress(hi), compress(lo)
	out := make([]byte, 0, 16+len(his)+len(los))
	out = append(out, codecRaw)
	out = wire.AppendUvarint(out, div)
	out = append(out, byte(shift))
	out = wire.AppendUvarint(out, uint64(len(his)))
	out = append(out, his...)
	return append(out, los...)
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// errBadTimes is a times column that does not read (made once: a search
// decodes thousands).
var errBadTimes = fmt.Errorf("%w: times", errCorrupt)

// decodeTimes decodes a stored times column of t value version ver into
// ts (its length the chunk's lines).
func decodeTimes(ver byte, c []byte, minT int64, ts []int64) error {
	bad := errBadTimes
	// Three scratch buffers: the column, its high and its low parts.
	var bps [3]*[]byte
	for i := range bps {
		bps[i] = scratchPool.Get().(*[]byte)
	}
	defer func() {
		for _, bp := range bps {
			scratchPool.Put(bp)
		}
	}()
	b, err := decompressTo(c, bps[0])
	if err != nil {
		return err
	}
	prev := minT
	if ver < 2 {
		r := wire.NewReader(b, nil)
		for i := range ts {
			prev += r.Varint()
			ts[i] = prev
		}
		if r.Err() != nil {
			return bad
		}
		return nil
	}
	r := wire.NewReader(b, bad)
	div := r.Uvarint()
	shift := int(r.Byte())
	hl := r.Uvarint()
	if r.Err() != nil || div == 0 || shift > 56 || shift%8 != 0 || hl > uint64(r.Len()) {
		return bad
	}
	hi, err := decompressTo(r.Next(int(hl)), bps[1])
	if err != nil {
		return err
	}
	lo, err := decompressTo(r.Next(r.Len()), bps[2])
	if err != nil {
		return err
	}
	w := shift / 8
	if len(lo) != w*len(ts) {
		return bad
	}
	// The low parts are read 8 bytes at a time (masked), past their end
	// too: in the buffer's spare capacity, else from a padded copy.
	var pad []byte
	if cap(lo)-len(lo) >= 8 {
		pad = lo[:len(lo)+8]
	} else {
		pad = make([]byte, len(lo)+8)
		copy(pad, lo)
	}
	mask := uint64(1)<<shift - 1
	p := 0
	for i := range ts {
		// The high part: a uvarint, mostly of one byte.
		var h uint64
		if p < len(hi) && hi[p] < 0x80 {
			h = uint64(hi[p])
			p++
		} else {
			v, k := binary.Uvarint(hi[p:])
			if k <= 0 {
				return bad
			}
			h, p = v, p+k
		}
		z := h<<shift | binary.LittleEndian.Uint64(pad[i*w:])&mask
		prev += (int64(z>>1) ^ -int64(z&1)) * int64(div)
		ts[i] = prev
	}
	if p != len(hi) {
		return bad
	}
	return nil
}

// appendLenPlanes appends the message lengths of msgs as byte planes
// (c value version 4).
func appendLenPlanes(b []byte, msgs []string) []byte {
	longest := 0
	for _, m := range msgs {
		longest = max(longest, len(m))
	}
	p := max(1, (bits.Len(uint(longest))+7)/8)
	b = append(b, byte(p))
	for i := 0; i < p; i++ {
		for _, m := range msgs {
			b = append(b, byte(len(m)>>(8*i)))
		}
	}
	return b
}

// decodeLens reads the decompressed message lengths column of a c value of
// version ver and n lines (from int32Cols).
func decodeLens(ver byte, b []byte, n int) ([]int32, error) {
	bad := fmt.Errorf("%w: message lengths", errCorrupt)
	out := int32Cols.get(n)
	if ver < 4 {
		r := wire.NewReader(b, nil)
		for i := range out {
			out[i] = int32(min(r.Uvarint(), maxMsgBytes+1))
		}
		if r.Err() != nil {
			int32Cols.put(out)
			return nil, bad
		}
		return out, nil
	}
	if len(b) < 1 || b[0] < 1 || b[0] > 4 || len(b) != 1+int(b[0])*n {
		int32Cols.put(out)
		return nil, bad
	}
	p := int(b[0])
	for i := range out {
		out[i] = int32(b[1+i])
	}
	for j := 1; j < p; j++ {
		plane := b[1+j*n : 1+(j+1)*n]
		for i, x := range plane {
			out[i] |= int32(x) << (8 * j)
		}
	}
	for i, x := range out {
		if x < 0 || x > maxMsgBytes {
			out[i] = maxMsgBytes + 1
		}
	}
	return out, nil
}

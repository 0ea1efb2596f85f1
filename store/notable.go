package store

import (
	"time"

	"github.com/shiplog/shiplog/internal/wire"
	"github.com/shiplog/shiplog/model"
)

// The notable lines (warn and above) of a sealed chunk stay in memory for
// counting them over time without reading chunks (query d, errors per
// minute). On disk (ChunkMeta.Notable as sealing sets it) each is a line
// index delta, a level byte and its time from MinT in nanoseconds, ~8
// bytes. Once the store records the chunk (addSealed, Open's load) Notable
// holds instead, for each line, its level and its time rounded down to
// NotableUnit as a delta from the line before (notableMS set): ~3.5 bytes;
// they were the largest cost a sealed chunk had in memory (0.8 B a stored
// line). A count the rounding could change (a line's millisecond straddles
// a bucket or range boundary) is refused and the caller reads the chunk
// (NotableIn).

// NotableUnit is the precision of the notable lines' times in memory.
const NotableUnit = int64(time.Millisecond)

// compactNotable converts the on-disk notable lines of a chunk whose first
// time is minT to the in-memory form: per line uvarint(level - NotableLevel)
// (a level outside warn..fatal as 3 and the byte after), then the zig-zag
// varint of its time in NotableUnit less the previous line's (minT's first).
// nil when v1 does not decode (the chunk is then counted from its lines).
func compactNotable(v1 []byte, minT int64) []byte {
	var buf [512]byte
	out := buf[:0]
	r := wire.NewReader(v1, errCorrupt)
	prev := floorDiv(minT, NotableUnit)
	for r.Len() > 0 {
		r.Uvarint() // line index delta: not needed to count
		lv := model.Level(r.Byte())
		dt := r.Varint()
		if r.Err() != nil {
			return nil
		}
		if c := int(lv) - int(NotableLevel); c >= 0 && c < 3 {
			out = append(out, byte(c))
		} else {
			out = append(out, 3, byte(lv))
		}
		q := floorDiv(minT+dt, NotableUnit)
		out = wire.AppendVarint(out, q-prev)
		prev = q
	}
	return append(make([]byte, 0, len(out)), out...) // held for good: no spare capacity
}

// expandNotable is the on-disk form of compact notable lines (line index
// deltas 0, times whole NotableUnits): what encodeMeta writes for metadata
// the store holds (it writes none but the sealed chunks' own).
func expandNotable(compact []byte, minT int64) []byte {
	out := make([]byte, 0, 2*len(compact)+8)
	eachCompactNotable(compact, minT, func(lv model.Level, lo, _ int64) bool {
		out = append(out, 0, byte(lv))
		out = wire.AppendVarint(out, lo-minT)
		return true
	})
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// eachNotable calls fn with the level of every notable line and the bounds
// [lo, hi] its time is known to be in (equal on a chunk just sealed, whose
// exact times are at hand).
func (m *ChunkMeta) eachNotable(fn func(lv model.Level, lo, hi int64) bool) {
	if m.notableMS {
		eachCompactNotable(m.Notable, m.MinT, fn)
		return
	}
	more := true
	eachNotableV1(m.Notable, m.MinT, func(_ int, lv model.Level, t int64) {
		more = more && fn(lv, t, t)
	})
}

func eachCompactNotable(compact []byte, minT int64, fn func(lv model.Level, lo, hi int64) bool) {
	r := wire.NewReader(compact, nil)
	q := floorDiv(minT, NotableUnit)
	for r.Len() > 0 {
		lv := model.Level(r.Byte()) + NotableLevel
		if lv == NotableLevel+3 {
			lv = model.Level(r.Byte())
		}
		q += r.Varint()
		if r.Err() != nil || !fn(lv, q*NotableUnit, q*NotableUnit+NotableUnit-1) {
			return
		}
	}
}

// NotableIn counts the chunk's lines of level lv in tr from its metadata:
// it calls fn once a line, with the line's bucket (time-first)/step, or -1
// when step <= 0. It returns false, having called fn for none, when the
// metadata cannot tell (no notable lines kept: an open chunk; or a line's
// time, kept to NotableUnit, might fall either side of a boundary of tr or
// of a bucket): the caller then reads the chunk's lines.
func (m *ChunkMeta) NotableIn(lv model.Level, tr model.TimeRange, first, step int64, fn func(bucket int64)) bool {
	if lv < NotableLevel || !m.HasNotable() {
		return false
	}
	// One pass: the buckets are gathered and handed to fn only once every
	// line has been found certain.
	var stack [256]int64
	buckets, sure := stack[:0], true
	m.eachNotable(func(l model.Level, lo, hi int64) bool {
		if l != lv {
			return true
		}
		in := tr.Contains(lo)
		if in != tr.Contains(hi) || !in && lo < tr.Start && hi >= tr.End {
			sure = false
			return false
		}
		if !in {
			return true
		}
		b := int64(-1)
		if step > 0 {
			if b = (lo - first) / step; (hi-first)/step != b {
				sure = false
				return false
			}
		}
		buckets = append(buckets, b)
		return true
	})
	if !sure {
		return false
	}
	for _, b := range buckets {
		fn(b)
	}
	return true
}

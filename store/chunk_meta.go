package store

import (
	"encoding/binary"
	"fmt"

	"github.com/shiplog/shiplog/internal/wire"
	"github.com/shiplog/shiplog/model"
)

// ChunkMeta describes one chunk: a run of consecutive lines of one stream on one
// day. Sealed metas are immutable; the meta of an open head is owned by the store
// lock and copied when a reader takes a snapshot.
type ChunkMeta struct {
	ID        uint64 // chunk id, unique in the store
	Stream    uint64
	Day       uint32
	FirstLine uint32
	Count     uint32
	notableMS bool // Notable is in the in-memory form (notable.go)
	MinT      int64
	MaxT      int64
	Levels    [model.NumLevels]uint32 // lines per level (LevelUnset counts as info)
	RawBytes  uint64                  // message bytes before compression
	Labels    model.Labels
	// Notable lists the lines at warn level or above, so that counting them
	// over time needs no chunk reads: per line, uvarint line index delta from
	// the previous one, level byte, zig-zag varint time - MinT. Set on sealed
	// chunks only. This is the form on disk: once the store records a
	// sealed chunk it keeps them in a form of a third of the size instead
	// (notable.go; count them with NotableIn).
	Notable []byte
}

// NotableLevel is the lowest level ChunkMeta.Notable records.
const NotableLevel = model.LevelWarn

// HasNotable reports whether the metadata carries its notable lines (sealed
// chunks do; open ones do not).
func (m *ChunkMeta) HasNotable() bool {
	n := 0
	for lv := NotableLevel; lv < model.NumLevels; lv++ {
		n += int(m.Levels[lv])
	}
	return n == 0 || m.Notable != nil
}

// eachNotableV1 calls fn for every line of notable lines in the on-disk
// form of a chunk whose first time is minT.
func eachNotableV1(notable []byte, minT int64, fn func(line int, lv model.Level, t int64)) {
	r := wire.NewReader(notable, nil)
	line := 0
	for r.Len() > 0 {
		d := r.Uvarint()
		lv := model.Level(r.Byte())
		dt := r.Varint()
		if r.Err() != nil {
			return
		}
		line += int(d)
		fn(line, lv, minT+dt)
	}
}

func buildNotable(l *Lines) []byte {
	var out []byte
	prev := 0
	for i, lv := range l.Levels {
		if lv >= NotableLevel {
			out = wire.AppendUvarint(out, uint64(i-prev))
			out = append(out, byte(lv))
			out = wire.AppendVarint(out, l.Times[i]-l.Meta.MinT)
			prev = i
		}
	}
	if out == nil {
		out = []byte{}
	}
	return out
}

// LastLine is the line number of the chunk's last line.
func (m *ChunkMeta) LastLine() uint32 { return m.FirstLine + m.Count - 1 }

// Meta value (key m/<day>/<id>):
//
//	version byte (1), stream u64, firstLine, count uvarint, minT varint,
//	maxT-minT uvarint, NumLevels x uvarint level counts, rawBytes uvarint,
//	service, host, build_id, deploy_id as uvarint length + bytes
func encodeMeta(m *ChunkMeta) []byte {
	b := make([]byte, 0, 96+len(m.Labels.Service)+len(m.Labels.Host)+len(m.Labels.BuildID)+len(m.Labels.DeployID))
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, m.Stream)
	b = wire.AppendUvarint(b, uint64(m.FirstLine))
	b = wire.AppendUvarint(b, uint64(m.Count))
	b = wire.AppendVarint(b, m.MinT)
	b = wire.AppendUvarint(b, uint64(m.MaxT-m.MinT))
	for _, c := range m.Levels {
		b = wire.AppendUvarint(b, uint64(c))
	}
	b = wire.AppendUvarint(b, m.RawBytes)
	b = wire.AppendString(b, m.Labels.Service)
	b = wire.AppendString(b, m.Labels.Host)
	b = wire.AppendString(b, m.Labels.BuildID)
	b = wire.AppendString(b, m.Labels.DeployID)
	notable := m.Notable
	if m.notableMS {
		notable = expandNotable(notable, m.MinT)
	}
	b = wire.AppendUvarint(b, uint64(len(notable)))
	b = append(b, notable...)
	return b
}

func decodeMeta(day uint32, id uint64, v []byte) (*ChunkMeta, error) {
	return decodeMetaShared(day, id, v, nil)
}

// decodeMetaShared is decodeMeta taking the labels of streams labelsOf
// knows from it (the labels of a stream's chunks are equal: its id is
// their hash) instead of copying them once a chunk.
func decodeMetaShared(day uint32, id uint64, v []byte, labelsOf func(stream uint64) (model.Labels, bool)) (*ChunkMeta, error) {
	if len(v) < 9 || v[0] != 1 {
		return nil, fmt.Errorf("%w: meta of chunk %d", errCorrupt, id)
	}
	r := wire.NewReader(v[1:], errCorrupt)
	m := &ChunkMeta{ID: id, Day: day, Stream: r.Uint64BE()}
	m.FirstLine = uint32(r.Uvarint())
	m.Count = uint32(r.Uvarint())
	m.MinT = r.Varint()
	m.MaxT = m.MinT + int64(r.Uvarint())
	for i := range m.Levels {
		m.Levels[i] = uint32(r.Uvarint())
	}
	m.RawBytes = r.Uvarint()
	var known bool
	if labelsOf != nil {
		m.Labels, known = labelsOf(m.Stream)
	}
	if known {
		for range 4 {
			r.Bytes()
		}
	} else {
		// Labels are copied: v belongs to Badger.
		m.Labels = model.Labels{Service: r.Str(), Host: r.Str(), BuildID: r.Str(), DeployID: r.Str()}
	}
	if r.Err() != nil {
		return nil, fmt.Errorf("%w: meta of chunk %d", errCorrupt, id)
	}
	if n := r.Bytes(); r.Err() == nil {
		if labelsOf != nil {
			// The store's own load: straight to the form it keeps.
			m.Notable, m.notableMS = compactNotable(n, m.MinT), true
		} else {
			m.Notable = append([]byte{}, n...)
		}
	}
	return m, nil
}

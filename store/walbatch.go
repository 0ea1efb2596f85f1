package store

import (
	"encoding/binary"
	"fmt"

	"github.com/shiplog/shiplog/model"
)

// A WAL payload is one acked batch:
//
//	version byte (1)
//	agent id: uvarint length + bytes
//	the agent's accounting after this batch: uvarint length + the agent value
//	(see encodeAgent; empty without an agent id)
//	groups: uvarint count, then per group
//	  stream u64 BE, day uvarint, first line uvarint,
//	  service, host, build_id, deploy_id (uvarint length + bytes each),
//	  records: uvarint count, then per record
//	    time varint, level byte, message, trace id, span id (strings),
//	    attributes: uvarint count + (key, value) strings, seq uvarint
//
// Line numbers are explicit (first line + index), so a replay gives every line
// the id it had before the restart.
func encodeWALBatch(b model.Batch, agentRec []byte, groups []*group) []byte {
	size := walFrameHeader + 32 + len(b.AgentID) + len(agentRec)
	for _, g := range groups {
		size += 40 + len(g.labels.Service) + len(g.labels.Host) + len(g.labels.BuildID) + len(g.labels.DeployID)
		for _, ri := range g.recs {
			r := &b.Records[ri]
			size += 24 + len(r.Message) + len(r.TraceID) + len(r.SpanID)
			for _, a := range r.Attrs {
				size += 4 + len(a.Key) + len(a.Value)
			}
		}
	}
	out := make([]byte, walFrameHeader, size)
	out = append(out, 1)
	out = appendString(out, b.AgentID)
	out = binary.AppendUvarint(out, uint64(len(agentRec)))
	out = append(out, agentRec...)
	out = binary.AppendUvarint(out, uint64(len(groups)))
	for _, g := range groups {
		out = binary.BigEndian.AppendUint64(out, g.key.stream)
		out = binary.AppendUvarint(out, uint64(g.key.day))
		out = binary.AppendUvarint(out, uint64(g.firstLine))
		out = appendString(out, g.labels.Service)
		out = appendString(out, g.labels.Host)
		out = appendString(out, g.labels.BuildID)
		out = appendString(out, g.labels.DeployID)
		out = binary.AppendUvarint(out, uint64(len(g.recs)))
		for _, ri := range g.recs {
			r := &b.Records[ri]
			out = binary.AppendVarint(out, r.Time)
			out = append(out, byte(r.Level))
			out = appendString(out, r.Message)
			out = appendString(out, r.TraceID)
			out = appendString(out, r.SpanID)
			out = binary.AppendUvarint(out, uint64(len(r.Attrs)))
			for _, a := range r.Attrs {
				out = appendString(out, a.Key)
				out = appendString(out, a.Value)
			}
			out = binary.AppendUvarint(out, r.Seq)
		}
	}
	return out
}

// walReader decodes a payload; strings are copied out of the payload.
type walReader struct {
	b   []byte
	err error
}

func (r *walReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = fmt.Errorf("%w: wal payload", errCorrupt)
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *walReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = fmt.Errorf("%w: wal payload", errCorrupt)
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *walReader) byte1() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = fmt.Errorf("%w: wal payload", errCorrupt)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *walReader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = fmt.Errorf("%w: wal payload", errCorrupt)
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *walReader) str() string {
	if r.err != nil {
		return ""
	}
	s, rest, ok := readString(r.b)
	if !ok {
		r.err = fmt.Errorf("%w: wal payload", errCorrupt)
		return ""
	}
	r.b = rest
	return string([]byte(s))
}

// replayWAL rebuilds heads from every WAL line not yet sealed in Badger.
func (s *Store) replayWAL() ([]*head, error) {
	var lines, skipped int
	var seal []*head
	bad, err := s.wal.replay(func(seg uint64, p []byte) error {
		r := &walReader{b: p}
		if v := r.byte1(); v != 1 {
			return fmt.Errorf("%w: wal payload version %d", errCorrupt, v)
		}
		agent := r.str()
		if n := r.uvarint(); n > 0 && n <= uint64(len(r.b)) {
			var info AgentInfo
			ar := &walReader{b: r.b[:n]}
			decodeAgent(ar, &info)
			r.b = r.b[n:]
			if ar.err != nil {
				return ar.err
			}
			ag := s.agents[agent]
			if ag == nil || info.AckedSeq >= ag.AckedSeq {
				info.ID = agent
				s.agents[agent] = &agentState{AgentInfo: info, dirty: true}
			}
		}
		ng := r.uvarint()
		for g := uint64(0); g < ng && r.err == nil; g++ {
			k := headKey{stream: r.u64(), day: uint32(r.uvarint())}
			first := uint32(r.uvarint())
			labels := model.Labels{Service: r.str(), Host: r.str(), BuildID: r.str(), DeployID: r.str()}
			n := r.uvarint()
			for i := uint64(0); i < n && r.err == nil; i++ {
				rec := model.Record{Labels: labels}
				rec.Time = r.varint()
				rec.Level = model.Level(r.byte1())
				rec.Message, rec.TraceID, rec.SpanID = r.str(), r.str(), r.str()
				if na := r.uvarint(); na > 0 && na <= uint64(len(r.b)) {
					rec.Attrs = make([]model.Attr, na)
					for j := range rec.Attrs {
						rec.Attrs[j] = model.Attr{Key: r.str(), Value: r.str()}
					}
				}
				rec.Seq = r.uvarint()
				if r.err != nil {
					break
				}
				line := first + uint32(i)
				if k.day < s.floor || s.covered(k.stream, k.day, line) {
					skipped++
					continue
				}
				if next := line + 1; next > s.nextLine[k] {
					s.nextLine[k] = next
				}
				if h := s.appendLine(k, labels, line, &rec, seg); h != nil {
					seal = append(seal, h)
				}
				lines++
			}
		}
		return r.err
	})
	if err != nil {
		return nil, fmt.Errorf("open store: replay wal: %w", err)
	}
	// Heads cut during replay are sealed right away; the rest stay open.
	for _, h := range s.sealing {
		seal = append(seal, h)
	}
	seen := map[uint64]bool{}
	uniq := seal[:0]
	for _, h := range seal {
		if !seen[h.meta.ID] {
			seen[h.meta.ID] = true
			uniq = append(uniq, h)
		}
	}
	if bad > 0 {
		s.log.Warn("store: wal had torn or corrupt frames (a torn last write was never acked); skipped them", "frames", bad)
	}
	if lines > 0 || skipped > 0 {
		s.log.Info("store: replayed wal", "lines", lines, "already_sealed", skipped)
	}
	return uniq, s.wal.startSegment()
}

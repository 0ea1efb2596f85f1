package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/shiplog/shiplog/internal/wire"
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
	return appendWALBatch(nil, b, agentRec, groups)
}

// appendWALBatch is encodeWALBatch into dst's memory (its contents are
// dropped) when it is large enough.
func appendWALBatch(dst []byte, b model.Batch, agentRec []byte, groups []*group) []byte {
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
	out := dst[:0]
	if cap(out) < size {
		out = make([]byte, 0, size)
	}
	out = out[:walFrameHeader]
	out = append(out, 1)
	out = wire.AppendString(out, b.AgentID)
	out = wire.AppendUvarint(out, uint64(len(agentRec)))
	out = append(out, agentRec...)
	out = wire.AppendUvarint(out, uint64(len(groups)))
	for _, g := range groups {
		out = binary.BigEndian.AppendUint64(out, g.key.stream)
		out = wire.AppendUvarint(out, uint64(g.key.day))
		out = wire.AppendUvarint(out, uint64(g.firstLine))
		out = wire.AppendString(out, g.labels.Service)
		out = wire.AppendString(out, g.labels.Host)
		out = wire.AppendString(out, g.labels.BuildID)
		out = wire.AppendString(out, g.labels.DeployID)
		out = wire.AppendUvarint(out, uint64(len(g.recs)))
		for _, ri := range g.recs {
			r := &b.Records[ri]
			out = wire.AppendVarint(out, r.Time)
			out = append(out, byte(r.Level))
			out = wire.AppendString(out, r.Message)
			out = wire.AppendString(out, r.TraceID)
			out = wire.AppendString(out, r.SpanID)
			out = wire.AppendUvarint(out, uint64(len(r.Attrs)))
			for _, a := range r.Attrs {
				out = wire.AppendString(out, a.Key)
				out = wire.AppendString(out, a.Value)
			}
			out = wire.AppendUvarint(out, r.Seq)
		}
	}
	return out
}

// errWALPayload is the error of a WAL payload that does not decode.
var errWALPayload = fmt.Errorf("%w: wal payload", errCorrupt)

// replayWAL rebuilds heads from every WAL line not yet sealed in Badger.
func (s *Store) replayWAL() ([]*head, error) {
	var lines, skipped int
	var seal []*head
	bad, err := s.wal.replay(func(seg uint64, p []byte) error {
		now := time.Now().UnixNano() // the frame's lines' append time, for recency
		rd := wire.NewReader(p, errWALPayload)
		r := &rd
		if v := r.Byte(); v != 1 {
			return fmt.Errorf("%w: wal payload version %d", errCorrupt, v)
		}
		agent := r.Str()
		if n := r.Uvarint(); n > 0 && n <= uint64(r.Len()) {
			var info AgentInfo
			ar := wire.NewReader(r.Next(int(n)), errWALPayload)
			decodeAgent(&ar, &info)
			if ar.Err() != nil {
				return ar.Err()
			}
			ag := s.agents[agent]
			if ag == nil || info.AckedSeq >= ag.AckedSeq {
				info.ID = agent
				s.agents[agent] = &agentState{AgentInfo: info, dirty: true}
			}
		}
		ng := r.Uvarint()
		for g := uint64(0); g < ng && r.Err() == nil; g++ {
			k := headKey{stream: r.Uint64BE(), day: uint32(r.Uvarint())}
			first := uint32(r.Uvarint())
			labels := model.Labels{Service: r.Str(), Host: r.Str(), BuildID: r.Str(), DeployID: r.Str()}
			n := r.Uvarint()
			for i := uint64(0); i < n && r.Err() == nil; i++ {
				rec := model.Record{Labels: labels}
				rec.Time = r.Varint()
				rec.Level = model.Level(r.Byte())
				rec.Message, rec.TraceID, rec.SpanID = r.Str(), r.Str(), r.Str()
				if na := r.Uvarint(); na > 0 && na <= uint64(r.Len()) {
					rec.Attrs = make([]model.Attr, na)
					for j := range rec.Attrs {
						rec.Attrs[j] = model.Attr{Key: r.Str(), Value: r.Str()}
					}
				}
				rec.Seq = r.Uvarint()
				if r.Err() != nil {
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
				if h := s.appendLine(k, labels, line, &rec, seg, now); h != nil {
					seal = append(seal, h)
				}
				lines++
			}
		}
		// Past HeadsMaxBytes the least recent heads go to s.sealing,
		// collected below with those cut by replay.
		s.evictHeads(nil)
		return r.Err()
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

package store

import (
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/dgraph-io/badger/v4"

	"github.com/shiplog/shiplog/internal/wire"
	"github.com/shiplog/shiplog/model"
)

// HostKey names a (service, host) pair.
type HostKey struct {
	Service string
	Host    string
}

// AgentInfo is the delivery accounting of one agent.
type AgentInfo struct {
	ID         string
	AckedSeq   uint64 // highest seq stored
	Received   uint64 // records received, duplicates included
	Duplicates uint64 // records dropped as already stored
	Gaps       uint64 // seq numbers skipped: never received
	Dropped    uint64 // records the agent reported it dropped
	Closed     bool   // the agent said goodbye after its last batch
	ClosedAt   int64  // wall clock, Unix ns
	LastSeen   int64  // wall clock of its last batch, Unix ns
	Hosts      []HostKey
	Sender     string // name of the token that first used the id ("" without auth)
}

// maxAgentHosts bounds the (service, host) pairs remembered per agent.
const maxAgentHosts = 32

// agentState is an agent's AgentInfo plus bookkeeping. Guarded by Store.mu.
type agentState struct {
	AgentInfo
	dirty bool // changed since last persisted
}

func (a *agentState) addHost(k HostKey) {
	for _, h := range a.Hosts {
		if h == k {
			return
		}
	}
	if len(a.Hosts) < maxAgentHosts {
		a.Hosts = append(a.Hosts, k)
	}
}

// Agent value (key a<agent id>), also carried by every WAL batch of the agent:
//
//	version byte (3), acked, received, duplicates, gaps, dropped (uvarint),
//	closed byte, closedAt, lastSeen (varint), host count uvarint,
//	then (service, host) strings, then the sender (string; version 2
//	ends before it)
func encodeAgent(b []byte, a *AgentInfo) []byte {
	b = append(b, 3)
	for _, v := range []uint64{a.AckedSeq, a.Received, a.Duplicates, a.Gaps, a.Dropped} {
		b = wire.AppendUvarint(b, v)
	}
	closed := byte(0)
	if a.Closed {
		closed = 1
	}
	b = append(b, closed)
	b = wire.AppendVarint(b, a.ClosedAt)
	b = wire.AppendVarint(b, a.LastSeen)
	b = wire.AppendUvarint(b, uint64(len(a.Hosts)))
	for _, h := range a.Hosts {
		b = wire.AppendString(b, h.Service)
		b = wire.AppendString(b, h.Host)
	}
	return wire.AppendString(b, a.Sender)
}

// decodeAgent reads what encodeAgent wrote; a bad value is r's error.
func decodeAgent(r *wire.Reader, a *AgentInfo) {
	v := r.Byte()
	if v != 2 && v != 3 {
		r.FailWith(fmt.Errorf("%w: agent record version %d", errCorrupt, v))
		return
	}
	a.AckedSeq, a.Received, a.Duplicates, a.Gaps, a.Dropped = r.Uvarint(), r.Uvarint(), r.Uvarint(), r.Uvarint(), r.Uvarint()
	a.Closed = r.Byte() == 1
	a.ClosedAt = r.Varint()
	a.LastSeen = r.Varint()
	n := r.Uvarint()
	if n > maxAgentHosts {
		r.FailWith(fmt.Errorf("%w: agent hosts", errCorrupt))
		return
	}
	a.Hosts = nil
	for i := uint64(0); i < n && r.Err() == nil; i++ {
		a.Hosts = append(a.Hosts, HostKey{Service: r.Str(), Host: r.Str()})
	}
	a.Sender = ""
	if v == 3 {
		a.Sender = r.Str()
	}
}

// Agents returns the accounting of every agent ever seen.
func (s *Store) Agents() []AgentInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]AgentInfo, 0, len(s.agents))
	for _, a := range s.agents {
		info := a.AgentInfo
		info.Hosts = append([]HostKey(nil), a.Hosts...)
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// StreamInfo sums up one stream.
type StreamInfo struct {
	ID           uint64
	Labels       model.Labels
	First, Last  int64 // record times, Unix ns
	Lines        uint64
	Levels       [model.NumLevels]uint64
	LastReceived int64 // wall clock of its last append since the server started; 0 if none
}

func (si *StreamInfo) add(m *ChunkMeta) {
	if si.Lines == 0 || m.MinT < si.First {
		si.First = m.MinT
	}
	if si.Lines == 0 || m.MaxT > si.Last {
		si.Last = m.MaxT
	}
	si.Lines += uint64(m.Count)
	for i, c := range m.Levels {
		si.Levels[i] += uint64(c)
	}
}

// Streams returns every stream with its line counts and time bounds, open
// chunks included.
func (s *Store) Streams() []StreamInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[uint64]*StreamInfo, len(s.streamInfo))
	for id, si := range s.streamInfo {
		c := *si
		out[id] = &c
	}
	addOpen := func(h *head) {
		si := out[h.meta.Stream]
		if si == nil {
			si = &StreamInfo{ID: h.meta.Stream, Labels: h.meta.Labels}
			out[h.meta.Stream] = si
		}
		if h.meta.Count > 0 {
			si.add(&h.meta)
		}
	}
	for _, h := range s.heads {
		addOpen(h)
	}
	for _, h := range s.sealing {
		addOpen(h)
	}
	list := make([]StreamInfo, 0, len(out))
	for id, si := range out {
		si.LastReceived = s.lastRecv[id]
		list = append(list, *si)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	return list
}

// Run value (key r<build id>\x00<host>\x00<start ns, 8 bytes BE>):
//
//	version byte (1), deploy id, service, host (strings), command: count +
//	strings, start, end (varint), finished byte, exit code varint
func runKey(r *model.Run) []byte {
	k := []byte{pfxRun}
	k = append(k, r.BuildID...)
	k = append(k, 0)
	k = append(k, r.Host...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, uint64(r.Start))
}

func encodeRun(r *model.Run) []byte {
	b := []byte{1}
	b = wire.AppendString(b, r.BuildID)
	b = wire.AppendString(b, r.DeployID)
	b = wire.AppendString(b, r.Service)
	b = wire.AppendString(b, r.Host)
	b = wire.AppendUvarint(b, uint64(len(r.Command)))
	for _, c := range r.Command {
		b = wire.AppendString(b, c)
	}
	b = wire.AppendVarint(b, r.Start)
	b = wire.AppendVarint(b, r.End)
	fin := byte(0)
	if r.Finished {
		fin = 1
	}
	b = append(b, fin)
	return wire.AppendVarint(b, int64(r.ExitCode))
}

// errRunValue is the error of a run value that does not decode.
var errRunValue = fmt.Errorf("%w: run value", errCorrupt)

func decodeRun(v []byte) (model.Run, error) {
	r := wire.NewReader(v, errRunValue)
	var run model.Run
	if r.Byte() != 1 {
		return run, fmt.Errorf("%w: run version", errCorrupt)
	}
	run.BuildID, run.DeployID, run.Service, run.Host = r.Str(), r.Str(), r.Str(), r.Str()
	n := r.Uvarint()
	for i := uint64(0); i < n && r.Err() == nil && i < 4096; i++ {
		run.Command = append(run.Command, r.Str())
	}
	run.Start, run.End = r.Varint(), r.Varint()
	run.Finished = r.Byte() == 1
	run.ExitCode = int(r.Varint())
	return run, r.Err()
}

// putRun records the start or end of a run. The end of a run replaces its
// start (same build, host and start time).
func (s *Store) putRun(r *model.Run) error {
	if r.BuildID == "" {
		return nil
	}
	err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(runKey(r), encodeRun(r)) })
	if err != nil {
		return fmt.Errorf("store run: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	runs := s.runs[r.BuildID]
	for i := range runs {
		if runs[i].Host == r.Host && runs[i].Start == r.Start {
			runs[i] = *r
			return nil
		}
	}
	s.runs[r.BuildID] = append(runs, *r)
	return nil
}

// Runs returns every recorded run, by build id.
func (s *Store) Runs() map[string][]model.Run {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string][]model.Run, len(s.runs))
	for b, rs := range s.runs {
		out[b] = append([]model.Run(nil), rs...)
	}
	return out
}

func (s *Store) loadRuns(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pfxRun}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var run model.Run
		if err := it.Item().Value(func(v []byte) (err error) {
			run, err = decodeRun(v)
			return err
		}); err != nil {
			return err
		}
		s.runs[run.BuildID] = append(s.runs[run.BuildID], run)
	}
	return nil
}

// Get returns one record by id.
func (s *Store) Get(id model.ID) (model.Record, error) {
	s.mu.RLock()
	var mem *Lines
	for _, h := range s.heads {
		if h.meta.Stream == id.Stream && h.meta.Day == id.Day && id.Line >= h.meta.FirstLine && id.Line < h.meta.FirstLine+h.meta.Count {
			mem = h.snapshot()
		}
	}
	for _, h := range s.sealing {
		if mem == nil && h.meta.Stream == id.Stream && h.meta.Day == id.Day && id.Line >= h.meta.FirstLine && id.Line < h.meta.FirstLine+h.meta.Count {
			mem = h.snapshot()
		}
	}
	var meta *ChunkMeta
	if mem == nil {
		cs := s.streams[id.Stream]
		i := sort.Search(len(cs), func(i int) bool {
			return cs[i].Day > id.Day || cs[i].Day == id.Day && cs[i].LastLine() >= id.Line
		})
		if i < len(cs) && cs[i].Day == id.Day && cs[i].FirstLine <= id.Line {
			meta = cs[i]
		}
	}
	s.mu.RUnlock()
	if mem != nil {
		return mem.Record(int(id.Line - mem.Meta.FirstLine)), nil
	}
	if meta == nil {
		return model.Record{}, fmt.Errorf("record %s: %w", id, ErrNotFound)
	}
	l, err := s.loadSealed(meta, true)
	if err != nil {
		return model.Record{}, err
	}
	return l.Record(int(id.Line - meta.FirstLine)), nil
}

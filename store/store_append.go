package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/shiplog/shiplog/model"
)

// group is the part of a batch that goes to one head.
type group struct {
	key       headKey
	labels    model.Labels
	firstLine uint32
	recs      []int // indexes into the batch
}

// Append stores a batch durably: when it returns without error, every accepted
// record is in the WAL (and fsynced with Options.Fsync) and visible to queries.
// Records whose (agent, seq) were stored before come back as duplicates.
func (s *Store) Append(ctx context.Context, b model.Batch) (model.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return model.AppendResult{}, err
	}
	if s.readOnly {
		return model.AppendResult{}, s.errReadOnly()
	}
	if err := s.waitSealBacklog(ctx); err != nil {
		return model.AppendResult{}, err
	}
	start := time.Now()
	sc := appendScratches.Get().(*appendScratch)
	defer sc.release()
	keys := sc.keysFor(len(b.Records))
	var prev *model.Labels
	var stream uint64
	for i := range b.Records {
		r := &b.Records[i]
		if prev == nil || r.Labels != *prev {
			// Lines of one stream mostly come in runs: hash each run once.
			prev, stream = &r.Labels, sc.streamID(r.Labels, s.opts.StreamSeed)
		}
		keys[i] = headKey{stream, model.Day(r.Time)}
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return model.AppendResult{}, ErrClosed
	}
	// Deferred before inflight.Done, so run after it (Close waits for
	// inflight before it stops the sealers' retries): once its lines are
	// durable, an Append also waits for the heads it may have evicted, so
	// appenders evicting at once add one eviction each past the bound.
	// The lines are durable by then: the request's own ctx ends the wait
	// (a client that gives up, a deadline), with the result still good.
	defer func() { _ = s.waitSealBacklog(ctx) }()
	s.inflight.Add(1)
	defer s.inflight.Done()
	now := time.Now().UnixNano()
	var ag *agentState
	newAgent := false
	if b.AgentID != "" {
		ag = s.agents[b.AgentID]
		if ag == nil {
			ag, newAgent = &agentState{AgentInfo: AgentInfo{ID: b.AgentID, Sender: b.Sender}}, true
		}
		if err := checkSender(ag, b.Sender); err != nil {
			s.mu.Unlock()
			return model.AppendResult{}, err
		}
	}
	a, err := s.admit(&b, keys, ag, sc)
	if err != nil {
		s.mu.Unlock()
		return model.AppendResult{}, err
	}
	var fresh int
	if a.res.Accepted > 0 {
		if fresh, err = s.checkNewStreams(a.groups, now); err != nil {
			s.mu.Unlock()
			s.m.streamsRefused.Inc()
			return model.AppendResult{}, err
		}
	}
	if newAgent {
		s.agents[b.AgentID] = ag
	}
	// The agent's new accounting is applied only once the batch is durable: a
	// batch that fails to reach the WAL must not count as stored.
	var next AgentInfo
	if ag != nil {
		next = nextAgentInfo(ag, &b, a, now)
	}
	if a.res.Accepted == 0 {
		return s.appendNoLines(&b, ag, next, a.res)
	}
	res, err := s.appendLines(&b, ag, next, a, fresh, now)
	if err != nil {
		return res, err
	}
	s.m.appendSeconds.Observe(time.Since(start).Seconds())
	if b.Run != nil {
		if err := s.putRun(b.Run); err != nil {
			return res, err
		}
	}
	return res, nil
}

// appendScratch is the memory an Append groups its batch in: its records'
// head keys, and the groups (each with its list of records), reused by later
// Appends (a batch of a thousand lines of two hundred streams made several
// hundred allocations).
type appendScratch struct {
	keys  []headKey
	ids   [512]streamSlot // stream ids of label sets met, by labelsSlot
	byKey map[headKey]*group
	used  []*group // handed out by group, in order: the batch's groups
	spare []*group // kept for reuse, their recs emptied
}

// Bounds on what a scratch keeps for the next Append.
const (
	scratchMaxKeys   = 1 << 16
	scratchMaxGroups = 4096
	scratchMaxRecs   = 4096 // a group's list
)

var appendScratches = sync.Pool{New: func() any { return &appendScratch{byKey: make(map[headKey]*group)} }}

// streamSlot is a label set and its stream id.
type streamSlot struct {
	labels model.Labels
	id     uint64
	seed   uint64
}

// streamID is seededStreamID(l, seed), from the scratch's cache when it
// holds l: the lines of a batch come from a few hundred streams at most, in
// no order, and hashing the labels was a tenth of an Append. The cache keeps
// the label strings it met (compared by value) until a later set takes
// their slot.
func (sc *appendScratch) streamID(l model.Labels, seed uint64) uint64 {
	slot := &sc.ids[labelsSlot(l)%uint64(len(sc.ids))]
	if slot.labels == l && slot.seed == seed && slot.id != 0 {
		return slot.id
	}
	id := seededStreamID(l, seed)
	*slot = streamSlot{l, id, seed}
	return id
}

// labelsSlot is a cheap hash of l: its strings' lengths and a few bytes of
// its host, build and deploy ids.
func labelsSlot(l model.Labels) uint64 {
	h := uint64(len(l.Service)) | uint64(len(l.Host))<<8 | uint64(len(l.BuildID))<<16 | uint64(len(l.DeployID))<<24
	if n := len(l.Service); n > 0 {
		h ^= uint64(l.Service[n-1]) << 32
	}
	if n := len(l.Host); n > 1 {
		h ^= uint64(l.Host[n-1])<<40 ^ uint64(l.Host[n-2])<<48 ^ uint64(l.Host[n/2])<<56
	}
	if n := len(l.BuildID); n > 0 {
		h ^= uint64(l.BuildID[n-1]) << 4
	}
	if n := len(l.DeployID); n > 0 {
		h ^= uint64(l.DeployID[n-1]) << 12
	}
	return (h * 0x9E3779B97F4A7C15) >> 40
}

// keysFor returns room for n head keys.
func (sc *appendScratch) keysFor(n int) []headKey {
	if cap(sc.keys) < n {
		sc.keys = make([]headKey, n)
	}
	return sc.keys[:n]
}

// group returns an empty group for k.
func (sc *appendScratch) group(k headKey, labels model.Labels) *group {
	var g *group
	if n := len(sc.spare); n > 0 {
		g, sc.spare = sc.spare[n-1], sc.spare[:n-1]
	} else {
		g = new(group)
	}
	g.key, g.labels, g.firstLine = k, labels, 0
	sc.used = append(sc.used, g)
	return g
}

// release empties the scratch and returns it to the pool. Of the batch's
// strings it keeps only label sets in the stream-id cache (ids: at most 512
// sets of four labels, each a string of its own, not a view of a request).
func (sc *appendScratch) release() {
	if len(sc.byKey) > scratchMaxGroups {
		sc.byKey = make(map[headKey]*group) // clear costs what the map grew to
	} else {
		clear(sc.byKey)
	}
	for _, g := range sc.used {
		if cap(g.recs) > scratchMaxRecs || len(sc.spare) >= scratchMaxGroups {
			continue
		}
		*g = group{recs: g.recs[:0]}
		sc.spare = append(sc.spare, g)
	}
	clear(sc.used)
	sc.used = sc.used[:0]
	if cap(sc.keys) > scratchMaxKeys {
		sc.keys = nil
	}
	appendScratches.Put(sc)
}

// admitted is what admit makes of a batch: the accepted records grouped by
// head, the counts so far, and the agent's seq accounting.
type admitted struct {
	groups []*group
	res    model.AppendResult
	gaps   uint64 // seqs skipped over
	maxSeq uint64 // the agent's highest seq once the batch is stored
}

// admit sorts a batch's records into accepted (grouped by head), expired and
// duplicate, and clears their ids. Caller holds mu.
func (s *Store) admit(b *model.Batch, keys []headKey, ag *agentState, sc *appendScratch) (admitted, error) {
	var a admitted
	if ag != nil {
		a.maxSeq = ag.AckedSeq
	}
	byKey := sc.byKey
	for i := range b.Records {
		r := &b.Records[i]
		r.ID = model.ID{}
		if keys[i].day < s.floor {
			// Older than retention keeps: dropped as if stored and expired.
			a.res.Expired++
			continue
		}
		if ag != nil && r.Seq != 0 {
			if r.Seq <= a.maxSeq {
				a.res.Duplicates++
				continue
			}
			if w := s.opts.MaxSeqJump; w > 0 && r.Seq-ag.AckedSeq > w {
				// Measured from the batch's start: a batch moves the agent at most w.
				return admitted{}, fmt.Errorf("%w: record %d: seq %d is %d above agent %q's highest stored seq %d; the window is %d",
					ErrSeqJump, i, r.Seq, r.Seq-ag.AckedSeq, b.AgentID, ag.AckedSeq, w)
			}
			a.gaps += r.Seq - a.maxSeq - 1
			a.maxSeq = r.Seq
		}
		g := byKey[keys[i]]
		if g == nil {
			g = sc.group(keys[i], r.Labels)
			byKey[keys[i]] = g
		}
		g.recs = append(g.recs, i)
		a.res.Accepted++
	}
	a.groups = sc.used
	return a, nil
}

// nextAgentInfo is the agent's accounting once the batch is stored (but for
// AckedSeq, which appendLines sets). Caller holds mu.
func nextAgentInfo(ag *agentState, b *model.Batch, a admitted, now int64) AgentInfo {
	next := ag.AgentInfo
	next.Hosts = append([]HostKey(nil), ag.Hosts...)
	next.Received += uint64(len(b.Records))
	next.Duplicates += uint64(a.res.Duplicates)
	next.Gaps += a.gaps
	next.Dropped = max(next.Dropped, b.Dropped)
	next.LastSeen = now
	if next.Sender == "" {
		next.Sender = b.Sender // an agent seen without auth, or before ids were bound
	}
	next.Closed = b.Closing
	if b.Closing {
		next.ClosedAt = now
	}
	tmp := agentState{AgentInfo: next}
	for _, g := range a.groups {
		tmp.addHost(HostKey{Service: g.labels.Service, Host: g.labels.Host})
	}
	return tmp.AgentInfo
}

// appendNoLines finishes a batch none of whose records was accepted: the
// agent's accounting, its goodbye, and the run report. Caller holds mu, which
// appendNoLines releases.
func (s *Store) appendNoLines(b *model.Batch, ag *agentState, next AgentInfo, res model.AppendResult) (model.AppendResult, error) {
	if ag != nil {
		ag.AgentInfo, ag.dirty = next, true
		res.AckedSeq = ag.AckedSeq
	}
	var closed []byte
	if ag != nil && b.Closing {
		closed = encodeAgent(nil, &ag.AgentInfo)
	}
	s.mu.Unlock()
	s.m.duplicates.Add(float64(res.Duplicates))
	if closed != nil {
		// A goodbye without lines has no WAL entry: keep it now.
		if err := s.saveAgents([]string{b.AgentID}, [][]byte{closed}); err != nil {
			return res, fmt.Errorf("append: %w", err)
		}
	}
	if b.Run != nil {
		if err := s.putRun(b.Run); err != nil {
			return res, err
		}
	}
	return res, nil
}

// maxWALBuf bounds the frame memory the store keeps for the next batch.
const maxWALBuf = 4 << 20

// appendLines numbers the accepted lines, writes the batch to the WAL, then
// adds the lines to their heads and sends the full heads to be sealed. Caller
// holds mu, which appendLines releases.
func (s *Store) appendLines(b *model.Batch, ag *agentState, next AgentInfo, a admitted, fresh int, now int64) (model.AppendResult, error) {
	res, groups := a.res, a.groups
	for _, g := range groups {
		g.firstLine = s.nextLine[g.key]
		s.nextLine[g.key] = g.firstLine + uint32(len(g.recs))
	}
	var agentRec []byte
	if ag != nil {
		next.AckedSeq = a.maxSeq
		agentRec = encodeAgent(nil, &next)
	}
	frame := appendWALBatch(s.walBuf, *b, agentRec, groups)
	if cap(frame) <= maxWALBuf {
		s.walBuf = frame // the WAL keeps nothing of a frame once written
	}
	seg, err := s.wal.append(frame)
	if err != nil {
		// The lines were not acked: give their numbers back.
		for _, g := range groups {
			s.nextLine[g.key] = g.firstLine
		}
		s.mu.Unlock()
		if errors.Is(err, syscall.ENOSPC) {
			return model.AppendResult{}, fmt.Errorf("%w: the write-ahead log could not be written", ErrNoSpace)
		}
		return model.AppendResult{}, fmt.Errorf("append: %w", err)
	}
	if ag != nil {
		ag.AgentInfo, ag.dirty = next, true
		res.AckedSeq = a.maxSeq
	}
	s.newStreams += fresh
	for _, g := range groups {
		s.lastRecv[g.key.stream] = now
		for j, ri := range g.recs {
			b.Records[ri].ID = model.ID{Stream: g.key.stream, Day: g.key.day, Line: g.firstLine + uint32(j)}
		}
	}
	var full []*head
	for _, g := range groups {
		h := s.heads[g.key] // looked up once a group
		for j, ri := range g.recs {
			var f *head
			if h, f = s.appendLineTo(h, g.key, g.labels, g.firstLine+uint32(j), &b.Records[ri], seg, now); f != nil {
				full = append(full, f)
			}
		}
	}
	full = s.evictHeads(full)
	s.mu.Unlock()
	s.countLines(b, groups)

	for _, h := range full {
		s.sealCh <- h
	}
	s.m.lines.Add(float64(res.Accepted))
	s.m.duplicates.Add(float64(res.Duplicates))
	return res, nil
}

// The memory a line costs in a head besides its text: a time, a level and a
// seq (17 bytes) and its message's string header (16); in the sparse columns
// a head has made (head_cols.go), a string header for its trace and span id
// (16 each) and an attribute slice header (24); and each attribute's two
// string headers (32).
const (
	lineOverhead                               = 40
	traceOverhead, spanOverhead, attrsOverhead = 16, 16, 24
	attrOverhead                               = 32
)

// appendLine adds one line to its head, opening one if needed, and returns the
// head if it is now full (already moved to sealing). Caller holds mu.
func (s *Store) appendLine(k headKey, labels model.Labels, line uint32, r *model.Record, seg uint64, now int64) *head {
	_, full := s.appendLineTo(s.heads[k], k, labels, line, r, seg, now)
	return full
}

// appendLineTo is appendLine given k's open head h (nil when there is
// none): it returns the head open for k afterwards (nil when none is) and
// the head it filled, if any. Caller holds mu.
func (s *Store) appendLineTo(h *head, k headKey, labels model.Labels, line uint32, r *model.Record, seg uint64, now int64) (cur, full *head) {
	if h != nil && h.meta.FirstLine+h.meta.Count != line {
		// Not contiguous (only during WAL replay): seal what we have.
		s.startSeal(h, sealReplay)
		h = nil
	}
	if h == nil {
		h = &head{opened: time.Now(), minSeg: seg}
		h.meta = ChunkMeta{ID: s.nextChunk.Add(1), Stream: k.stream, Day: k.day, FirstLine: line, Labels: labels, MinT: r.Time, MaxT: r.Time}
		// Small at first: a stream that sends a line or two (a big fleet's
		// many hosts) should not cost kilobytes until its chunk is sealed.
		n := 8
		// Traces, Spans and Attrs stay nil until a line has one (head_cols.go).
		h.lines = Lines{Times: make([]int64, 0, n), Levels: make([]model.Level, 0, n), Msgs: make([]string, 0, n), Seqs: make([]uint64, 0, n)}
		s.heads[k] = h
	}
	s.noteAttrKeys(h, k.day, r.Attrs)
	l := &h.lines
	had, c := int(h.meta.Count), cap(l.Msgs) // lines before this one
	sparse0 := [3]bool{l.Traces != nil, l.Spans != nil, l.Attrs != nil}
	l.Times = append(l.Times, r.Time)
	l.Levels = append(l.Levels, r.Level)
	l.Msgs = append(l.Msgs, h.arena.str(r.Message))
	l.Traces = appendSparse(l.Traces, h.arena.str(r.TraceID), r.TraceID == "", had, c)
	l.Spans = appendSparse(l.Spans, h.arena.str(r.SpanID), r.SpanID == "", had, c)
	l.Attrs = appendSparse(l.Attrs, h.arena.attrList(r.Attrs), len(r.Attrs) == 0, had, c)
	l.Seqs = append(l.Seqs, r.Seq)
	m := &h.meta
	m.Count++
	m.MinT = min(m.MinT, r.Time)
	m.MaxT = max(m.MaxT, r.Time)
	lv := r.Level
	if lv == model.LevelUnset || lv >= model.NumLevels {
		lv = model.LevelInfo
	}
	m.Levels[lv]++
	m.RawBytes += uint64(len(r.Message))
	// What the line holds in memory: its text, its entries in the head's
	// columns (lineOverhead, and the sparse ones made: those made by this
	// line hold an empty entry for each line before it) and its attributes
	// (attrOverhead each).
	n := len(r.Message) + len(r.TraceID) + len(r.SpanID) + lineOverhead
	for i, made := range [3]bool{l.Traces != nil, l.Spans != nil, l.Attrs != nil} {
		if size := [3]int{traceOverhead, spanOverhead, attrsOverhead}[i]; made {
			n += size
			if !sparse0[i] {
				n += had * size
			}
		}
	}
	for _, a := range r.Attrs {
		n += len(a.Key) + len(a.Value) + attrOverhead
	}
	h.bytes += n
	s.headBytes += int64(n)
	h.lastAt = now
	if h.full(&s.opts) {
		s.startSeal(h, sealFull)
		return nil, h
	}
	return h, nil
}

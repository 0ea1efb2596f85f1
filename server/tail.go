package server

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// HubOptions bound what live tails cost.
type HubOptions struct {
	// QueueRecords is how many stored records a tail may have waiting to be
	// matched. A batch that would go over it is skipped for that tail, which
	// is told how many records it missed.
	QueueRecords int
	// QueueBytes bounds the memory of the batches waiting in all tails'
	// queues together (a batch is held once however many tails wait for it):
	// over it, a tail that is behind skips new batches.
	QueueBytes int64
	// MatchWorkers is how many tails match records at once (0: half the CPUs,
	// at least one), so that tails with costly patterns leave ingest and
	// queries their share of the machine.
	MatchWorkers int
}

// DefaultHubOptions returns the server's defaults.
func DefaultHubOptions() HubOptions { return HubOptions{QueueRecords: 65536, QueueBytes: 256 << 20} }

// Hub fans stored records out to live tails. Publishing is off the tails'
// work: it hands each tail a reference to the batch (one copy for all) and
// never waits or matches. Each tail matches and sends on its own goroutine;
// a tail that falls behind skips batches and is told how many records it
// missed.
type Hub struct {
	opts  HubOptions
	match chan struct{} // a slot to match records in
	mu    sync.RWMutex
	subs  map[*subscriber]struct{}
	// skipped counts records skipped by tails that fell behind.
	skipped atomic.Uint64
	// held is the size of the batches in tails' queues.
	held atomic.Int64
}

// NewHub returns an empty hub.
func NewHub(opts HubOptions) *Hub {
	d := DefaultHubOptions()
	if opts.QueueRecords <= 0 {
		opts.QueueRecords = d.QueueRecords
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = d.QueueBytes
	}
	if opts.MatchWorkers <= 0 {
		opts.MatchWorkers = max(1, runtime.GOMAXPROCS(0)/2)
	}
	return &Hub{opts: opts, match: make(chan struct{}, opts.MatchWorkers), subs: map[*subscriber]struct{}{}}
}

// tailBatch is one published batch, shared by every tail: read only.
type tailBatch struct {
	recs  []model.Record
	bytes int64
	refs  atomic.Int32 // queues holding it
}

// hold counts b in a queue (the first holds its bytes).
func (h *Hub) hold(b *tailBatch) {
	if b.refs.Add(1) == 1 {
		h.held.Add(b.bytes)
	}
}

// release ends one hold of b.
func (h *Hub) release(b *tailBatch) {
	if b.refs.Add(-1) == 0 {
		h.held.Add(-b.bytes)
	}
}

// Held is the size of the batches waiting in tails' queues.
func (h *Hub) Held() int64 { return h.held.Load() }

// tailItem is one batch waiting for a tail, after skipped records it missed.
type tailItem struct {
	b       *tailBatch // nil: only skipped
	skipped int
}

type subscriber struct {
	m    *query.RecordMatcher // used by the tail's goroutine only
	wake chan struct{}        // has an item; capacity 1

	mu      sync.Mutex // guards the fields below
	queue   []tailItem
	queued  int // records in queue
	skipped int // records skipped since the last item queued
}

func (h *Hub) subscribe(q *query.Query) *subscriber {
	s := &subscriber{m: q.Matcher(), wake: make(chan struct{}, 1)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	s.mu.Lock()
	for _, it := range s.queue {
		h.release(it.b)
	}
	s.queue, s.queued = nil, 0
	s.mu.Unlock()
}

// Subscribers is the number of live tails.
func (h *Hub) Subscribers() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

// Skipped is the number of records tails skipped because they fell behind.
func (h *Hub) Skipped() uint64 { return h.skipped.Load() }

// Publish hands stored records (ids set; the others are duplicates) to every
// tail. It copies recs once, so the caller may reuse them, and never blocks.
func (h *Hub) Publish(recs []model.Record) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.subs) == 0 {
		return
	}
	b := &tailBatch{recs: make([]model.Record, 0, len(recs))}
	var text, attrs int
	for i := range recs {
		if r := &recs[i]; !r.ID.IsZero() {
			b.recs = append(b.recs, *r)
			b.bytes += recordBytes(r)
			text += stringBytes(r)
			attrs += len(r.Attrs)
		}
	}
	if len(b.recs) == 0 {
		return
	}
	detach(b.recs, text, attrs)
	for s := range h.subs {
		if !h.offer(s, b) {
			h.skipped.Add(uint64(len(b.recs)))
		}
	}
}

// detach copies the records' strings and attributes into one buffer of
// text bytes and one of attrs attributes, which the batch then owns: the
// decoders' strings share blocks of many records (16 KiB and more), which a
// queued batch would otherwise keep alive beyond what recordBytes counts.
func detach(recs []model.Record, text, attrs int) {
	buf := make([]byte, 0, text)
	keep := func(s string) string {
		if s == "" {
			return ""
		}
		start := len(buf)
		buf = append(buf, s...)
		return unsafe.String(&buf[start], len(s)) // never written again
	}
	as := make([]model.Attr, 0, attrs)
	for i := range recs {
		r := &recs[i]
		r.Service, r.Host, r.BuildID, r.DeployID = keep(r.Service), keep(r.Host), keep(r.BuildID), keep(r.DeployID)
		r.Message, r.TraceID, r.SpanID = keep(r.Message), keep(r.TraceID), keep(r.SpanID)
		if len(r.Attrs) == 0 {
			continue
		}
		start := len(as)
		for _, a := range r.Attrs {
			as = append(as, model.Attr{Key: keep(a.Key), Value: keep(a.Value)})
		}
		r.Attrs = as[start:len(as):len(as)]
	}
}

// stringBytes is the length of a record's strings.
func stringBytes(r *model.Record) int {
	n := len(r.Service) + len(r.Host) + len(r.BuildID) + len(r.DeployID) + len(r.Message) + len(r.TraceID) + len(r.SpanID)
	for _, a := range r.Attrs {
		n += len(a.Key) + len(a.Value)
	}
	return n
}

// recordBytes is about what a record holds in memory (detach).
func recordBytes(r *model.Record) int64 {
	n := 200 + len(r.Message) + len(r.TraceID) + len(r.SpanID)
	for _, a := range r.Attrs {
		n += 32 + len(a.Key) + len(a.Value)
	}
	return int64(n)
}

// offer queues b for s unless s is behind (its queue is not empty) and the
// queue would go over QueueRecords, or the queues over QueueBytes. A tail that
// keeps up always gets the batch.
func (h *Hub) offer(s *subscriber, b *tailBatch) bool {
	s.mu.Lock()
	if s.queued > 0 && (s.queued+len(b.recs) > h.opts.QueueRecords || b.refs.Load() == 0 && h.held.Load()+b.bytes > h.opts.QueueBytes) {
		s.skipped += len(b.recs)
		s.mu.Unlock()
		return false
	}
	h.hold(b)
	s.queue = append(s.queue, tailItem{b: b, skipped: s.skipped})
	s.queued += len(b.recs)
	s.skipped = 0
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// next takes the oldest waiting item; ok is false when none is waiting (the
// item then carries only the records skipped since the last one). The caller
// releases the item's batch when done with it.
func (s *subscriber) next() (it tailItem, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		it.skipped, s.skipped = s.skipped, 0
		return it, false
	}
	it = s.queue[0]
	s.queue[0] = tailItem{}
	s.queue = s.queue[1:]
	s.queued -= len(it.b.recs)
	if len(s.queue) == 0 {
		s.queue = nil
	}
	return it, true
}

// matchSlice is how long a tail matches before it lets others have the slot.
// A tail that used a whole slice (a costly pattern, a flood of records) keeps
// the slot idle as long again: tails match on at most half the time of half
// the CPUs, whatever their patterns.
const matchSlice = 2 * time.Millisecond

// matchInto appends the records of recs that m matches to out, in a match
// slot shared with every tail; it stops early (ok false) once done is closed.
func (h *Hub) matchInto(done <-chan struct{}, m *query.RecordMatcher, recs []model.Record, out []model.Record) (_ []model.Record, ok bool) {
	acquire := func() bool {
		select {
		case h.match <- struct{}{}:
			return true
		case <-done:
			return false
		}
	}
	if !acquire() {
		return out, false
	}
	start := time.Now()
	for i := range recs {
		if i > 0 && time.Since(start) > matchSlice {
			time.Sleep(time.Since(start))
			<-h.match
			if !acquire() {
				return out, false
			}
			start = time.Now()
		}
		if m.Match(&recs[i]) {
			out = append(out, recs[i])
		}
	}
	<-h.match
	return out, true
}

// TailSink stores through next and then publishes what was stored to the hub.
type TailSink struct {
	Next ingest.Sink
	Hub  *Hub
}

// Append implements ingest.Sink.
func (t TailSink) Append(ctx context.Context, b model.Batch) (model.AppendResult, error) {
	res, err := t.Next.Append(ctx, b)
	if err == nil && res.Accepted > 0 {
		t.Hub.Publish(b.Records)
	}
	return res, err
}

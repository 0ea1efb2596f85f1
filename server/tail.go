package server

import (
	"context"
	"sync"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// Hub fans stored records out to live tails. Publishing never blocks: a
// subscriber whose buffer is full is dropped and told why.
type Hub struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[*subscriber]struct{}{}} }

// tailBuffer is how many records a tail may fall behind before it is dropped.
const tailBuffer = 8192

type subscriber struct {
	q       *query.Query
	ch      chan model.Record
	dropped chan struct{}
	once    sync.Once
}

func (h *Hub) subscribe(q *query.Query) *subscriber {
	s := &subscriber{q: q, ch: make(chan model.Record, tailBuffer), dropped: make(chan struct{})}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// Subscribers is the number of live tails.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Publish hands stored records (ids set) to every tail whose query matches.
func (h *Hub) Publish(recs []model.Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		return
	}
subs:
	for s := range h.subs {
		for i := range recs {
			r := &recs[i]
			if r.ID.IsZero() || !s.q.MatchRecord(r) {
				continue
			}
			select {
			case s.ch <- *r:
			default:
				s.once.Do(func() { close(s.dropped) })
				delete(h.subs, s)
				continue subs
			}
		}
	}
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

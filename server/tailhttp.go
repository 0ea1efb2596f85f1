package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
)

// droppedMessage tells a tail how many records it missed.
func droppedMessage(n int) string {
	return fmt.Sprintf("tail fell behind: %d new records were skipped without being matched (they are stored and searchable); the tail goes on", n)
}

// tailQuery reads a tail's a:b terms as a search of the last day would
// (query.Query.Resolve): as text when no line of the last day has attribute a.
func tailQuery(core Core, q *query.Query) *query.Query {
	now := time.Now()
	return core.Backend.Resolve(q, model.TimeRange{Start: now.Add(-24 * time.Hour).UnixNano(), End: now.Add(time.Hour).UnixNano()})
}

// Tail streams new matching records.
func (s *queryServer) Tail(req *shiplogv1.TailRequest, stream grpc.ServerStreamingServer[shiplogv1.TailResponse]) error {
	q, err := query.Parse(req.GetQ())
	if err != nil {
		return toStatus(err)
	}
	q = tailQuery(s.core, q)
	sub := s.core.Hub.subscribe(q)
	defer s.core.Hub.unsubscribe(sub)
	return runTail(stream.Context().Done(), s.core.Hub, sub, func(recs []model.Record, dropped int) error {
		return stream.Send(&shiplogv1.TailResponse{Records: recordsToProto(recs), Dropped: uint64(dropped)})
	})
}

// tailSendAt is how many matched records are sent at once at most.
const tailSendAt = 500

// tailOutbox is how many matched records a tail holds for a client that
// does not read; then matching waits and the tail's queue fills.
const tailOutbox = 4096

// runTail delivers a subscriber's records until done or an error: send gets
// either matched records or, when the tail fell behind, the number of records
// it skipped (in the order they happened). Matching runs on a goroutine of its
// own, ahead of sending by up to tailOutbox matched records, so a client
// that reads in bursts loses nothing.
func runTail(done <-chan struct{}, h *Hub, sub *subscriber, send func(recs []model.Record, dropped int) error) error {
	stop, matching := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-matching }()
	ob := &outbox{max: tailOutbox, ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
	go func() { defer close(matching); h.matchLoop(stop, done, sub, ob) }()
	for {
		select {
		case <-done:
			return nil
		case <-ob.ready:
		}
		for _, it := range ob.take() {
			if err := send(it.recs, it.dropped); err != nil {
				return err
			}
		}
	}
}

// matchLoop matches what the hub queues for sub into ob until stop or done.
// While ob is full it waits, and the hub skips batches for the tail.
func (h *Hub) matchLoop(stop, done <-chan struct{}, sub *subscriber, ob *outbox) {
	for {
		select {
		case <-stop:
			return
		case <-done:
			return
		case <-sub.wake:
		}
		for {
			it, ok := sub.next()
			if it.skipped > 0 && !ob.put(stop, nil, it.skipped) {
				if ok {
					h.release(it.b)
				}
				return
			}
			if !ok {
				break
			}
			if !h.matchItem(stop, sub, it.b, ob) {
				return
			}
		}
	}
}

// matchItem matches one queued batch into ob; false when stop came first.
func (h *Hub) matchItem(stop <-chan struct{}, sub *subscriber, b *tailBatch, ob *outbox) bool {
	defer h.release(b)
	for rest := b.recs; len(rest) > 0; {
		n := min(len(rest), tailSendAt)
		matched, alive := h.matchInto(stop, sub.m, rest[:n], nil)
		if !alive {
			return false
		}
		rest = rest[n:]
		if len(matched) > 0 && !ob.put(stop, matched, 0) {
			return false
		}
	}
	return true
}

// tailOut is what a tail sends next: matched records, or how many records it
// skipped.
type tailOut struct {
	recs    []model.Record
	dropped int
}

// outbox holds a tail's matched records between its matcher and its sender.
type outbox struct {
	max   int
	ready chan struct{} // something to send; capacity 1
	space chan struct{} // the sender took everything; capacity 1

	mu    sync.Mutex // guards items and n
	items []tailOut
	n     int // matched records in items
}

// put adds matched records (or a skip count) in order, waiting while the
// outbox is full; false when stop came first.
func (o *outbox) put(stop <-chan struct{}, recs []model.Record, dropped int) bool {
	o.mu.Lock()
	for o.n >= o.max {
		o.mu.Unlock()
		select {
		case <-o.space:
		case <-stop:
			return false
		}
		o.mu.Lock()
	}
	if last := len(o.items) - 1; dropped == 0 && last >= 0 && o.items[last].dropped == 0 && len(o.items[last].recs)+len(recs) <= tailSendAt {
		o.items[last].recs = append(o.items[last].recs, recs...)
	} else {
		o.items = append(o.items, tailOut{recs: recs, dropped: dropped})
	}
	o.n += len(recs)
	o.mu.Unlock()
	select {
	case o.ready <- struct{}{}:
	default:
	}
	return true
}

// take empties the outbox.
func (o *outbox) take() []tailOut {
	o.mu.Lock()
	items := o.items
	o.items, o.n = nil, 0
	o.mu.Unlock()
	select {
	case o.space <- struct{}{}:
	default:
	}
	return items
}

var tailJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// tailWriteTimeout is how long a write to an HTTP tail may block (a client
// that stops reading) before the tail is closed.
const tailWriteTimeout = 30 * time.Second

// tailDropped is the line an HTTP tail gets when it fell behind.
type tailDropped struct {
	errorBody
	Dropped int `json:"dropped"`
}

// tailHandler serves GET /v1/logs:tail?q= as newline-delimited JSON records.
func tailHandler(core Core, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := query.Parse(r.URL.Query().Get("q"))
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		release, err := core.Limits.tail()
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		defer release()
		q = tailQuery(core, q)
		// Subscribe before the headers go out: a client that has the headers
		// gets every record stored after that.
		sub := core.Hub.subscribe(q)
		defer core.Hub.unsubscribe(sub)
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush()
		err = runTail(r.Context().Done(), core.Hub, sub, func(recs []model.Record, dropped int) error {
			_ = rc.SetWriteDeadline(time.Now().Add(tailWriteTimeout))
			if dropped > 0 {
				b, _ := json.Marshal(tailDropped{errorBodyOf(status.New(codes.ResourceExhausted, droppedMessage(dropped))), dropped})
				if _, err := w.Write(append(b, '\n')); err != nil {
					return err
				}
			}
			for i := range recs {
				b, err := tailJSON.Marshal(toProto(&recs[i]))
				if err != nil {
					return err
				}
				if _, err := w.Write(append(b, '\n')); err != nil {
					return err
				}
			}
			return rc.Flush()
		})
		if err != nil {
			log.Debug("tail ended", "err", err)
		}
	})
}

package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
)

// droppedMessage tells a tail how many records it missed.
func droppedMessage(n int) string {
	return fmt.Sprintf("tail fell behind: %d new records were skipped without being matched (they are stored and searchable); the tail goes on", n)
}

// Tail streams new matching records.
func (s *queryServer) Tail(req *shiplogv1.TailRequest, stream grpc.ServerStreamingServer[shiplogv1.TailResponse]) error {
	q, err := query.Parse(req.GetQ())
	if err != nil {
		return toStatus(err)
	}
	sub := s.core.Hub.subscribe(q)
	defer s.core.Hub.unsubscribe(sub)
	return runTail(stream.Context().Done(), s.core.Hub, sub, func(recs []model.Record, dropped int) error {
		out := &shiplogv1.TailResponse{Records: make([]*shiplogv1.Record, len(recs)), Dropped: uint64(dropped)}
		for i := range recs {
			out.Records[i] = toProto(&recs[i])
		}
		return stream.Send(out)
	})
}

// tailSendAt is how many matched records are sent at once at most.
const tailSendAt = 500

// runTail matches and delivers a subscriber's records until done or an
// error: send gets either matched records or, when the tail fell behind, the
// number of records it skipped (in the order they happened).
func runTail(done <-chan struct{}, h *Hub, sub *subscriber, send func(recs []model.Record, dropped int) error) error {
	var buf []model.Record
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := send(buf, 0)
		buf = buf[:0]
		return err
	}
	for {
		select {
		case <-done:
			return nil
		case <-sub.wake:
		}
		for {
			it, ok := sub.next()
			if it.skipped > 0 {
				if err := flush(); err != nil {
					return err
				}
				if err := send(nil, it.skipped); err != nil {
					return err
				}
			}
			if !ok {
				break
			}
			for rest := it.recs; len(rest) > 0; {
				n := min(len(rest), tailSendAt)
				var alive bool
				if buf, alive = h.matchInto(done, sub.m, rest[:n], buf); !alive {
					return nil
				}
				rest = rest[n:]
				if len(buf) >= tailSendAt {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
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
				b, _ := json.Marshal(tailDropped{errorBody{Code: int(codes.ResourceExhausted), Status: codes.ResourceExhausted.String(),
					Message: droppedMessage(dropped)}, dropped})
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

package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
)

// errTailDropped tells a tail client why it was cut off.
const errTailDropped = "tail dropped: the client did not keep up with new records (more than 8192 behind)"

// Tail streams new matching records, batched every 100 ms at most.
func (s *queryServer) Tail(req *shiplogv1.TailRequest, stream grpc.ServerStreamingServer[shiplogv1.TailResponse]) error {
	q, err := query.Parse(req.GetQ())
	if err != nil {
		return toStatus(err)
	}
	sub := s.core.Hub.subscribe(q)
	defer s.core.Hub.unsubscribe(sub)
	return runTail(stream.Context().Done(), sub, func(recs []model.Record) error {
		out := &shiplogv1.TailResponse{Records: make([]*shiplogv1.Record, len(recs))}
		for i := range recs {
			out.Records[i] = toProto(&recs[i])
		}
		return stream.Send(out)
	})
}

// runTail delivers a subscriber's records in batches until done, an error, or
// the subscriber is dropped.
func runTail(done <-chan struct{}, sub *subscriber, send func([]model.Record) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var buf []model.Record
	for {
		select {
		case <-done:
			return nil
		case <-sub.dropped:
			return status.Error(codes.ResourceExhausted, errTailDropped)
		case r := <-sub.ch:
			buf = append(buf, r)
			if len(buf) < 500 {
				continue
			}
		case <-tick.C:
		}
		if len(buf) > 0 {
			if err := send(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
}

var tailJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// tailHandler serves GET /v1/logs:tail?q= as newline-delimited JSON records.
func tailHandler(core Core, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := query.Parse(r.URL.Query().Get("q"))
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		// Subscribe before the headers go out: a client that has the headers
		// gets every record stored after that.
		sub := core.Hub.subscribe(q)
		defer core.Hub.unsubscribe(sub)
		fl, _ := w.(http.Flusher)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		if fl != nil {
			fl.Flush()
		}
		err = runTail(r.Context().Done(), sub, func(recs []model.Record) error {
			for i := range recs {
				b, err := tailJSON.Marshal(toProto(&recs[i]))
				if err != nil {
					return err
				}
				if _, err := w.Write(append(b, '\n')); err != nil {
					return err
				}
			}
			if fl != nil {
				fl.Flush()
			}
			return nil
		})
		if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted {
			b, _ := json.Marshal(errorBody{Code: int(st.Code()), Status: st.Code().String(), Message: st.Message()})
			_, _ = w.Write(append(b, '\n'))
		}
	})
}

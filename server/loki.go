package server

// POST /loki/api/v1/push: the Loki push API, in JSON (gzip accepted) and in
// snappy-compressed protobuf (logproto.PushRequest, decoded with Grafana's
// Apache-2.0 github.com/grafana/loki/pkg/push). Answers as Loki does: 204 when
// everything is stored; 400 naming the first refused entry when some are
// (the others are stored); 429/503 with Retry-After to retry.

import (
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/grafana/loki/pkg/push"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
)

func lokiPushHandler(core Core, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		switch ct {
		case "application/json", "", "application/x-protobuf", "application/protobuf":
		default:
			writeHTTPError(w, invalid("Content-Type %q is not supported: want application/json or application/x-protobuf (snappy)", r.Header.Get("Content-Type")))
			return
		}
		enc, err := contentEncoding(r)
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		// The body is read before a slot is taken: a slow sender holds none.
		mem := core.Limits.bodyMem()
		defer mem.release()
		raw, err := mem.readRaw(r, maxBody)
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		release, err := core.Limits.ingest(r.Context())
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		defer release()
		body, err := mem.decode(enc, raw, maxBody)
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		if enc != "" {
			mem.give(int64(cap(raw)))
		}
		var recs []model.Record
		if ct == "application/json" {
			recs, err = ingest.DecodeLokiJSON(body)
		} else {
			recs, err = decodeLokiProto(mem, body, maxBody)
		}
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		var res stored
		if err := storeRecords(r.Context(), core.Ingest, recs, &res); err != nil {
			writeHTTPError(w, err, fmt.Sprintf(" (%d entries stored before)", res.Accepted))
			return
		}
		if res.Rejected > 0 {
			writeHTTPError(w, invalid("%d of %d entries refused (the others are stored); the first: %s",
				res.Rejected, len(recs), rejectMessage(res.FirstReject)))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// decodeLokiProto decodes a snappy-compressed (block format) PushRequest of at
// most maxBody bytes decoded, reserved from mem.
func decodeLokiProto(mem *bodyMem, body []byte, maxBody int64) ([]model.Record, error) {
	raw, err := mem.unsnappy(body, maxBody)
	if err != nil {
		return nil, err
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, invalid("malformed Loki PushRequest: %v", err)
	}
	return lokiProtoRecords(&req)
}

// lokiProtoRecords converts a decoded PushRequest. Its strings point into
// the request buffer (the decoder does not copy them): they are copied here,
// so that stored records do not hold the whole buffer.
func lokiProtoRecords(req *push.PushRequest) ([]model.Record, error) {
	n := 0
	for i := range req.Streams {
		n += len(req.Streams[i].Entries)
	}
	recs := make([]model.Record, 0, n)
	for si := range req.Streams {
		s := &req.Streams[si]
		labels, err := ingest.ParseLokiLabels(strings.Clone(s.Labels))
		if err != nil {
			return nil, fmt.Errorf("stream %d: %w", si, err)
		}
		st := ingest.NewLokiStream(labels)
		for ei := range s.Entries {
			e := &s.Entries[ei]
			var meta []model.Attr
			if len(e.StructuredMetadata) > 0 {
				meta = make([]model.Attr, len(e.StructuredMetadata))
				for i, l := range e.StructuredMetadata {
					meta[i] = model.Attr{Key: strings.Clone(l.Name), Value: strings.Clone(l.Value)}
				}
			}
			var t int64
			if !e.Timestamp.IsZero() {
				t = e.Timestamp.UnixNano()
			}
			recs = append(recs, st.Record(t, strings.Clone(e.Line), meta))
		}
	}
	return recs, nil
}

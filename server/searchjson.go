package server

// GET /v1/logs:search answers with every line of a page: protojson spends
// ~2 µs a record through reflection, more than the search itself for a
// page of thousands. searchJSON writes a SearchResponse by hand, as protojson
// would with the gateway's options (proto names, unpopulated fields
// emitted, uint64 as a string, timestamps in RFC 3339 with 0, 3, 6 or 9
// fractional digits); every other message goes to protojson.

import (
	"slices"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// gatewayJSON is the gateway's marshaler: SearchResponse by hand, the rest
// by the embedded JSONPb.
type gatewayJSON struct{ *runtime.JSONPb }

func (m gatewayJSON) Marshal(v any) ([]byte, error) {
	if r, ok := v.(*shiplogv1.SearchResponse); ok {
		return appendSearchJSON(nil, r), nil
	}
	return m.JSONPb.Marshal(v)
}

func appendSearchJSON(b []byte, r *shiplogv1.SearchResponse) []byte {
	b = append(b, `{"records":[`...)
	for i, rec := range r.GetRecords() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRecordJSON(b, rec)
	}
	b = append(b, `],"next_cursor":`...)
	b = appendJSONString(b, r.GetNextCursor())
	b = append(b, `,"partial":`...)
	b = strconv.AppendBool(b, r.GetPartial())
	b = append(b, `,"missing_partitions":[`...)
	for i, p := range r.GetMissingPartitions() {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(p), 10)
	}
	return append(b, "]}"...)
}

func appendRecordJSON(b []byte, r *shiplogv1.Record) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, r.GetId())
	b = append(b, `,"time":`...)
	if ts := r.GetTime(); ts == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = appendProtoTime(b, ts.GetSeconds(), ts.GetNanos())
		b = append(b, '"')
	}
	for _, f := range []struct{ name, v string }{
		{`,"service":`, r.GetService()}, {`,"host":`, r.GetHost()}, {`,"build_id":`, r.GetBuildId()},
		{`,"deploy_id":`, r.GetDeployId()}, {`,"level":`, r.GetLevel()}, {`,"message":`, r.GetMessage()},
		{`,"trace_id":`, r.GetTraceId()}, {`,"span_id":`, r.GetSpanId()},
	} {
		b = append(b, f.name...)
		b = appendJSONString(b, f.v)
	}
	b = append(b, `,"attributes":{`...)
	keys := make([]string, 0, len(r.GetAttributes()))
	for k := range r.GetAttributes() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, r.GetAttributes()[k])
	}
	b = append(b, `},"seq":"`...)
	b = strconv.AppendUint(b, r.GetSeq(), 10)
	return append(b, `"}`...)
}

// appendProtoTime formats a Timestamp as protojson does: UTC, RFC 3339, the
// fraction in 0, 3, 6 or 9 digits.
func appendProtoTime(b []byte, sec int64, nanos int32) []byte {
	t := time.Unix(sec, int64(nanos)).UTC()
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	if nanos != 0 {
		frac := strconv.AppendInt(nil, int64(nanos)+1e9, 10)[1:] // 9 digits
		switch {
		case nanos%1e6 == 0:
			frac = frac[:3]
		case nanos%1e3 == 0:
			frac = frac[:6]
		}
		b = append(b, '.')
		b = append(b, frac...)
	}
	return append(b, 'Z')
}

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

	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// gatewayJSON is the gateway's marshaler: SearchResponse by hand, the rest
// by the embedded JSONPb.
type gatewayJSON struct{ *runtime.JSONPb }

func (m gatewayJSON) Marshal(v any) ([]byte, error) {
	if r, ok := v.(*shiplogv1.SearchResponse); ok {
		return appendSearchJSON(make([]byte, 0, searchJSONSize(r)), r), nil
	}
	return m.JSONPb.Marshal(v)
}

// searchJSONSize estimates the length of r's JSON from its strings, so that
// a page of thousands of records is written into one buffer, not grown
// (and copied) a dozen times.
func searchJSONSize(r *shiplogv1.SearchResponse) int {
	return 128 + len(r.GetNextCursor()) + 4*len(r.GetMissingPartitions()) + recordsJSONSize(r.GetRecords())
}

// recordsJSONSize estimates the length of the records' JSON, with room
// for a few escapes.
func recordsJSONSize(recs []*shiplogv1.Record) int {
	n := 0
	for _, rec := range recs {
		n += 220 + len(rec.GetId()) + len(rec.GetService()) + len(rec.GetHost()) + len(rec.GetBuildId()) +
			len(rec.GetDeployId()) + len(rec.GetMessage()) + len(rec.GetTraceId()) + len(rec.GetSpanId())
		for k, v := range rec.GetAttributes() {
			n += len(k) + len(v) + 6
		}
	}
	return n + n/16 // room for a few escapes
}

func appendSearchJSON(b []byte, r *shiplogv1.SearchResponse) []byte {
	b = append(b, `{"records":[`...)
	b = appendRecordsJSON(b, r.GetRecords())
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

// appendRecordsJSON writes recs separated by commas; a large page in
// shares (eachShare), each but the first into a buffer of its own that is
// then appended.
func appendRecordsJSON(b []byte, recs []*shiplogv1.Record) []byte {
	bounds := shares(len(recs))
	bufs := make([][]byte, len(bounds)-1)
	eachShare(len(recs), func(part, lo, hi int) {
		out := b
		if part > 0 {
			out = make([]byte, 0, recordsJSONSize(recs[lo:hi])+1)
		}
		for i := lo; i < hi; i++ {
			if i > 0 {
				out = append(out, ',')
			}
			out = appendRecordJSON(out, recs[i])
		}
		bufs[part] = out
	})
	b = bufs[0]
	for _, p := range bufs[1:] {
		b = append(b, p...)
	}
	return b
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
// fraction in 0, 3, 6 or 9 digits. Years 1970-9999 are written by hand (a
// page writes thousands); others through time.
func appendProtoTime(b []byte, sec int64, nanos int32) []byte {
	const maxSec = 253402300799 // 9999-12-31T23:59:59Z
	if sec < 0 || sec > maxSec || nanos < 0 || nanos > 999_999_999 {
		return appendProtoTimeSlow(b, sec, nanos)
	}
	return appendClock(appendDate(b, sec/86400), sec%86400, nanos)
}

// appendDate appends the date of a day counted from 1970-01-01 (0 to
// 9999-12-31) and the T that follows it.
func appendDate(b []byte, days int64) []byte {
	y, m, d := civilDate(days)
	b = append4(b, y)
	b = append(b, '-')
	b = append2(b, m)
	b = append(b, '-')
	b = append2(b, d)
	return append(b, 'T')
}

// appendClock appends the time of day of appendProtoTime: hms seconds into
// the day, nanos valid.
func appendClock(b []byte, hms int64, nanos int32) []byte {
	b = append2(b, int(hms/3600))
	b = append(b, ':')
	b = append2(b, int(hms/60%60))
	b = append(b, ':')
	b = append2(b, int(hms%60))
	if nanos != 0 {
		digits := 9
		switch {
		case nanos%1e6 == 0:
			digits, nanos = 3, nanos/1e6
		case nanos%1e3 == 0:
			digits, nanos = 6, nanos/1e3
		}
		b = append(b, '.')
		n := len(b)
		b = append(b, "000000000"[:digits]...)
		for i := n + digits - 1; i >= n; i-- {
			b[i] = byte('0' + nanos%10)
			nanos /= 10
		}
	}
	return append(b, 'Z')
}

// civilDate is the proleptic Gregorian date of a day counted from 1970-01-01
// (days >= 0; Howard Hinnant's civil_from_days).
func civilDate(days int64) (y, m, d int) {
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	m = int(mp + 3)
	if mp >= 10 {
		m = int(mp - 9)
	}
	y = int(yoe + era*400)
	if m <= 2 {
		y++
	}
	return y, m, d
}

func append2(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }

func append4(b []byte, v int) []byte {
	return append(b, byte('0'+v/1000), byte('0'+v/100%10), byte('0'+v/10%10), byte('0'+v%10))
}

// appendProtoTimeSlow is appendProtoTime through time, for any instant.
func appendProtoTimeSlow(b []byte, sec int64, nanos int32) []byte {
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

// recordJSON writes stored records as appendRecordJSON writes their
// protobuf messages (GET /v1/logs:search, searchhttp.go). A page's records
// come from a few streams: the JSON of the last few label sets is kept and
// copied, not escaped again. Not for concurrent use.
type recordJSON struct {
	labels [8]labelsJSON
	next   int // the entry replaced next
	// The date of the last time written (a page's records mostly share
	// it), as appendDate writes it, and its day; date is empty at first.
	day  int64
	date []byte
}

// appendTime is appendProtoTime, with the date of the last day kept.
func (e *recordJSON) appendTime(b []byte, sec int64, nanos int32) []byte {
	const maxSec = 253402300799 // as appendProtoTime
	if sec < 0 || sec > maxSec || nanos < 0 || nanos > 999_999_999 {
		return appendProtoTime(b, sec, nanos)
	}
	if day := sec / 86400; len(e.date) == 0 || day != e.day {
		e.day, e.date = day, appendDate(e.date[:0], day)
	}
	return appendClock(append(b, e.date...), sec%86400, nanos)
}

type labelsJSON struct {
	l    model.Labels
	json []byte // `,"service":...,"deploy_id":...`; nil: unused
}

// labelsOf returns the JSON of l's four fields.
func (e *recordJSON) labelsOf(l *model.Labels) []byte {
	for i := range e.labels {
		if c := &e.labels[i]; c.json != nil && c.l == *l {
			return c.json
		}
	}
	c := &e.labels[e.next]
	e.next = (e.next + 1) % len(e.labels)
	b := append(c.json[:0], `,"service":`...)
	b = appendJSONString(b, l.Service)
	b = append(b, `,"host":`...)
	b = appendJSONString(b, l.Host)
	b = append(b, `,"build_id":`...)
	b = appendJSONString(b, l.BuildID)
	b = append(b, `,"deploy_id":`...)
	b = appendJSONString(b, l.DeployID)
	c.l, c.json = *l, b
	return b
}

func (e *recordJSON) append(b []byte, r *model.Record) []byte {
	b = append(b, `{"id":"`...)
	b = r.ID.AppendText(b)
	// As fillProto: the nanoseconds of a Timestamp count forward.
	sec, nanos := r.Time/1e9, int32(r.Time%1e9)
	if nanos < 0 {
		sec, nanos = sec-1, nanos+1e9
	}
	b = append(b, `","time":"`...)
	b = e.appendTime(b, sec, nanos)
	b = append(b, '"')
	b = append(b, e.labelsOf(&r.Labels)...)
	b = append(b, `,"level":`...)
	b = appendJSONString(b, r.Level.String())
	b = append(b, `,"message":`...)
	b = appendJSONString(b, r.Message)
	b = append(b, `,"trace_id":`...)
	b = appendJSONString(b, r.TraceID)
	b = append(b, `,"span_id":`...)
	b = appendJSONString(b, r.SpanID)
	b = append(b, `,"attributes":{`...)
	as := r.Attrs
	if !attrsInOrder(as) {
		// A map in the protobuf message: one value a key, the last.
		as = sortAttrs(slices.Clone(as))
	}
	for i, a := range as {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, a.Key)
		b = append(b, ':')
		b = appendJSONString(b, a.Value)
	}
	b = append(b, `},"seq":"`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	return append(b, `"}`...)
}

// attrsInOrder reports whether as is sorted by key with no key twice (as
// the store keeps them).
func attrsInOrder(as []model.Attr) bool {
	for i := 1; i < len(as); i++ {
		if as[i-1].Key >= as[i].Key {
			return false
		}
	}
	return true
}

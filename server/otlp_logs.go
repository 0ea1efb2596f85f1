package server

// OTLP logs to model.Record. The mapping is documented in docs/ingest.md.

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"

	"github.com/shiplog/shiplog/model"
)

// Attribute keys of OpenTelemetry's semantic conventions that become record
// fields rather than attributes.
const (
	otelServiceName    = "service.name"
	otelHostName       = "host.name"
	otelInstanceID     = "service.instance.id"
	otelDeploymentID   = "deployment.id"
	otelPipelineRunID  = "cicd.pipeline.run.id"
	otelBuildID        = "build.id"
	otelScopeName      = "otel.scope.name"
	otelScopeVersion   = "otel.scope.version"
	otelEventName      = "event.name"
	otelSeverityText   = "severity_text"
	otelMaxFlattenDeep = 16 // nesting of kvlists flattened into dotted keys; deeper is JSON text
)

// otlpNames says which attributes become the build and deploy fields (and
// labels), in order of preference: the first present wins, and is taken out
// of the attributes; the others stay.
type otlpNames struct {
	build, deploy []string
}

// Default attribute names of the build and the deploy: OpenTelemetry's
// semantic conventions, then the names shiplog's own records use.
var (
	defaultBuildAttrs  = []string{otelPipelineRunID, otelBuildID, "build_id"}
	defaultDeployAttrs = []string{otelDeploymentID, "deploy_id"}
	defaultOTLPNames   = &otlpNames{build: defaultBuildAttrs, deploy: defaultDeployAttrs}
)

// otelUnknownService is the service of records that name none, as
// OpenTelemetry's SDKs default service.name.
const otelUnknownService = "unknown_service"

func newOTLPNames(build, deploy []string) *otlpNames {
	n := &otlpNames{build: build, deploy: deploy}
	if len(n.build) == 0 {
		n.build = defaultBuildAttrs
	}
	if len(n.deploy) == 0 {
		n.deploy = defaultDeployAttrs
	}
	return n
}

// isLabelKey reports whether an attribute key may map to a record field.
func (n *otlpNames) isLabelKey(k string) bool {
	switch k {
	case otelServiceName, otelHostName, otelInstanceID:
		return true
	}
	return slices.Contains(n.build, k) || slices.Contains(n.deploy, k)
}

// otlpLogs converts with the default attribute names.
func otlpLogs(req *collogspb.ExportLogsServiceRequest, res *stored) []model.Record {
	return defaultOTLPNames.logs(req, res)
}

// logs converts an export request. A record that cannot be converted is
// counted in res as rejected, with why.
func (nm *otlpNames) logs(req *collogspb.ExportLogsServiceRequest, res *stored) []model.Record {
	n := 0
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			n += len(sl.GetLogRecords())
		}
	}
	recs := make([]model.Record, 0, n)
	for _, rl := range req.GetResourceLogs() {
		resAttrs := slices.Clip(sortAttrs(flattenAttrs(nil, "", rl.GetResource().GetAttributes(), 0)))
		for _, sl := range rl.GetScopeLogs() {
			full := scopeAttrs(resAttrs, sl.GetScope())
			labels, base := nm.pickLabels(full)
			for _, lr := range sl.GetLogRecords() {
				if lr == nil {
					continue
				}
				rec, err := nm.logRecord(lr, full, labels, base)
				if err != nil {
					res.reject(1, err)
					continue
				}
				recs = append(recs, rec)
			}
		}
	}
	return recs
}

// scopeAttrs merges the scope's attributes, name and version over the
// resource's (sorted, keys unique).
func scopeAttrs(resAttrs []model.Attr, sc *commonpb.InstrumentationScope) []model.Attr {
	if sc == nil {
		return resAttrs
	}
	var own []model.Attr
	if sc.GetName() != "" {
		own = append(own, model.Attr{Key: otelScopeName, Value: sc.GetName()})
	}
	if sc.GetVersion() != "" {
		own = append(own, model.Attr{Key: otelScopeVersion, Value: sc.GetVersion()})
	}
	own = flattenAttrs(own, "", sc.GetAttributes(), 0)
	if len(own) == 0 {
		return resAttrs
	}
	return model.MergeAttrs(resAttrs, sortAttrs(own))
}

func (nm *otlpNames) logRecord(lr *logspb.LogRecord, full []model.Attr, labels model.Labels, base []model.Attr) (model.Record, error) {
	rec := model.Record{Labels: labels, Attrs: base}
	t := lr.GetTimeUnixNano()
	if t == 0 {
		t = lr.GetObservedTimeUnixNano()
	}
	if t > math.MaxInt64 {
		return rec, invalid("time_unix_nano %d is out of range", t)
	}
	rec.Time = int64(t)
	var extra []model.Attr
	if sn := lr.GetSeverityNumber(); sn > 0 {
		rec.Level = severityLevel(sn)
	} else if txt := lr.GetSeverityText(); txt != "" {
		lv, ok := model.ParseLevel(txt)
		if !ok {
			extra = append(extra, model.Attr{Key: otelSeverityText, Value: txt})
		}
		rec.Level = lv
	}
	if en := lr.GetEventName(); en != "" {
		extra = append(extra, model.Attr{Key: otelEventName, Value: en})
	}
	if body := lr.GetBody(); body != nil {
		if s, ok := body.GetValue().(*commonpb.AnyValue_StringValue); ok {
			rec.Message = s.StringValue
		} else {
			rec.Message = string(appendAnyJSON(nil, body, 0))
		}
	}
	rec.TraceID = hexID(lr.GetTraceId())
	rec.SpanID = hexID(lr.GetSpanId())
	if len(lr.GetAttributes()) == 0 && len(extra) == 0 {
		return rec, nil
	}
	own := sortAttrs(flattenAttrs(extra, "", lr.GetAttributes(), 0))
	if slices.ContainsFunc(own, func(a model.Attr) bool { return nm.isLabelKey(a.Key) }) {
		rec.Labels, rec.Attrs = nm.pickLabels(model.MergeAttrs(full, own))
	} else {
		rec.Attrs = model.MergeAttrs(base, own)
	}
	return rec, nil
}

// severityLevel maps an OTLP SeverityNumber (1-24, four per level).
func severityLevel(sn logspb.SeverityNumber) model.Level {
	switch {
	case sn <= 0:
		return model.LevelUnset
	case sn <= 4:
		return model.LevelTrace
	case sn <= 8:
		return model.LevelDebug
	case sn <= 12:
		return model.LevelInfo
	case sn <= 16:
		return model.LevelWarn
	case sn <= 20:
		return model.LevelError
	}
	return model.LevelFatal
}

// hexID renders a trace or span id; all zeros (invalid by the spec) is none.
func hexID(b []byte) string {
	for _, c := range b {
		if c != 0 {
			return hex.EncodeToString(b)
		}
	}
	return ""
}

// pickLabels takes the record fields out of sorted attributes: service.name
// is the service (unknown_service when there is none, as OpenTelemetry's
// SDKs say); host.name, else service.instance.id, the host; the first of
// nm's build attributes present the build, of its deploy attributes the
// deploy. The attributes used are left out of the returned list (a new
// slice when any is). The list returned has no spare capacity: records share
// it, and Ingest may append to a record's list (truncated=true).
func (nm *otlpNames) pickLabels(attrs []model.Attr) (model.Labels, []model.Attr) {
	var l model.Labels
	var instance string
	var usedBuf [5]string
	used := usedBuf[:0]
	build, deploy := len(nm.build), len(nm.deploy) // rank of the value taken
	for _, a := range attrs {
		switch a.Key {
		case otelServiceName:
			l.Service = a.Value
			used = append(used, a.Key)
		case otelHostName:
			l.Host = a.Value
			used = append(used, a.Key)
		case otelInstanceID:
			instance = a.Value
		}
		if i := slices.Index(nm.build, a.Key); i >= 0 && i < build && a.Value != "" {
			build, l.BuildID = i, a.Value
		}
		if i := slices.Index(nm.deploy, a.Key); i >= 0 && i < deploy && a.Value != "" {
			deploy, l.DeployID = i, a.Value
		}
	}
	if l.Service == "" {
		l.Service = otelUnknownService
	}
	if l.Host == "" && instance != "" {
		l.Host = instance
		used = append(used, otelInstanceID)
	}
	if build < len(nm.build) {
		used = append(used, nm.build[build])
	}
	if deploy < len(nm.deploy) {
		used = append(used, nm.deploy[deploy])
	}
	if len(used) == 0 {
		return l, slices.Clip(attrs)
	}
	out := make([]model.Attr, 0, len(attrs))
	for _, a := range attrs {
		if !slices.Contains(used, a.Key) {
			out = append(out, a)
		}
	}
	return l, slices.Clip(out)
}

// flattenAttrs appends kvs to out, nested key-value lists as dotted keys
// (prefix + key), arrays as JSON text. Empty keys are skipped.
func flattenAttrs(out []model.Attr, prefix string, kvs []*commonpb.KeyValue, depth int) []model.Attr {
	for _, kv := range kvs {
		if kv.GetKey() == "" {
			continue
		}
		key := kv.GetKey()
		if prefix != "" {
			key = prefix + key
		}
		v := kv.GetValue()
		if kl, ok := v.GetValue().(*commonpb.AnyValue_KvlistValue); ok && depth < otelMaxFlattenDeep {
			out = flattenAttrs(out, key+".", kl.KvlistValue.GetValues(), depth+1)
			continue
		}
		out = append(out, model.Attr{Key: key, Value: anyString(v)})
	}
	return out
}

// anyString renders an attribute value: strings as they are, scalars in Go's
// (and JSON's) notation, bytes in base64, lists as JSON text.
func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return formatFloat(x.DoubleValue)
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case nil:
		return ""
	}
	return string(appendAnyJSON(nil, v, 0))
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// appendAnyJSON renders v as JSON: kvlists as objects, arrays as arrays, bytes
// as base64 strings, NaN and infinities as strings, an empty value as null.
func appendAnyJSON(b []byte, v *commonpb.AnyValue, depth int) []byte {
	if depth > 64 {
		return append(b, "null"...)
	}
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return appendJSONString(b, x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		return strconv.AppendBool(b, x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.AppendInt(b, x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		if math.IsNaN(x.DoubleValue) || math.IsInf(x.DoubleValue, 0) {
			return appendJSONString(b, formatFloat(x.DoubleValue))
		}
		return strconv.AppendFloat(b, x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return appendJSONString(b, base64.StdEncoding.EncodeToString(x.BytesValue))
	case *commonpb.AnyValue_ArrayValue:
		b = append(b, '[')
		for i, e := range x.ArrayValue.GetValues() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAnyJSON(b, e, depth+1)
		}
		return append(b, ']')
	case *commonpb.AnyValue_KvlistValue:
		b = append(b, '{')
		for i, kv := range x.KvlistValue.GetValues() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, kv.GetKey())
			b = append(b, ':')
			b = appendAnyJSON(b, kv.GetValue(), depth+1)
		}
		return append(b, '}')
	}
	return append(b, "null"...)
}

// appendJSONString appends s as a JSON string (invalid UTF-8 becomes U+FFFD).
// Runs that need no escape are copied whole; they are found sixteen, then
// eight bytes at a time.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		for i+16 <= len(s) {
			p := unsafe.Slice(unsafe.StringData(s[i:]), 16)
			if jsonBad8(binary.LittleEndian.Uint64(p))|jsonBad8(binary.LittleEndian.Uint64(p[8:])) != 0 {
				break
			}
			i += 16
		}
		if i+8 <= len(s) && plainJSON8(binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(s[i:]), 8))) {
			i += 8
			continue
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plainJSON8 reports whether none of the eight bytes in w needs a JSON
// escape or a UTF-8 check: no control byte (< 0x20), '"', '\\', DEL or byte
// outside ASCII.
func plainJSON8(w uint64) bool { return jsonBad8(w) == 0 }

// jsonBad8 is not 0 when one of the eight bytes in w needs a JSON escape or
// a UTF-8 check (plainJSON8). Each test sets a byte's high bit: its own
// (outside ASCII), a borrow below 0x20, or a zero byte once '"', '\\' or
// DEL is xored away. A borrow only runs on from a byte that matched, so
// the mask is 0 exactly when no byte does. Small enough to be inlined.
func jsonBad8(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, bs, del := w^('"'*ones), w^('\\'*ones), w^(0x7f*ones)
	return (w | (w-0x20*ones)&^w | (q-ones)&^q | (bs-ones)&^bs | (del-ones)&^del) & highs
}

// sortAttrs sorts attributes by key, keeping the last of equal keys.
func sortAttrs(as []model.Attr) []model.Attr {
	if len(as) < 2 {
		return as
	}
	slices.SortStableFunc(as, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) })
	out := as[:0]
	for i, a := range as {
		if i+1 < len(as) && as[i+1].Key == a.Key {
			continue
		}
		out = append(out, a)
	}
	return out
}

// otlpRejected is the partial_success message for res.
func otlpRejected(res *stored) string {
	if res.Rejected == 0 {
		return ""
	}
	return fmt.Sprintf("%d log records rejected; the first: %s", res.Rejected, rejectMessage(res.FirstReject))
}

package server

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/klauspost/compress/s2"

	"github.com/shiplog/shiplog/model"
)

// checkRecords fails on a record Ingest could not take apart from its limits:
// strings that are not UTF-8, attributes unsorted or repeated.
func checkRecords(t *testing.T, recs []model.Record) {
	t.Helper()
	for _, r := range recs {
		for _, s := range []string{r.Service, r.Host, r.BuildID, r.DeployID, r.TraceID, r.SpanID, r.Message} {
			if !utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8 %q in %+v", s, r)
			}
		}
		if !slices.IsSortedFunc(r.Attrs, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) }) {
			t.Fatalf("attributes not sorted: %v", r.Attrs)
		}
		for i, a := range r.Attrs {
			if a.Key == "" || i > 0 && r.Attrs[i-1].Key == a.Key {
				t.Fatalf("bad attribute key in %v", r.Attrs)
			}
		}
	}
}

// FuzzOTLPLogs: any protobuf body decodes or is refused; what decodes
// converts without panicking into well-formed records.
// Seeds: testdata/fuzz/FuzzOTLPLogs.
func FuzzOTLPLogs(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add([]byte(`{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeLogs":[{"scope":{"name":"s"},"logRecords":[{"timeUnixNano":"1","severityNumber":9,"body":{"kvlistValue":{"values":[{"key":"a","value":{"arrayValue":{"values":[{"intValue":"1"}]}}}]}},"traceId":"0af7651916cd43dd8448eb211c80319c","attributes":[{"key":"k","value":{"kvlistValue":{"values":[{"key":"n","value":{"doubleValue":1.5}}]}}}]}]}]}]}`), true)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		req := &collogspb.ExportLogsServiceRequest{}
		if err := otlpUnmarshal(body, isJSON, req); err != nil {
			return
		}
		var res stored
		recs := otlpLogs(req, &res)
		checkRecords(t, recs)
		if _, err := proto.Marshal(req); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzOTLPMetrics: any protobuf body converts without panicking into series
// with a metric name.
// Seeds: testdata/fuzz/FuzzOTLPMetrics.
func FuzzOTLPMetrics(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add([]byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"a.b","unit":"s","histogram":{"aggregationTemporality":2,"dataPoints":[{"count":"3","sum":1,"explicitBounds":[1],"bucketCounts":["1","2"]}]}},{"name":"g","gauge":{"dataPoints":[{"asInt":"5"}]}}]}]}]}`), true)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		req := &colmetricspb.ExportMetricsServiceRequest{}
		if err := otlpUnmarshal(body, isJSON, req); err != nil {
			return
		}
		var res stored
		for _, s := range otlpMetrics(req, &res) {
			if s.Labels[0].Name != model.MetricNameLabel && !slices.ContainsFunc(s.Labels, func(l model.Label) bool { return l.Name == model.MetricNameLabel }) {
				t.Fatalf("series without a name: %v", s.Labels)
			}
		}
	})
}

// FuzzLokiProto: any snappy body decodes or is refused, never panics.
// Seeds: testdata/fuzz/FuzzLokiProto.
func FuzzLokiProto(f *testing.F) {
	f.Add(s2.EncodeSnappy(nil, []byte("\n)\n\x0f{job=\"varlogs\"}\x12\x16\n\x06\b\x80\xe4\x97\xd0\x06\x12\x04line\x1a\x06\n\x01a\x12\x01b")))
	f.Add([]byte("not snappy"))
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, err := decodeLokiProto((*Limiter)(nil).bodyMem(), body, 1<<20)
		if err != nil {
			return
		}
		for _, r := range recs {
			if !slices.IsSortedFunc(r.Attrs, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) }) {
				t.Fatalf("attributes not sorted: %v", r.Attrs)
			}
		}
	})
}

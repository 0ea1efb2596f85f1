package server

import (
	"fmt"
	"math"
	"strings"
	"testing"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/shiplog/shiplog/model"
)

func str(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func kv(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

func kvs(pairs ...string) []*commonpb.KeyValue {
	var out []*commonpb.KeyValue
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, kv(pairs[i], str(pairs[i+1])))
	}
	return out
}

func recString(r model.Record) string {
	var as []string
	for _, a := range r.Attrs {
		as = append(as, a.Key+"="+a.Value)
	}
	return fmt.Sprintf("t=%d svc=%s host=%s build=%s deploy=%s level=%s trace=%s span=%s msg=%q attrs=[%s]",
		r.Time, r.Service, r.Host, r.BuildID, r.DeployID, r.Level, r.TraceID, r.SpanID, r.Message, strings.Join(as, " "))
}

func TestOTLPLogs(t *testing.T) {
	req := &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		Resource: &resourcepb.Resource{Attributes: append(kvs(
			"service.name", "api", "host.name", "web-1", "service.instance.id", "i-1", "deployment.id", "deploy-42",
			"build.id", "b-old", "cicd.pipeline.run.id", "build-7", "cloud.region", "eu"),
			kv("k8s", &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: kvs("pod", "p-1", "ns", "prod")}}}))},
		ScopeLogs: []*logspb.ScopeLogs{{
			Scope: &commonpb.InstrumentationScope{Name: "app/log", Version: "1.2"},
			LogRecords: []*logspb.LogRecord{
				{TimeUnixNano: 1767268800000000001, SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_ERROR2, SeverityText: "oops",
					Body: str("connection refused"), TraceId: []byte{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
					SpanId: []byte{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31}, Attributes: append(kvs("http.route", "/users", "cloud.region", "us"),
						kv("status", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 500}}),
						kv("ok", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}}))},
				{ObservedTimeUnixNano: 1767268800000000002, SeverityText: "WARNING",
					Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{
						kv("event", str("login")), kv("n", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1.5}}),
						kv("tags", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{str("a\"b"), {}}}}})}}}},
					TraceId: make([]byte, 16), EventName: "user.login"},
				{SeverityText: "loud", Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{1, 2}}},
					Attributes: kvs("service.name", "worker", "host.name", "")},
			},
		}},
	}, {
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{
			{TimeUnixNano: math.MaxUint64},
			{SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_FATAL4, Body: str("bare")},
		}}, {
			Scope:      &commonpb.InstrumentationScope{Attributes: kvs("service.instance.id", "i-9", "build.id", "b-9")},
			LogRecords: []*logspb.LogRecord{{SeverityNumber: logspb.SeverityNumber_SEVERITY_NUMBER_TRACE}},
		}},
	}}}
	var res stored
	recs := otlpLogs(req, &res)
	want := []string{
		`t=1767268800000000001 svc=api host=web-1 build=build-7 deploy=deploy-42 level=error trace=0af7651916cd43dd8448eb211c80319c span=b7ad6b7169203331 msg="connection refused" ` +
			`attrs=[build.id=b-old cloud.region=us http.route=/users k8s.ns=prod k8s.pod=p-1 ok=false otel.scope.name=app/log otel.scope.version=1.2 service.instance.id=i-1 status=500]`,
		`t=1767268800000000002 svc=api host=web-1 build=build-7 deploy=deploy-42 level=warn trace= span= msg="{\"event\":\"login\",\"n\":1.5,\"tags\":[\"a\\\"b\",null]}" ` +
			`attrs=[build.id=b-old cloud.region=eu event.name=user.login k8s.ns=prod k8s.pod=p-1 otel.scope.name=app/log otel.scope.version=1.2 service.instance.id=i-1]`,
		`t=0 svc=worker host=i-1 build=build-7 deploy=deploy-42 level=info trace= span= msg="\"AQI=\"" ` +
			`attrs=[build.id=b-old cloud.region=eu k8s.ns=prod k8s.pod=p-1 otel.scope.name=app/log otel.scope.version=1.2 severity_text=loud]`,
		`t=0 svc=unknown_service host= build= deploy= level=fatal trace= span= msg="bare" attrs=[]`,
		`t=0 svc=unknown_service host=i-9 build=b-9 deploy= level=trace trace= span= msg="" attrs=[]`,
	}
	if len(recs) != len(want) {
		for _, r := range recs {
			t.Log(recString(r))
		}
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if got := recString(r); got != want[i] {
			t.Errorf("record %d\n got %s\nwant %s", i, got, want[i])
		}
	}
	if res.Rejected != 1 || !strings.Contains(res.FirstReject.Error(), "out of range") {
		t.Errorf("rejected %d (%v), want 1 for the time out of range", res.Rejected, res.FirstReject)
	}
}

func TestOTLPJSONIDs(t *testing.T) {
	body := `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
	  "scopeLogs":[{"logRecords":[{"timeUnixNano":"1767268800000000000","severityNumber":17,"body":{"stringValue":"hi"},
	  "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174","attributes":[{"key":"traceId","value":{"stringValue":"not an id"}}],
	  "someFutureField":1}]}]}]}`
	req := &collogspb.ExportLogsServiceRequest{}
	if err := otlpUnmarshal([]byte(body), true, req); err != nil {
		t.Fatal(err)
	}
	var res stored
	recs := otlpLogs(req, &res)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.TraceID != "5b8efff798038103d269b633813fc60c" || r.SpanID != "eee19b7ec3c1b174" || r.Service != "api" || r.Level != model.LevelError ||
		r.Time != 1767268800000000000 || r.Message != "hi" {
		t.Errorf("got %s", recString(r))
	}
	if v, _ := r.Attr("traceId"); v != "not an id" {
		t.Errorf("attribute traceId = %q", v)
	}
	for _, bad := range []string{`{`, `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"xyz"}]}]}]}`, `{"resourceLogs":1}`, `{} {}`} {
		if err := otlpUnmarshal([]byte(bad), true, &collogspb.ExportLogsServiceRequest{}); err == nil {
			t.Errorf("otlpUnmarshal(%s) succeeded", bad)
		}
	}
}

func TestOTLPMetrics(t *testing.T) {
	dbl := func(v float64) *metricspb.NumberDataPoint_AsDouble {
		return &metricspb.NumberDataPoint_AsDouble{AsDouble: v}
	}
	sum := 12.5
	const ts = 1767268800123000000
	req := &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
		Resource: &resourcepb.Resource{Attributes: kvs("service.name", "api", "service.namespace", "shop", "host.name", "web-1", "deployment.id", "d-1")},
		ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{
			{Name: "queue.depth", Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{
				{TimeUnixNano: ts, Value: dbl(3), Attributes: kvs("queue.name", "jobs", "job", "ignored")}}}}},
			{Name: "http.requests", Unit: "1", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{IsMonotonic: true,
				AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
				DataPoints:             []*metricspb.NumberDataPoint{{TimeUnixNano: ts, Value: &metricspb.NumberDataPoint_AsInt{AsInt: 7}}}}}},
			{Name: "conns", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{
				AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
				DataPoints:             []*metricspb.NumberDataPoint{{TimeUnixNano: ts, Value: dbl(4), Flags: 1}}}}},
			{Name: "http.server.duration", Unit: "s", Data: &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{
				AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
				DataPoints:             []*metricspb.HistogramDataPoint{{TimeUnixNano: ts, Count: 6, Sum: &sum, ExplicitBounds: []float64{0.1, 1}, BucketCounts: []uint64{1, 2, 3}}}}}},
			{Name: "deltas", Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{IsMonotonic: true,
				AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA,
				DataPoints:             []*metricspb.NumberDataPoint{{TimeUnixNano: ts, Value: dbl(1)}, {TimeUnixNano: ts, Value: dbl(1)}}}}},
			{Name: "exp", Data: &metricspb.Metric_ExponentialHistogram{ExponentialHistogram: &metricspb.ExponentialHistogram{
				DataPoints: []*metricspb.ExponentialHistogramDataPoint{{}}}}}, // no temporality: delta
			{Name: "rpc.size", Unit: "By", Data: &metricspb.Metric_ExponentialHistogram{ExponentialHistogram: &metricspb.ExponentialHistogram{
				AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
				DataPoints: []*metricspb.ExponentialHistogramDataPoint{{TimeUnixNano: ts, Scale: 10, Count: 18, Sum: &sum, ZeroCount: 1, ZeroThreshold: 1e-9,
					Positive: &metricspb.ExponentialHistogramDataPoint_Buckets{Offset: -3, BucketCounts: []uint64{1, 2, 3, 4, 5}},
					Negative: &metricspb.ExponentialHistogramDataPoint_Buckets{BucketCounts: []uint64{2}}}}}}},
			{Name: "rpc.latency", Unit: "ms", Data: &metricspb.Metric_Summary{Summary: &metricspb.Summary{DataPoints: []*metricspb.SummaryDataPoint{
				{TimeUnixNano: ts, Count: 2, Sum: 30, QuantileValues: []*metricspb.SummaryDataPoint_ValueAtQuantile{{Quantile: 0.5, Value: 10}}}}}}},
		}}},
	}}}
	var res stored
	meta := newMetaStore()
	series := defaultOTLPNames.metrics(req, &res, meta)
	if got := fmt.Sprint(meta.get("rpc_latency_milliseconds", 0, 0), meta.get("http_requests_total", 0, 0)); got !=
		"map[rpc_latency_milliseconds:[{summary  milliseconds}]] map[http_requests_total:[{counter  }]]" {
		t.Errorf("metadata: %s", got)
	}
	var got []string
	for _, s := range series {
		for _, smp := range s.Samples {
			v := fmt.Sprint(smp.V)
			if math.Float64bits(smp.V) == math.Float64bits(staleNaN) {
				v = "stale"
			}
			got = append(got, fmt.Sprintf("%s %d %s", model.LabelsString(s.Labels), smp.T, v))
		}
	}
	base := `deploy_id="d-1", host="web-1", instance="web-1", job="shop/api"`
	want := []string{
		`queue_depth{` + base + `, queue_name="jobs"} 1767268800123 3`,
		`http_requests_total{` + base + `} 1767268800123 7`,
		`conns{` + base + `} 1767268800123 stale`,
		`http_server_duration_seconds_bucket{` + base + `, le="0.1"} 1767268800123 1`,
		`http_server_duration_seconds_bucket{` + base + `, le="1"} 1767268800123 3`,
		`http_server_duration_seconds_bucket{` + base + `, le="+Inf"} 1767268800123 6`,
		`http_server_duration_seconds_sum{` + base + `} 1767268800123 12.5`,
		`http_server_duration_seconds_count{` + base + `} 1767268800123 6`,
		`rpc_latency_milliseconds{` + base + `, quantile="0.5"} 1767268800123 10`,
		`rpc_latency_milliseconds_sum{` + base + `} 1767268800123 30`,
		`rpc_latency_milliseconds_count{` + base + `} 1767268800123 2`,
		// Prometheus' OTLP receiver writes the resource's other attributes here.
		`target_info{deploy_id="d-1", deployment_id="d-1", host="web-1", host_name="web-1", instance="web-1", job="shop/api"} 1767268800123 1`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.Rejected != 3 {
		t.Errorf("rejected %d, want 3 (two delta points, one exponential histogram without temporality)", res.Rejected)
	}
	// Scale 10 merged down to 8: OTLP buckets -3..1 become Prometheus
	// buckets 0 (1+2+3) and 1 (4+5).
	var hists []string
	for _, s := range series {
		for _, h := range s.Histograms {
			if err := h.H.Validate(); err != nil {
				t.Errorf("%s: %v", model.LabelsString(s.Labels), err)
			}
			hists = append(hists, fmt.Sprintf("%s %d schema=%d zero=%d count=%d sum=%g pos=%v %v neg=%v %v", model.LabelsString(s.Labels), h.T,
				h.H.Schema, h.H.ZeroCount, h.H.Count, h.H.Sum, h.H.PositiveSpans, h.H.PositiveBuckets, h.H.NegativeSpans, h.H.NegativeBuckets))
		}
	}
	wantH := `rpc_size_bytes{` + base + `} 1767268800123 schema=8 zero=1 count=18 sum=12.5 pos=[{0 2}] [6 3] neg=[{1 1}] [2]`
	if strings.Join(hists, "\n") != wantH {
		t.Errorf("histograms\n%s\nwant\n%s", strings.Join(hists, "\n"), wantH)
	}
}

// TestOTLPLogsNames: build and deploy come from the attribute names
// configured (--otlp-build-attr, --otlp-deploy-attr), the first present
// winning; by default build_id and deploy_id count too.
func TestOTLPLogsNames(t *testing.T) {
	req := func(attrs ...string) *collogspb.ExportLogsServiceRequest {
		return &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
			Resource:  &resourcepb.Resource{Attributes: kvs(attrs...)},
			ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{Body: str("x")}}}},
		}}}
	}
	cases := []struct {
		name          string
		build, deploy []string
		attrs         []string
		want          string
	}{
		{"default names", nil, nil, []string{"service.name", "api", "build_id", "b-1", "deploy_id", "d-1", "service.version", "1.2"},
			`t=0 svc=api host= build=b-1 deploy=d-1 level=info trace= span= msg="x" attrs=[service.version=1.2]`},
		{"semantic conventions first", nil, nil, []string{"build_id", "b-1", "build.id", "b-2", "deploy_id", "d-1", "deployment.id", "d-2"},
			`t=0 svc=unknown_service host= build=b-2 deploy=d-2 level=info trace= span= msg="x" attrs=[build_id=b-1 deploy_id=d-1]`},
		{"service.version as the build", []string{"service.version"}, []string{"env.release"}, []string{"service.name", "api", "build.id", "b-2", "service.version", "1.2", "env.release", "r-7"},
			`t=0 svc=api host= build=1.2 deploy=r-7 level=info trace= span= msg="x" attrs=[build.id=b-2]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var res stored
			recs := newOTLPNames(c.build, c.deploy).logs(req(c.attrs...), &res)
			if len(recs) != 1 {
				t.Fatalf("%d records", len(recs))
			}
			if got := recString(recs[0]); got != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

package e2e

// OpenTelemetry ingest, driven by the OpenTelemetry Go SDK's own exporters
// (otlploggrpc, otlploghttp, otlpmetricgrpc) and by hand-made OTLP/HTTP JSON.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"
)

// fullRecord is a search answer's record with every field.
type fullRecord struct {
	Time       time.Time         `json:"time"`
	Service    string            `json:"service"`
	Host       string            `json:"host"`
	BuildID    string            `json:"build_id"`
	DeployID   string            `json:"deploy_id"`
	Level      string            `json:"level"`
	Message    string            `json:"message"`
	TraceID    string            `json:"trace_id"`
	SpanID     string            `json:"span_id"`
	Attributes map[string]string `json:"attributes"`
}

// waitRecords searches q until it finds want records (or 20s pass) and returns them.
func waitRecords(t testing.TB, s *server, q string, want int) []fullRecord {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var r struct {
			Records []fullRecord `json:"records"`
		}
		code, body := s.getJSON(t, "/v1/logs:search", url.Values{"q": {q}, "order": {"asc"}, "limit": {"1000"}}, &r)
		if code != 200 {
			t.Fatalf("search %q: %d %s", q, code, body)
		}
		if len(r.Records) >= want || time.Now().After(deadline) {
			if len(r.Records) != want {
				t.Fatalf("search %q: %d records, want %d: %+v\nserver log:\n%s", q, len(r.Records), want, r.Records, s.logText())
			}
			return r.Records
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func otelResource(t testing.TB, service, build string) *resource.Resource {
	t.Helper()
	return resource.NewWithAttributes("",
		attribute.String("service.name", service),
		attribute.String("host.name", "web-7f3a"),
		attribute.String("deployment.id", "deploy-0042"),
		attribute.String("cicd.pipeline.run.id", build),
		attribute.String("deployment.environment.name", "prod"),
	)
}

// emitLogs sends three records through a LoggerProvider and shuts it down
// (which flushes).
func emitLogs(t testing.TB, exp sdklog.Exporter, service, build, marker string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(otelResource(t, service, build)), sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
	logger := lp.Logger("shiplog/e2e", otellog.WithInstrumentationVersion("0.1.0"))
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	spanCtx := trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	now := time.Now()

	var r otellog.Record
	r.SetTimestamp(now)
	r.SetSeverity(otellog.SeverityError)
	r.SetSeverityText("ERROR")
	r.SetBody(attribute.StringValue(marker + " connection refused to db-1:5432"))
	r.AddAttributes(attribute.String("http.route", "/v1/users"), attribute.Int("http.status", 500),
		attribute.Map("db", attribute.String("system", "postgres"), attribute.String("name", "users")))
	logger.Emit(spanCtx, r)

	var w otellog.Record
	w.SetTimestamp(now.Add(time.Millisecond))
	w.SetSeverity(otellog.SeverityWarn2)
	w.SetBody(attribute.MapValue(attribute.String("event", marker), attribute.Int("attempt", 3)))
	logger.Emit(ctx, w)

	var d otellog.Record
	d.SetTimestamp(now.Add(2 * time.Millisecond))
	d.SetSeverityText("debug")
	d.SetBody(attribute.StringValue(marker + " cache warm"))
	logger.Emit(ctx, d)

	if err := lp.Shutdown(ctx); err != nil {
		t.Fatalf("logger provider shutdown: %v", err)
	}
}

func checkOTelLogs(t *testing.T, s *server, service, build, marker string) {
	t.Helper()
	recs := waitRecords(t, s, "service:"+service, 3)
	e := recs[0]
	if e.Host != "web-7f3a" || e.BuildID != build || e.DeployID != "deploy-0042" || e.Level != "error" ||
		e.Message != marker+" connection refused to db-1:5432" || e.TraceID != "0af7651916cd43dd8448eb211c80319c" || e.SpanID != "b7ad6b7169203331" {
		t.Errorf("error record: %+v", e)
	}
	for k, v := range map[string]string{"http.route": "/v1/users", "http.status": "500", "db.system": "postgres", "db.name": "users",
		"deployment.environment.name": "prod", "otel.scope.name": "shiplog/e2e", "otel.scope.version": "0.1.0"} {
		if e.Attributes[k] != v {
			t.Errorf("error record: attribute %s = %q, want %q (all: %v)", k, e.Attributes[k], v, e.Attributes)
		}
	}
	for _, k := range []string{"service.name", "host.name", "deployment.id", "cicd.pipeline.run.id"} {
		if _, ok := e.Attributes[k]; ok {
			t.Errorf("error record: %s kept as an attribute as well as a field", k)
		}
	}
	if w := recs[1]; w.Level != "warn" || w.TraceID != "" {
		t.Errorf("warn record: %+v", w)
	} else {
		var body map[string]any
		if err := json.Unmarshal([]byte(w.Message), &body); err != nil || body["event"] != marker || body["attempt"] != float64(3) {
			t.Errorf("warn record: map body rendered as %q (%v)", w.Message, err)
		}
	}
	if d := recs[2]; d.Level != "debug" || d.Message != marker+" cache warm" {
		t.Errorf("debug record: %+v", d)
	}
	// The mapped fields are searchable.
	waitRecords(t, s, fmt.Sprintf("service:%s AND build_id:%s AND level:error AND db.system:postgres", service, build), 1)
}

func TestOTLPLogsSDK(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := context.Background()
	t.Run("grpc", func(t *testing.T) {
		exp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(s.grpcAddr), otlploggrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		emitLogs(t, exp, "otel-grpc", "build-000123", "grpc-marker")
		checkOTelLogs(t, s, "otel-grpc", "build-000123", "grpc-marker")
	})
	t.Run("grpc gzip", func(t *testing.T) {
		exp, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(s.grpcAddr), otlploggrpc.WithInsecure(), otlploggrpc.WithCompressor("gzip"))
		if err != nil {
			t.Fatal(err)
		}
		emitLogs(t, exp, "otel-grpc-gzip", "build-000124", "grpcz-marker")
		checkOTelLogs(t, s, "otel-grpc-gzip", "build-000124", "grpcz-marker")
	})
	t.Run("http", func(t *testing.T) {
		exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(s.httpAddr), otlploghttp.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		emitLogs(t, exp, "otel-http", "build-000125", "http-marker")
		checkOTelLogs(t, s, "otel-http", "build-000125", "http-marker")
	})
	t.Run("http gzip", func(t *testing.T) {
		exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(s.httpAddr), otlploghttp.WithInsecure(), otlploghttp.WithCompression(otlploghttp.GzipCompression))
		if err != nil {
			t.Fatal(err)
		}
		emitLogs(t, exp, "otel-http-gzip", "build-000126", "httpz-marker")
		checkOTelLogs(t, s, "otel-http-gzip", "build-000126", "httpz-marker")
	})
}

func postOTLP(t testing.TB, s *server, path, contentType, body string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Post("http://"+s.httpAddr+path, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestOTLPHTTPJSON(t *testing.T) {
	s := startServer(t, t.TempDir())
	now := time.Now().UnixNano()
	body := fmt.Sprintf(`{"resourceLogs":[{"resource":{"attributes":[
	    {"key":"service.name","value":{"stringValue":"json-api"}},
	    {"key":"service.instance.id","value":{"stringValue":"pod-1"}},
	    {"key":"build.id","value":{"stringValue":"build-9"}}]},
	  "scopeLogs":[{"scope":{"name":"manual"},"logRecords":[
	    {"timeUnixNano":"%d","severityNumber":13,"body":{"stringValue":"json one"},
	     "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
	     "attributes":[{"key":"user","value":{"kvlistValue":{"values":[{"key":"id","value":{"intValue":"42"}}]}}}]},
	    {"timeUnixNano":"1000","body":{"stringValue":"far too old"}},
	    {"timeUnixNano":"%d","severityText":"Information","body":{"stringValue":"json two"}}]}]}]}`, now, now+1)
	code, hdr, resp := postOTLP(t, s, "/v1/logs", "application/json", body)
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("POST /v1/logs JSON: %d %s", code, resp)
	}
	var ans struct {
		PartialSuccess struct {
			RejectedLogRecords json.Number `json:"rejectedLogRecords"`
			ErrorMessage       string      `json:"errorMessage"`
		} `json:"partialSuccess"`
	}
	if err := json.Unmarshal([]byte(resp), &ans); err != nil || ans.PartialSuccess.RejectedLogRecords != "1" ||
		!strings.Contains(ans.PartialSuccess.ErrorMessage, "outside the accepted window") {
		t.Errorf("partial success: %s (%v)", resp, err)
	}
	recs := waitRecords(t, s, "service:json-api", 2)
	if r := recs[0]; r.Host != "pod-1" || r.BuildID != "build-9" || r.Level != "warn" || r.TraceID != "5b8efff798038103d269b633813fc60c" ||
		r.SpanID != "eee19b7ec3c1b174" || r.Attributes["user.id"] != "42" || r.Attributes["otel.scope.name"] != "manual" {
		t.Errorf("record: %+v", r)
	}
	if r := recs[1]; r.Level != "info" || r.Message != "json two" {
		t.Errorf("record: %+v", r)
	}

	// Bad input: 400 (not retryable) with a Status body; unknown type 415.
	for _, c := range []struct {
		ct, body string
		code     int
	}{
		{"application/json", `{"resourceLogs":`, 400},
		{"application/json", `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"not-hex"}]}]}]}`, 400},
		{"application/x-protobuf", "\xff\xff\xff", 400},
		{"text/plain", "hello", 415},
	} {
		code, _, resp := postOTLP(t, s, "/v1/logs", c.ct, c.body)
		if code != c.code {
			t.Errorf("POST %s %.30q: %d %s, want %d", c.ct, c.body, code, resp, c.code)
		}
	}
	// An empty protobuf request is a valid one.
	if code, hdr, _ := postOTLP(t, s, "/v1/logs", "application/x-protobuf", ""); code != 200 || hdr.Get("Content-Type") != "application/x-protobuf" {
		t.Errorf("empty protobuf request: %d %v", code, hdr)
	}
	// Metrics in JSON too.
	mbody := fmt.Sprintf(`{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-api"}}]},
	  "scopeMetrics":[{"metrics":[{"name":"jobs.queued","gauge":{"dataPoints":[{"timeUnixNano":"%d","asInt":"17"}]}}]}]}]}`, now)
	if code, _, resp := postOTLP(t, s, "/v1/metrics", "application/json", mbody); code != 200 {
		t.Fatalf("POST /v1/metrics JSON: %d %s", code, resp)
	}
	waitPromValue(t, s, `jobs_queued{job="json-api"}`, "17")
}

// waitPromValue queries the Prometheus API until q has one sample of value want.
func waitPromValue(t testing.TB, s *server, q, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var r struct {
			Status string `json:"status"`
			Data   struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  []any             `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		code, body := s.getJSON(t, "/api/v1/query", url.Values{"query": {q}}, &r)
		last = fmt.Sprintf("%d %s", code, body)
		if code == 200 && len(r.Data.Result) == 1 && len(r.Data.Result[0].Value) == 2 && r.Data.Result[0].Value[1] == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("query %s: want one sample of %s; last answer: %s", q, want, last)
}

func TestOTLPMetricsSDK(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(s.grpcAddr), otlpmetricgrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))
	// rpc.size as an exponential histogram (at the SDK's scale 20, merged
	// down to Prometheus' 8).
	expView := sdkmetric.NewView(sdkmetric.Instrument{Name: "rpc.size"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}})
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(otelResource(t, "metrics-api", "build-000777")), sdkmetric.WithReader(reader), sdkmetric.WithView(expView))
	meter := mp.Meter("shiplog/e2e")
	requests, err := meter.Int64Counter("http.server.requests", metric.WithUnit("1"))
	if err != nil {
		t.Fatal(err)
	}
	inflight, err := meter.Int64UpDownCounter("http.server.active_requests")
	if err != nil {
		t.Fatal(err)
	}
	latency, err := meter.Float64Histogram("http.server.request.duration", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(0.1, 1))
	if err != nil {
		t.Fatal(err)
	}
	temp, err := meter.Float64Gauge("room.temperature")
	if err != nil {
		t.Fatal(err)
	}
	size, err := meter.Int64Histogram("rpc.size", metric.WithUnit("By"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []int64{100, 200, 400} {
		size.Record(ctx, v)
	}
	route := metric.WithAttributes(attribute.String("http.route", "/v1/users"))
	requests.Add(ctx, 5, route)
	requests.Add(ctx, 2, route)
	inflight.Add(ctx, 3)
	inflight.Add(ctx, -1)
	for _, v := range []float64{0.05, 0.5, 0.7, 3} {
		latency.Record(ctx, v, route)
	}
	temp.Record(ctx, 21.5)
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if err := mp.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	sel := `job="metrics-api",instance="web-7f3a",deploy_id="deploy-0042",build_id="build-000777"`
	waitPromValue(t, s, `http_server_requests_total{`+sel+`,http_route="/v1/users"}`, "7")
	waitPromValue(t, s, `http_server_active_requests{`+sel+`}`, "2")
	waitPromValue(t, s, `room_temperature{`+sel+`}`, "21.5")
	waitPromValue(t, s, `http_server_request_duration_seconds_bucket{`+sel+`,le="0.1"}`, "1")
	waitPromValue(t, s, `http_server_request_duration_seconds_bucket{`+sel+`,le="1"}`, "3")
	waitPromValue(t, s, `http_server_request_duration_seconds_bucket{`+sel+`,le="+Inf"}`, "4")
	waitPromValue(t, s, `http_server_request_duration_seconds_count{`+sel+`}`, "4")
	waitPromValue(t, s, `http_server_request_duration_seconds_sum{`+sel+`}`, "4.25")
	// The exponential histogram is a native histogram.
	waitPromValue(t, s, `histogram_count(rpc_size_bytes{`+sel+`})`, "3")
	waitPromValue(t, s, `histogram_sum(rpc_size_bytes{`+sel+`})`, "700")
	waitPromValue(t, s, `histogram_fraction(0, 300, rpc_size_bytes{`+sel+`})`, "0.6666666666666666")
}

// A body too large for the server is refused with 413 before it is read.
func TestOTLPHTTPLimits(t *testing.T) {
	s := startServer(t, t.TempDir(), "--max-request-bytes", "1024")
	code, _, resp := postOTLP(t, s, "/v1/logs", "application/json", `{"resourceLogs":[]}`+strings.Repeat(" ", 2000))
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d %s", code, resp)
	}
	// So is one that grows past the limit when gunzipped.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(`{"resourceLogs":[]}` + strings.Repeat(" ", 100000)))
	_ = zw.Close()
	req, _ := http.NewRequest("POST", "http://"+s.httpAddr+"/v1/logs", &gz)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("gzip body over the limit once decompressed: %d", resp2.StatusCode)
	}
}

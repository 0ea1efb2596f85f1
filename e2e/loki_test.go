package e2e

// The Loki push API, in JSON and in snappy-compressed protobuf built with
// Grafana's own (Apache-2.0) push package, as Promtail, Alloy and the Docker
// driver send it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/s2"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func postLoki(t testing.TB, s *server, contentType string, body []byte) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+s.httpAddr+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestLokiPush(t *testing.T) {
	s := startServer(t, t.TempDir())
	now := time.Now()

	t.Run("protobuf", func(t *testing.T) {
		req := push.PushRequest{Streams: []push.Stream{{
			Labels: `{service_name="loki-api", host="web-1", deployment_id="deploy-0042", build_id="build-000123", level="warning", env="prod"}`,
			Entries: []push.Entry{
				{Timestamp: now, Line: "proto line one"},
				{Timestamp: now.Add(time.Millisecond), Line: "proto line two", StructuredMetadata: push.LabelsAdapter{
					{Name: "trace_id", Value: "0af7651916cd43dd8448eb211c80319c"}, {Name: "user", Value: "u-7"}}},
			},
		}, {
			Labels:  `{job="varlogs", instance="10.0.0.7:9080", filename="/var/log/app.log", detected_level="ERROR"}`,
			Entries: []push.Entry{{Timestamp: now, Line: "promtail line"}},
		}}}
		raw, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		code, _, body := postLoki(t, s, "application/x-protobuf", s2.EncodeSnappy(nil, raw))
		if code != http.StatusNoContent {
			t.Fatalf("push: %d %s", code, body)
		}
		recs := waitRecords(t, s, "service:loki-api", 2)
		r := recs[1]
		if r.Host != "web-1" || r.DeployID != "deploy-0042" || r.BuildID != "build-000123" || r.Level != "warn" || r.Message != "proto line two" ||
			r.TraceID != "0af7651916cd43dd8448eb211c80319c" || r.Attributes["user"] != "u-7" || r.Attributes["env"] != "prod" {
			t.Errorf("record: %+v", r)
		}
		if _, ok := r.Attributes["service_name"]; ok {
			t.Errorf("service_name kept as an attribute: %v", r.Attributes)
		}
		p := waitRecords(t, s, "service:varlogs", 1)[0]
		if p.Host != "10.0.0.7:9080" || p.Level != "error" || p.Attributes["filename"] != "/var/log/app.log" {
			t.Errorf("promtail record: %+v", p)
		}
	})

	t.Run("json", func(t *testing.T) {
		body := fmt.Sprintf(`{"streams":[{"stream":{"service_name":"loki-json","host":"web-2","deploy_id":"deploy-7","team":"core"},
		  "values":[["%d","json line one"],["%d","json line two",{"span_id":"b7ad6b7169203331","tenant":"t1"}]]}]}`,
			now.UnixNano(), now.UnixNano()+1)
		code, _, resp := postLoki(t, s, "application/json", []byte(body))
		if code != http.StatusNoContent {
			t.Fatalf("push: %d %s", code, resp)
		}
		recs := waitRecords(t, s, "service:loki-json AND team:core", 2)
		if r := recs[1]; r.Host != "web-2" || r.DeployID != "deploy-7" || r.SpanID != "b7ad6b7169203331" || r.Attributes["tenant"] != "t1" || r.Level != "info" {
			t.Errorf("record: %+v", r)
		}
	})

	t.Run("read_back", func(t *testing.T) {
		// What Loki clients pushed, Grafana reads back through Loki's read
		// API; structured metadata is usable in label filters.
		waitRecords(t, s, "service:loki-json", 2)
		u := "http://" + s.httpAddr + "/loki/api/v1/query_range?" + url.Values{
			"query": {`{service_name="loki-json"} | tenant="t1"`},
			"start": {strconv.FormatInt(now.Add(-time.Minute).UnixNano(), 10)},
			"end":   {strconv.FormatInt(now.Add(time.Minute).UnixNano(), 10)}}.Encode()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Status string `json:"status"`
			Data   struct {
				ResultType string `json:"resultType"`
				Result     []struct {
					Stream map[string]string `json:"stream"`
					Values [][2]string       `json:"values"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("query_range: %d %v", resp.StatusCode, err)
		}
		if out.Data.ResultType != "streams" || len(out.Data.Result) != 1 || len(out.Data.Result[0].Values) != 1 ||
			out.Data.Result[0].Values[0][1] != "json line two" || out.Data.Result[0].Stream["host"] != "web-2" {
			t.Fatalf("query_range: %+v", out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			ct   string
			body []byte
			code int
			msg  string
		}{
			{"application/json", []byte(`{"streams":[{"stream":{"job":"x"},"values":[["soon","l"]]}]}`), 400, "timestamp"},
			{"application/x-protobuf", []byte("not snappy at all"), 400, "snappy"},
			{"application/x-protobuf", s2.EncodeSnappy(nil, []byte("\xff\xff\xff")), 400, "PushRequest"},
			{"application/json", []byte(`{"streams":[{"labels":"{job=x}","entries":[]}]}`), 400, "labels"},
			{"text/plain", []byte("x"), 400, "Content-Type"},
		} {
			code, _, resp := postLoki(t, s, c.ct, c.body)
			if code != c.code || !strings.Contains(resp, c.msg) {
				t.Errorf("push %s %.30q: %d %s; want %d mentioning %q", c.ct, c.body, code, resp, c.code, c.msg)
			}
		}
		// One entry too old: 400 naming it, the others stored (as Loki does).
		body := fmt.Sprintf(`{"streams":[{"stream":{"service_name":"loki-partial"},"values":[["%d","good"],["1000","ancient"],["%d","good too"]]}]}`,
			now.UnixNano(), now.UnixNano()+1)
		code, _, resp := postLoki(t, s, "application/json", []byte(body))
		if code != 400 || !strings.Contains(resp, "1 of 3 entries refused") {
			t.Errorf("partial push: %d %s", code, resp)
		}
		waitRecords(t, s, "service:loki-partial", 2)
	})
}

// With ingest refused (the disk floor is above any free space), OTLP and
// Loki clients are told to retry: 429 with Retry-After, gRPC
// ResourceExhausted.
func TestEcosystemRetryable(t *testing.T) {
	s := startServer(t, t.TempDir(), "--min-free-disk", "1000000TiB")
	for _, c := range []struct{ path, ct, body string }{
		{"/v1/logs", "application/json", `{"resourceLogs":[]}`},
		{"/v1/logs", "application/x-protobuf", ``},
		{"/v1/metrics", "application/json", `{"resourceMetrics":[]}`},
		{"/loki/api/v1/push", "application/json", `{"streams":[]}`},
	} {
		code, hdr, resp := postOTLP(t, s, c.path, c.ct, c.body)
		if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
			t.Errorf("POST %s (%s) with the disk full: %d %s, Retry-After %q", c.path, c.ct, code, resp, hdr.Get("Retry-After"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := collogspb.NewLogsServiceClient(s.dial(t)).Export(ctx, &collogspb.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{
		ScopeLogs: []*logspb.ScopeLogs{{LogRecords: []*logspb.LogRecord{{Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "x"}}}}}},
	}}})
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted {
		t.Errorf("OTLP/gRPC export with the disk full: %v, want ResourceExhausted", err)
	}
}

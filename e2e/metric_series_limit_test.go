package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// TestMetricSeriesLimit: with --max-series, a write's new series beyond it
// are refused (remote write 400 naming the limit, OTLP a partial success,
// gRPC ResourceExhausted) while the samples of existing series in the same
// write are stored; /metrics shows the limit and the refusals. Before it,
// every new series was indexed without bound (500k took 800 MB).
func TestMetricSeriesLimit(t *testing.T) {
	s := startServer(t, t.TempDir(), "--max-series", "4")
	now := time.Now().Add(-time.Minute).Truncate(time.Second)
	rw := func(t0 time.Time, v float64, insts ...string) *prompb.WriteRequest {
		req := &prompb.WriteRequest{}
		for _, in := range insts {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels:  []prompb.Label{{Name: "__name__", Value: "rw_limit"}, {Name: "instance", Value: in}},
				Samples: []prompb.Sample{{Timestamp: t0.UnixMilli(), Value: v}},
			})
		}
		return req
	}
	if code, body := postRemoteWrite(t, s, rw(now, 1, "i1", "i2")); code != 204 {
		t.Fatalf("first write: %d %s", code, body)
	}
	// i1 exists; i3 and i4 fit; i5 and i6 are refused.
	code, body := postRemoteWrite(t, s, rw(now.Add(15*time.Second), 2, "i1", "i3", "i4", "i5", "i6"))
	var e struct{ Status, ErrorType, Error string }
	_ = json.Unmarshal([]byte(body), &e)
	if code != 400 || e.ErrorType != "bad_data" || !strings.Contains(e.Error, "2 new series") || !strings.Contains(e.Error, "limit of 4 series (--max-series)") {
		t.Fatalf("write over the limit: %d %s", code, body)
	}
	waitPromValue(t, s, `rw_limit{instance="i1"}`, "2")
	waitPromValue(t, s, `count(rw_limit)`, "4")
	// Existing series keep taking samples.
	if code, body := postRemoteWrite(t, s, rw(now.Add(30*time.Second), 3, "i1", "i2", "i3", "i4")); code != 204 {
		t.Fatalf("write of existing series: %d %s", code, body)
	}
	// OTLP: a partial success naming the limit.
	mbody := fmt.Sprintf(`{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
	  "scopeMetrics":[{"metrics":[{"name":"jobs.queued","gauge":{"dataPoints":[{"timeUnixNano":"%d","asInt":"17"},{"timeUnixNano":"%d","asInt":"18"}]}}]}]}]}`,
		now.UnixNano(), now.Add(time.Second).UnixNano())
	code, _, resp := postOTLP(t, s, "/v1/metrics", "application/json", mbody)
	var ps struct {
		PartialSuccess struct {
			RejectedDataPoints string `json:"rejectedDataPoints"`
			ErrorMessage       string `json:"errorMessage"`
		} `json:"partialSuccess"`
	}
	_ = json.Unmarshal([]byte(resp), &ps)
	if code != 200 || ps.PartialSuccess.RejectedDataPoints != "2" || !strings.Contains(ps.PartialSuccess.ErrorMessage, "--max-series") {
		t.Fatalf("OTLP over the limit: %d %s", code, resp)
	}
	// gRPC MetricsService/Push: ResourceExhausted.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := shiplogv1.NewMetricsServiceClient(s.dial(t)).Push(ctx, &shiplogv1.PushMetricsRequest{Samples: []*shiplogv1.Sample{
		{Name: "grpc_new", Value: 1, Time: timestamppb.New(now)},
	}})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-series") {
		t.Fatalf("gRPC push over the limit: %v", err)
	}
	_, metrics := s.getJSON(t, "/metrics", nil, nil)
	for _, want := range []string{"shiplog_metrics_series_limit 4", "shiplog_metrics_series_refused_total 4", "shiplog_metrics_series 4"} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, body := s.getJSON(t, "/api/v1/query", url.Values{"query": {`count({__name__=~".+"})`}}, nil); code != 200 || !strings.Contains(body, `"4"`) {
		t.Errorf("series count: %d %s", code, body)
	}
}

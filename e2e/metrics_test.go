package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	pmodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// The metrics data set: ten minutes of samples every 15 s ending at end.
//
//	http_requests_total{service, code}  counters: api/200 +3, api/500 +1.5, web/200 +6 per step
//	queue_depth{service}                gauges: api 7, web 11 (the last values)
//	request_seconds_bucket{le}          a classic histogram: +2 (0.1), +6 (0.5), +8 (1), +10 (+Inf) per step
//	request_seconds_sum, _count         +3 and +10 per step
//
// all over gRPC MetricsService/Push, and over remote write:
//
//	rw_jobs_total{job="batch", instance}  counters: i1 +1, i2 +2 per step
const (
	metricStep  = 15 * time.Second
	metricSteps = 40
)

type metricsFixture struct {
	end time.Time // time of the last sample
}

func (f metricsFixture) at(i int) time.Time {
	return f.end.Add(-time.Duration(metricSteps-1-i) * metricStep)
}

func (f metricsFixture) grpcSamples() []*shiplogv1.Sample {
	var out []*shiplogv1.Sample
	add := func(name string, labels map[string]string, v float64, t time.Time) {
		out = append(out, &shiplogv1.Sample{Name: name, Labels: labels, Value: v, Time: timestamppb.New(t)})
	}
	for i := 0; i < metricSteps; i++ {
		t := f.at(i)
		x := float64(i)
		add("http_requests_total", map[string]string{"service": "api", "code": "200"}, 3*x, t)
		add("http_requests_total", map[string]string{"service": "api", "code": "500"}, 1.5*x, t)
		add("http_requests_total", map[string]string{"service": "web", "code": "200"}, 6*x, t)
		add("queue_depth", map[string]string{"service": "api"}, float64(i%8), t)
		add("queue_depth", map[string]string{"service": "web"}, float64(i%12), t)
		for _, b := range []struct {
			le  string
			inc float64
		}{{"0.1", 2}, {"0.5", 6}, {"1", 8}, {"+Inf", 10}} {
			add("request_seconds_bucket", map[string]string{"le": b.le, "service": "api"}, b.inc*x, t)
		}
		add("request_seconds_sum", map[string]string{"service": "api"}, 3*x, t)
		add("request_seconds_count", map[string]string{"service": "api"}, 10*x, t)
	}
	return out
}

func (f metricsFixture) remoteWrite() *prompb.WriteRequest {
	req := &prompb.WriteRequest{}
	for _, inst := range []struct {
		name string
		inc  float64
	}{{"i1", 1}, {"i2", 2}} {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "rw_jobs_total"}, {Name: "instance", Value: inst.name}, {Name: "job", Value: "batch"}}}
		for i := 0; i < metricSteps; i++ {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: f.at(i).UnixMilli(), Value: inst.inc * float64(i)})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	return req
}

// postRemoteWrite sends req as Prometheus does and returns the status and body.
func postRemoteWrite(t testing.TB, s *server, req *prompb.WriteRequest) (int, string) {
	t.Helper()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequest(http.MethodPost, "http://"+s.httpAddr+"/api/v1/write", bytes.NewReader(s2.EncodeSnappy(nil, raw)))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func promClient(t testing.TB, s *server) v1.API {
	t.Helper()
	c, err := api.NewClient(api.Config{Address: "http://" + s.httpAddr})
	if err != nil {
		t.Fatal(err)
	}
	return v1.NewAPI(c)
}

// vectorBy runs an instant query and returns its values by the given label.
func vectorBy(t testing.TB, p v1.API, q string, ts time.Time, label string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, _, _, err := p.Query(ctx, q, ts)
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	vec, ok := v.(pmodel.Vector)
	if !ok {
		t.Fatalf("query %s: %s, want a vector", q, v.Type())
	}
	out := map[string]float64{}
	for _, smp := range vec {
		out[string(smp.Metric[pmodel.LabelName(label)])] = float64(smp.Value)
	}
	return out
}

func near(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want))
}

func checkNear(t testing.TB, what string, got map[string]float64, want map[string]float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !near(g, w) {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}
}

// pushLogs stores n lines of level for service checkout, deploy d7.
func pushLogs(t testing.TB, s *server, level string, n int) {
	t.Helper()
	b := &shiplogv1.PushRequest{Defaults: &shiplogv1.Record{Service: "checkout", Host: "h1", DeployId: "d7"}}
	for i := 0; i < n; i++ {
		b.Records = append(b.Records, &shiplogv1.Record{Level: level, Message: fmt.Sprintf("%s line %d", level, i)})
	}
	pushAll(t, s.dial(t), []*shiplogv1.PushRequest{b})
}

func TestMetrics(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, dir)
	f := metricsFixture{end: time.Now().Add(-time.Minute).Truncate(time.Second)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	mc := shiplogv1.NewMetricsServiceClient(s.dial(t))
	resp, err := mc.Push(ctx, &shiplogv1.PushMetricsRequest{Samples: f.grpcSamples()})
	if err != nil {
		t.Fatal(err)
	}
	if want := uint32(metricSteps * 11); resp.Accepted != want {
		t.Fatalf("accepted %d, want %d", resp.Accepted, want)
	}
	if code, body := postRemoteWrite(t, s, f.remoteWrite()); code != http.StatusNoContent {
		t.Fatalf("remote write: %d %s", code, body)
	}
	pushLogs(t, s, "error", 37)
	pushLogs(t, s, "info", 50)

	p := promClient(t, s)
	check := func(when string) {
		t.Run(when, func(t *testing.T) {
			checkNear(t, "rate by service", vectorBy(t, p, `sum by (service) (rate(http_requests_total[5m]))`, f.end, "service"),
				map[string]float64{"api": 0.3, "web": 0.4})
			checkNear(t, "error ratio", vectorBy(t, p, `sum by (service) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (service) (rate(http_requests_total[5m]))`, f.end, "service"),
				map[string]float64{"api": 1.0 / 3})
			checkNear(t, "gauge", vectorBy(t, p, `queue_depth`, f.end, "service"), map[string]float64{"api": float64((metricSteps - 1) % 8), "web": float64((metricSteps - 1) % 12)})
			checkNear(t, "histogram_quantile", vectorBy(t, p, `histogram_quantile(0.5, sum by (le) (rate(request_seconds_bucket[5m])))`, f.end, ""),
				map[string]float64{"": 0.4})
			checkNear(t, "mean from _sum/_count", vectorBy(t, p, `rate(request_seconds_sum[5m]) / rate(request_seconds_count[5m])`, f.end, "service"),
				map[string]float64{"api": 0.3})
			checkNear(t, "remote write", vectorBy(t, p, `sum by (job) (rate(rw_jobs_total[5m]))`, f.end, "job"), map[string]float64{"batch": 0.2})

			// query_range with a step.
			v, _, _, err := p.QueryRange(ctx, `sum by (service) (rate(http_requests_total[2m]))`,
				v1.Range{Start: f.end.Add(-5 * time.Minute), End: f.end, Step: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			m, ok := v.(pmodel.Matrix)
			if !ok || len(m) != 2 {
				t.Fatalf("query_range: %v", v)
			}
			for _, ss := range m {
				want := map[string]float64{"api": 0.3, "web": 0.4}[string(ss.Metric["service"])]
				if len(ss.Values) != 6 {
					t.Fatalf("query_range %s: %d points, want 6", ss.Metric, len(ss.Values))
				}
				for i, pt := range ss.Values {
					if !pt.Timestamp.Time().Equal(f.end.Add(time.Duration(i-5) * time.Minute)) {
						t.Fatalf("point %d at %s", i, pt.Timestamp.Time())
					}
					if !near(float64(pt.Value), want) {
						t.Fatalf("query_range %s point %d = %v, want %v", ss.Metric, i, pt.Value, want)
					}
				}
			}

			// Labels and series.
			vals, _, _, err := p.LabelValues(ctx, "service", []string{"http_requests_total"}, time.Time{}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(vals) != "[api web]" {
				t.Fatalf("label values: %v", vals)
			}
			names, _, _, err := p.LabelNames(ctx, []string{"rw_jobs_total"}, f.end.Add(-time.Hour), f.end)
			if err != nil {
				t.Fatal(err)
			}
			if names.String() != "__name__, instance, job" {
				t.Fatalf("label names: %v", names)
			}
			series, _, _, err := p.Series(ctx, []string{`{__name__=~"http_requests_total|queue_depth"}`}, f.end.Add(-time.Hour), f.end)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ls := range series {
				got = append(got, ls.String())
			}
			sort.Strings(got)
			want := []string{
				`{__name__="http_requests_total", code="200", service="api"}`, `{__name__="http_requests_total", code="200", service="web"}`,
				`{__name__="http_requests_total", code="500", service="api"}`, `{__name__="queue_depth", service="api"}`, `{__name__="queue_depth", service="web"}`,
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("series:\n%v\nwant\n%v", got, want)
			}
		})
	}
	check("before restart")

	// shiplog_log_lines_total counts stored log lines; it is written every 10 s.
	logLines := func(level string) float64 {
		t.Helper()
		got := vectorBy(t, p, `shiplog_log_lines_total{service="checkout", level="`+level+`", deploy_id="d7"}`, time.Now(), "level")
		return got[level]
	}
	deadline := time.Now().Add(30 * time.Second)
	for logLines("error") != 37 {
		if time.Now().After(deadline) {
			t.Fatalf("shiplog_log_lines_total{level=error} = %v after 30s, want 37", logLines("error"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := logLines("info"); got != 50 {
		t.Fatalf("info lines %v, want 50", got)
	}
	if got := vectorBy(t, p, `sum by (service) (increase(shiplog_log_lines_total{level="error"}[5m])) > 0`, time.Now(), "service"); got["checkout"] < 30 {
		t.Fatalf("increase of error lines: %v", got)
	}

	// A crash: the metrics WAL brings back what was not sealed.
	s.kill()
	s.restart()
	p = promClient(t, s)
	check("after kill -9")

	// More error lines, a clean stop (which writes the last counts), a restart:
	// the counter goes on from where it was.
	pushLogs(t, s, "error", 13)
	s.stop()
	s.restart()
	p = promClient(t, s)
	check("after SIGTERM")
	if got := logLines("error"); got != 50 {
		t.Fatalf("error lines after restart %v, want 50", got)
	}
}

func TestMetricsBadInput(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "data"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mc := shiplogv1.NewMetricsServiceClient(s.dial(t))
	now := time.Now()
	for _, c := range []struct {
		name   string
		sample *shiplogv1.Sample
		want   string
	}{
		{"bad metric name", &shiplogv1.Sample{Name: "http-requests", Value: 1}, "metric name"},
		{"empty name", &shiplogv1.Sample{Value: 1}, "name is empty"},
		{"bad label name", &shiplogv1.Sample{Name: "x", Labels: map[string]string{"a-b": "1"}, Value: 1}, "label name"},
		{"reserved label name", &shiplogv1.Sample{Name: "x", Labels: map[string]string{"__x": "1"}, Value: 1}, "reserved"},
		{"far future", &shiplogv1.Sample{Name: "x", Value: 1, Time: timestamppb.New(now.Add(48 * time.Hour))}, "ahead"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := mc.Push(ctx, &shiplogv1.PushMetricsRequest{Samples: []*shiplogv1.Sample{c.sample}})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want InvalidArgument about %q", err, c.want)
			}
		})
	}

	// NaN and ±Inf are values like any other.
	if _, err := mc.Push(ctx, &shiplogv1.PushMetricsRequest{Samples: []*shiplogv1.Sample{
		{Name: "odd", Labels: map[string]string{"k": "nan"}, Value: math.NaN()},
		{Name: "odd", Labels: map[string]string{"k": "inf"}, Value: math.Inf(1)},
		{Name: "odd", Labels: map[string]string{"k": "-inf"}, Value: math.Inf(-1)},
	}}); err != nil {
		t.Fatal(err)
	}
	p := promClient(t, s)
	v, _, _, err := p.Query(ctx, "odd", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, smp := range v.(pmodel.Vector) {
		got[string(smp.Metric["k"])] = smp.Value.String()
	}
	if got["nan"] != "NaN" || got["inf"] != "+Inf" || got["-inf"] != "-Inf" {
		t.Fatalf("special values: %v", got)
	}

	// Remote write with a bad name: 400 in Prometheus' error format.
	code, body := postRemoteWrite(t, s, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "bad name"}},
		Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: 1}},
	}}})
	var perr struct{ Status, ErrorType, Error string }
	if err := json.Unmarshal([]byte(body), &perr); err != nil || code != 400 || perr.Status != "error" || perr.ErrorType != "bad_data" || !strings.Contains(perr.Error, "metric name") {
		t.Fatalf("remote write with a bad name: %d %s", code, body)
	}
	code, body = postRemoteWrite(t, s, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "x"}},
		Samples: []prompb.Sample{{Timestamp: now.Add(time.Hour).UnixMilli(), Value: 1}},
	}}})
	if code != 400 || !strings.Contains(body, "bad_data") {
		t.Fatalf("remote write from the future: %d %s", code, body)
	}
	resp, err := http.Post("http://"+s.httpAddr+"/api/v1/write", "application/x-protobuf", strings.NewReader("not snappy"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"errorType":"bad_data"`) {
		t.Fatalf("garbage remote write: %d %s", resp.StatusCode, b)
	}

	// A bad PromQL expression, a bad step, too many points: bad_data.
	var apiErr *v1.Error
	if _, _, _, err := p.Query(ctx, "sum(rate(x[5m]", time.Now()); !errors.As(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Fatalf("bad expression: %v", err)
	}
	if _, _, _, err := p.QueryRange(ctx, "odd", v1.Range{Start: now.Add(-24 * time.Hour), End: now, Step: time.Second}); !errors.As(err, &apiErr) || apiErr.Type != v1.ErrBadData || !strings.Contains(apiErr.Msg, "11000 points") {
		t.Fatalf("too many points: %v", err)
	}
	if _, _, _, err := p.Series(ctx, []string{`{k=""}`}, now.Add(-time.Hour), now); !errors.As(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Fatalf("series with only empty matchers: %v", err)
	}
}

// TestRemoteWriteNativeHistograms: Prometheus with send_native_histograms
// sends native histograms next to floats in one batch; both are stored and
// PromQL answers over them. An invalid histogram is dropped with a 400 that
// says so, and the rest of its batch is stored.
func TestRemoteWriteNativeHistograms(t *testing.T) {
	s := startServer(t, filepath.Join(t.TempDir(), "data"))
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	at := func(i int) int64 { return end.Add(-time.Duration(metricSteps-1-i) * metricStep).UnixMilli() }
	lat := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "rw_latency_seconds"}, {Name: "job", Value: "api"}}}
	fl := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "rw_float_hist"}, {Name: "job", Value: "api"}}}
	up := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "rw_up"}, {Name: "job", Value: "api"}}}
	for i := 0; i < metricSteps; i++ {
		// 10 observations a step: 4 in (0.5, 1], 6 in (1, 2] (schema 0).
		n := uint64(i)
		h := &histogram.Histogram{
			Schema: 0, Count: 10 * n, Sum: 13 * float64(n),
			PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
			PositiveBuckets: []int64{4 * int64(n), 2 * int64(n)},
		}
		lat.Histograms = append(lat.Histograms, prompb.FromIntHistogram(at(i), h))
		fl.Histograms = append(fl.Histograms, prompb.FromFloatHistogram(at(i), h.ToFloat(nil)))
		up.Samples = append(up.Samples, prompb.Sample{Timestamp: at(i), Value: 1})
	}
	if code, body := postRemoteWrite(t, s, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{lat, up, fl}}); code != http.StatusNoContent {
		t.Fatalf("remote write with native histograms: %d %s", code, body)
	}
	p := promClient(t, s)
	for q, want := range map[string]float64{
		`histogram_count(rw_latency_seconds)`:                    10 * (metricSteps - 1),
		`histogram_sum(rw_float_hist)`:                           13 * (metricSteps - 1),
		`histogram_count(rate(rw_latency_seconds[5m]))`:          10 / metricStep.Seconds(),
		`histogram_fraction(0, 1, rate(rw_latency_seconds[5m]))`: 0.4,
		`rw_up`: 1,
	} {
		checkNear(t, q, vectorBy(t, p, q, end, "job"), map[string]float64{"api": want})
	}

	// The raw histogram, in the Prometheus API's JSON.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, _, _, err := p.Query(ctx, "rw_latency_seconds", end)
	if err != nil {
		t.Fatal(err)
	}
	if vec, ok := v.(pmodel.Vector); !ok || len(vec) != 1 || vec[0].Histogram == nil || float64(vec[0].Histogram.Count) != 10*(metricSteps-1) || len(vec[0].Histogram.Buckets) != 2 {
		t.Fatalf("rw_latency_seconds: %v", v)
	}

	// An invalid histogram (its buckets do not add up to its count): 400,
	// and the floats beside it are stored.
	bad := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "rw_bad_hist"}}, Histograms: []prompb.Histogram{
		prompb.FromIntHistogram(end.UnixMilli(), &histogram.Histogram{Count: 1, PositiveSpans: []histogram.Span{{Length: 1}}, PositiveBuckets: []int64{5}}),
	}}
	more := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "rw_more"}, {Name: "job", Value: "api"}}, Samples: []prompb.Sample{{Timestamp: end.UnixMilli(), Value: 7}}}
	code, body := postRemoteWrite(t, s, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{bad, more}})
	if code != http.StatusBadRequest || !strings.Contains(body, "native histogram") {
		t.Fatalf("remote write with an invalid histogram: %d %s", code, body)
	}
	checkNear(t, "rw_more", vectorBy(t, p, "rw_more", end, "job"), map[string]float64{"api": 7})
}

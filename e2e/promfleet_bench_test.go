package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/prometheus/prometheus/prompb"
)

// BenchmarkFleetQueryHTTP is issue 22's comparison as the issue made it: the
// fleet data set (1,000 counters and 1,000 gauges, 24 h at 15 s, 11.52 M
// samples; metrics/fleet_bench_test.go has the same in process) sent by
// remote write to the built shiplog server and, when `prometheus` is on the
// PATH (Debian's 2.42: apt install prometheus), to a Prometheus server in the
// same run; then each query of the table over the HTTP API of both.
// Instant queries are evaluated 7 s after the last samples: Prometheus 2.x's
// range windows include their left edge and 3.x's (shiplog's engine) do not,
// so at a sample-aligned time the two would rightly differ (docs/metrics.md).
// The answers must agree; each query reports the server's CPU per query
// (from /proc, steadier than the wall clock on a shared machine).
func BenchmarkFleetQueryHTTP(b *testing.B) {
	end := time.Date(2026, 6, 1, 2, 50, 0, 0, time.UTC)
	reqs := fleetWriteRequests(b, end)
	type target struct {
		name, base string
		pid        int
	}
	s := startServer(b, filepath.Join(b.TempDir(), "data"))
	targets := []target{{"shiplog", "http://" + s.httpAddr, s.cmd.Process.Pid}}
	if path, err := exec.LookPath("prometheus"); err == nil {
		addr, pid := startPrometheus(b, path)
		targets = append(targets, target{"prometheus", "http://" + addr, pid})
	} else {
		b.Log("prometheus not on the PATH: shiplog alone")
	}
	for _, tg := range targets {
		t0 := time.Now()
		for _, body := range reqs {
			resp, err := http.Post(tg.base+"/api/v1/write", "application/x-protobuf", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				b.Fatalf("%s: remote write: %d %s", tg.name, resp.StatusCode, msg)
			}
		}
		b.Logf("%s: remote write of 11.52 M samples in %v", tg.name, time.Since(t0).Round(time.Millisecond))
	}
	at := end.Add(7 * time.Second)
	queries := []struct{ name, path string }{
		{"sum_rate", "/api/v1/query?" + url.Values{"query": {`sum by (service) (rate(http_requests_total[5m]))`}, "time": {fmt.Sprint(at.Unix())}}.Encode()},
		{"topk_rate", "/api/v1/query?" + url.Values{"query": {`topk(5, sum by (instance) (rate(http_requests_total[5m])))`}, "time": {fmt.Sprint(at.Unix())}}.Encode()},
		{"count_all", "/api/v1/query?" + url.Values{"query": {`count({__name__=~".+"})`}, "time": {fmt.Sprint(at.Unix())}}.Encode()},
		{"sum_avg_over_time", "/api/v1/query?" + url.Values{"query": {`sum by (service) (avg_over_time(queue_depth[1h]))`}, "time": {fmt.Sprint(at.Unix())}}.Encode()},
		{"range_max_over_time", "/api/v1/query_range?" + url.Values{"query": {`max by (queue) (max_over_time(queue_depth[1h]))`},
			"start": {fmt.Sprint(end.Add(-24*time.Hour + 7*time.Second).Unix())}, "end": {fmt.Sprint(at.Unix())}, "step": {"60"}}.Encode()},
	}
	for _, q := range queries {
		var answers []string
		for _, tg := range targets {
			answers = append(answers, promAnswer(b, tg.base+q.path))
		}
		if len(answers) == 2 {
			if err := sameAnswers(answers[0], answers[1]); err != nil {
				b.Fatalf("%s: shiplog and Prometheus differ: %v", q.name, err)
			}
		}
		for _, tg := range targets {
			b.Run(q.name+"/"+tg.name, func(b *testing.B) {
				cpu0, _ := procCPUTime(tg.pid)
				for i := 0; i < b.N; i++ {
					promAnswer(b, tg.base+q.path)
				}
				cpu1, _ := procCPUTime(tg.pid)
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/1000/float64(b.N), "server-cpu-ms/op")
			})
		}
	}
}

// fleetWriteRequests is the data set as snappy remote-write requests of 2
// samples of every series each, in time order (the generator of
// metrics/fleet_bench_test.go).
func fleetWriteRequests(tb testing.TB, end time.Time) [][]byte {
	const series, steps, interval = 1000, 5760, 15 * time.Second
	var ls [][]prompb.Label
	for i := 0; i < series; i++ {
		ls = append(ls, []prompb.Label{{Name: "__name__", Value: "http_requests_total"},
			{Name: "instance", Value: fmt.Sprintf("i%02d", i%50)}, {Name: "service", Value: fmt.Sprintf("s%02d", i/50)}})
	}
	for i := 0; i < series; i++ {
		ls = append(ls, []prompb.Label{{Name: "__name__", Value: "queue_depth"},
			{Name: "instance", Value: fmt.Sprintf("i%02d", i%50)}, {Name: "queue", Value: fmt.Sprintf("q%d", i%10)}, {Name: "service", Value: fmt.Sprintf("s%02d", i/50)}})
	}
	rng := rand.New(rand.NewPCG(22, 22))
	vals := make([]float64, len(ls))
	start := end.Add(-time.Duration(steps-1) * interval)
	var out [][]byte
	for k := 0; k < steps; k += 2 {
		wr := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, len(ls))}
		for i := range ls {
			ts := prompb.TimeSeries{Labels: ls[i]}
			for j := k; j < min(k+2, steps); j++ {
				if i < series {
					vals[i] += float64(rng.IntN(20))
				} else {
					vals[i] = float64(rng.IntN(500))
				}
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: start.Add(time.Duration(j) * interval).UnixMilli(), Value: vals[i]})
			}
			wr.Timeseries[i] = ts
		}
		raw, err := wr.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, s2.EncodeSnappy(nil, raw))
	}
	return out
}

// startPrometheus starts a Prometheus server with the remote-write receiver
// on a free loopback port and returns its address and pid.
func startPrometheus(tb testing.TB, path string) (string, int) {
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global: {}\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	prom := startPromProcess(tb, path, "--config.file", cfg, "--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:0", "--web.enable-remote-write-receiver")
	addr := prom.addr
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr, prom.cmd.Process.Pid
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("prometheus not ready after 30s:\n%s", prom.logText())
		}
	}
}

// promAnswer runs one query and returns its data.result, each series on a
// line with its values, sorted.
func promAnswer(tb testing.TB, u string) string {
	resp, err := http.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
				Values [][]any           `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		tb.Fatalf("%s: %v %s %s", u, err, body.Status, body.Error)
	}
	var lines []string
	for _, r := range body.Data.Result {
		keys := make([]string, 0, len(r.Metric))
		for k, v := range r.Metric {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		line := strings.Join(keys, ",") + " =>"
		if r.Value != nil {
			r.Values = append(r.Values, r.Value)
		}
		for _, p := range r.Values {
			line += fmt.Sprintf(" %v@%v", p[1], p[0])
		}
		lines = append(lines, line)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// sameAnswers compares two promAnswer texts, values within 1e-9 relative.
func sameAnswers(a, b string) error {
	fa, fb := strings.Fields(a), strings.Fields(b)
	if len(fa) != len(fb) || len(fa) == 0 {
		return fmt.Errorf("%d fields against %d:\n%.400s\n--\n%.400s", len(fa), len(fb), a, b)
	}
	for i := range fa {
		if fa[i] == fb[i] {
			continue
		}
		va, ta, _ := strings.Cut(fa[i], "@")
		vb, tb, _ := strings.Cut(fb[i], "@")
		x, err1 := strconv.ParseFloat(va, 64)
		y, err2 := strconv.ParseFloat(vb, 64)
		if ta != tb || err1 != nil || err2 != nil || math.Abs(x-y) > 1e-9*math.Max(math.Abs(x), math.Abs(y)) {
			return fmt.Errorf("%q against %q", fa[i], fb[i])
		}
	}
	return nil
}

// procCPUTime is utime+stime of pid (/proc/PID/stat, clock ticks of 10 ms).
func procCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	prommodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
)

// TestRealPrometheus runs Debian's Prometheus (2.x) against shiplog: it
// scrapes shiplog's /federate and reads shiplog through remote_read, and
// its own query API answers with shiplog's samples both ways.
func TestRealPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (make deps)")
	}
	s := startServer(t, t.TempDir())
	now := time.Now().Add(-20 * time.Second)
	code, body := postRemoteWrite(t, s, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "fed_temp"}, {Name: "room", Value: "lab"}},
		Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: 21.5}},
	}, {
		Labels:  []prompb.Label{{Name: "__name__", Value: "remote_only"}, {Name: "room", Value: "attic"}},
		Samples: []prompb.Sample{{Timestamp: now.Add(-time.Minute).UnixMilli(), Value: 4}, {Timestamp: now.UnixMilli(), Value: 5}},
	}}})
	if code != 204 {
		t.Fatalf("remote write: %d %s", code, body)
	}

	dir := t.TempDir()
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: shiplog-federate
    honor_labels: true
    metrics_path: /federate
    params: {'match[]': ['{__name__="fed_temp"}']}
    static_configs: [{targets: ['%s']}]
remote_read:
  - url: http://%s/api/v1/read
    read_recent: true
`, s.httpAddr, s.httpAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := startPromProcess(t, bin, "--config.file", filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:0")
	promAddr, promLog := prom.addr, prom.logText

	c, err := api.NewClient(api.Config{Address: "http://" + promAddr})
	if err != nil {
		t.Fatal(err)
	}
	p := v1.NewAPI(c)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + promAddr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready\n%s", promLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Remote read: a series only shiplog has, over a range.
	ctx := context.Background()
	v, _, _, err := p.QueryRange(ctx, `remote_only{room="attic"}`, v1.Range{Start: now.Add(-2 * time.Minute), End: now, Step: time.Minute})
	if err != nil {
		t.Fatalf("remote read through prometheus: %v\n%s", err, promLog())
	}
	if m, ok := v.(prommodel.Matrix); !ok || len(m) != 1 || len(m[0].Values) == 0 || m[0].Values[len(m[0].Values)-1].Value != 5 {
		t.Errorf("remote read through prometheus: %v", v)
	}
	// Federation: the scraped sample, with the scrape's job.
	for {
		v, _, _, err := p.Query(ctx, `fed_temp{room="lab",job="shiplog-federate"}`, time.Now())
		if vec, ok := v.(prommodel.Vector); err == nil && ok && len(vec) == 1 && vec[0].Value == 21.5 {
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("federated sample not in prometheus: %v %v\n%s", v, err, promLog())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

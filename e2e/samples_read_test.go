package e2e

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// --query-max-samples-read bounds what one PromQL query loads from the
// store: 40 series of 10 samples answer under 1,000 and are refused (422,
// naming the bound) under 100; count() needs no bound on series.
func TestQueryMaxSamplesReadFlag(t *testing.T) {
	now := time.Now().Add(-time.Minute).Truncate(time.Second)
	req := &prompb.WriteRequest{}
	for i := 0; i < 40; i++ {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "read_bound"}, {Name: "i", Value: string(rune('a'+i%26)) + string(rune('a'+i/26))}}}
		for j := 0; j < 10; j++ {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: now.Add(time.Duration(j-10) * time.Second).UnixMilli(), Value: float64(j)})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	for _, c := range []struct {
		bound string
		ok    bool
	}{{"1000", true}, {"100", false}} {
		s := startServer(t, t.TempDir(), "--query-max-samples-read", c.bound)
		if code, body := postRemoteWrite(t, s, req); code != 204 {
			t.Fatalf("write: %d %s", code, body)
		}
		if c.ok {
			waitPromValue(t, s, `count(read_bound)`, "40")
			continue
		}
		var e struct{ Status, ErrorType, Error string }
		code, body := s.getJSON(t, "/api/v1/query", url.Values{"query": {"sum(count_over_time(read_bound[5m]))"}}, &e)
		_ = json.Unmarshal([]byte(body), &e)
		if code != 422 || !strings.Contains(e.Error, "more than 100 stored samples") {
			t.Fatalf("--query-max-samples-read 100: %d %s", code, body)
		}
	}
}

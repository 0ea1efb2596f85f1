package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPromQLHostileQueries: queries whose points would take the server's
// memory (on the old engine max_over_time(vector(1)[10000d:1ms]) ran the
// process out of memory) are refused before evaluation with Prometheus'
// error JSON, the server stays up and its peak RSS stays small.
func TestPromQLHostileQueries(t *testing.T) {
	s := startServer(t, t.TempDir())
	hc := &http.Client{Timeout: 60 * time.Second}
	now := time.Now()
	sec := func(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64) }
	cases := []struct {
		path   string
		params url.Values
		code   int
		typ    string
		want   string // in the error
	}{
		{"/api/v1/query", url.Values{"query": {`max_over_time(vector(1)[10000d:1ms])`}}, 422, "execution", "--query-max-samples"},
		{"/api/v1/query", url.Values{"query": {`sum_over_time((max_over_time(vector(1)[1d:1s]))[1d:1s])`}}, 422, "execution", "points"},
		{"/api/v1/query", url.Values{"query": {`max_over_time(max_over_time(max_over_time(vector(1)[6h:1s])[6h:1s])[6h:1s])`}}, 422, "execution", "points"},
		{"/api/v1/query", url.Values{"query": {`rate(x[100000d])`}}, 422, "execution", "[100000d]"},
		{"/api/v1/query", url.Values{"query": {`count_over_time(up[1y:1s])`}}, 422, "execution", "[1y:1s]"},
		{"/api/v1/query", url.Values{"query": {`max_over_time(vector(1)[1y:1s])`}}, 422, "execution", "[1y:1s]"},
		{"/api/v1/query", url.Values{"query": {`vector(1)[5000d:1ms]`}}, 422, "execution", "points"},
		{"/api/v1/query", url.Values{"query": {`sum(rate(x[5m])) + max_over_time(vector(1)[1000d:10ms])`}}, 422, "execution", "[1000d:10ms]"},
		{"/api/v1/query", url.Values{"query": {`avg_over_time(x[300d:1s] @ 0 offset -1d)`}}, 422, "execution", "points"},
		{"/api/v1/query_range", url.Values{"query": {`vector(1)`}, "start": {sec(now.Add(-240 * time.Hour))}, "end": {sec(now)}, "step": {"0.001"}}, 400, "bad_data", "resolution"},
		{"/api/v1/query_range", url.Values{"query": {`max_over_time(vector(1)[1d:1s])`}, "start": {sec(now.Add(-24 * time.Hour))}, "end": {sec(now)}, "step": {"10"}}, 422, "execution", "[1d:1s]"},
		{"/api/v1/query_range", url.Values{"query": {`max_over_time(vector(1)[100d:])`}, "start": {sec(now.Add(-7 * 24 * time.Hour))}, "end": {sec(now)}, "step": {"60"}}, 422, "execution", "[100d:1m]"},
	}
	for _, c := range cases {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			var resp *http.Response
			var err error
			u := "http://" + s.httpAddr + c.path
			if method == http.MethodGet {
				resp, err = hc.Get(u + "?" + c.params.Encode())
			} else {
				resp, err = hc.PostForm(u, c.params)
			}
			if err != nil {
				t.Fatalf("%s %s: %v (server alive: %v)", method, c.params.Get("query"), err, procStatusKB(s.pid(), "VmRSS") > 0)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct{ Status, ErrorType, Error string }
			_ = json.Unmarshal(body, &e)
			if resp.StatusCode != c.code || e.Status != "error" || e.ErrorType != c.typ || !strings.Contains(e.Error, c.want) {
				t.Errorf("%s %s %s: %d %s; want %d %s with %q", method, c.path, c.params.Get("query"), resp.StatusCode, body, c.code, c.typ, c.want)
			}
		}
	}
	// Everyday queries still answer.
	for _, q := range []string{`vector(1)`, `max_over_time(vector(1)[1d:1m])`, `rate(x[1y])`} {
		code, body := s.getJSON(t, "/api/v1/query", url.Values{"query": {q}}, nil)
		if code != 200 {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
	if code, _ := s.getJSON(t, "/readyz", nil, nil); code != 200 {
		t.Fatalf("server not ready after the hostile queries: %d", code)
	}
	hwm := procStatusKB(s.pid(), "VmHWM")
	t.Logf("peak RSS after %d hostile queries: %d MB", 2*len(cases), hwm/1024)
	if hwm > 500*1024 {
		t.Errorf("peak RSS %d MB, want under 500 MB", hwm/1024)
	}
}

package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/shiplog/shiplog/model"
)

// grafanaRecords: an hour of lines of two services on three hosts, at times
// off the minute grid.
func grafanaRecords(t0 time.Time, n int) []model.Record {
	lvs := []model.Level{model.LevelInfo, model.LevelInfo, model.LevelWarn, model.LevelError, model.LevelDebug}
	msgs := []string{"request served in %d ms", "cache miss for key %d", "deadlock detected, retry %d", "connection refused to db-1:5432 (attempt %d)", "GET /v1/users %d"}
	out := make([]model.Record, n)
	for i := range out {
		svc := []string{"api", "web"}[i%2]
		out[i] = model.Record{
			Labels:  model.Labels{Service: svc, Host: fmt.Sprintf("%s-%d", svc, i%3), DeployID: "deploy-7"},
			Time:    t0.Add(time.Duration(i)*(time.Hour/time.Duration(n)) + 7*time.Millisecond).UnixNano(),
			Level:   lvs[(i/2)%len(lvs)],
			Message: fmt.Sprintf(msgs[(i/3)%len(msgs)], i),
			Attrs:   []model.Attr{{Key: "status", Value: strconv.Itoa([]int{200, 200, 404, 500}[(i/5)%4])}},
		}
	}
	return out
}

type lokiResp struct {
	Status string `json:"status"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Stream map[string]string `json:"stream"`
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
		Stats map[string]any `json:"stats"`
	} `json:"data"`
}

func decodeLoki(t *testing.T, code int, body []byte) lokiResp {
	t.Helper()
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var r lokiResp
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if r.Status != "success" || r.Data.Stats["summary"] == nil {
		t.Fatalf("not a Loki success with stats: %s", body)
	}
	return r
}

// TestLokiGrafana drives the API as Grafana's Loki data source does (its
// parameters for Explore, the logs volume histogram and a dashboard panel, in
// a POST form too, with Basic auth) and checks the answers against
// /v1/logs:search and /v1/logs:histogram on the same data.
func TestLokiGrafana(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	yaml := "tokens:\n  - {name: grafana, scopes: [query], sha256: " + TokenSHA256("q-token") + "}\n" +
		"  - {name: agent, scopes: [ingest], sha256: " + TokenSHA256("i-token") + "}\n"
	if err := os.WriteFile(authFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := LoadAuthFile(authFile)
	if err != nil {
		t.Fatal(err)
	}
	rig := newLokiRig(t, auth)
	t0 := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	recs := grafanaRecords(t0, 3000)
	rig.ingest(t, recs)
	start, end := t0.UnixNano(), t0.Add(time.Hour).UnixNano()

	t.Run("auth", func(t *testing.T) { lokiGrafanaAuth(t, rig, start, end) })
	rig.token = "q-token"
	t.Run("explore_logs", func(t *testing.T) { lokiGrafanaExploreLogs(t, rig, start, end) })
	t.Run("logs_volume", func(t *testing.T) { lokiGrafanaLogsVolume(t, rig, start, end) })
	t.Run("histograms_agree_with_reading_lines", func(t *testing.T) { lokiGrafanaHistogramsAgreeWithReadingLines(t, rig, start, end) })
	t.Run("stats_agree_with_reading_lines", func(t *testing.T) { lokiGrafanaStatsAgreeWithReadingLines(t, rig, start, end) })
	t.Run("dashboard_panel", func(t *testing.T) { lokiGrafanaDashboardPanel(t, rig, start, end) })
	t.Run("tail", func(t *testing.T) { lokiGrafanaTail(t, rig, start, end) })
}

func lokiGrafanaAuth(t *testing.T, rig *lokiRig, start, end int64) {
	if code, _ := rig.get(t, "/loki/api/v1/labels"); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	rig.token = "i-token"
	if code, _ := rig.get(t, "/loki/api/v1/labels"); code != http.StatusForbidden {
		t.Fatalf("ingest token: %d", code)
	}
	rig.token = ""
	if code, body := rig.get(t, "/ready"); code != http.StatusOK || strings.TrimSpace(string(body)) != "ready" {
		t.Fatalf("/ready: %d %s", code, body)
	}
	rig.token = "q-token"
	code, body := rig.get(t, "/loki/api/v1/status/buildinfo")
	var bi map[string]string
	if err := json.Unmarshal(body, &bi); code != 200 || err != nil || bi["version"] == "" || bi["goVersion"] == "" {
		t.Fatalf("buildinfo: %d %s", code, body)
	}
}

func lokiGrafanaExploreLogs(t *testing.T, rig *lokiRig, start, end int64) {
	// Explore: backward, limit 1000, step as Go formats it, in a POST form.
	form := url.Values{"query": {`{service_name="api"} |= "deadlock"`}, "direction": {"backward"}, "limit": {"1000"},
		"start": {strconv.FormatInt(start, 10)}, "end": {strconv.FormatInt(end, 10)}, "step": {"2s"}}
	code, body := rig.do(t, http.MethodPost, rig.base+"/loki/api/v1/query_range", strings.NewReader(form.Encode()))
	r := decodeLoki(t, code, body)
	var got []string
	for _, s := range r.Data.Result {
		if s.Stream["service"] != "api" || s.Stream["level"] == "" {
			t.Fatalf("stream labels %v", s.Stream)
		}
		for _, v := range s.Values {
			got = append(got, v[0].(string)+" "+v[1].(string))
		}
	}
	want := rig.searchAll(t, `service:api /deadlock/`, start, end)
	sort.Strings(got)
	if len(got) == 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got %d lines, search has %d", len(got), len(want))
	}
}

func lokiGrafanaLogsVolume(t *testing.T, rig *lokiRig, start, end int64) {
	// Grafana's supplementary logs volume query.
	code, body := rig.get(t, "/loki/api/v1/query_range",
		"query", `sum by (level, detected_level) (count_over_time({service_name="api"} | drop __error__[1m]))`,
		"start", strconv.FormatInt(start, 10), "end", strconv.FormatInt(end, 10), "step", "1m0s")
	r := decodeLoki(t, code, body)
	if r.Data.ResultType != "matrix" || len(r.Data.Result) != 4 {
		t.Fatalf("want 4 level series: %s", body)
	}
	for _, s := range r.Data.Result {
		lv := s.Metric["level"]
		h := rig.histogram(t, "service:api level:"+lv, start, end, "1m")
		got := map[int64]int{}
		for _, v := range s.Values {
			n, _ := strconv.Atoi(v[1].(string))
			got[int64(v[0].(float64))*1e9-int64(time.Minute)] = n // the window ending at t
		}
		for b, c := range h {
			if got[b] != c {
				t.Fatalf("level %s at %s: %d, histogram %d", lv, time.Unix(0, b).UTC(), got[b], c)
			}
		}
	}
}

func lokiGrafanaHistogramsAgreeWithReadingLines(t *testing.T, rig *lokiRig, start, end int64) {
	// The first query is counted by histograms, the second (a label
	// filter every line passes) by reading every line: same answer.
	q := `max by (host) (count_over_time({service="web"} |= "e" %s [90s]))`
	at := func(q string) (string, float64) {
		code, body := rig.get(t, "/loki/api/v1/query_range", "query", q, "start", strconv.FormatInt(start+int64(3*time.Minute), 10),
			"end", strconv.FormatInt(end, 10), "step", "30s")
		r := decodeLoki(t, code, body)
		b, _ := json.Marshal(r.Data.Result)
		return string(b), r.Data.Stats["summary"].(map[string]any)["totalLinesProcessed"].(float64)
	}
	fast, fastRead := at(fmt.Sprintf(q, ""))
	slow, slowRead := at(fmt.Sprintf(q, `| host=~".*"`))
	if fastRead != 0 || slowRead == 0 {
		t.Fatalf("lines read: %v by histograms, %v by lines", fastRead, slowRead)
	}
	if fast != slow || len(fast) < 100 {
		t.Fatalf("histograms:\n%s\nlines:\n%s", fast, slow)
	}
}

func lokiGrafanaStatsAgreeWithReadingLines(t *testing.T, rig *lokiRig, start, end int64) {
	// Grouped by an attribute: counted by the engine's stats, or by
	// reading every line when a label filter follows.
	q := `sum by (status, level) (count_over_time({service="api"} |= "e" %s [2m]))`
	// A start off every grid (as Grafana's often is), a step that does
	// not divide the range; and an instant query.
	for _, params := range [][]string{
		{"/loki/api/v1/query_range", "start", strconv.FormatInt(start+1234567, 10), "end", strconv.FormatInt(end, 10), "step", "45"},
		{"/loki/api/v1/query", "time", strconv.FormatInt(end-7654321, 10)},
	} {
		at := func(q string) (string, float64) {
			code, body := rig.get(t, params[0], append([]string{"query", q}, params[1:]...)...)
			r := decodeLoki(t, code, body)
			b, _ := json.Marshal(r.Data.Result)
			return string(b), r.Data.Stats["summary"].(map[string]any)["totalLinesProcessed"].(float64)
		}
		fast, fastRead := at(fmt.Sprintf(q, ""))
		slow, _ := at(fmt.Sprintf(q, `| host=~".*"`))
		if fast != slow || !strings.Contains(fast, `"status":"404"`) || fastRead != 0 {
			t.Fatalf("%s: stats (%v lines read):\n%s\nlines:\n%s", params[0], fastRead, fast, slow)
		}
	}
}

func lokiGrafanaDashboardPanel(t *testing.T, rig *lokiRig, start, end int64) {
	// A time series panel: the error rate by service over 5m windows.
	code, body := rig.get(t, "/loki/api/v1/query_range",
		"query", `sum by (service) (count_over_time({service=~"api|web"} | status="500" [5m]))`,
		"start", strconv.FormatInt(start+int64(5*time.Minute), 10), "end", strconv.FormatInt(end, 10), "step", "300")
	r := decodeLoki(t, code, body)
	if len(r.Data.Result) != 2 {
		t.Fatalf("want 2 series: %s", body)
	}
	for _, s := range r.Data.Result {
		h := rig.histogram(t, "service:"+s.Metric["service"]+" status:500", start, end, "5m")
		for _, v := range s.Values {
			b := int64(v[0].(float64))*1e9 - int64(5*time.Minute)
			if n, _ := strconv.Atoi(v[1].(string)); n != h[b] {
				t.Fatalf("%v at %s: %d, histogram %d", s.Metric, time.Unix(0, b).UTC(), n, h[b])
			}
		}
	}
}

func lokiGrafanaTail(t *testing.T, rig *lokiRig, start, end int64) {
	u := "ws" + strings.TrimPrefix(rig.base, "http") + "/loki/api/v1/tail?" + url.Values{
		"query": {`{service="api"} |= "tailed"`}, "start": {strconv.FormatInt(time.Now().Add(-time.Minute).UnixNano(), 10)}}.Encode()
	h := http.Header{}
	h.Set("Authorization", "Basic "+basic("grafana", "q-token"))
	conn, resp, err := websocket.DefaultDialer.Dial(u, h)
	if err != nil {
		t.Fatalf("dial: %v %v", err, resp)
	}
	defer conn.Close()
	now := time.Now()
	rig.ingest(t, []model.Record{
		{Labels: model.Labels{Service: "api", Host: "h"}, Time: now.UnixNano(), Message: "tailed line one"},
		{Labels: model.Labels{Service: "web", Host: "h"}, Time: now.UnixNano(), Message: "tailed but another service"},
	})
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var msg struct {
		Streams []struct {
			Stream map[string]string `json:"stream"`
			Values [][2]string       `json:"values"`
		} `json:"streams"`
	}
	if err := conn.ReadJSON(&msg); err != nil {
		t.Fatal(err)
	}
	if len(msg.Streams) != 1 || msg.Streams[0].Stream["service"] != "api" || msg.Streams[0].Values[0][1] != "tailed line one" {
		t.Fatalf("tail message %+v", msg)
	}
}

func basic(user, pw string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	req.SetBasicAuth(user, pw)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// searchAll reads every match of a shiplog query from /v1/logs:search, as
// "time message" lines, sorted.
func (r *lokiRig) searchAll(t *testing.T, q string, start, end int64) []string {
	t.Helper()
	var out []string
	cursor := ""
	for {
		code, body := r.get(t, "/v1/logs:search", "q", q, "start", time.Unix(0, start).UTC().Format(time.RFC3339Nano),
			"end", time.Unix(0, end).UTC().Format(time.RFC3339Nano), "limit", "500", "cursor", cursor)
		if code != 200 {
			t.Fatalf("search: %d %s", code, body)
		}
		var res struct {
			Records []struct {
				Time    time.Time `json:"time"`
				Message string    `json:"message"`
			} `json:"records"`
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &res); err != nil {
			t.Fatal(err)
		}
		for _, rec := range res.Records {
			out = append(out, strconv.FormatInt(rec.Time.UnixNano(), 10)+" "+rec.Message)
		}
		if res.NextCursor == "" {
			break
		}
		cursor = res.NextCursor
	}
	sort.Strings(out)
	return out
}

// histogram reads /v1/logs:histogram: bucket start (ns) -> count.
func (r *lokiRig) histogram(t *testing.T, q string, start, end int64, step string) map[int64]int {
	t.Helper()
	code, body := r.get(t, "/v1/logs:histogram", "q", q, "start", time.Unix(0, start).UTC().Format(time.RFC3339Nano),
		"end", time.Unix(0, end).UTC().Format(time.RFC3339Nano), "step", step)
	if code != 200 {
		t.Fatalf("histogram: %d %s", code, body)
	}
	var res struct {
		Buckets []struct {
			Time  time.Time `json:"time"`
			Count int       `json:"count"`
		} `json:"buckets"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	out := map[int64]int{}
	total := 0
	for _, b := range res.Buckets {
		out[b.Time.UnixNano()] = b.Count
		total += b.Count
	}
	if total == 0 {
		t.Fatalf("histogram of %q is empty", q)
	}
	return out
}

package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// lokiRig is a real server (store, engine, hub, auth when given) on loopback.
type lokiRig struct {
	base  string
	core  Core
	token string
}

func newLokiRig(t testing.TB, auth *Auth) *lokiRig {
	t.Helper()
	st := openTestStore(t)
	hub := NewHub(DefaultHubOptions())
	core := Core{Ingest: ingest.New(TailSink{Next: st, Hub: hub}, ingest.DefaultOptions(), nil, nil),
		Backend: query.NewLocal(st, query.DefaultOptions()), Hub: hub}
	o := DefaultOptions()
	o.HTTPAddr, o.GRPCAddr, o.Auth = "127.0.0.1:0", "127.0.0.1:0", auth
	srv, err := New(core, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &lokiRig{base: "http://" + srv.HTTPAddr(), core: core}
}

func (r *lokiRig) ingest(t testing.TB, recs []model.Record) {
	t.Helper()
	res, err := r.core.Ingest.Ingest(context.Background(), &model.Batch{Records: recs})
	if err != nil || res.Accepted != len(recs) {
		t.Fatalf("ingest: %+v %v", res, err)
	}
}

// get answers path with the query parameters kv (name, value, ...).
func (r *lokiRig) get(t testing.TB, path string, kv ...string) (int, []byte) {
	t.Helper()
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	u := r.base + path
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	return r.do(t, http.MethodGet, u, nil)
}

func (r *lokiRig) do(t testing.TB, method, u string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("X-Scope-OrgID", "tenant-1")
	if r.token != "" {
		req.SetBasicAuth("grafana", r.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// goldenT0 is the start of the golden data: 2026-01-01T00:00:00Z.
var goldenT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// goldenRecords are the records every golden case reads.
func goldenRecords() []model.Record {
	at := func(s string) int64 { return goldenT0.Add(mustDur(s)).UnixNano() }
	api := model.Labels{Service: "api", Host: "web-1", BuildID: "build-1"}
	web := model.Labels{Service: "web", Host: "web-2"}
	return []model.Record{
		{Labels: api, Time: at("10s"), Level: model.LevelInfo, Message: `{"status":200,"path":"/users","latency_ms":12}`},
		{Labels: api, Time: at("20s"), Level: model.LevelError, Message: `{"status":500,"path":"/users","latency_ms":250}`},
		{Labels: api, Time: at("70s"), Level: model.LevelError, Message: "deadlock detected in tx 42", Attrs: []model.Attr{{Key: "status", Value: "500"}}},
		{Labels: api, Time: at("80s"), Level: model.LevelInfo, Message: `{"status":404,"path":"/orders","latency_ms":30}`},
		{Labels: web, Time: at("15s"), Level: model.LevelInfo, Message: "status=200 path=/ duration=3"},
		{Labels: web, Time: at("75s"), Level: model.LevelWarn, Message: "status=503 path=/cart duration=900"},
	}
}

func mustDur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// TestLokiGolden replays the request/response pairs of testdata/loki: each
// file holds cases of the form
//
//	# what the case shows
//	GET /loki/api/v1/...?params
//	200
//	{expected JSON}
//
// separated by blank lines. Times in the requests are the golden data's.
// The stats object of a result must be present; its numbers are not compared.
func TestLokiGolden(t *testing.T) {
	rig := newLokiRig(t, nil)
	rig.ingest(t, goldenRecords())
	files, err := filepath.Glob("testdata/loki/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		for _, c := range readGolden(t, f) {
			t.Run(filepath.Base(f)+"/"+c.name, func(t *testing.T) {
				method, target, _ := strings.Cut(c.request, " ")
				code, body := rig.do(t, method, rig.base+target, nil)
				if code != c.code {
					t.Fatalf("%s: status %d, want %d: %s", c.request, code, c.code, body)
				}
				checkGoldenJSON(t, c.request, body, c.want)
			})
		}
	}
}

type goldenCase struct {
	name, request string
	code          int
	want          string
}

func readGolden(t *testing.T, path string) []goldenCase {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []goldenCase
	var cur []string
	flush := func() {
		if len(cur) == 0 {
			return
		}
		var c goldenCase
		i := 0
		for ; i < len(cur) && strings.HasPrefix(cur[i], "#"); i++ {
			if c.name == "" {
				c.name = strings.TrimSpace(strings.TrimPrefix(cur[i], "#"))
			}
		}
		if len(cur) < i+2 {
			t.Fatalf("%s: incomplete case %q", path, cur)
		}
		c.request = cur[i]
		if c.code, err = strconv.Atoi(strings.TrimSpace(cur[i+1])); err != nil {
			t.Fatalf("%s: bad status line %q", path, cur[i+1])
		}
		c.want = strings.Join(cur[i+2:], "\n")
		out = append(out, c)
		cur = nil
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return out
}

// checkGoldenJSON compares got with want as JSON values, after checking and
// removing data.stats (whose numbers are timings) and, for errors, comparing
// only the code and whether the message holds want's message.
func checkGoldenJSON(t *testing.T, req string, got []byte, want string) {
	t.Helper()
	if strings.TrimSpace(want) == "" {
		return
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		if strings.TrimSpace(string(got)) == strings.TrimSpace(want) {
			return
		}
		t.Fatalf("%s: answer is not JSON: %q", req, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: golden answer is not JSON: %v\n%s", req, err, want)
	}
	if gm, ok := g.(map[string]any); ok {
		if msg, ok := gm["message"].(string); ok {
			wm := w.(map[string]any)
			if !strings.Contains(msg, wm["message"].(string)) || gm["code"] != wm["code"] {
				t.Fatalf("%s: error %s, want one with %s", req, got, want)
			}
			return
		}
		if d, ok := gm["data"].(map[string]any); ok {
			if _, has := d["stats"]; has {
				st, _ := d["stats"].(map[string]any)
				if _, ok := st["summary"]; !ok && d["resultType"] != "vector" {
					t.Fatalf("%s: stats without summary: %s", req, got)
				}
				delete(d, "stats")
			}
		}
	}
	if wm, ok := w.(map[string]any); ok {
		if d, ok := wm["data"].(map[string]any); ok {
			delete(d, "stats")
		}
	}
	if !reflect.DeepEqual(g, w) {
		gb, _ := json.Marshal(g)
		wb, _ := json.Marshal(w)
		t.Fatalf("%s:\n got  %s\n want %s", req, gb, wb)
	}
}

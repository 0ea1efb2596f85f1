package server

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// statsServer serves a real server over a store holding n lines a host on
// hosts web-0..web-(hosts-1), a tenth of them errors, each with latency_ms.
func statsServer(t *testing.T, auth *Auth, qo query.Options) (string, time.Time) {
	t.Helper()
	st := openAlertStore(t, t.TempDir())
	t0 := time.Now().Add(-time.Hour).Truncate(time.Minute)
	var recs []model.Record
	for h := range 4 {
		for i := range 100 * (h + 1) {
			lv := model.LevelInfo
			if i%10 == 0 {
				lv = model.LevelError
			}
			lat := fmt.Sprint(i)
			if i == 7 {
				lat = "slow"
			}
			recs = append(recs, model.Record{Time: t0.Add(time.Duration(i) * time.Second).UnixNano(), Level: lv, Message: "GET /x",
				Labels: model.Labels{Service: "api", Host: fmt.Sprintf("web-%d", h), DeployID: "deploy-1"},
				Attrs:  []model.Attr{{Key: "latency_ms", Value: lat}}})
		}
	}
	if _, err := st.Append(context.Background(), model.Batch{Records: recs}); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.HTTPAddr, o.GRPCAddr, o.Auth = "127.0.0.1:0", "127.0.0.1:0", auth
	core := Core{Ingest: ingest.New(st, ingest.DefaultOptions(), nil, nil), Backend: query.NewLocal(st, qo),
		Limits: NewLimiter(context.Background(), DefaultLimits(), nil)}
	srv, err := New(core, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + srv.HTTPAddr(), t0
}

type statsJSON struct {
	Groups []struct {
		Labels  map[string]string  `json:"labels"`
		Count   float64            `json:"count"`
		Values  map[string]float64 `json:"values"`
		Buckets []struct {
			Time  string  `json:"time"`
			Count float64 `json:"count"`
		} `json:"buckets"`
	} `json:"groups"`
	Total, Other, Skipped float64
}

// TestStatsHTTP answers GET /v1/logs:stats and /v1/logs:facets in the
// issue's JSON, and refuses bad parameters with 400 and a JSON message.
func TestStatsHTTP(t *testing.T) {
	base, _ := statsServer(t, nil, query.DefaultOptions())
	get := func(path string, v url.Values, code int, out any) {
		t.Helper()
		getJSON(t, base+path+"?"+v.Encode(), code, out)
	}
	var s statsJSON
	get("/v1/logs:stats", url.Values{"q": {"level:error deploy_id:deploy-1"}, "by": {"host"}, "limit": {"2"}, "start": {"2h"}}, 200, &s)
	if s.Total != 100 || s.Other != 30 || len(s.Groups) != 2 || s.Groups[0].Labels["host"] != "web-3" || s.Groups[0].Count != 40 || s.Groups[1].Count != 30 {
		t.Fatalf("top hosts by errors: %+v", s)
	}
	s = statsJSON{}
	get("/v1/logs:stats", url.Values{"by": {"service"}, "agg": {"quantile(0.99,latency_ms),max(latency_ms),count"}, "step": {"10m"}, "start": {"2h"}}, 200, &s)
	g := s.Groups[0]
	if s.Total != 1000 || s.Skipped != 4 || g.Values["max(latency_ms)"] != 399 || len(g.Buckets) < 12 {
		t.Fatalf("p99 by service: %+v", s)
	}
	if p99 := g.Values["quantile(0.99,latency_ms)"]; p99 < 350*0.99 || p99 > 400 {
		t.Fatalf("p99 %v", p99)
	}
	var f struct {
		Fields []struct {
			Name     string  `json:"name"`
			Distinct float64 `json:"distinct"`
			Values   []struct {
				Value string  `json:"value"`
				Count float64 `json:"count"`
			} `json:"values"`
		} `json:"fields"`
	}
	get("/v1/logs:facets", url.Values{"q": {"level:error"}, "start": {"2h"}, "limit": {"1"}}, 200, &f)
	if len(f.Fields) != 6 || f.Fields[1].Name != "host" || f.Fields[1].Distinct != 4 || f.Fields[1].Values[0].Value != "web-3" || f.Fields[1].Values[0].Count != 40 {
		t.Fatalf("facets: %+v", f)
	}
	for _, bad := range []url.Values{
		{"by": {"a,b,c,d,e"}},
		{"by": {"message"}},
		{"agg": {"p99(latency_ms)"}},
		{"agg": {"quantile(1.5,latency_ms)"}},
		{"agg": {"sum(latency_ms),,count"}},
		{"step": {"1ns"}},
		{"step": {"-1m"}},
		{"limit": {"-1"}},
		{"limit": {"100000"}},
		{"start": {"tomorrow"}},
		{"q": {"level:("}},
	} {
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		get("/v1/logs:stats", bad, 400, &e)
		if e.Message == "" {
			t.Errorf("%v: no message", bad)
		}
	}
	get("/v1/logs:facets", url.Values{"fields": {"message"}}, 400, nil)
	get("/v1/logs:facets", url.Values{"limit": {"5000"}}, 400, nil)
}

// TestStatsNeedQueryScope: with an auth file, stats and facets take a
// token with the query scope, as search does.
func TestStatsNeedQueryScope(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	yaml := "tokens:\n  - name: agent\n    scopes: [ingest]\n    sha256: " + TokenSHA256("ingest-token") + "\n"
	if err := os.WriteFile(authFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := LoadAuthFile(authFile)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := statsServer(t, auth, query.DefaultOptions())
	for _, p := range []string{"/v1/logs:stats", "/v1/logs:facets"} {
		getJSON(t, base+p, 401, nil)
	}
}

// TestStatsTooManyGroups: a grouping past the engine's bound is refused with
// 429 and words, not cut short.
func TestStatsTooManyGroups(t *testing.T) {
	qo := query.DefaultOptions()
	qo.MaxGroups = 50
	base, _ := statsServer(t, nil, qo)
	var e struct {
		Message string `json:"message"`
	}
	getJSON(t, base+"/v1/logs:stats?start=2h&by=latency_ms", 429, &e)
	if !strings.Contains(e.Message, "more than 50 groups") {
		t.Fatalf("message %q", e.Message)
	}
}

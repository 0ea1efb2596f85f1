package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/server"
)

// TestCoverageInValue holds a partition's owner behind a batch acked before
// the queries: each answer of the cluster backend says in its value that
// the partition is missing, and the HTTP answers, through the server over
// the same backend, say partial with the partition.
func TestCoverageInValue(t *testing.T) {
	nodes := startTestCluster(t, 2, 2, 300*time.Millisecond)
	asker, victim := nodes[0], nodes[1]
	agent := agentOwnedBy(t, nodes, victim.Name(), "held")
	part := PartitionOf(&model.Batch{AgentID: agent}, 2)
	victim.gate.hold()
	defer victim.gate.release()
	now := time.Now()
	b := model.Batch{AgentID: agent, Records: []model.Record{{Time: now.UnixNano(), Seq: 1,
		Labels: model.Labels{Service: "svc", Host: "h"}, Message: "held line"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if res, err := asker.Append(ctx, b); err != nil || res.Accepted != 1 {
		t.Fatalf("append: %+v %v", res, err)
	}
	if !victim.parts[part].owned.Load() {
		t.Skipf("%s lost partition %d before the queries (a starved machine)", victim.Name(), part)
	}
	all, _ := query.Parse("")
	tr := model.TimeRange{Start: now.Add(-time.Hour).UnixNano(), End: now.Add(time.Hour).UnixNano()}
	want := func(what string, c query.Coverage) {
		t.Helper()
		if !c.Partial() || !slices.Contains(c.Missing, part) {
			t.Errorf("%s: partial %v, missing %v; want partition %d missing", what, c.Partial(), c.Missing, part)
		}
	}
	sr, err := asker.Search(ctx, query.SearchParams{Query: all, Range: tr, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	want("search", sr.Coverage)
	hr, err := asker.Histogram(ctx, all, tr, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want("histogram", hr.Coverage)
	cr, err := asker.Catalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want("catalog", cr.Coverage)
	st, err := asker.Stats(ctx, query.StatsParams{Query: all, Range: tr, By: []string{"host"}})
	if err != nil {
		t.Fatal(err)
	}
	want("stats", st.Coverage)

	o := server.DefaultOptions()
	o.HTTPAddr, o.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	srv, err := server.New(server.Core{Backend: asker.Node}, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	defer func() { stop(); <-done }()
	for _, path := range []string{"/v1/logs:search?q=&start=1h&limit=10", "/v1/logs:histogram?q=&start=1h", "/v1/hosts",
		"/v1/logs:stats?q=&start=1h&by=host"} {
		u := "http://" + srv.HTTPAddr() + path
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Partial bool  `json:"partial"`
			Missing []int `json:"missing_partitions"`
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		if !got.Partial || !slices.Contains(got.Missing, part) {
			p, _ := url.PathUnescape(path)
			t.Errorf("GET %s: partial %v, missing_partitions %v; want partition %d", p, got.Partial, got.Missing, part)
		}
	}
	// The Loki API says it in its answers' warnings, as Loki 3 does.
	sel := url.QueryEscape(`{service_name="svc"}`)
	for _, path := range []string{"/loki/api/v1/query_range?query=" + sel + "&since=1h",
		"/loki/api/v1/query_range?query=" + url.QueryEscape(`sum by (level) (count_over_time({service_name="svc"}[1m]))`) + "&since=1h",
		"/loki/api/v1/series?match[]=" + sel, "/loki/api/v1/labels"} {
		resp, err := http.Get("http://" + srv.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Status   string   `json:"status"`
			Warnings []string `json:"warnings"`
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		p, _ := url.QueryUnescape(path)
		if err != nil || resp.StatusCode != http.StatusOK || got.Status != "success" {
			t.Fatalf("GET %s: %d %s %v", p, resp.StatusCode, got.Status, err)
		}
		if len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], fmt.Sprintf("partitions [%d", part)) && !strings.Contains(got.Warnings[0], fmt.Sprintf(" %d]", part)) {
			t.Errorf("GET %s: warnings %q; want one naming partition %d", p, got.Warnings, part)
		}
	}
}

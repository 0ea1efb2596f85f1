package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// TestClusterStats spreads lines over every partition of two nodes and asks
// each node for stats and facets: the merged answer is exact and whole.
func TestClusterStats(t *testing.T) {
	nodes := startTestCluster(t, 2, 4, 5*time.Second)
	base := time.Now().Add(-time.Hour).Truncate(time.Hour)
	want := map[string]int64{} // host -> error lines
	var total int64
	for a := range 8 {
		agent := fmt.Sprintf("agent-%d", a)
		b := model.Batch{AgentID: agent}
		for s := 1; s <= 50*(a+1); s++ {
			lv := model.LevelInfo
			if s%5 == 0 {
				lv = model.LevelError
				want[agent]++
			}
			b.Records = append(b.Records, model.Record{Time: base.Add(time.Duration(s) * time.Second).UnixNano(), Level: lv, Seq: uint64(s),
				Labels: model.Labels{Service: "svc", Host: agent}, Message: "m", Attrs: []model.Attr{{Key: "latency_ms", Value: fmt.Sprint(s)}}})
		}
		total += int64(len(b.Records))
		if res, err := nodes[a%2].Append(context.Background(), b); err != nil || res.Accepted != len(b.Records) {
			t.Fatalf("append %s: %+v %v", agent, res, err)
		}
	}
	tr := model.TimeRange{Start: base.UnixNano(), End: base.Add(time.Hour).UnixNano()}
	q, _ := query.Parse("level:error")
	for _, n := range nodes {
		res := whole(t, n.Name(), func() (*query.StatsResult, query.Coverage, error) {
			r, err := n.Stats(context.Background(), query.StatsParams{Query: q, Range: tr, By: []string{"host"}, Limit: 3,
				Aggs: []string{"max(latency_ms)", "quantile(0.5,latency_ms)"}, Step: 10 * time.Minute})
			if err != nil {
				return nil, query.Coverage{}, err
			}
			return r, r.Coverage, nil
		})
		if res.Total != total/5 || len(res.Groups) != 3 || res.OtherGroups != 5 {
			t.Fatalf("%s: total %d groups %d other groups %d", n.Name(), res.Total, len(res.Groups), res.OtherGroups)
		}
		for i, g := range res.Groups {
			h := fmt.Sprintf("agent-%d", 7-i)
			if g.Labels["host"] != h || g.Count != want[h] || g.Values["max(latency_ms)"] != float64(50*(8-i)) {
				t.Fatalf("%s: group %d: %+v, want host %s with %d", n.Name(), i, g, h, want[h])
			}
		}
		f := whole(t, n.Name(), func() (*query.FacetsResult, query.Coverage, error) {
			r, err := n.Facets(context.Background(), query.FacetsParams{Range: tr, Fields: []string{"host", "level"}})
			if err != nil {
				return nil, query.Coverage{}, err
			}
			return r, r.Coverage, nil
		})
		if f.Total != total || f.Fields[0].Distinct != 8 || f.Fields[1].Values[0] != (query.FacetValue{Value: "info", Count: total - total/5}) {
			t.Fatalf("%s: facets %+v", n.Name(), f)
		}
	}
	// Buckets from the range's start (LogQL's windows) on every node.
	off := model.TimeRange{Start: tr.Start + int64(197*time.Second), End: tr.End}
	res, err := nodes[1].Stats(context.Background(), query.StatsParams{Query: q, Range: off, By: []string{"host"}, Step: 2 * time.Minute, AlignStart: true, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range res.Groups {
		var a int
		fmt.Sscanf(g.Labels["host"], "agent-%d", &a)
		var want int64 // error lines (s%5 == 0) at 197 <= s < 317
		for s := 197; s < 317 && s <= 50*(a+1); s++ {
			if s%5 == 0 {
				want++
			}
		}
		if g.Buckets[0].Start != off.Start || int64(g.Buckets[0].Count) != want {
			t.Fatalf("aligned: %s: first bucket %+v, want %d lines from %d", g.Labels["host"], g.Buckets[0], want, off.Start)
		}
	}
	if _, err := nodes[0].Stats(context.Background(), query.StatsParams{Range: tr, By: []string{"message"}}); err == nil {
		t.Fatal("by message: no error")
	}
}

// whole runs ask until its answer covers every partition: on a loaded
// machine a lease can lapse and move, and for a moment the partitions it
// held have no owner (a partial answer, which says so; coverage_test checks
// that). The answer the test checks is then the whole one, which must be
// exact; one still partial after a minute fails the test.
func whole[T any](t *testing.T, who string, ask func() (T, query.Coverage, error)) T {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		res, cov, err := ask()
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		if !cov.Partial() {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still partial after a minute: missing partitions %v", who, cov.Missing)
		}
		t.Logf("%s: partial answer (missing partitions %v); asking again", who, cov.Missing)
		time.Sleep(200 * time.Millisecond)
	}
}

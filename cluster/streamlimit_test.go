package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// hostsBatch is one line for each of the hosts, at t.
func hostsBatch(t time.Time, hosts ...string) model.Batch {
	var b model.Batch
	for i, h := range hosts {
		b.Records = append(b.Records, model.Record{Time: t.Add(time.Duration(i) * time.Millisecond).UnixNano(), Level: model.LevelInfo,
			Labels: model.Labels{Service: "svc", Host: h}, Message: "line of " + h})
	}
	return b
}

// TestStreamGate: up to the limit of distinct streams a day are admitted; a
// batch whose new streams would pass it is refused whole (nothing of it
// counted); streams seen today keep going; the count starts over the next
// UTC day.
func TestStreamGate(t *testing.T) {
	g := newStreamGate(3, slog.New(slog.DiscardHandler))
	day := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	admit := func(at time.Time, hosts ...string) error {
		b := hostsBatch(at, hosts...)
		return g.admit(&b, at.UnixNano())
	}
	if err := admit(day, "a", "a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := admit(day, "b", "c"); err != nil {
		t.Fatal(err)
	}
	err := admit(day, "a", "d", "e")
	if !errors.Is(err, store.ErrStreamLimit) {
		t.Fatalf("a batch opening a 4th and 5th stream: %v, want ErrStreamLimit", err)
	}
	t.Log(err)
	if got := g.streamsToday(); got != 3 {
		t.Fatalf("%d streams counted after the refusal, want 3", got)
	}
	if err := admit(day, "c", "a", "b", "a"); err != nil {
		t.Fatalf("streams seen today: %v", err)
	}
	if err := admit(day.Add(20*time.Hour), "d", "e", "f"); err != nil {
		t.Fatalf("the next UTC day: %v", err)
	}
	if err := admit(day.Add(20*time.Hour), "a"); !errors.Is(err, store.ErrStreamLimit) {
		t.Fatalf("a 4th stream on the next day: %v, want ErrStreamLimit", err)
	}
	if err := newStreamGate(0, nil).admit(&model.Batch{Records: hostsBatch(day, "x", "y").Records}, day.UnixNano()); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}

// TestClusterStreamLimit: on a real node a batch over the limit is refused
// before it reaches the replicated log, so nothing of it is stored and the
// partition behind it goes on storing the batches that follow.
func TestClusterStreamLimit(t *testing.T) {
	nodes := startTestCluster(t, 1, 2, 5*time.Second)
	n := nodes[0]
	n.Node.gate = newStreamGate(4, n.log)
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	var stored int64
	write := func(hosts ...string) error {
		_, err := n.Append(context.Background(), hostsBatch(base, hosts...))
		if err == nil {
			stored += int64(len(hosts))
		}
		return err
	}
	var many []string
	for i := range 50 {
		many = append(many, fmt.Sprintf("h-%d", i))
	}
	for _, hosts := range [][]string{{"h-1", "h-2"}, {"h-3", "h-1"}, many, {"h-4"}, {"h-5"}, {"h-1", "h-2", "h-3", "h-4"}} {
		err := write(hosts...)
		want := len(hosts) == 50 || hosts[0] == "h-5"
		if got := errors.Is(err, store.ErrStreamLimit); got != want {
			t.Fatalf("write %d hosts from %s: %v, want refused %v", len(hosts), hosts[0], err, want)
		}
	}
	if got := testutil.ToFloat64(n.ins.streamsRefused); got != 2 {
		t.Fatalf("shiplog_cluster_streams_refused_batches_total %v, want 2", got)
	}
	tr := model.TimeRange{Start: base.UnixNano(), End: base.Add(time.Minute).UnixNano()}
	q, _ := query.Parse("service:svc")
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := n.Stats(context.Background(), query.StatsParams{Query: q, Range: tr, By: []string{"host"}, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Coverage.Partial() && res.Total == stored {
			if len(res.Groups) != 4 {
				t.Fatalf("%d hosts stored, want 4: %+v", len(res.Groups), res.Groups)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lines stored (partial %v), want %d", res.Total, res.Coverage.Partial(), stored)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shiplog/shiplog/cluster"
	"github.com/shiplog/shiplog/model"
)

func TestUnion(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(0, 0).Add(time.Duration(ms) * time.Millisecond) }
	spans := [][2]time.Time{{at(500), at(900)}, {at(0), at(300)}, {at(200), at(400)}, {at(850), at(1000)}}
	busy, first, last := union(spans)
	if busy != 900*time.Millisecond || !first.Equal(at(0)) || !last.Equal(at(1000)) {
		t.Fatalf("union = %v %v %v, want 900ms 0 1000", busy, first, last)
	}
	if busy, _, _ := union(nil); busy != 0 {
		t.Fatalf("union(nil) = %v", busy)
	}
}

func TestClusterLogEvents(t *testing.T) {
	log := `==== shiplog-bench: starting ...
time=2026-11-26T13:52:05.803Z level=INFO msg="cluster: took partition" node=n2 partition=7 from_seq=1
time=2026-11-26T13:52:15.310Z level=INFO msg="cluster: took partition" node=n2 partition=8 from_seq=51
time=2026-11-26T13:52:15.311Z level=WARN msg="cluster: lease renewal failed" node=n2 partition=9 err="context deadline exceeded"
time=2026-11-26T13:52:23.342Z level=WARN msg="cluster: consumer stopped; restarting" node=n2 partition=8 err="consumer delivered nothing for 6s while the stream is at 500 and we are at 146"
time=2026-11-26T13:52:24.824Z level=INFO msg="cluster: partition caught up" node=n2 partition=8 seq=500
shiplog is serving
`
	path := filepath.Join(t.TempDir(), "n2.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	since, _ := time.Parse(time.RFC3339Nano, "2026-11-26T13:52:10Z")
	evs, err := clusterLogEvents(path, since)
	if err != nil {
		t.Fatal(err)
	}
	want := []clusterEvent{
		{kind: "took partition", partition: 8, seq: 51},
		{kind: "lease renewal failed", partition: 9},
		{kind: "consumer stopped; restarting", partition: 8},
		{kind: "partition caught up", partition: 8, seq: 500},
	}
	if len(evs) != len(want) {
		t.Fatalf("got %d events %+v, want %d", len(evs), evs, len(want))
	}
	for i, w := range want {
		if evs[i].kind != w.kind || evs[i].partition != w.partition || evs[i].seq != w.seq {
			t.Errorf("event %d = %+v, want %+v", i, evs[i], w)
		}
	}
}

func TestPickAgents(t *testing.T) {
	const parts = 16
	owners := make([]string, parts)
	for p := range owners {
		owners[p] = []string{"n1", "n2", "n3"}[p%3]
	}
	ids, ps, err := pickAgents(6, parts, owners, []string{"n1", "n3"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for c, id := range ids {
		p := cluster.PartitionOf(&model.Batch{AgentID: id}, parts)
		if p != ps[c] || owners[p] == "n2" || owners[p] != []string{"n1", "n3"}[c%2] {
			t.Errorf("conn %d: agent %s -> partition %d (reported %d) owned by %s", c, id, p, ps[c], owners[p])
		}
		if seen[p] {
			t.Errorf("partition %d used twice while free ones were left", p)
		}
		seen[p] = true
	}
}

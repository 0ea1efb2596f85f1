package cluster

import (
	"fmt"
	"testing"

	"github.com/shiplog/shiplog/model"
)

func TestMsgID(t *testing.T) {
	recs := func(seqs ...uint64) []model.Record {
		out := make([]model.Record, len(seqs))
		for i, s := range seqs {
			out[i].Seq = s
		}
		return out
	}
	for _, tc := range []struct {
		b    model.Batch
		want string
	}{
		{model.Batch{}, ""},
		{model.Batch{AgentID: "a"}, ""},                      // nothing numbered: cannot be told apart
		{model.Batch{AgentID: "a", Records: recs(0, 0)}, ""}, // the same
		{model.Batch{Records: recs(1, 2)}, ""},               // no agent
		{model.Batch{AgentID: "a", Records: recs(7)}, "a:7-7"},
		{model.Batch{AgentID: "a", Records: recs(5, 3, 0, 9)}, "a:3-9"},
		{model.Batch{AgentID: "agent:x", Records: recs(1, 18446744073709551615)}, "agent:x:1-18446744073709551615"},
	} {
		if got := msgID(&tc.b); got != tc.want {
			t.Errorf("msgID(%+v) = %q, want %q", tc.b, got, tc.want)
		}
	}
}

func TestPartitionOf(t *testing.T) {
	const parts = 16
	seen := make([]int, parts)
	for i := range 2000 {
		b := model.Batch{AgentID: fmt.Sprintf("agent-%d", i)}
		p := PartitionOf(&b, parts)
		if p < 0 || p >= parts {
			t.Fatalf("partition %d of %d", p, parts)
		}
		seen[p]++
		// An agent's batches stay together whatever they hold.
		b.Records = []model.Record{{Labels: model.Labels{Service: "s", Host: fmt.Sprint(i)}}}
		if q := PartitionOf(&b, parts); q != p {
			t.Fatalf("agent-%d: partition %d with records, %d without", i, q, p)
		}
	}
	for p, n := range seen {
		if n < 2000/parts/2 {
			t.Errorf("partition %d got %d of 2000 agents: %v", p, n, seen)
		}
	}
	// Without an agent: the first record's service and host.
	a := model.Batch{Records: []model.Record{{Labels: model.Labels{Service: "api", Host: "h1"}}, {Labels: model.Labels{Service: "x", Host: "y"}}}}
	b := model.Batch{Records: []model.Record{{Labels: model.Labels{Service: "api", Host: "h1", BuildID: "other"}}}}
	if PartitionOf(&a, parts) != PartitionOf(&b, parts) {
		t.Errorf("unnumbered batches of one service and host go to different partitions")
	}
	if got := PartitionOf(&model.Batch{}, 1); got != 0 {
		t.Errorf("one partition: %d", got)
	}
}

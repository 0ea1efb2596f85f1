package cluster

import (
	"slices"
	"testing"
)

func TestRebalance(t *testing.T) {
	own := func(spec ...string) []string { return spec }
	for _, c := range []struct {
		name    string
		v       shareView
		target  int
		claim   []int
		release []int
	}{
		{name: "alone claims everything, furthest applied first",
			v:      shareView{self: "a", owners: own("", "", "", ""), applied: []uint64{1, 9, 0, 5}},
			target: 4, claim: []int{1, 3, 0, 2}},
		{name: "just started: a share of the configured peers only",
			v:      shareView{self: "a", owners: own("", "", "", "", "", ""), applied: make([]uint64, 6), minLive: 3},
			target: 2, claim: []int{0, 1, 2, 3, 4, 5}},
		{name: "holders count as alive without a heartbeat",
			v:      shareView{self: "a", owners: own("b", "b", "", ""), applied: make([]uint64, 4)},
			target: 2, claim: []int{2, 3}},
		{name: "unreadable leases are neither free nor anyone's",
			v:      shareView{self: "a", owners: own("?", "", "?", ""), applied: make([]uint64, 4)},
			target: 4, claim: []int{1, 3}},
		{name: "at its share: nothing to do",
			v:      shareView{self: "a", owners: own("a", "a", "b", "b"), mine: 2, peers: []string{"a", "b"}, applied: make([]uint64, 4)},
			target: 2},
		{name: "a node joins: hand back what it lacks, highest id first",
			v:      shareView{self: "a", owners: own("a", "a", "a", "a", "a", "a"), mine: 6, peers: []string{"a", "b", "c"}, applied: make([]uint64, 6)},
			target: 2, release: []int{5, 4, 3, 2}},
		{name: "the joiner already has its floor: keep the rest",
			v:      shareView{self: "a", owners: own("a", "a", "a", "b", "b", ""), mine: 3, peers: []string{"a", "b", "c"}, applied: make([]uint64, 6)},
			target: 2, release: []int{2}},
		{name: "above the share but peers hold their floor",
			v:      shareView{self: "a", owners: own("a", "a", "a", "b", "b", "b", "c"), mine: 3, peers: []string{"b", "c"}, applied: make([]uint64, 7)},
			target: 3},
		{name: "a lease read as ours but not held counts as held by no one here",
			v:      shareView{self: "a", owners: own("a", "", "b", "b"), mine: 0, peers: []string{"b"}, applied: make([]uint64, 4)},
			target: 2, claim: []int{1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := rebalance(c.v)
			if p.target != c.target || !slices.Equal(p.claim, c.claim) || !slices.Equal(p.release, c.release) {
				t.Errorf("plan %+v, want target %d claim %v release %v", p, c.target, c.claim, c.release)
			}
		})
	}
}

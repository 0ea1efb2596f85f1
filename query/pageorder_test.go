package query

import (
	"math"
	"math/rand"
	"slices"
	"testing"

	"github.com/shiplog/shiplog/model"
)

// orderHits makes hits in runs: each of runs streams' lines in time order
// (some times shared between streams, some at the extremes of int64),
// appended stream after stream as a scan appends chunks; shuffled when
// shuffle is set (a full page's heap order).
func orderHits(r *rand.Rand, runs, perRun int, shuffle bool) []hit {
	var hits []hit
	for s := range runs {
		t := int64(r.Intn(1000)) - 500
		for j := range perRun {
			switch r.Intn(20) {
			case 0: // same time as the line before (ids break the tie)
			case 1:
				t = math.MaxInt64 - int64(r.Intn(3))
			default:
				t += int64(r.Intn(1000))
			}
			hits = append(hits, hit{pos: position{t: t, id: model.ID{Stream: uint64(s % 3), Day: uint32(s), Line: uint32(j)}}, i: j})
			if t > math.MaxInt64-1000 {
				t = int64(r.Intn(1000))
			}
		}
	}
	if shuffle {
		r.Shuffle(len(hits), func(i, j int) { hits[i], hits[j] = hits[j], hits[i] })
	}
	return hits
}

// TestPageOrder checks that pageOrder puts hits in the order of their
// positions (oldest or newest first), whether it merges the runs of the
// scan's order or sorts hits in no order, and keeps every hit once.
func TestPageOrder(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for _, c := range []struct {
		name         string
		runs, perRun int
		shuffle      bool
	}{
		{"empty", 0, 0, false},
		{"one", 1, 1, false},
		{"one run", 1, 500, false},
		{"six runs", 6, 600, false},
		{"odd runs", 7, 33, false},
		{"runs of one", 300, 1, false},
		{"shuffled", 4, 1000, true},
	} {
		for _, asc := range []bool{true, false} {
			hits := orderHits(r, c.runs, c.perRun, c.shuffle)
			want := slices.Clone(hits)
			slices.SortFunc(want, func(a, b hit) int {
				if asc {
					return a.pos.compare(b.pos)
				}
				return b.pos.compare(a.pos)
			})
			keys := pageOrder(hits, asc)
			if len(keys) != len(hits) {
				t.Fatalf("%s asc=%v: %d keys for %d hits", c.name, asc, len(keys), len(hits))
			}
			seen := make([]bool, len(hits))
			for k, key := range keys {
				if seen[key.i] {
					t.Fatalf("%s asc=%v: hit %d twice", c.name, asc, key.i)
				}
				seen[key.i] = true
				if got := hits[key.i].pos; got != want[k].pos {
					t.Fatalf("%s asc=%v: place %d holds %+v, want %+v", c.name, asc, k, got, want[k].pos)
				}
			}
		}
	}
}

func BenchmarkPageOrder(b *testing.B) {
	hits := orderHits(rand.New(rand.NewSource(1)), 6, 600, false)
	b.ReportAllocs()
	for b.Loop() {
		pageOrder(hits, true)
	}
}

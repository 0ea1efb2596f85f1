package store

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// holdingLines keeps exactly the lines whose message holds the word (ASCII
// case folded) or an escape sequence, at their offsets, and refuses blocks
// whose NULs do not match their lines.
func TestHoldingLines(t *testing.T) {
	parts := []string{"", "request done", "DeadLock", "deadlock", "dead\x1b[1mlock", "no dead lock", "xdeadlocky", "deadlockdeadlock", "k", "K"}
	rng := rand.New(rand.NewPCG(1, 2))
	fn := NewFoldNeedle("deadlock")
	for round := range 500 {
		n := 1 + rng.IntN(40)
		msgs := make([]string, n)
		var block []byte
		for i := range msgs {
			var b strings.Builder
			for range rng.IntN(4) {
				b.WriteString(parts[rng.IntN(len(parts))])
				b.WriteByte(' ')
			}
			msgs[i] = b.String()
			block = append(append(block, msgs[i]...), 0)
		}
		const base = 7
		starts := make([]int32, n)
		skip := make([]bool, n)
		if err := holdingLines(block, base, &fn, starts, skip); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		all := append(make([]byte, base), block...)
		l := &Lines{}
		l.setMsgsStarts(starts, all, skip)
		off := base
		for i, m := range msgs {
			want := fn.Index(m) >= 0 || strings.IndexByte(m, 0x1b) >= 0
			if skip[i] == want {
				t.Fatalf("round %d line %d %q: skipped %v", round, i, m, skip[i])
			}
			if want && (int(starts[i]) != off || l.Msgs[i] != m) {
				t.Fatalf("round %d line %d: at %d (%q), want %d (%q)", round, i, starts[i], l.Msgs[i], off, m)
			}
			if !want && l.Msgs[i] != "" {
				t.Fatalf("round %d line %d: skipped with message %q", round, i, l.Msgs[i])
			}
			if i > 0 && starts[i] < starts[i-1] {
				t.Fatalf("round %d: offsets out of order at line %d", round, i)
			}
			off += len(m) + 1
		}
	}
	for _, tc := range []struct {
		block string
		n     int
	}{
		{"deadlock\x00a\x00", 3},      // fewer NULs than lines
		{"deadlock\x00a\x00", 1},      // more
		{"a\x00deadlock\x00b\x00", 1}, // more, the word after them
		{"deadlock", 1},               // no final NUL
		{"", 1},
	} {
		if err := holdingLines([]byte(tc.block), 0, &fn, make([]int32, tc.n), make([]bool, tc.n)); err == nil {
			t.Errorf("holdingLines(%q, %d lines): no error", tc.block, tc.n)
		}
	}
}

// A load for a word the common filter wrongly says is in every block
// decompresses the blocks whose own filter holds it and one other, not all
// of them; a word truly in every block (or one the probe block may hold)
// still has every block decompressed, and every line holding it kept.
func TestProbeCommonFilter(t *testing.T) {
	const bl = 4
	mk := func(words ...string) *bloom {
		b := newBloomBits(len(words), blockBloomBits)
		for _, w := range words {
			b.add(w)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		msgs    []string
		common  []string   // words of the common filter
		own     [][]string // of each block's
		want    []int      // lines kept
		decoded int        // blocks decompressed
	}{
		{"false positive", []string{"a", "b", "deadlock here", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o"},
			[]string{"deadlock"}, [][]string{{"deadlock"}, {"x"}, {"y"}, {"z"}}, []int{2}, 2},
		{"in every block", []string{"deadlock", "b", "c", "d", "e", "a deadlock", "f", "g", "h", "i", "DEADLOCK", "j", "k", "l", "m", "deadlock!"},
			[]string{"deadlock"}, [][]string{{"x"}, {"y"}, {"z"}, {"w"}}, []int{0, 5, 10, 15}, 4},
		{"probe holds it", []string{"a", "b", "deadlock here", "c", "deadlocks", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "deadlock"},
			[]string{"deadlock"}, [][]string{{"deadlock"}, {"x"}, {"y"}, {"deadlock"}}, []int{2, 4, 15}, 4},
		{"escape in the probe", []string{"a", "b", "deadlock here", "c", "dead\x1b[1mlock", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o"},
			[]string{"deadlock"}, [][]string{{"deadlock"}, {"x"}, {"y"}, {"z"}}, []int{2, 4}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &msgFilters{common: mk(tc.common...)}
			for _, ws := range tc.own {
				f.blocks = append(f.blocks, mk(ws...))
			}
			var scratch []byte
			c := encodeMsgBlocks(&scratch, tc.msgs, bl, f, nil, true)
			fn := NewFoldNeedle("deadlock")
			var bufs []*[]byte
			starts := make([]int32, len(tc.msgs))
			msgs, skip, err := decodeMsgBlocks(c, starts, "deadlock", true, &fn, &bufs, zdec)
			if err != nil {
				t.Fatal(err)
			}
			var kept []int
			for i := range tc.msgs {
				if !skip[i] {
					kept = append(kept, i)
				}
			}
			if !slices.Equal(kept, tc.want) {
				t.Errorf("lines kept %v, want %v", kept, tc.want)
			}
			size := 0
			for b := range tc.decoded {
				for _, m := range tc.msgs[b*bl : (b+1)*bl] {
					size += len(m) + 1
				}
			}
			if len(msgs) != size {
				t.Errorf("%d bytes decompressed, want %d (%d blocks)", len(msgs), size, tc.decoded)
			}
		})
	}
}

package store

import (
	"math/rand/v2"
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

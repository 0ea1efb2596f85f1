package ingest

import (
	"fmt"
	"testing"
)

// TestJSONIntern checks that the cache of names returns each name as given:
// names that share their first and last eight bytes, or differ only in
// length or by a NUL, are told apart.
func TestJSONIntern(t *testing.T) {
	d := newJSONDecoder()
	names := []string{"a", "a\x00", "b", "info", "build-000123", "build-000124", "build-0001234",
		"deploy-ec24a3c5", "abcdefgh", "abcdefgh\x00", "abcdefgh-abcdefgh", "abcdefgh-Xabcdefgh",
		"abcdefgh-Yabcdefgh", "0123456789abcdef", "0123456789abcdeF"}
	for i := 0; i < 1000; i++ {
		names = append(names, fmt.Sprintf("host-%06x", i), fmt.Sprintf("a-long-attribute-key-%d-end", i))
	}
	for round := 0; round < 3; round++ {
		for _, n := range names {
			if got := d.intern([]byte(n)); got != n {
				t.Fatalf("round %d: intern(%q) = %q", round, n, got)
			}
		}
	}
	if d.intern(nil) != "" {
		t.Fatal("intern of nothing is not empty")
	}
}

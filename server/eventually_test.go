package server

import (
	"testing"
	"time"
)

// eventually polls cond until it holds and fails the test if it does not
// within 30 s: a deadline reached only when something is wrong, so a slow
// machine makes a test slower, never red.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

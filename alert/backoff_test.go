package alert

import (
	"testing"
	"time"
)

// TestRetryBackoff: a failed notification is retried after MinBackoff·2ⁿ,
// capped at MaxBackoff, with no jitter.
func TestRetryBackoff(t *testing.T) {
	o := DefaultNotifierOptions()
	o.MinBackoff, o.MaxBackoff = time.Second, time.Minute
	bo := retryBackoff(o)
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i, w := range want {
		if got := bo.NextBackOff(); got != w*time.Second {
			t.Fatalf("wait %d: %v, want %v", i, got, w*time.Second)
		}
	}
	o.MinBackoff, o.MaxBackoff = 3*time.Second, 3*time.Second
	bo = retryBackoff(o)
	for i := range 3 {
		if got := bo.NextBackOff(); got != 3*time.Second {
			t.Fatalf("min = max, wait %d: %v", i, got)
		}
	}
}

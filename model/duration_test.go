package model

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"0": 0, "30s": 30 * time.Second, "5m": 5 * time.Minute, "1h30m": 90 * time.Minute, "1d12h": 36 * time.Hour,
		"2w": 14 * 24 * time.Hour, "1y": 365 * 24 * time.Hour, "500ms": 500 * time.Millisecond,
		"1.5h": 90 * time.Minute, "0.5d": 12 * time.Hour, "0.5w": 84 * time.Hour, "0d": 0, "0s": 0, "7d": 7 * 24 * time.Hour, "1.5s": 1500 * time.Millisecond, "100us": 100 * time.Microsecond,
	} {
		if got, err := ParseDuration(s); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-5m", "5", "abc", "1x", "NaNd", "Infd", "-1d", "1e300d", "1d-2h", "9999999999y",
		"d", "w", "5 m", "1dd", "5md", "200000d", "20000w"} {
		if d, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", s, d)
		}
	}
	for d, want := range map[time.Duration]string{0: "0s", 90 * time.Minute: "1h30m", 36 * time.Hour: "1d12h", 500 * time.Millisecond: "500ms"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

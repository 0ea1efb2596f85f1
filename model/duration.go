package model

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	prommodel "github.com/prometheus/common/model"
)

// ParseDuration is the project's one duration dialect, for query parameters,
// rule files and flags alike: Prometheus' (30s, 5m, 1h30m, 1d12h, 2w, 1y,
// 500ms, 0), plus a fraction of one unit (1.5h, 0.5d) and Go's µs/ns, which
// earlier versions took. Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty duration (want e.g. 30s, 5m, 1h30m, 1d)")
	}
	if d, err := prommodel.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}, {"y", 365 * 24 * time.Hour}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok && !strings.ContainsAny(n, "hmsuµn") {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f < 0 || math.IsNaN(f) || f*float64(u.d) >= math.MaxInt64 {
				return 0, fmt.Errorf("%q is not a duration (want e.g. 30s, 5m, 1h30m, 1d)", s)
			}
			return time.Duration(f * float64(u.d)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 30s, 5m, 1h30m, 1d)", s)
	}
	return d, nil
}

// FormatDuration renders d as Prometheus does (1h30m, 5m, 0s).
func FormatDuration(d time.Duration) string {
	return prommodel.Duration(d).String()
}

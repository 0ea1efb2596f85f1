package agent

import (
	"testing"

	"github.com/shiplog/shiplog/model"
)

func TestDetectLevel(t *testing.T) {
	cases := []struct {
		line string
		want model.Level
	}{
		{"hello world", model.LevelInfo},
		{"\x1b[31mERROR\x1b[0m capture failed", model.LevelError},
		{"\x1b[33mwarning:\x1b[0m unused import", model.LevelWarn},
		{"\x1b[1m\x1b[31mpanic:\x1b[0m nil map", model.LevelFatal},
		{"main.c:3:14: \x1b[35mwarning:\x1b[0m unused variable", model.LevelWarn},
		{"\x1b[2m12:00:00\x1b[0m \x1b[31mERR\x1b[0m failed", model.LevelError},
		{"level=\x1b[31merror\x1b[0m msg=x", model.LevelError},
		{"\x1b[32mok\x1b[0m  github.com/x 0.1s", model.LevelInfo},
		{"", model.LevelInfo},
		{"ERROR bad", model.LevelError},
		{"2026-01-01T12:00:00Z ERROR db: connection refused", model.LevelError},
		{"2026-01-01 12:00:00 [WARN] disk 91% full", model.LevelWarn},
		{"[warning] deprecated flag", model.LevelWarn},
		{"time=2026-01-01T12:00:00Z level=warn msg=slow", model.LevelWarn},
		{`time=x level="error" msg="boom"`, model.LevelError},
		{`{"level":"debug","msg":"x"}`, model.LevelDebug},
		{`{"severity": "CRITICAL", "msg": "x"}`, model.LevelFatal},
		{"panic: runtime error: index out of range", model.LevelFatal},
		{"FATAL could not start", model.LevelFatal},
		{"error: pathspec 'x' did not match", model.LevelError},
		{"Error: Cannot find module 'x'", model.LevelError},
		{"main.c:3:14: warning: unused variable", model.LevelWarn},
		{"12:00:00 INF request served", model.LevelInfo},
		{"12:00:00 WRN retrying", model.LevelWarn},
		{"E0102 12:00:00.000000    1 controller.go:12] sync failed", model.LevelError},
		{"W0102 12:00:00.000000    1 x.go:1] hmm", model.LevelWarn},
		{"INFO retrying after ERROR", model.LevelInfo},
		{"level=info msg=ERROR happened", model.LevelInfo},
		{"0 errors, 2 warnings", model.LevelInfo},
		{"ERRORS: none", model.LevelInfo},
		{"set ERROR_CODE=5", model.LevelInfo},
		{"the error: was here", model.LevelInfo},
		{"DEBUG cache miss", model.LevelDebug},
		{"Traceback (most recent call last):", model.LevelError},
		{"WARNING: no config", model.LevelWarn},
	}
	for _, c := range cases {
		if got := DetectLevel(c.line); got != c.want {
			t.Errorf("DetectLevel(%q) = %s, want %s", c.line, got, c.want)
		}
	}
}

func BenchmarkDetectLevel(b *testing.B) {
	b.ReportAllocs()
	line := "2026-01-01T12:00:00.123Z host-1 api request 12345 handled in 17ms path=/v1/users status=200"
	for b.Loop() {
		DetectLevel(line)
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shiplog rules check prints each problem as FILE:LINE:COL: message and exits
// 1, as promtool check rules does; a good file passes.
func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(good, `groups:
  - name: api
    rules:
      - alert: ApiErrors
        logs: 'service:api AND level:error'
        window: 5m
        threshold: '> 10'
      - alert: Rate
        expr: rate(http_requests_total[5m]) > 1
`)
	write(bad, `groups:
  - name: api
    rules:
      - alert: ApiErrors
        logs: 'service:api AND level:loud'
        window: 5m
        threshold: '> 10'
      - alert: Rate
        expr: rate(http_requests_total[5m]) >
`)
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"rules", "check", good}, &out, &out); err != nil {
		t.Fatalf("good file: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "SUCCESS: 2 rules in 1 groups") {
		t.Errorf("output %q", out.String())
	}
	out.Reset()
	err := Run(context.Background(), []string{"rules", "check", good, bad}, &out, &out)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("bad file: err %v", err)
	}
	for _, want := range []string{
		bad + `:5:15: logs: unknown level "loud" (want trace, debug, info, warn, error or fatal)`,
		bad + ":9:46: expr: unexpected end of input",
		bad + ": FAILED: 2 problems",
	} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	var ue usageError
	if err := Run(context.Background(), []string{"rules", "check"}, &out, &out); !errors.As(err, &ue) {
		t.Errorf("no file: %v", err)
	}
	if err := Run(context.Background(), []string{"rules", "lint", good}, &out, &out); !errors.As(err, &ue) {
		t.Errorf("unknown subcommand: %v", err)
	}
}

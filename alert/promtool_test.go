package alert

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// Rule files that `promtool check rules` (Debian's, installed by make deps)
// accepts load in shiplog unchanged, and their templates expand without
// error. testdata/promtool holds files written in the style of the usual
// public rule sets; SHIPLOG_EXTRA_RULES names a directory of more (*.yml,
// *.yaml, searched recursively) to check the same way, e.g. a checkout of a
// public rule collection.
func TestPromtoolAcceptedFilesLoad(t *testing.T) {
	files, _ := filepath.Glob("testdata/promtool/*.yaml")
	if dir := os.Getenv("SHIPLOG_EXTRA_RULES"); dir != "" {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".yaml")) {
				files = append(files, p)
			}
			return nil
		})
	}
	if len(files) == 0 {
		t.Fatal("no rule files")
	}
	promtool, _ := exec.LookPath("promtool")
	if promtool == "" {
		t.Log("promtool is not installed (make deps installs it): loading the files without its check")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if promtool != "" {
				if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
					t.Fatalf("promtool rejects it: %v\n%s", err, out)
				}
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			file, probs := Parse(data, ParseOptions{})
			if len(probs) > 0 {
				t.Fatalf("promtool accepts it, shiplog does not: %v", probs)
			}
			// Evaluate every rule once with a query answering one series, so
			// every template runs.
			eng := &fakeEngines{
				query: func(_ context.Context, expr string, ts time.Time) ([]Sample, error) {
					return []Sample{{Labels: map[string]string{"__name__": "m", "instance": "web-1:9100", "job": "api",
						"service": "api", "mountpoint": "/", "namespace": "ns", "pod": "p-1"}, Value: 0.5}}, nil
				},
				append: func(context.Context, []model.Series) error { return nil },
			}
			r := newRig(t, nil, newClock(), eng)
			r.mgr.opts.ExternalLabels = map[string]string{"cluster": "c1"}
			r.mgr.Apply(file)
			r.eval(t, 0)
			r.eval(t, time.Hour) // past every for:
			for _, rs := range r.mgr.Rules().Rules {
				if rs.Health != "ok" {
					t.Errorf("rule %s: %s %s", rs.Name, rs.Health, rs.LastError)
				}
			}
			for _, a := range r.mgr.Alerts() {
				for k, v := range a.Annotations {
					if strings.Contains(v, "<error expanding template") {
						t.Errorf("%s: annotation %s: %s", a.Rule, k, v)
					}
				}
				for k, v := range a.Labels {
					if strings.Contains(v, "<error expanding template") {
						t.Errorf("%s: label %s: %s", a.Rule, k, v)
					}
				}
			}
		})
	}
}

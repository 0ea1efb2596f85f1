package alert

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testParseOptions stands in for the query parser: "bogus" is a bad word.
var testParseOptions = ParseOptions{CheckLogsQuery: func(s string) error {
	if strings.Contains(s, "bogus") {
		return fmt.Errorf("unknown word bogus")
	}
	return nil
}}

// TestParseTestdata parses every testdata/*.yaml and compares its problems
// with the file's trailing "# want: LINE:COL: message" comments (none: the
// file is valid). The positions are those `shiplog rules check` prints.
func TestParseTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, line := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					want = append(want, w)
				}
			}
			_, probs := Parse(data, testParseOptions)
			var got []string
			for _, p := range probs {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestParseFull(t *testing.T) {
	f, err := LoadFile("testdata/full.yaml", testParseOptions)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Receivers) != 2 || f.Receivers[0].Kind() != "webhook" || f.Receivers[1].Kind() != "slack" ||
		f.Receivers[1].URL() != "https://hooks.slack.com/services/T0/B0/XXXX" {
		t.Errorf("receivers: %+v", f.Receivers)
	}
	if len(f.Groups) != 2 {
		t.Fatalf("groups: %+v", f.Groups)
	}
	g := f.Groups[0]
	if g.Name != "api" || g.Interval != 30*time.Second || g.RepeatInterval != 2*time.Hour || len(g.Rules) != 2 {
		t.Errorf("group: %+v", g)
	}
	r := g.Rules[0]
	want := Rule{
		Alert: "ApiErrors", Logs: "service:api AND level:error", Window: 5 * time.Minute,
		Threshold: Threshold{Op: ">=", Value: 1}, By: []string{"service", "host", "build_id", "deploy_id", "level"},
		For: time.Minute, KeepFiringFor: 10 * time.Minute,
		Labels: map[string]string{"severity": "page", "team": "{{ $labels.service }}-team"},
		Annotations: map[string]string{"summary": "{{ $labels.service }} logs {{ $value }} errors",
			"description": "on {{ $labels.host | toUpper }}: {{ humanize $value }}"},
		Line: 12,
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("rule:\n%+v\nwant\n%+v", r, want)
	}
	if r.Kind() != "logs" || g.Rules[1].Receivers == nil || len(g.Rules[1].Receivers) != 0 {
		t.Errorf("kind %s, receivers of the second rule %#v (want empty, not nil)", r.Kind(), g.Rules[1].Receivers)
	}
	p := f.Groups[1].Rules[0]
	if p.Kind() != "promql" || !strings.HasPrefix(p.Expr, "sum by (service)") || p.For != 5*time.Minute || !reflect.DeepEqual(p.Receivers, []string{"chat"}) {
		t.Errorf("promql rule: %+v", p)
	}
	if f.Groups[1].Interval != 0 {
		t.Errorf("interval left out: %v, want 0 (the default applies)", f.Groups[1].Interval)
	}
}

func TestLoadFileError(t *testing.T) {
	_, err := LoadFile("testdata/groups.yaml", testParseOptions)
	var pe *ProblemsError
	if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidRules) || len(pe.Problems) != 6 {
		t.Fatalf("err %v", err)
	}
	if want := `testdata/groups.yaml:4:5: a group needs a name: (and 5 more problems)`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if _, err := LoadFile("testdata/nonexistent.yaml", ParseOptions{}); !errors.Is(err, ErrInvalidRules) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestThreshold(t *testing.T) {
	for _, c := range []struct {
		in   string
		op   string
		v    float64
		pass []float64
		fail []float64
	}{
		{"> 10", ">", 10, []float64{11}, []float64{10, 0}},
		{">=1", ">=", 1, []float64{1, 2}, []float64{0}},
		{"< 5", "<", 5, []float64{0, 4}, []float64{5}},
		{"<= 0.5", "<=", 0.5, []float64{0.5}, []float64{1}},
		{"== 0", "==", 0, []float64{0}, []float64{1}},
		{"!= 0", "!=", 0, []float64{3}, []float64{0}},
	} {
		th, err := ParseThreshold(c.in)
		if err != nil || th.Op != c.op || th.Value != c.v {
			t.Errorf("%q: %+v %v", c.in, th, err)
			continue
		}
		for _, v := range c.pass {
			if !th.Match(v) {
				t.Errorf("%q should match %v", c.in, v)
			}
		}
		for _, v := range c.fail {
			if th.Match(v) {
				t.Errorf("%q should not match %v", c.in, v)
			}
		}
	}
	for _, bad := range []string{"10", "> ", ">> 1", "= 1", "> NaN", "> x"} {
		if _, err := ParseThreshold(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, probs := Parse(data, testParseOptions)
		if file == nil {
			t.Fatal("nil file")
		}
		for _, p := range probs {
			if p.Msg == "" || p.Line < 0 || p.Column < 0 {
				t.Fatalf("bad problem %+v", p)
			}
		}
	})
}

// Merges of merges grow exponentially (a billion laughs): bounded.
func TestMergeBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("x0: &a0 {k: v}\n")
	for i := 1; i < 12; i++ {
		fmt.Fprintf(&b, "x%d: &a%d {<<: [%s]}\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	b.WriteString("groups: [{name: g, rules: [{alert: A, expr: up, labels: *a11}]}]\n")
	_, probs := Parse([]byte(b.String()), ParseOptions{})
	found := false
	for _, p := range probs {
		found = found || strings.Contains(p.Msg, "more than 10000 merges")
	}
	if !found {
		t.Errorf("problems %v", probs)
	}
}

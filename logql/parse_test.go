package logql

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

func TestTranslate(t *testing.T) {
	for _, c := range []struct {
		in, want string
		exact    bool
	}{
		{`{service="api"}`, `service:"api"`, true},
		{`{service_name="api", host!="web-1"}`, `service:"api" -host:"web-1"`, true},
		{`{service=~"api|web"}`, `service:/api|web/`, true},
		{`{service="x", host!~"a/b"}`, `service:"x" -host:/a\/b/`, true},
		{`{level="error"}`, `level:error`, true},
		{`{service="x", level=~"warn|error"}`, `service:"x" (level:warn OR level:error)`, true},
		{`{service="x"} |= "deadlock"`, `service:"x" /deadlock/`, true},
		{`{service="x"} |= "conn refused to db"`, `service:"x" refused to /conn refused to db/`, true},
		{`{service="x"} |= "a.b(c)"`, `service:"x" /a\.b\(c\)/`, true},
		{`{service="x"} != "debug" |~ "err(or)?"`, `service:"x" -/debug/ /err(or)?/`, true},
		{`{service="x"} !~ "x/y"`, `service:"x" -/x\/y/`, true},
		{`{service="x"} | level="error"`, `service:"x" level:error`, false},
		{`{service="x"} | json | level="error"`, `service:"x"`, false},
		{`{service="x"} | drop __error__`, `service:"x"`, true},
		{`{service="x", host=""}`, `service:"x" -host:/.+/`, true},
		{`{service="x", host=~"|web"}`, `service:"x" host:/|web/`, true},
	} {
		e, err := Parse(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		tr := Translate(Log(e))
		if tr.Query != c.want || tr.Exact != c.exact {
			t.Errorf("%s: %q exact=%v, want %q exact=%v", c.in, tr.Query, tr.Exact, c.want, c.exact)
		}
		if _, err := query.Parse(tr.Query); err != nil {
			t.Errorf("%s: shiplog query %q: %v", c.in, tr.Query, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		in, want    string
		unsupported bool
	}{
		{``, "empty query", false},
		{`{}`, "at least one label matcher", false},
		{`{service=~".*"}`, "at least one regexp or equality matcher", false},
		{`{app="x"}`, `stream label "app"`, true},
		{`{service="x"} | label_format a="{{.b}}"`, "the label_format stage", true},
		{`{service="x"} | line_format "{{range 1000000000}}x{{end}}"`, "range in line_format", true},
		{`{service="x"} | line_format "{{nosuchfunc .a}}"`, "line_format", true},
		{`{service="x"} | regexp "(?P<a>.)"`, "the regexp stage", true},
		{`{service="x"} |= "a" or "b"`, "line filters joined by or", true},
		{`{service="x"} | a="1" or b="2"`, "label filters joined by or", true},
		{`{service="x"} | latency > 5s`, "durations and byte sizes", true},
		{`sum(rate({service="x"}[1m])) / 2`, "binary operations", true},
		{`rate({service="x"}[1m]) offset 1h`, "offset", true},
		{`rate({service="x"}[1m:10s])`, "subqueries", true},
		{`absent_over_time({service="x"}[1m])`, "absent_over_time()", true},
		{`sum_over_time({service="x"}[1m])`, "needs | unwrap", false},
		{`sum_over_time({service="x"} | unwrap duration_seconds(d) [1m])`, "conversions", true},
		{`count_over_time({service="x"})`, "needs a range", false},
		{`count_over_time({service="x"}[40d])`, "range [40d]", false},
		{`topk(0, rate({service="x"}[1m]))`, "from 1 to", false},
		{`sum({service="x"})`, "not a log query", false},
		{`{service="x"} |~ "("`, "missing closing )", false},
		{`{service="x"`, "want", false},
		{`{service="x"} |= "unterminated`, "unterminated string", false},
		{`{service="x"} | a=~"[a-j ]{1000}[k-z]" |~ "[a-j ]{1000}"`, "instructions", true},
	} {
		_, err := Parse(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.in, err, c.want)
			continue
		}
		if errors.Is(err, ErrUnsupported) != c.unsupported {
			t.Errorf("%s: %v: unsupported=%v", c.in, err, !c.unsupported)
		}
	}
}

func TestPipeline(t *testing.T) {
	rec := &model.Record{Labels: model.Labels{Service: "api", Host: "h"}, Level: model.LevelError,
		Message: `level=error status=502 msg="upstream timed out" user=7`, Attrs: []model.Attr{{Key: "region", Value: "eu"}}}
	for _, c := range []struct {
		q    string
		pass bool
	}{
		{`{service="api"} | logfmt | status >= 500 and msg=~"upstream.*"`, true},
		{`{service="api"} | logfmt | status >= 500, user != "7"`, false},
		{`{service="api"} | logfmt | status == 502`, true},
		{`{service="api"} | region="eu"`, true},
		{`{service="api"} | region=~"us.*"`, false},
		{`{service="api"} | json | __error__="JSONParserErr"`, true},
		{`{service="api"} | logfmt | level_extracted="error"`, true},
		{`{service="api"} |= "timed" | logfmt | drop user | user=""`, true},
		{`{service="api"} | logfmt |= "nope"`, false},
	} {
		e, err := Parse(c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		if _, ok := NewPipeline(Log(e)).Process(rec); ok != c.pass {
			t.Errorf("%s: pass=%v, want %v", c.q, ok, c.pass)
		}
	}
}

func TestEvaluatorWindows(t *testing.T) {
	// Lines at 0s, 30s, 60s, 90s; steps at 60s and 120s over [1m]: a step at
	// t counts the lines with t-1m <= time < t.
	e, err := Parse(`sum(count_over_time({service="x"}[1m]))`)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvaluator(e, int64(time.Minute), int64(2*time.Minute), time.Minute, EvalLimits{MaxSeries: 10, MaxSamples: 10, MaxSteps: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []int{0, 30, 60, 90} {
		rec := &model.Record{Labels: model.Labels{Service: "x"}, Time: int64(s) * int64(time.Second)}
		row, _ := NewPipeline(Log(e)).Process(rec)
		if err := ev.Add(row); err != nil {
			t.Fatal(err)
		}
	}
	res := ev.Result()
	if len(res) != 1 || len(res[0].Points) != 2 || res[0].Points[0].V != 2 || res[0].Points[1].V != 2 {
		t.Fatalf("%+v", res)
	}
}

// FuzzParse: no input crashes the parser, and every translation is a query
// shiplog's own parser accepts.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{service="api"} |= "x" | json | status >= 500`, `sum by (level) (count_over_time({service="x"}[1m]))`,
		`topk(3, sum by (host) (rate({service=~"a|b"} !~ "y" [5m])))`, `quantile_over_time(0.9, {service="x"} | logfmt | unwrap d [1m]) by (p)`,
		`{level=~"e.*", host!="a\"b"} |~ "/x/" != "\\"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			return
		}
		tr := Translate(Log(e))
		if _, err := query.Parse(tr.Query); err != nil && !strings.Contains(err.Error(), "instructions") {
			t.Fatalf("%q: translation %q: %v", s, tr.Query, err)
		}
	})
}

// A sum by (...) over an additive range function sums series as they are
// made: lines with labels of their own (extracted ids) make no more series
// than the groups; other aggregations keep every series.
func TestEvaluatorReduces(t *testing.T) {
	for _, c := range []struct {
		q  string
		ok bool
	}{
		{`sum by (status) (count_over_time({service="x"} | logfmt [1m]))`, true},
		{`topk(1, sum by (status) (rate({service="x"} | logfmt [1m])))`, true},
		{`sum without (id, ms) (count_over_time({service="x"} | logfmt [1m]))`, true},
		{`max by (status) (count_over_time({service="x"} | logfmt [1m]))`, false},
		{`sum by (status) (avg_over_time({service="x"} | logfmt | unwrap ms [1m]))`, false},
	} {
		e, err := Parse(c.q)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := NewEvaluator(e, int64(time.Minute), int64(time.Minute), time.Minute, EvalLimits{MaxSeries: 5, MaxSamples: 1000, MaxSteps: 10})
		if err != nil {
			t.Fatal(err)
		}
		var addErr error
		for i := 0; i < 50 && addErr == nil; i++ {
			rec := &model.Record{Labels: model.Labels{Service: "x"}, Time: int64(i) * int64(time.Second),
				Message: fmt.Sprintf("id=%d status=%d ms=%d", i, 200+i%2, i)}
			row, _ := NewPipeline(Log(e)).Process(rec)
			addErr = ev.Add(row)
		}
		if (addErr == nil) != c.ok {
			t.Fatalf("%s: %v", c.q, addErr)
		}
		if c.ok {
			res := ev.Result()
			total := 0.0
			for _, s := range res {
				total += s.Points[0].V
			}
			if len(res) == 0 || (!strings.HasPrefix(c.q, "topk") && total != 50 && total*60 != 50) {
				t.Fatalf("%s: %+v", c.q, res)
			}
		}
	}
}

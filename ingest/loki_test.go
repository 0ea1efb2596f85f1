package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/model"
)

func TestParseLokiLabels(t *testing.T) {
	cases := []struct {
		in   string
		want string // name=value pairs, sorted, joined by " "
	}{
		{`{}`, ``},
		{` { } `, ``},
		{`{service_name="api", host="web-1"}`, `host=web-1 service_name=api`},
		{`{job="varlogs",filename="/var/log/syslog",}`, `filename=/var/log/syslog job=varlogs`},
		{`{a="x\"y\\z\n", b='single', c=` + "`raw\\n`" + `}`, "a=x\"y\\z\n b=single c=raw\\n"},
		{`{a="", b="kept"}`, `b=kept`},
		{`{"service.name"="api", _x9="1"}`, `_x9=1 service.name=api`},
		{`{a="\u00e9\x41"}`, `a=éA`},
	}
	for _, c := range cases {
		got, err := ParseLokiLabels(c.in)
		if err != nil {
			t.Errorf("ParseLokiLabels(%q): %v", c.in, err)
			continue
		}
		if s := pairs(got); s != c.want {
			t.Errorf("ParseLokiLabels(%q) = %q, want %q", c.in, s, c.want)
		}
	}
	for _, in := range []string{``, `service_name="api"`, `{a="b"`, `{a=b}`, `{a="b" c="d"}`, `{1a="b"}`, `{a="b",a="c"}`,
		`{a="b"} x`, `{a="\q"}`, `{a="b}`, `{a=` + "`b}", `{""="b"}`, `{a="x` + "\n" + `"}`, `{a="\xff"}`, "{a=\"\xff\"}"} {
		if ls, err := ParseLokiLabels(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseLokiLabels(%q) = %v, %v; want ErrInvalid", in, ls, err)
		}
	}
}

func pairs(as []model.Attr) string {
	var parts []string
	for _, a := range as {
		parts = append(parts, a.Key+"="+a.Value)
	}
	return strings.Join(parts, " ")
}

func TestLokiStream(t *testing.T) {
	cases := []struct {
		labels, meta string
		want         string
	}{
		{`{service_name="api", job="ns/api", host="web-1", instance="10.0.0.1:80", deployment_id="d-1", build_id="b-9", level="WARNING", env="prod"}`, ``,
			`api web-1 b-9 d-1 warn "" [env=prod instance=10.0.0.1:80 job=ns/api]`},
		{`{job="varlogs", instance="i-1", deploy_id="d-2", detected_level="err"}`, ``,
			`varlogs i-1  d-2 error "" []`},
		{`{job="x", level="loud"}`, `{trace_id="abc", span_id="def", level="meta", user="u1"}`,
			`x    info "" [level=meta user=u1]`},
		{`{job="x", user="label"}`, `{user="meta", zone="z"}`,
			`x    info "" [user=meta zone=z]`},
	}
	for _, c := range cases {
		ls, err := ParseLokiLabels(c.labels)
		if err != nil {
			t.Fatal(err)
		}
		var meta []model.Attr
		if c.meta != "" {
			if meta, err = ParseLokiLabels(c.meta); err != nil {
				t.Fatal(err)
			}
		}
		r := NewLokiStream(ls).Record(42, "", meta)
		got := fmt.Sprintf("%s %s %s %s %s %q [%s]", r.Service, r.Host, r.BuildID, r.DeployID, r.Level, r.Message, pairs(r.Attrs))
		if got != c.want {
			t.Errorf("labels %s meta %s:\n got %s\nwant %s", c.labels, c.meta, got, c.want)
		}
		if c.meta != "" && (r.TraceID != "abc" || r.SpanID != "def") && strings.Contains(c.meta, "trace_id") {
			t.Errorf("trace/span = %q/%q", r.TraceID, r.SpanID)
		}
	}
}

func TestDecodeLokiJSON(t *testing.T) {
	body := `{"streams": [
	  {"stream": {"service_name": "api", "host": "web-1", "env": "prod"},
	   "values": [["1767268800000000000", "first"], ["1767268801000000000", "second", {"trace_id": "0af7651916cd43dd8448eb211c80319c", "user": "u1"}]]},
	  {"labels": "{job=\"legacy\"}", "entries": [{"ts": "2026-01-01T12:00:02Z", "line": "third"}]}
	]}`
	recs, err := DecodeLokiJSON([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%d %s %s %s %s [%s]", r.Time, r.Service, r.Host, r.Message, r.TraceID, pairs(r.Attrs)))
	}
	want := []string{
		"1767268800000000000 api web-1 first  [env=prod]",
		"1767268801000000000 api web-1 second 0af7651916cd43dd8448eb211c80319c [env=prod user=u1]",
		"1767268802000000000 legacy  third  []",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, bad := range []string{`{`, `{"streams": [{"stream": {"a": "b"}, "values": [["x", "line"]]}]}`,
		`{"streams": [{"stream": {}, "values": [["1"]]}]}`, `{"streams": [{"stream": {}, "values": [[1, 2]]}]}`,
		`{"streams": [{"stream": {}, "values": [["1", "l", {"a": 1}]]}]}`, `{"streams": [{"labels": "{a=}", "entries": []}]}`,
		`{"streams": [{"stream": {"": "v"}, "values": []}]}`, `{"streams": [{"stream": {}, "values": [["-5", "l"]]}]}`} {
		if _, err := DecodeLokiJSON([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeLokiJSON(%s): %v, want ErrInvalid", bad, err)
		}
	}
}

// formatLokiLabels renders labels as a Loki label string.
func formatLokiLabels(as []model.Attr) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, a := range as {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(a.Key))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(a.Value))
	}
	b.WriteByte('}')
	return b.String()
}

package agent

import (
	"strings"
	"testing"
	"time"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// collect is a Handler sink that keeps what it is given.
type collect struct {
	recs    []*shiplogv1.Record
	pos     []*Position
	dropped int
}

func newTestHandler(opts HandlerOptions) (*Handler, *collect) {
	c := &collect{}
	h := NewHandler(nil, opts, nil)
	h.sink = func(r *shiplogv1.Record, p *Position) { c.recs = append(c.recs, r); c.pos = append(c.pos, p) }
	h.dropped = func(n int) { c.dropped += n }
	return h, c
}

func (c *collect) messages() []string {
	var out []string
	for _, r := range c.recs {
		out = append(out, r.Message)
	}
	return out
}

func feed(h *Handler, text string) {
	sp := newSplitter(h.opts.MaxLineBytes, func(line []byte, tr bool, end int64) {
		h.Line(line, tr, &Position{Path: "f", Offset: end})
	})
	sp.Write([]byte(text))
	sp.Flush()
}

func TestMultiline(t *testing.T) {
	javaTrace := "ERROR request failed\n" +
		"java.lang.IllegalStateException: boom\n" +
		"\tat com.example.A.run(A.java:10)\n" +
		"\tat com.example.B.run(B.java:20)\n" +
		"Caused by: java.io.IOException: disk\n" +
		"\t... 5 more\n" +
		"INFO next\n"
	cases := []struct {
		name  string
		opts  func(*HandlerOptions)
		input string
		want  []string
	}{
		{"off", func(o *HandlerOptions) { o.Multiline = false }, "a\n  b\nc\n", []string{"a", "  b", "c"}},
		{"indented joins", nil, "a\n  b\n\tc\nd\n", []string{"a\n  b\n\tc", "d"}},
		{"java trace", nil, javaTrace, []string{
			"ERROR request failed",
			"java.lang.IllegalStateException: boom\n\tat com.example.A.run(A.java:10)\n\tat com.example.B.run(B.java:20)\nCaused by: java.io.IOException: disk\n\t... 5 more",
			"INFO next"}},
		{"at and dots", nil, "x\nat y\n...z\nw\n", []string{"x\nat y\n...z", "w"}},
		{"empty line ends", nil, "a\n b\n\n c\n", []string{"a\n b", "\n c"}},
		{"continuation first", nil, "  a\nb\n", []string{"  a", "b"}},
		{"max lines", func(o *HandlerOptions) { o.MultilineMaxLines = 2 }, "a\n 1\n 2\n 3\nb\n", []string{"a\n 1", " 2\n 3", "b"}},
		{"max bytes", func(o *HandlerOptions) { o.MultilineMaxBytes = 9 }, "abcd\n efg\n hij\n", []string{"abcd\n efg", " hij"}},
		{"crlf", nil, "a\r\n b\r\nc\r\n", []string{"a\n b", "c"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := DefaultHandlerOptions()
			if c.opts != nil {
				c.opts(&o)
			}
			h, col := newTestHandler(o)
			feed(h, c.input)
			h.Flush()
			got := col.messages()
			if strings.Join(got, "|") != strings.Join(c.want, "|") {
				t.Fatalf("got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestMultilinePositionAndLevel(t *testing.T) {
	h, col := newTestHandler(DefaultHandlerOptions())
	feed(h, "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/x/main.go:5 +0x1d\n")
	h.Flush()
	if len(col.recs) != 4 {
		t.Fatalf("records %q", col.messages())
	}
	if col.recs[0].Level != "fatal" || col.recs[3].Level != "info" {
		t.Errorf("levels %s %s", col.recs[0].Level, col.recs[3].Level)
	}
	// The joined record ends where its last line does.
	if got := col.pos[3].Offset; got != int64(len("panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/x/main.go:5 +0x1d\n")) {
		t.Errorf("position %d", got)
	}
}

func TestMultilineTimeout(t *testing.T) {
	o := DefaultHandlerOptions()
	o.MultilineTimeout = time.Second
	h, col := newTestHandler(o)
	now := time.Unix(1000, 0)
	h.now = func() time.Time { return now }
	h.Line([]byte("first"), false, nil)
	h.Tick()
	if len(col.recs) != 0 {
		t.Fatal("flushed before the timeout")
	}
	now = now.Add(600 * time.Millisecond)
	h.Line([]byte("  more"), false, nil)
	now = now.Add(600 * time.Millisecond) // 1.2s after the first line, 0.6s after the last
	h.Tick()
	if len(col.recs) != 0 {
		t.Fatal("flushed while lines were still coming")
	}
	now = now.Add(500 * time.Millisecond)
	h.Tick()
	if len(col.recs) != 1 || col.recs[0].Message != "first\n  more" {
		t.Fatalf("got %q", col.messages())
	}
	if got := col.recs[0].Time.AsTime(); !got.Equal(time.Unix(1000, 0)) {
		t.Errorf("time %v: want the first line's", got)
	}
}

func TestTextLines(t *testing.T) {
	o := DefaultHandlerOptions()
	o.Multiline = false
	o.MaxLineBytes = 1024
	o.Attrs = map[string]string{"stream": "stdout"}
	h, col := newTestHandler(o)
	long := strings.Repeat("x", 5000)
	feed(h, "ok\n\xff\xfebinary\x00\n"+long+"\nWARN last")
	if len(col.recs) != 4 {
		t.Fatalf("got %d records", len(col.recs))
	}
	if col.recs[1].Message != "\uFFFDbinary\x00" {
		t.Errorf("invalid UTF-8: %q", col.recs[1].Message)
	}
	if len(col.recs[2].Message) != 1024 || col.recs[2].Attributes["truncated"] != "true" || col.recs[2].Attributes["stream"] != "stdout" {
		t.Errorf("long line: %d bytes, attrs %v", len(col.recs[2].Message), col.recs[2].Attributes)
	}
	if col.recs[3].Message != "WARN last" || col.recs[3].Level != "warn" {
		t.Errorf("last line %q %s", col.recs[3].Message, col.recs[3].Level)
	}
	if col.recs[0].Attributes["truncated"] != "" {
		t.Error("short line marked truncated")
	}
}

func TestJSONLines(t *testing.T) {
	o := DefaultHandlerOptions()
	o.Format = FormatJSON
	o.Attrs = map[string]string{"file": "/x"}
	h, col := newTestHandler(o)
	feed(h, `{"time":"2026-01-01T12:00:00.123456789Z","service":"api","host":"web-1","level":"WARNING","message":"slow","trace_id":"t1","attributes":{"status":"500","n":3,"ok":true}}
not json
{"message":"no time","level":"bogus"}

{"time":"yesterday","message":"bad time"}
[1,2]
`)
	if len(col.recs) != 2 || col.dropped != 3 {
		t.Fatalf("records %q, dropped %d", col.messages(), col.dropped)
	}
	r := col.recs[0]
	if r.Service != "api" || r.Host != "web-1" || r.Level != "warn" || r.TraceId != "t1" ||
		r.Time.AsTime().Format(time.RFC3339Nano) != "2026-01-01T12:00:00.123456789Z" {
		t.Errorf("record %v", r)
	}
	if r.Attributes["status"] != "500" || r.Attributes["n"] != "3" || r.Attributes["ok"] != "true" || r.Attributes["file"] != "/x" {
		t.Errorf("attributes %v", r.Attributes)
	}
	if col.recs[1].Level != "info" || col.recs[1].Time == nil {
		t.Errorf("defaults: %v", col.recs[1])
	}
}

func FuzzParseJSONRecord(f *testing.F) {
	f.Add([]byte(`{"message":"x","attributes":{"a":1}}`))
	f.Add([]byte(`{"time":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseJSONRecord(b, time.Unix(0, 0))
	})
}

func TestSplitter(t *testing.T) {
	type line struct {
		s   string
		tr  bool
		end int64
	}
	var got []line
	sp := newSplitter(4, func(b []byte, tr bool, end int64) { got = append(got, line{string(b), tr, end}) })
	for _, chunk := range []string{"ab", "c\nabcdefg", "hij\n", "\n", "xy"} {
		sp.Write([]byte(chunk))
	}
	if !sp.Pending() {
		t.Fatal("no pending last line")
	}
	sp.Flush()
	want := []line{{"abc", false, 4}, {"abcd", true, 15}, {"", false, 16}, {"xy", false, 18}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %+v want %+v", i, got[i], want[i])
		}
	}
}

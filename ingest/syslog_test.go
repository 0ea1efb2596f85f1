package ingest

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/shiplog/shiplog/model"
)

func TestParseSyslog(t *testing.T) {
	recv := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	rfc := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixNano()
	}
	attrs := func(kv ...string) []model.Attr {
		var as []model.Attr
		for i := 0; i < len(kv); i += 2 {
			as = append(as, model.Attr{Key: kv[i], Value: kv[i+1]})
		}
		return as
	}
	cases := []struct {
		name string
		in   string
		want model.Record
	}{
		{"5424 RFC example 1", `<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - ` + "\xEF\xBB\xBF" + `'su root' failed for lonvick on /dev/pts/8`,
			model.Record{Time: rfc("2003-10-11T22:14:15.003Z"), Labels: model.Labels{Host: "mymachine.example.com", Service: "su"}, Level: model.LevelFatal,
				Message: "'su root' failed for lonvick on /dev/pts/8", Attrs: attrs("facility", "auth", "msgid", "ID47")}},
		{"5424 structured data", `<165>1 2003-10-11T22:14:15.003-07:00 web-1 evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] An application event`,
			model.Record{Time: rfc("2003-10-11T22:14:15.003-07:00"), Labels: model.Labels{Host: "web-1", Service: "evntslog"}, Level: model.LevelInfo,
				Message: "An application event",
				Attrs: attrs("examplePriority@32473.class", "high", "exampleSDID@32473.eventID", "1011", "exampleSDID@32473.eventSource", "Application",
					"exampleSDID@32473.iut", "3", "facility", "local4", "msgid", "ID47", "procid", "1234")}},
		{"5424 escapes, no message", `<11>1 - - app - - [x@1 a="q\"b\\c\]d" b=""]`,
			model.Record{Time: recv.UnixNano(), Labels: model.Labels{Service: "app"}, Level: model.LevelError,
				Attrs: attrs("facility", "user", "x@1.a", `q"b\c]d`, "x@1.b", "")}},
		{"5424 header only", `<15>1 - host - - - -`,
			model.Record{Time: recv.UnixNano(), Labels: model.Labels{Host: "host"}, Level: model.LevelDebug, Attrs: attrs("facility", "user")}},
		{"5424 repeated param, empty element", `<14>1 - h a - - [origin ip="1.2.3.4" ip="5.6.7.8"][meta] m`,
			model.Record{Time: recv.UnixNano(), Labels: model.Labels{Host: "h", Service: "a"}, Level: model.LevelInfo, Message: "m",
				Attrs: attrs("facility", "user", "meta", "", "origin.ip", "1.2.3.4,5.6.7.8")}},
		{"3164 with host and pid", "<13>Feb  5 17:32:18 web-7 sshd[4242]: Accepted publickey for deploy\n",
			model.Record{Time: recv.UnixNano(), Labels: model.Labels{Host: "web-7", Service: "sshd"}, Level: model.LevelInfo,
				Message: "Accepted publickey for deploy", Attrs: attrs("facility", "user", "procid", "4242")}},
		{"3164 without host", "<28>Oct 11 22:14:15 cron: job done",
			model.Record{Time: recv.UnixNano(), Labels: model.Labels{Service: "cron"}, Level: model.LevelWarn,
				Message: "job done", Attrs: attrs("facility", "daemon")}},
		{"3164 rfc3339 time", "<86>2024-05-06T07:08:09.5+02:00 db-1 postgres[77]: checkpoint complete",
			model.Record{Time: rfc("2024-05-06T07:08:09.5+02:00"), Labels: model.Labels{Host: "db-1", Service: "postgres"}, Level: model.LevelInfo,
				Message: "checkpoint complete", Attrs: attrs("facility", "authpriv", "procid", "77")}},
		{"3164 no timestamp", "<0>kernel panic: not syncing",
			model.Record{Time: recv.UnixNano(), Level: model.LevelFatal,
				Message: "kernel panic: not syncing", Attrs: attrs("facility", "kern")}},
		{"3164 tag without timestamp", "<30>systemd[1]: Started Session 4.",
			model.Record{Time: recv.UnixNano(), Labels: model.Labels{Service: "systemd"}, Level: model.LevelInfo,
				Message: "Started Session 4.", Attrs: attrs("facility", "daemon", "procid", "1")}},
		{"3164 free text", "<190>hello world",
			model.Record{Time: recv.UnixNano(), Level: model.LevelInfo,
				Message: "hello world", Attrs: attrs("facility", "local7")}},
		{"invalid UTF-8", "<14>Jan  1 00:00:00 h t: caf\xe9",
			model.Record{Time: recv.UnixNano(), Labels: model.Labels{Host: "h", Service: "t"}, Level: model.LevelInfo,
				Message: "caf\uFFFD", Attrs: attrs("facility", "user")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseSyslog([]byte(c.in), recv)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("ParseSyslog(%q)\n got %+v\nwant %+v", c.in, got, c.want)
			}
		})
	}
}

func TestParseSyslogMalformed(t *testing.T) {
	for _, in := range []string{
		"", "no pri", "<>1 x", "<192>1 - - - - - -", "<1234>x", "<13",
		"<13>1 2003-13-11T22:14:15Z h a p m -",       // bad month
		"<13>1 - h a p m",                            // no SD
		"<13>1 - h a p m x",                          // SD neither - nor [
		"<13>1 - h a p m [id a=b]",                   // unquoted value
		"<13>1 - h a p m [id a=\"b]",                 // unclosed value
		"<13>1 - h a p m [id a=\"b\"",                // unclosed element
		"<13>1 - h a p m [id a=\"b\"]x",              // no space before MSG
		"<13>1 - h a p m [" + strings.Repeat("[", 3), // garbage
		"<13>1 - h a p m [x" + strings.Repeat(` a="b"`, maxSDParams+1) + "]",
	} {
		if r, err := ParseSyslog([]byte(in), time.Now()); !errors.Is(err, ErrSyslog) {
			t.Errorf("ParseSyslog(%.60q) = %+v, %v; want ErrSyslog", in, r, err)
		}
	}
}

func TestSyslogReader(t *testing.T) {
	msgs := []string{"<13>1 - h a - - - one", "<13>1 - h a - - - two\nlines", "<14>Jan  1 00:00:00 h t: three", "<13>1 - h a - - - " + strings.Repeat("x", 100)}
	var stream strings.Builder
	// Octet counting and newline framing mixed, with blank lines and NULs between.
	fmt.Fprintf(&stream, "%d %s", len(msgs[0]), msgs[0])
	fmt.Fprintf(&stream, "%d %s", len(msgs[1]), msgs[1])
	fmt.Fprintf(&stream, "\n\x00%s\r\n", msgs[2])
	fmt.Fprintf(&stream, "%d %s", len(msgs[3]), msgs[3])
	stream.WriteString("<13>1 - h a - - - last line without LF")
	want := []string{msgs[0], msgs[1], msgs[2] + "\r\n", msgs[3][:64], "<13>1 - h a - - - last line without LF"}
	for _, name := range []string{"whole", "one byte at a time"} {
		t.Run(name, func(t *testing.T) {
			var rd io.Reader = strings.NewReader(stream.String())
			if name != "whole" {
				rd = iotest.OneByteReader(rd)
			}
			r := NewSyslogReader(rd, 64)
			for i, w := range want {
				got, err := r.Next()
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if string(got) != w {
					t.Fatalf("message %d = %q, want %q", i, got, w)
				}
				if cut := i == 3; r.Truncated() != cut {
					t.Errorf("message %d: Truncated() = %v", i, r.Truncated())
				}
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("after the last message: %v, want EOF", err)
			}
		})
	}
	t.Run("long line is cut", func(t *testing.T) {
		r := NewSyslogReader(strings.NewReader(strings.Repeat("y", 100000)+"\nnext\n"), 1000)
		got, err := r.Next()
		if err != nil || len(got) != 1000 || !r.Truncated() {
			t.Fatalf("got %d bytes, %v, truncated %v", len(got), err, r.Truncated())
		}
		if got, err := r.Next(); err != nil || string(got) != "next\n" {
			t.Fatalf("after a cut line: %q, %v", got, err)
		}
	})
	t.Run("short frame", func(t *testing.T) {
		r := NewSyslogReader(strings.NewReader("50 <13>1 - h a - - - short"), 1000)
		if _, err := r.Next(); err != io.ErrUnexpectedEOF {
			t.Fatalf("got %v, want ErrUnexpectedEOF", err)
		}
	})
}

func ExampleParseSyslog() {
	r, _ := ParseSyslog([]byte(`<11>1 2026-01-01T12:00:00Z web-7 api 4242 - [deploy@1 id="deploy-0042"] connection refused`), time.Now())
	fmt.Println(r.Host, r.Service, r.Level, r.Message)
	for _, a := range r.Attrs {
		fmt.Printf("%s=%s\n", a.Key, a.Value)
	}
	// Output:
	// web-7 api error connection refused
	// deploy@1.id=deploy-0042
	// facility=user
	// procid=4242
}

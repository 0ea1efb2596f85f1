package ingest

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shiplog/shiplog/model"
)

// FuzzParseSyslog: any input parses or fails with ErrSyslog; a parsed record
// has valid UTF-8, sorted unique attribute keys and a time.
// Seeds: testdata/fuzz/FuzzParseSyslog.
func FuzzParseSyslog(f *testing.F) {
	for _, s := range []string{
		`<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed`,
		`<165>1 2003-10-11T22:14:15.003-07:00 web-1 evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="App"][p@1 class="high"] msg`,
		`<13>Feb  5 17:32:18 web-7 sshd[4242]: Accepted publickey`,
		`<86>2024-05-06T07:08:09.5+02:00 db-1 postgres[77]: checkpoint`,
		`<0>kernel panic`, `<13>1 - - - - - [a b="c\"\]"]`, `<191>`,
	} {
		f.Add([]byte(s))
	}
	recv := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, msg []byte) {
		orig := bytes.Clone(msg)
		r, err := ParseSyslog(msg, recv)
		if !bytes.Equal(orig, msg) {
			t.Fatal("ParseSyslog changed its input")
		}
		if err != nil {
			if !errors.Is(err, ErrSyslog) {
				t.Fatalf("error %v is not ErrSyslog", err)
			}
			return
		}
		if r.Time == 0 {
			t.Error("no time")
		}
		for _, s := range []string{r.Host, r.Service, r.Message} {
			if !utf8.ValidString(s) {
				t.Errorf("invalid UTF-8 %q", s)
			}
		}
		if !slices.IsSortedFunc(r.Attrs, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) }) {
			t.Errorf("attributes not sorted: %v", r.Attrs)
		}
		for i, a := range r.Attrs {
			if a.Key == "" || !utf8.ValidString(a.Key) || !utf8.ValidString(a.Value) || i > 0 && r.Attrs[i-1].Key == a.Key {
				t.Errorf("bad attribute %q=%q", a.Key, a.Value)
			}
		}
	})
}

// FuzzSyslogReader: any stream is split into messages no longer than the
// maximum, and ends.
func FuzzSyslogReader(f *testing.F) {
	f.Add([]byte("12 <13>1 - - -\n<14>Jan  1 00:00:00 h t: x\n\x00\n3 abc"))
	f.Add([]byte("99999999999 x"))
	f.Add([]byte("5 ab"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := NewSyslogReader(bytes.NewReader(stream), 32)
		for i := 0; ; i++ {
			if i > len(stream)+1 {
				t.Fatal("more messages than bytes")
			}
			msg, err := r.Next()
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrSyslogFrame) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(msg) > 32 {
				t.Fatalf("message of %d bytes over the maximum", len(msg))
			}
		}
	})
}

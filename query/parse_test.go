package query_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/query"
)

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  string // the error holds this
	}{
		{`"connection refused`, "unterminated quote"},
		{`host:"web-1`, "unterminated quote"},
		{`/time(out`, "unterminated regular expression"},
		{`a AND`, "AND needs a term on its right"},
		{`AND a`, "AND needs a term on its left"},
		{`a AND AND b`, "AND needs a term on its right"},
		{`a AND OR b`, "AND needs a term on its right"},
		{`OR b`, "OR needs a term on its left"},
		{`a OR`, "OR needs a term on its right"},
		{`a OR OR b`, "OR needs a term on its right"},
		{`NOT`, "NOT needs a term"},
		{`a NOT`, "NOT needs a term"},
		{`level:loud`, `unknown level "loud" (want trace, debug, info, warn, error or fatal)`},
		{`level:""`, "unknown level"},
		{`word~2`, "fuzzy matching (~) is not supported"},
		{`word~`, "fuzzy matching (~) is not supported"},
		{`service:api~1`, "fuzzy matching (~) is not supported"},
		{`created:>"2020-01-01"`, "date ranges are not supported in the query: use start and end"},
		{`created:<="2026-01-02T15:04:05Z"`, "date ranges are not supported"},
		{`(a`, "missing )"},
		{`(a OR (b)`, "missing )"},
		{`a)`, `unexpected ")"`},
		{`)`, `unexpected`},
		{`()`, "empty ()"},
		{`( )`, "empty ()"},
		{`a (() b)`, "empty ()"},
		{strings.Repeat("a ", 8193), "query is 16386 bytes long; the limit is 16384"},
		{`-`, "empty term"},
		{`id:xyz`, "bad record id"},
		{`id:0123456789abcdef0123456789abcdeg`, "bad record id"},
		{`/a(/`, "missing closing )"},
		{`host:/[/`, "missing closing ]"},
		{`status:>=abc`, "syntax error"},
		{`a:`, "syntax error"},
		{`:a`, "syntax error"},
		{`service:>1`, "service is not numeric"},
		{`host:<=5`, "host is not numeric"},
		{`level:>1`, "a numeric range needs an attribute field"},
		{`message:<3`, "a numeric range needs an attribute field"},
		{`level:E*`, "patterns are not supported on level"},
		{`id:/x/`, "patterns are not supported on id"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q, err := query.Parse(tc.query)
			if err == nil {
				t.Fatalf("Parse(%q) = %v; want an error", tc.query, q)
			}
			if !errors.Is(err, query.ErrBadQuery) {
				t.Errorf("error %q does not wrap ErrBadQuery", err)
			}
			if !strings.HasPrefix(err.Error(), "bad query: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q; want one holding %q", err, tc.want)
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	for _, s := range []string{
		"", " ", "\t\n", "a", "a b", "a AND b", "(a)", "((a))", "NOT a", "! a", "-a", "+a",
		"a || b", "a && b", `"a b"`, `a\ b`, "status:>=500", "status:<=5.5", "x:>-3",
		"level:30", "level:CRIT", "host:web-*", "id:0123456789abcdef0123456789abcdef",
		strings.Repeat("a", 16<<10), "日本語", "a^2",
	} {
		q, err := query.Parse(s)
		if err != nil {
			t.Errorf("Parse(%q): %v", s, err)
			continue
		}
		if q.String() != s {
			t.Errorf("Parse(%q).String() = %q", s, q.String())
		}
		if q.Cond() == nil {
			t.Errorf("Parse(%q).Cond() is nil", s)
		}
	}
}

// TestParseDocumentedRegexp parses the regular expression docs/query.md
// shows, which holds a space.
func TestParseDocumentedRegexp(t *testing.T) {
	for _, s := range []string{"/time(out|d out)/", "host:/web 1/"} {
		if _, err := query.Parse(s); err != nil {
			t.Errorf("Parse(%q): %v", s, err)
		}
	}
}

// TestParseNotBeforeOperator: NOT must be followed by a term, not by another
// operator.
func TestParseNotBeforeOperator(t *testing.T) {
	for _, s := range []string{"a NOT OR b", "NOT AND", "NOT OR", "a NOT AND b"} {
		if q, err := query.Parse(s); err == nil {
			t.Errorf("Parse(%q) = %v; want an error", s, q)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"now", now, false},
		{" now ", now, false},
		{"2026-01-02T15:04:05Z", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), false},
		{"2026-01-02T15:04:05.123456789Z", time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC), false},
		{"2026-01-02T15:04:05+02:00", time.Date(2026, 1, 2, 13, 4, 5, 0, time.UTC), false},
		{"15m", now.Add(-15 * time.Minute), false},
		{"24h", now.Add(-24 * time.Hour), false},
		{"7d", now.Add(-7 * 24 * time.Hour), false},
		{"1w", now.Add(-7 * 24 * time.Hour), false},
		{"0s", now, false},
		{"1767366245", time.Unix(1767366245, 0), false},
		{"0", time.Unix(0, 0), false}, // the epoch, not "0s ago"
		{"0.0", time.Unix(0, 0), false},
		{"1767366245.5", time.Unix(1767366245, 500000000), false},
		{"", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{"2026-01-02", time.Time{}, true},
		{"2026-01-02 15:04:05", time.Time{}, true},
		{"-5m", time.Time{}, true},
		{"-1767366245", time.Time{}, true},
		{"1e12", time.Time{}, true}, // Unix seconds beyond year 5138: likely milliseconds
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := query.ParseTime(tc.in, now)
			if tc.err {
				if err == nil {
					t.Fatalf("ParseTime(%q) = %v; want an error", tc.in, time.Unix(0, got).UTC())
				}
				if !errors.Is(err, query.ErrBadQuery) {
					t.Errorf("error %q does not wrap ErrBadQuery", err)
				}
				return
			}
			if err != nil || got != tc.want.UnixNano() {
				t.Fatalf("ParseTime(%q) = %v, %v; want %v", tc.in, time.Unix(0, got).UTC(), err, tc.want.UTC())
			}
		})
	}
}

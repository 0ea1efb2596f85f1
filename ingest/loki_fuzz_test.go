package ingest

import (
	"errors"
	"fmt"
	"testing"
	"unicode/utf8"
)

// FuzzParseLokiLabels: a label string parses or fails with ErrInvalid; what
// parses renders back to a string that parses to the same labels.
// Seeds: testdata/fuzz/FuzzParseLokiLabels.
func FuzzParseLokiLabels(f *testing.F) {
	for _, s := range []string{`{}`, `{service_name="api", host="web-1"}`, `{a="x\"y\\z\n", b='s', c=` + "`r`" + `,}`,
		`{"service.name"="api"}`, `{a="\u00e9"}`, `{a="b",a="c"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := ParseLokiLabels(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		for i, l := range ls {
			if l.Key == "" || l.Value == "" || !utf8.ValidString(l.Key) || !utf8.ValidString(l.Value) || i > 0 && ls[i-1].Key >= l.Key {
				t.Fatalf("bad labels %v", ls)
			}
		}
		again, err := ParseLokiLabels(formatLokiLabels(ls))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(ls) {
			t.Fatalf("round trip of %v: %v, %v", ls, again, err)
		}
		_ = NewLokiStream(ls).Record(1, "line", ls)
	})
}

// FuzzDecodeLokiJSON: any body decodes or fails with ErrInvalid.
// Seeds: testdata/fuzz/FuzzDecodeLokiJSON.
func FuzzDecodeLokiJSON(f *testing.F) {
	f.Add([]byte(`{"streams":[{"stream":{"service_name":"api"},"values":[["1767268800000000000","line",{"trace_id":"ab"}]]}]}`))
	f.Add([]byte(`{"streams":[{"labels":"{job=\"x\"}","entries":[{"ts":"2026-01-01T00:00:00Z","line":"l"}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := DecodeLokiJSON(body); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v is not ErrInvalid", err)
		}
	})
}

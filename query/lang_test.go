package query_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// langRecords are the records of TestLanguage: CI output with colour codes,
// CJK and Greek text, test names, host:port and file:line text, and records
// with and without each label and attribute. ChunkMaxLines is 4: streams a
// and b are sealed (and indexed), stream c stays open.
func langRecords() (sealed, open []model.Record) {
	a := model.Labels{Service: "ci", Host: "runner-1", BuildID: "b-1"}
	b := model.Labels{Host: "runner-2", DeployID: "d-1"}
	c := model.Labels{Service: "ci", BuildID: "b-2"}
	rec := func(seq uint64, l model.Labels, msg string, attrs ...string) model.Record {
		r := model.Record{Time: t0.Add(time.Duration(seq) * time.Second).UnixNano(), Labels: l, Message: msg, Seq: seq}
		for i := 0; i+1 < len(attrs); i += 2 {
			r.Attrs = append(r.Attrs, model.Attr{Key: attrs[i], Value: attrs[i+1]})
		}
		return r
	}
	sealed = []model.Record{
		rec(1, a, "\x1b[33mwarning:\x1b[0m unused import"),
		rec(2, a, "\x1b[31mERROR\x1b[0m capture failed"),
		rec(3, a, "日本語テキストを検索する。完了"),
		rec(4, a, "Ελληνικά γράμματα"),
		rec(5, a, "--- FAIL: TestPayment (0.01s)", "suite", "pay"),
		rec(6, a, "    payment_test.go:88: expected 200, got 500"),
		rec(7, a, "dial tcp stripe-mock:12111: connection refused", "status", ""),
		rec(8, a, "ΕΛΛΗΝΙΚΆ ΚΕΊΜΕΝΟΣ"),
		rec(9, b, "warn\x1b[0ming split by a colour code"),
		rec(10, b, "status ok", "status", "200"),
		rec(11, b, "TestPaymentRefund2 passed"),
		rec(12, b, ""),
	}
	open = []model.Record{
		rec(13, c, "日本語"),
		rec(14, c, "ελληνικά κείμενος lower", "status", "500"),
	}
	return sealed, open
}

// TestLanguage runs the query language's text, field and emptiness rules
// over a real store, through search (both orders, paged), histogram and the
// live-tail matcher (runCase).
func TestLanguage(t *testing.T) {
	sealed, open := langRecords()
	s := openStore(t, testOptions(4))
	e := query.New(s, query.DefaultOptions())
	appendRecords(t, s, sealed)
	waitIndexed(t, s, 0)
	appendRecords(t, s, open)
	byseq := map[uint64]model.Record{}
	for _, r := range append(slices.Clone(sealed), open...) {
		byseq[r.Seq] = r
	}
	for _, tc := range []struct{ q, want string }{
		// Colour codes are not part of the words.
		{"warning", "1 9"},
		{`"warning:"`, "1 9"},
		{`"unused import"`, "1"},
		{"capture", "2"},
		{"33mwarning", "none"},
		{"/^warning: unused/", "1"},
		{"warn*", "1 9"},
		// CJK: bigrams, found inside longer runs.
		{"日本語", "3 13"},
		{"テキスト", "3"},
		{"本語テ", "3"},
		{"日本語テキスト", "3"},
		{"完了", "3"},
		{"検索する完了", "none"},
		{"日本*", "3 13"},
		// Unicode case folding, final sigma included.
		{"ελληνικά", "4 8 14"},
		{"ΕΛΛΗΝΙΚΆ", "4 8 14"},
		{"Ελληνικά", "4 8 14"},
		{"κείμενος", "8 14"},
		{"ΚΕΊΜΕΝΟΣ", "8 14"},
		{`"ελληνικά γράμματα"`, "4"},
		{"ελληνικ*", "4 8 14"},
		// Prefix search on words.
		{"TestPay*", "5 11"},
		{"testpay*", "5 11"},
		{"TestPaymentR*", "11"},
		{"TestPaymentRefund2", "11"},
		{"msg:testpayment*", "5 11"},
		{"Te*", "5 11"},
		// a:b where a is no field: text.
		{"payment_test.go:88", "6"},
		{"stripe-mock:12111", "7"},
		{"-payment_test.go:88", "1-5 7-14"},
		{"stripe-mock:12111 OR status:200", "7 10"},
		{"nosuchkey:value", "none"},
		{"status:200", "10"},
		{"suite:pay", "5"},
		// Empty and missing, field by field.
		{`status:""`, "1-9 11-13"},
		{"status:*", "10 14"},
		{"suite:*", "5"},
		{"-suite:*", "1-4 6-14"},
		{`service:""`, "9-12"},
		{"service:*", "1-8 13 14"},
		{"build_id:*", "1-8 13 14"},
		{`build_id:""`, "9-12"},
		{"build_id:b-*", "1-8 13 14"},
		{"build_id:/.*/", "1-8 13 14"},
		{`host:""`, "13 14"},
		{"host:*", "1-12"},
		{"deploy_id:*", "9-12"},
		{`deploy_id:""`, "1-8 13 14"},
		{`-deploy_id:""`, "9-12"},
		{"level:*", "1-14"},
		{`level:""`, "none"},
		{`message:""`, "12"},
		{"message:*", "1-11 13 14"},
		{`trace_id:""`, "1-14"},
		{"trace_id:*", "none"},
		{"id:*", "1-14"},
		{`nosuchkey:""`, "1-14"},
		{"nosuchkey:*", "none"},
	} {
		want, err := parseSeqs(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		c := queryCase{pos: "lang", query: tc.q, want: want}
		t.Run(tc.q, func(t *testing.T) { runCase(t, e, c, byseq) })
	}
}

// TestUnknownFieldByRange: a:b is an attribute over a range where some line
// has attribute a, and text elsewhere.
func TestUnknownFieldByRange(t *testing.T) {
	s := openStore(t, testOptions(4))
	e := query.New(s, query.DefaultOptions())
	day1 := []model.Record{
		{Time: t0.UnixNano(), Labels: model.Labels{Service: "api"}, Message: "served", Attrs: []model.Attr{{Key: "port", Value: "8080"}}, Seq: 1},
		{Time: t0.Add(time.Second).UnixNano(), Labels: model.Labels{Service: "api"}, Message: "listening on port:8080", Seq: 2},
	}
	day2 := []model.Record{
		{Time: t0.Add(48 * time.Hour).UnixNano(), Labels: model.Labels{Service: "api"}, Message: "listening on port:8080", Seq: 3},
	}
	appendRecords(t, s, append(day1, day2...))
	q := mustParse(t, "port:8080")
	for _, tc := range []struct {
		name string
		tr   model.TimeRange
		want []uint64
	}{
		{"day with the attribute", model.TimeRange{Start: t0.Add(-time.Hour).UnixNano(), End: t0.Add(time.Hour).UnixNano()}, []uint64{1}},
		{"day without it", model.TimeRange{Start: t0.Add(47 * time.Hour).UnixNano(), End: t0.Add(49 * time.Hour).UnixNano()}, []uint64{3}},
		{"both days", model.TimeRange{Start: t0.Add(-time.Hour).UnixNano(), End: t0.Add(49 * time.Hour).UnixNano()}, []uint64{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			for _, r := range searchAll(t, e, q, tc.tr, true, 10) {
				got = append(got, r.Seq)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("port:8080 over %s: seqs %v, want %v", tc.name, got, tc.want)
			}
			b, err := e.Histogram(context.Background(), q, tc.tr, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, x := range b {
				n += x.Count
			}
			if n != len(tc.want) {
				t.Fatalf("histogram counts %d, want %d", n, len(tc.want))
			}
			st, err := e.Stats(context.Background(), query.StatsParams{Query: q, Range: tc.tr, By: []string{"service"}})
			if err != nil {
				t.Fatal(err)
			}
			if st.Total != int64(len(tc.want)) {
				t.Fatalf("stats total %d, want %d", st.Total, len(tc.want))
			}
			fc, err := e.Facets(context.Background(), query.FacetsParams{Query: q, Range: tc.tr, Fields: []string{"service"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(fc.Fields) != 1 || len(fc.Fields[0].Values) != 1 || fc.Fields[0].Values[0].Count != int64(len(tc.want)) {
				t.Fatalf("facets %+v, want service api with %d", fc.Fields, len(tc.want))
			}
		})
	}
	if r := e.Resolve(q, everything); r != q {
		t.Errorf("Resolve over a range with the key changed the query")
	}
}

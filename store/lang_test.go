package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/shiplog/shiplog/model"
)

func TestTokens(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		wide []bool
	}{
		{"GET /users done in 5ms", []string{"get", "users", "done", "in", "5ms"}, nil},
		{"\x1b[33mwarning:\x1b[0m unused", []string{"warning", "unused"}, nil},
		{"warn\x1b[0ming", []string{"warning"}, nil},
		{"日本語テキスト", []string{"日本", "本語", "語テ", "テキ", "キス", "スト"}, []bool{true, true, true, true, true, true}},
		{"日", []string{"日"}, []bool{true}},
		{"日本語。完了", []string{"日本", "本語", "完了"}, []bool{true, true, true}},
		{"東京test1日本", []string{"東京", "test1", "日本"}, []bool{true, true, true}},
		{"Ελληνικά ΚΕΊΜΕΝΟΣ", []string{"ελληνικά", "κείμενοσ"}, []bool{true, true}},
		{"κείμενος", []string{"κείμενοσ"}, []bool{true}},
		{"naïve—Test", []string{"naïve", "test"}, []bool{true, true}},
		{"café ouvert", []string{"café", "ouvert"}, []bool{true, false}},
		{"\u212aelvin", []string{"\u212aelvin"}, []bool{true}}, // the Kelvin sign does not fold to ASCII
		{"bad\xffbyte", []string{"bad\xffbyte"}, []bool{true}},
		{"한국어", []string{"한국", "국어"}, []bool{true, true}},
	} {
		var got []string
		var wide []bool
		EachToken(tc.in, func(tok string, w bool) {
			got = append(got, tok)
			wide = append(wide, w)
		})
		want := tc.wide
		if want == nil {
			want = make([]bool, len(tc.want))
		}
		if !slices.Equal(got, tc.want) || !slices.Equal(wide, want) {
			t.Errorf("EachToken(%q) = %q %v, want %q %v", tc.in, got, wide, tc.want, want)
		}
		if toks := Tokens(nil, tc.in); !slices.Equal(toks, tc.want) {
			t.Errorf("Tokens(%q) = %q", tc.in, toks)
		}
	}
}

// TestWideTermsOnFormat1Index: a day index created before token format 2
// holds wide runs whole, so a wide term must not narrow the search there; a
// format-2 index narrows it.
func TestWideTermsOnFormat1Index(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 2
	s := testOpen(t, dir, o)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var b model.Batch
	for i, msg := range []string{"日本語テキスト", "plain words", "other words", "more words"} {
		b.Records = append(b.Records, model.Record{Time: t0.Add(time.Duration(i) * time.Second).UnixNano(), Labels: model.Labels{Service: "a"}, Message: msg})
	}
	if _, err := s.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	all := model.TimeRange{Start: 0, End: 1 << 62}
	wide := WordTerm("日本", true)
	s = testOpen(t, dir, o)
	refs, err := CollectCandidates(s.Candidates(context.Background(), all, wide, false))
	if err != nil || len(refs) != 1 {
		t.Fatalf("format 2: %d candidates (%v), want the 1 chunk holding the term", len(refs), err)
	}
	// Make the day's index read as one an older version created.
	day := model.Day(t0.UnixNano())
	idx, err := s.idx.get(day, false)
	if err != nil || idx == nil {
		t.Fatalf("index: %v", err)
	}
	if err := idx.DeleteInternal(formatKey); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = testOpen(t, dir, o)
	defer s.Close()
	if f := s.idx.format(day); f != 1 {
		t.Fatalf("format %d, want 1", f)
	}
	if refs, err = CollectCandidates(s.Candidates(context.Background(), all, wide, false)); err != nil || len(refs) != 2 {
		t.Fatalf("format 1: %d candidates (%v), want both chunks", len(refs), err)
	}
	if refs, err = CollectCandidates(s.Candidates(context.Background(), all, WordTerm("plain", false), false)); err != nil || len(refs) != 1 {
		t.Fatalf("format 1, ASCII word: %d candidates (%v), want 1", len(refs), err)
	}
}

// TestHasAttrKey: keys are known per day, from open and sealed chunks, after a
// reopen too; a day sealed before keys were recorded has every key.
func TestHasAttrKey(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 2
	s := testOpen(t, dir, o)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day1 := model.TimeRange{Start: t0.Add(-time.Hour).UnixNano(), End: t0.Add(time.Hour).UnixNano()}
	day2 := model.TimeRange{Start: t0.Add(47 * time.Hour).UnixNano(), End: t0.Add(49 * time.Hour).UnixNano()}
	rec := func(at time.Time, k string) model.Record {
		return model.Record{Time: at.UnixNano(), Labels: model.Labels{Service: "a"}, Message: "m", Attrs: []model.Attr{{Key: k, Value: "1"}}}
	}
	// Day one: 3 lines, one chunk sealed and one open; day two: one open line.
	b := model.Batch{Records: []model.Record{rec(t0, "sealed_key"), rec(t0, "sealed_key"), rec(t0, "open_key"), rec(t0.Add(48*time.Hour), "day2_key")}}
	if _, err := s.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	check := func(when string, tr model.TimeRange, key string, want bool) {
		t.Helper()
		if got := s.HasAttrKey(tr, key); got != want {
			t.Errorf("%s: HasAttrKey(%s) = %v, want %v", when, key, got, want)
		}
	}
	for _, when := range []string{"open", "reopened"} {
		check(when, day1, "sealed_key", true)
		check(when, day1, "open_key", true)
		check(when, day1, "day2_key", false)
		check(when, day2, "day2_key", true)
		check(when, day2, "sealed_key", false)
		check(when, model.TimeRange{Start: day1.Start, End: day2.End}, "day2_key", true)
		check(when, day1, "status", false)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = testOpen(t, dir, o)
	}
	// Remove the record of keys, as a store written before it would be.
	if err := s.db.DropPrefix([]byte{pfxAttrKey}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxAttrKey}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			t.Errorf("key %q left", it.Item().Key())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = testOpen(t, dir, o)
	defer s.Close()
	check("older day", day1, "anything", true)
	check("older day", day2, "day2_key", true)
}

// TestPrefixTerm: a prefix is looked up among the words and the heads of
// id-like tokens of format-2 indexes, unless it expands to too many terms.
func TestPrefixTerm(t *testing.T) {
	o := DefaultOptions()
	o.ChunkMaxLines = 2
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var many strings.Builder
	for i := 0; i <= maxPrefixTerms; i++ {
		fmt.Fprintf(&many, "pre%c%c%c ", 'a'+i%26, 'a'+i/26%26, 'a'+i/676%26)
	}
	var b model.Batch
	for i, msg := range []string{"TestPayment ok", "x", "TestPaymentRefund2 failed", "y", "other words", "z", many.String(), "w"} {
		b.Records = append(b.Records, model.Record{Time: t0.Add(time.Duration(i) * time.Second).UnixNano(), Labels: model.Labels{Service: "a"}, Message: msg})
	}
	if _, err := s.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	all := model.TimeRange{Start: 0, End: 1 << 62}
	deadline := time.Now().Add(20 * time.Second)
	for {
		refs, err := CollectCandidates(s.Candidates(context.Background(), all, Term(FieldWord, "nosuchword"), false))
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("chunks not indexed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, tc := range []struct {
		p    string
		want int
	}{
		{"testpay", 2},           // a word and the head of testpaymentrefund2
		{"testpaymentrefund", 1}, // the head only
		{"oth", 1},
		{"zzz", 0},
		{"pre", 4}, // more than maxPrefixTerms terms: every chunk of the day
		{"te", 4},  // shorter than MinIndexedPrefix
	} {
		refs, err := CollectCandidates(s.Candidates(context.Background(), all, PrefixTerm(tc.p), false))
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != tc.want {
			t.Errorf("prefix %q: %d candidate chunks, want %d", tc.p, len(refs), tc.want)
		}
	}
}

// FuzzTokens: tokens are never empty nor hold ESC, and the tokens of the
// tokens written out are the same tokens (what a query made of a message's
// words searches for is what the index holds).
func FuzzTokens(f *testing.F) {
	for _, s := range []string{"GET /users 5ms", "\x1b[31mERROR\x1b[0m x", "日本語テキスト", "Ελληνικά ΚΕΊΜΕΝΟΣ", "naïve—test", "東京test1日本", "bad\xffbyte", "ǅ ſ K"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		toks := Tokens(nil, s)
		for _, tok := range toks {
			if tok == "" || strings.IndexByte(tok, 0x1b) >= 0 {
				t.Fatalf("Tokens(%q) has token %q", s, tok)
			}
		}
		if again := Tokens(nil, strings.Join(toks, " ")); !slices.Equal(again, toks) {
			t.Fatalf("Tokens(%q) = %q, but the tokens of those are %q", s, toks, again)
		}
	})
}

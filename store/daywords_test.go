package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/blevesearch/bleve/v2/search/query"
	"github.com/dgraph-io/badger/v4"

	"github.com/shiplog/shiplog/model"
)

// A day's words (in one line in dayWordLineShare of its first chunks) are written once its first
// dayWordSampleChunks chunks are sealed, and the documents of the chunks
// sealed after leave them out; a search for one, or for a prefix of one,
// still finds every chunk holding it, before and after a reopen, and a
// rarer word is still looked up in the index. The words go with their day.
func TestDayWords(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 20
	s := testOpen(t, dir, o)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day := uint32(t0.Unix() / 86400)
	const chunks = dayWordSampleChunks + 8
	for c := range chunks {
		if c == dayWordSampleChunks {
			waitDayWords(t, s, day)
		}
		b := model.Batch{}
		for i := range o.ChunkMaxLines {
			n := c*o.ChunkMaxLines + i
			msg := fmt.Sprintf("GET /api/orders/%d completed status=200", n)
			switch {
			case n == chunks*o.ChunkMaxLines-3:
				msg = "transaction aborted: deadlock detected"
			case c%16 == 1 && i == 0: // one line in 320
				msg += " retried"
			}
			b.Records = append(b.Records, model.Record{Time: t0.Add(time.Duration(n) * time.Millisecond).UnixNano(),
				Labels: model.Labels{Service: "api", Host: "h"}, Message: msg, Seq: uint64(n + 1)})
		}
		if _, err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer func() { s.Close() }()

	words := s.words.of(day)
	for _, w := range []string{"completed", "status", "get", "api"} {
		if _, ok := words[w]; !ok {
			t.Errorf("%q is not a day word (%d words)", w, len(words))
		}
	}
	for _, w := range []string{"retried", "deadlock"} {
		if _, ok := words[w]; ok {
			t.Errorf("%q is a day word: it is in fewer than one line in %d", w, dayWordLineShare)
		}
	}
	// The table sealing leaves them out of documents by holds the same.
	tab := s.words.tableOf(day)
	for w := range words {
		if !tab.has(w) {
			t.Errorf("day word %q is not in the day's table", w)
		}
	}
	for _, w := range []string{"retried", "deadlock", "a_word_longer_than_sixteen_bytes", "nul\x00"} {
		if tab.has(w) {
			t.Errorf("%q is in the day's table", w)
		}
	}
	if s.words.tableOf(day+1) != nil || s.words.tableOf(day) != tab {
		t.Error("tableOf: a table for a day without words, or a new one each time")
	}
	tq := query.NewTermQuery("completed")
	tq.SetField(FieldWord)
	ids, err := s.idx.search(ctx, day, tq)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < dayWordSampleChunks || len(ids) >= chunks {
		t.Errorf("%d documents hold a day word, want the %d sealed before the words at least and not all %d", len(ids), dayWordSampleChunks, chunks)
	}
	count := func(c *Cond) int { // on s as it is when called
		t.Helper()
		refs, err := CollectCandidates(s.Candidates(ctx, model.TimeRange{Start: 0, End: 1 << 62}, c, true))
		if err != nil {
			t.Fatal(err)
		}
		return len(refs)
	}
	for _, tc := range []struct {
		name string
		c    *Cond
		want int
	}{
		{"day word", WordTerm("completed", false), chunks},
		{"prefix of a day word", PrefixTerm("complet"), chunks},
		{"day word or another", Or(WordTerm("completed", false), WordTerm("deadlock", false)), chunks},
		{"rare word", WordTerm("deadlock", false), 1},
		{"day word and a rare one", And(WordTerm("completed", false), WordTerm("deadlock", false)), 1},
		{"word in one line in 320", WordTerm("retried", false), (chunks + 14) / 16},
	} {
		if got := count(tc.c); got != tc.want {
			t.Errorf("%s: %d candidate chunks, want %d", tc.name, got, tc.want)
		}
	}
	// Day words that do not decode: any word may be left out of the
	// day's documents, so every word search takes every chunk.
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(dayWordsKey(day), []byte{dayWordsVersion, 9}) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	if got := count(WordTerm("deadlock", false)); got != chunks {
		t.Errorf("rare word with broken day words: %d candidate chunks, want all %d", got, chunks)
	}
	if got := count(PrefixTerm("deadl")); got != chunks {
		t.Errorf("prefix with broken day words: %d candidate chunks, want all %d", got, chunks)
	}
	if err := s.DropDaysBefore(day + 1); err != nil {
		t.Fatal(err)
	}
	if err := s.db.View(func(txn *badger.Txn) error { _, err := txn.Get(dayWordsKey(day)); return err }); err != badger.ErrKeyNotFound {
		t.Fatalf("the dropped day's words: %v", err)
	}
	if s.words.of(day) != nil || s.words.isBroken(day) {
		t.Fatal("the dropped day's words are still used")
	}
}

// waitDayWords waits until s has written day's words (a minute at most:
// they follow the sealing of the day's first chunks).
func waitDayWords(t *testing.T, s *Store, day uint32) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); s.words.of(day) == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no day words after a minute")
		}
	}
}

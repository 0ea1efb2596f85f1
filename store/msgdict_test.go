package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/klauspost/compress/zstd"

	"github.com/shiplog/shiplog/model"
)

// A day's first dictSampleChunks chunks are sealed without a dictionary;
// then the day's dictionary is written and the next chunks' message blocks
// are compressed with it. Every line reads back the same, by word and
// whole, before and after a reopen; the dictionary goes with its day.
func TestMessageDictionary(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 300 // two blocks a chunk
	s := testOpen(t, dir, o)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const chunks = dictSampleChunks + 6
	var want []string
	day := uint32(t0.Unix() / 86400)
	for c := range chunks {
		if c == dictSampleChunks {
			// The first chunks' samples make the dictionary; wait for it,
			// so that every later chunk is made with it (chunks sealed by
			// other sealers while it is trained go without).
			waitDict(t, s, day)
		}
		b := model.Batch{}
		for i := range o.ChunkMaxLines {
			n := c*o.ChunkMaxLines + i
			msg := fmt.Sprintf("GET /api/v2/orders/%d completed status=200 duration=%d.%dms request_id=%016x", n*7919%100000, n%300, n%10, n*104729)
			if n%1000 == 999 {
				msg = fmt.Sprintf("transaction aborted: deadlock detected on table t%d", n)
			}
			want = append(want, msg)
			b.Records = append(b.Records, model.Record{Time: t0.Add(time.Duration(n) * time.Millisecond).UnixNano(),
				Labels: model.Labels{Service: "api", Host: "h"}, Message: msg, Seq: uint64(n + 1)})
		}
		if _, err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store) {
		t.Helper()
		withDict := 0
		err := s.db.View(func(txn *badger.Txn) error {
			if _, err := txn.Get(dictKey(day)); err != nil {
				return fmt.Errorf("dictionary: %w", err)
			}
			it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pfxChunk}})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				cv, _ := it.Item().ValueCopy(nil)
				n, cols, err := splitColumns(cv, numCols-colMsgLens)
				if err != nil {
					return err
				}
				_, blocks, err := splitMsgBlocks(cols[colMsgs-colMsgLens], n)
				if err != nil {
					return err
				}
				var h zstd.Header
				if err := h.Decode(blocks[0].stored[1:]); err != nil {
					return err
				}
				if h.DictionaryID == dictID(day) {
					withDict++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if withDict != chunks-dictSampleChunks {
			t.Fatalf("%d chunks made with the dictionary, want %d", withDict, chunks-dictSampleChunks)
		}
		got := map[string]bool{}
		refs, err := CollectCandidates(s.Candidates(ctx, model.TimeRange{Start: 0, End: 1 << 62}, nil, true))
		if err != nil {
			t.Fatal(err)
		}
		lines := 0
		for _, r := range refs {
			l, err := s.Load(ctx, r, true)
			if err != nil {
				t.Fatal(err)
			}
			for i := range l.Len() {
				if l.Msgs[i] != want[l.Meta.FirstLine+uint32(i)] {
					t.Fatalf("line %d: %q, want %q", l.Meta.FirstLine+uint32(i), l.Msgs[i], want[l.Meta.FirstLine+uint32(i)])
				}
				lines++
			}
			w, err := s.LoadWord(ctx, r, "deadlock")
			if err != nil {
				t.Fatal(err)
			}
			for i := range w.Len() {
				if w.Skipped == nil || !w.Skipped[i] {
					got[w.Msgs[i]] = true
				}
			}
		}
		if lines != len(want) || len(got) != len(want)/1000 {
			t.Fatalf("%d lines, %d holding the word; want %d, %d", lines, len(got), len(want), len(want)/1000)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer s.Close()
	check(s)
	if err := s.DropDaysBefore(day + 1); err != nil {
		t.Fatal(err)
	}
	if err := s.db.View(func(txn *badger.Txn) error { _, err := txn.Get(dictKey(day)); return err }); err != badger.ErrKeyNotFound {
		t.Fatalf("the dropped day's dictionary: %v", err)
	}
}

// waitDict waits until s has made day's message dictionary (a minute at
// most: it follows the sealing of the day's first chunks).
func waitDict(t *testing.T, s *Store, day uint32) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		s.dicts.mu.Lock()
		made := s.dicts.days[day] != nil
		s.dicts.mu.Unlock()
		if made {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message dictionary for day %d a minute after its first %d chunks", day, dictSampleChunks)
		}
	}
}

// A damaged dictionary record does not keep the store from opening: the
// chunks made with it answer an error, the day's other chunks read, and no
// other dictionary is made for the day.
func TestDamagedMessageDictionary(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 300
	s := testOpen(t, dir, o)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day := uint32(t0.Unix() / 86400)
	appendChunk := func(s *Store, c int) {
		t.Helper()
		b := model.Batch{}
		for i := range o.ChunkMaxLines {
			n := c*o.ChunkMaxLines + i
			b.Records = append(b.Records, model.Record{Time: t0.Add(time.Duration(n) * time.Millisecond).UnixNano(),
				Labels: model.Labels{Service: "api", Host: "h"}, Message: fmt.Sprintf("GET /orders/%d status=200 took=%dms", n*7919%100000, n%300), Seq: uint64(n + 1)})
		}
		if _, err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for c := range dictSampleChunks {
		appendChunk(s, c)
	}
	waitDict(t, s, day)
	appendChunk(s, dictSampleChunks)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(dictKey(day), []byte("not a dictionary")) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	count := func(s *Store) (read, failed int) {
		t.Helper()
		refs, err := CollectCandidates(s.Candidates(ctx, model.TimeRange{Start: 0, End: 1 << 62}, nil, true))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			l, err := s.Load(ctx, r, true)
			if err != nil {
				failed++
				continue
			}
			read += l.Len()
		}
		return read, failed
	}
	s = testOpen(t, dir, o)
	read, failed := count(s)
	if failed == 0 || read == 0 || read+failed*o.ChunkMaxLines != (dictSampleChunks+1)*o.ChunkMaxLines {
		t.Fatalf("%d lines read, %d chunks failed", read, failed)
	}
	// The day makes no new dictionary: new chunks go without and read.
	for c := dictSampleChunks + 1; c < 2*dictSampleChunks+2; c++ {
		appendChunk(s, c)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer s.Close()
	if read2, failed2 := count(s); failed2 != failed || read2 != read+(dictSampleChunks+1)*o.ChunkMaxLines {
		t.Fatalf("after more chunks: %d lines read, %d chunks failed; want %d, %d", read2, failed2, read+(dictSampleChunks+1)*o.ChunkMaxLines, failed)
	}
	if err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(dictKey(day))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			if string(v) != "not a dictionary" {
				return fmt.Errorf("the damaged dictionary was replaced")
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
}

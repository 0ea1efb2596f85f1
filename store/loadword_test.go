package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// LoadWord gives every line holding the word, with all its columns, from
// chunks of version 3 (message blocks it may skip) and of version 2 (written
// before blocks existed: loaded whole) alike.
func TestLoadWord(t *testing.T) {
	for _, v := range []byte{2, textVersion} {
		t.Run(fmt.Sprintf("version %d", v), func(t *testing.T) {
			writeTextVersion = v
			defer func() { writeTextVersion = textVersion }()
			dir := t.TempDir()
			o := DefaultOptions()
			o.ChunkMaxLines = 1500
			s := testOpen(t, dir, o)
			t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			b := model.Batch{}
			for i := 0; i < 1500; i++ {
				msg := fmt.Sprintf("request %d done", i)
				switch i {
				case 100:
					msg = "transaction aborted: DeadLock detected"
				case 1400:
					msg = "dead\x1b[1mlock on table x"
				}
				b.Records = append(b.Records, model.Record{Time: t0.Add(time.Duration(i) * time.Millisecond).UnixNano(),
					Labels: model.Labels{Service: "api", Host: "h"}, Message: msg, TraceID: fmt.Sprintf("t%d", i), Seq: uint64(i + 1)})
			}
			if _, err := s.Append(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			writeTextVersion = textVersion
			s = testOpen(t, dir, o)
			defer s.Close()
			refs, err := CollectCandidates(s.Candidates(context.Background(), model.TimeRange{Start: 0, End: 1 << 62}, WordTerm("deadlock", false), true))
			if err != nil || len(refs) != 1 || refs[0].InMemory() {
				t.Fatalf("%d candidates (%v), want 1 sealed", len(refs), err)
			}
			whole, err := s.Load(context.Background(), refs[0], true)
			if err != nil {
				t.Fatal(err)
			}
			l, err := s.LoadWord(context.Background(), refs[0], "deadlock")
			if err != nil {
				t.Fatal(err)
			}
			skipped := 0
			for i := range l.Len() {
				if l.Skipped != nil && l.Skipped[i] {
					skipped++
					continue
				}
				if !slices.Equal([]any{l.Msgs[i], l.Traces[i], l.Seqs[i], l.Times[i]}, []any{whole.Msgs[i], whole.Traces[i], whole.Seqs[i], whole.Times[i]}) {
					t.Fatalf("line %d: %q, want %q", i, l.Msgs[i], whole.Msgs[i])
				}
			}
			if l.Skipped != nil && (l.Skipped[100] || l.Skipped[1400]) {
				t.Fatal("a line holding the word was skipped")
			}
			if skipped != 1498 {
				t.Fatalf("%d lines skipped, want all but the two holding the word", skipped)
			}
			if l.Word != "deadlock" || l.Traces[5] != "" || l.Attrs[5] != nil {
				t.Fatalf("word %q, skipped line 5's trace %q: not left out", l.Word, l.Traces[5])
			}
			// Version 3 on: the word is in the first and last blocks,
			// the others are not decompressed.
			decompressed := 0
			bl := blockLines(1500, v)
			for i := range l.Len() {
				if v == 2 || i/bl == 100/bl || i/bl == 1400/bl {
					decompressed += len(whole.Msgs[i])
					if v >= 6 {
						decompressed++ // its NUL
					}
				}
			}
			if len(l.MsgBlock) != decompressed {
				t.Fatalf("%d bytes of messages decompressed, want %d", len(l.MsgBlock), decompressed)
			}
		})
	}
}

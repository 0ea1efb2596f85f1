package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// TestLoadAttrs reads the same times, levels and attributes as Load with
// text, from sealed chunks (without the messages) and open ones.
func TestLoadAttrs(t *testing.T) {
	o := DefaultOptions()
	o.ChunkMaxLines = 100
	o.Maintenance = 20 * time.Millisecond
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	b := testBatch("ag", 1050, 1, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	for i := range b.Records {
		b.Records[i].Attrs = append(b.Records[i].Attrs, model.Attr{Key: "n", Value: string(rune('a' + i%26))})
	}
	if _, err := s.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var refs []ChunkRef
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if refs, err = CollectCandidates(s.Candidates(ctx, model.TimeRange{Start: 0, End: 1 << 62}, nil, false)); err != nil {
			t.Fatal(err)
		}
		open := 0
		for _, r := range refs {
			if r.InMemory() {
				open++
			}
		}
		if open <= 3 || time.Now().After(deadline) { // 3 streams (hosts), each with one open chunk left
			break
		}
	}
	lines, sealed := 0, 0
	for _, r := range refs {
		full, err := s.Load(ctx, r, true)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.LoadAttrs(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if !r.InMemory() {
			sealed++
			if got.Msgs != nil {
				t.Fatal("LoadAttrs decoded the messages")
			}
		}
		if !slices.Equal(got.Times, full.Times) || !slices.Equal(got.Levels, full.Levels) || len(got.Attrs) != len(full.Attrs) {
			t.Fatalf("chunk %d: times, levels or attributes differ", r.Meta.ID)
		}
		for i := range got.Attrs {
			if !slices.Equal(got.Attrs[i], full.Attrs[i]) {
				t.Fatalf("chunk %d line %d: %v, want %v", r.Meta.ID, i, got.Attrs[i], full.Attrs[i])
			}
		}
		lines += got.Len()
	}
	if lines != 1050 || sealed == 0 {
		t.Fatalf("%d lines, %d sealed chunks", lines, sealed)
	}
}

package store

import (
	"context"
	"testing"
	"time"
	"unsafe"
)

// The chunks of one stream hold its labels once, sealed live or loaded at
// Open.
func TestChunkLabelsSharedPerStream(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 10
	s := testOpen(t, dir, o)
	// One chunk of each stream a batch: each batch's labels are strings of
	// their own.
	for i := range 3 {
		if _, err := s.Append(context.Background(), testBatch("", 30, 30*i, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Store, when string) {
		t.Helper()
		s.mu.RLock()
		defer s.mu.RUnlock()
		if len(s.streams) != 3 {
			t.Fatalf("%s: %d streams, want 3", when, len(s.streams))
		}
		for id, cs := range s.streams {
			if len(cs) != 3 {
				t.Fatalf("%s: stream %x has %d chunks, want 3", when, id, len(cs))
			}
			first := cs[0].Labels
			if first.Service != "api" || first.BuildID != "b1" || len(first.Host) != len("web-0") {
				t.Fatalf("%s: labels %+v", when, first)
			}
			for _, m := range cs[1:] {
				if m.Labels != first {
					t.Fatalf("%s: chunk labels %+v, stream's %+v", when, m.Labels, first)
				}
				if unsafe.StringData(m.Labels.Host) != unsafe.StringData(first.Host) ||
					unsafe.StringData(m.Labels.Service) != unsafe.StringData(first.Service) {
					t.Fatalf("%s: chunk %d holds its own copy of the labels", when, m.ID)
				}
			}
		}
	}
	waitSealed(t, s)
	check(s, "live")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = testOpen(t, dir, o)
	defer s.Close()
	check(s, "reopened")
}

package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// A store opened on a disk with too little room comes up read-only: every
// line (sealed, or only in the WAL) answers queries, writes are refused with
// ErrReadOnly, and nothing is written: the WAL's lines are still there for
// the next writable Open, which seals them and takes writes again.
func TestOpenReadOnlyWhenFull(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 100
	s := testOpen(t, dir, o)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	if _, err := s.Append(ctx, testBatch("ag", 1000, 1, t0)); err != nil {
		t.Fatal(err)
	}
	waitSealed(t, s)
	// 50 more that only the WAL holds when the process dies.
	if _, err := s.Append(ctx, testBatch("ag", 50, 1001, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	crash(s)
	walBefore := filesBytes(filepath.Join(dir, "wal"), ".wal")
	if walBefore == 0 {
		t.Fatal("nothing in the WAL")
	}

	full := o
	full.MinFreeToWrite = 1 << 62 // more than any disk has free
	ro := testOpen(t, dir, full)
	if r, why := ro.ReadOnly(); !r || why == "" {
		t.Fatalf("ReadOnly() = %v %q", r, why)
	}
	if n := count(t, ro, nil, nil); n != 1050 {
		t.Fatalf("read-only store answers %d lines, want 1050", n)
	}
	_, err := ro.Append(ctx, testBatch("ag", 1, 2000, t0))
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Append on a read-only store: %v", err)
	}
	_, err = ro.AppendSamples(ctx, []model.Series{{Labels: metricLabels("up"), Samples: []model.Sample{{T: 1, V: 1}}}})
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("AppendSamples on a read-only store: %v", err)
	}
	if err := ro.Backup(discard{}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Backup on a read-only store: %v", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if got := filesBytes(filepath.Join(dir, "wal"), ".wal"); got != walBefore {
		t.Fatalf("the read-only store changed the WAL: %d bytes, was %d", got, walBefore)
	}

	s = testOpen(t, dir, o)
	defer s.Close()
	if r, _ := s.ReadOnly(); r {
		t.Fatal("still read-only")
	}
	if res, err := s.Append(ctx, testBatch("ag", 10, 1051, t0)); err != nil || res.Accepted != 10 {
		t.Fatalf("after space came back: %+v %v", res, err)
	}
	if n := count(t, s, nil, nil); n != 1060 {
		t.Fatalf("%d lines, want 1060", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "badger")); err != nil {
		t.Fatal(err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

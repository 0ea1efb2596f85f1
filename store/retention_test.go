package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

func TestRetentionDropsDays(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.ChunkMaxLines = 50
	s := testOpen(t, dir, o)
	day0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for d := 0; d < 3; d++ {
		if _, err := s.Append(context.Background(), testBatch("", 120, 0, day0.Add(time.Duration(d)*24*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	s.maintain(true)
	waitSealed(t, s)
	if got := len(s.Days()); got != 3 {
		t.Fatalf("%d days", got)
	}
	// Open lines of the oldest day are in the WAL only: they must not come back.
	if _, err := s.Append(context.Background(), testBatch("", 10, 0, day0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	drop := model.Day(day0.Add(24 * time.Hour).UnixNano())
	if err := s.DropDaysBefore(drop); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, nil, nil); n != 240 {
		t.Fatalf("%d lines after dropping a day, want 240", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "index", "2026-03-01")); !os.IsNotExist(err) {
		t.Fatalf("index of the dropped day still there: %v", err)
	}
	res, err := s.Append(context.Background(), testBatch("", 5, 0, day0))
	if err != nil || res.Accepted != 0 || res.Expired != 5 {
		t.Fatalf("append below the floor: %+v %v", res, err)
	}
	// A crash now (no Close) and a replay must not resurrect anything.
	crash(s)
	s2 := testOpen(t, dir, o)
	defer s2.Close()
	if n := count(t, s2, nil, nil); n != 240 {
		t.Fatalf("%d lines after reopening, want 240", n)
	}
	for _, st := range s2.Streams() {
		if model.Day(st.First) < drop {
			t.Fatalf("stream summary still covers a dropped day: %+v", st)
		}
	}
}

// waitSealed waits until no chunk is being sealed or indexed.
func waitSealed(t testing.TB, s *Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.RLock()
		n := len(s.sealing) + len(s.unindexed)
		s.mu.RUnlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d chunks still sealing or unindexed", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// crash stops a store's goroutines and closes its files without sealing
// anything further, as a kill -9 would leave it.
func crash(s *Store) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	close(s.stop)
	s.maintWG.Wait()
	close(s.sealCh)
	s.sealWG.Wait()
	close(s.indexCh)
	s.indexWG.Wait()
	s.persistWG.Wait()
	_ = s.wal.close()
	s.ms.abandon()
	_ = s.idx.closeAll()
	_ = s.db.Close()
}

// TestRetentionSizeKeepsToday: a size bound never drops today, even when a
// record stamped ahead of the clock makes today not the newest day.
func TestRetentionSizeKeepsToday(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.RetentionBytes = 1 // always over
	s := testOpen(t, dir, o)
	defer s.Close()
	now := time.Now()
	// Tomorrow, whatever the time of day (now+20h was still today before
	// 04:00 UTC, and the test failed then).
	tomorrow := now.UTC().Truncate(24 * time.Hour).Add(24*time.Hour + time.Minute)
	for _, at := range []time.Time{now.Add(-48 * time.Hour), now, tomorrow} {
		if _, err := s.Append(context.Background(), testBatch("", 10, 0, at)); err != nil {
			t.Fatal(err)
		}
	}
	s.applyRetention(now)
	days := s.Days()
	if len(days) != 2 || days[0] != model.Day(now.UnixNano()) && days[0] != model.Day(now.Add(10*time.Millisecond).UnixNano()) {
		t.Fatalf("days after a size retention: %v (today %d)", days, model.Day(now.UnixNano()))
	}
	res, err := s.Append(context.Background(), testBatch("", 5, 0, now))
	if err != nil || res.Accepted != 5 {
		t.Fatalf("today's lines after retention: %+v %v", res, err)
	}
}

//go:build linux

package store

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// vlogResident sums the resident kB of this process's mappings of the store's
// value-log files, per file (from /proc/self/smaps).
func vlogResident(t *testing.T, s *Store) map[string]int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir, err := filepath.Abs(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	prefix := filepath.Join(dir, "badger") + "/"
	out := map[string]int{}
	cur := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if fs := strings.Fields(l); len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			// A mapping's first line (its path is the sixth field, if any).
			cur = ""
			if len(fs) >= 6 && strings.HasPrefix(fs[5], prefix) && strings.HasSuffix(fs[5], ".vlog") {
				cur = filepath.Base(fs[5])
			}
			continue
		}
		if rest, ok := strings.CutPrefix(l, "Rss:"); ok && cur != "" {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			out[cur] += kb
		}
	}
	return out
}

func rnd(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// fillVlog appends 60,000 lines with random text (~4 MB of chunks, several
// 1 MiB value-log files) and waits until every chunk is written.
func fillVlog(t *testing.T, s *Store) {
	t.Helper()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 60; i++ {
		b := testBatch("ag", 1000, 1+i*1000, t0.Add(time.Duration(i)*time.Second))
		for j := range b.Records {
			b.Records[j].Message += " " + base64.StdEncoding.EncodeToString(rnd(rng, 60))
		}
		if _, err := s.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	s.maintain(true) // every head to sealing, then wait until it is written
	waitSealed(t, s)
}

// waitFinishedResident polls (the release loop releases them) until at most
// maxKB of the finished value-log files (at least 3 of them) are resident,
// and fails after 30 s, saying what they were resident after.
func waitFinishedResident(t *testing.T, s *Store, maxKB int, after string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		kb, files := finishedResident(t, s)
		if files < 3 {
			t.Fatalf("%d value-log files mapped, want at least 3", files)
		}
		if kb <= maxKB {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d kB of the finished value-log files still resident 30 s after %s", kb, after)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// finishedResident is the resident kB of the value-log files but the last.
func finishedResident(t *testing.T, s *Store) (kb int, files int) {
	t.Helper()
	m := vlogResident(t, s)
	last := ""
	for name := range m {
		last = max(last, name)
	}
	for name, k := range m {
		if name != last {
			kb += k
		}
	}
	return kb, len(m)
}

// TestReleaseMappedPages: the pages of value-log files Badger has finished
// writing leave the resident set (the file being written keeps its pages), and
// every chunk still reads back whole.
func TestReleaseMappedPages(t *testing.T) {
	o := DefaultOptions()
	o.BadgerVlogFile = 1 << 20
	o.ChunkMaxLines = 200
	o.PageRelease = time.Hour // not released behind the test's back on a slow run
	// A relative data directory, as --data ./shiplog-data is: the maps
	// name files by absolute path.
	t.Chdir(t.TempDir())
	s := testOpen(t, "data", o)
	defer s.Close()
	fillVlog(t, s)
	// Writing released the finished files as it went (a sixteenth of a
	// file at a time): reading every chunk maps their pages again (less than
	// ReleaseAfterRead of them).
	if got := count(t, s, nil, nil); got != 60000 {
		t.Fatalf("%d lines read back, want 60000", got)
	}
	before := vlogResident(t, s)
	if len(before) < 3 {
		ents, _ := os.ReadDir(filepath.Join(s.dir, "badger"))
		for _, e := range ents {
			info, _ := e.Info()
			t.Log(e.Name(), info.Size())
		}
		t.Fatalf("value-log files mapped: %v, want at least 3", before)
	}
	last, finishedKB := "", 0
	for name, kb := range before {
		last = max(last, name)
		_ = kb
	}
	for name, kb := range before {
		if name != last {
			finishedKB += kb
		}
	}
	if finishedKB == 0 {
		t.Fatalf("no resident pages in the finished value-log files before the release: %v", before)
	}
	s.vlogMu.Lock()
	s.releaseMappedPages()
	s.vlogMu.Unlock()
	after := vlogResident(t, s)
	for name, kb := range after {
		if name != last && kb != 0 {
			t.Errorf("%s: %d kB still resident after the release (before %d)", name, kb, before[name])
		}
	}
	if got := count(t, s, nil, nil); got != 60000 {
		t.Fatalf("%d lines read back, want 60000", got)
	}
}

// TestReleaseAfterReads: reads that copy more than ReleaseAfterRead bytes out
// of the value log's maps get its pages released at once, not at the next
// periodic release (an hour away here): the finished files' resident pages
// stay below a quarter of what the reads mapped.
func TestReleaseAfterReads(t *testing.T) {
	o := DefaultOptions()
	o.BadgerVlogFile = 1 << 20
	o.ChunkMaxLines = 200
	o.PageRelease = time.Hour
	o.ReleaseAfterRead = 256 << 10
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	fillVlog(t, s)
	s.releasePages()
	// Reading every chunk's text maps the finished files' pages again,
	// more than ReleaseAfterRead of them.
	if got := count(t, s, nil, nil); got != 60000 {
		t.Fatalf("%d lines read back, want 60000", got)
	}
	refs := 0
	for day, err := range s.Candidates(context.Background(), model.TimeRange{End: math.MaxInt64}, All(), true) {
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range day {
			if _, err := s.Load(context.Background(), r, true); err != nil {
				t.Fatal(err)
			}
			refs++
		}
	}
	if refs < 100 {
		t.Fatalf("%d chunks read, want the 300 written", refs)
	}
	// Without the release all of them stay resident (~3 MiB); reads after
	// the last release may leave less than ReleaseAfterRead.
	waitFinishedResident(t, s, 1024, fmt.Sprintf("%d chunks were read", refs))
}

// TestReleaseCountsMapWindow: chunks of a few KiB, read one after another,
// each map a window of the page cache around the page read, not only their
// own bytes; reads count that window, so the finished value-log files are
// released as 1,500 of them are read. Counted at their own size the reads
// came to 4.6 MB, under ReleaseAfterRead, and every page read (4 MB of the
// finished files) stayed resident.
func TestReleaseCountsMapWindow(t *testing.T) {
	o := DefaultOptions()
	o.BadgerVlogFile = 1 << 20
	o.ChunkMaxLines = 40
	o.PageRelease = time.Hour
	o.ReleaseAfterRead = 8 << 20
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	fillVlog(t, s)
	s.releasePages()
	refs, bytes := 0, int64(0)
	for day, err := range s.Candidates(context.Background(), model.TimeRange{End: math.MaxInt64}, All(), true) {
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range day {
			l, err := s.Load(context.Background(), r, true)
			if err != nil {
				t.Fatal(err)
			}
			refs++
			for _, m := range l.Msgs {
				bytes += int64(len(m))
			}
		}
	}
	if refs < 1000 || bytes < 4<<20 {
		t.Fatalf("%d chunks of %d bytes of text read, want 1,500 of ~7 MB", refs, bytes)
	}
	waitFinishedResident(t, s, 1536, fmt.Sprintf("%d chunks were read", refs))
}

// TestReleaseAfterWrites: chunks written go through the value log's maps
// too; every sixteenth of a file written asks for a release, so the files
// finished while writing leave the resident set without the periodic
// release (an hour away here) and without a read.
func TestReleaseAfterWrites(t *testing.T) {
	o := DefaultOptions()
	o.BadgerVlogFile = 1 << 20
	o.ChunkMaxLines = 200
	o.PageRelease = time.Hour
	o.ReleaseAfterRead = 1 << 40
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	fillVlog(t, s)
	// The file being written is never released, so the one it followed
	// stays whole until a sixteenth of a file more is written: at most a
	// file and a sixteenth, with a page of slack (without these releases:
	// all four).
	waitFinishedResident(t, s, 1024+64+4, "they were written")
}

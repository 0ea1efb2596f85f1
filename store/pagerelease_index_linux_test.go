//go:build linux

package store

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// zapResident sums the resident kB of this process's mappings of the store's
// Bleve segment files (from /proc/self/smaps) and counts the files.
func zapResident(t *testing.T, s *Store) (kb, files int) {
	t.Helper()
	dir, ok := resolvedDir(s.dir)
	if !ok {
		t.Fatal("no data directory")
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prefix := filepath.Join(dir, "index") + "/"
	seen := map[string]bool{}
	cur := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if fs := strings.Fields(l); len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			cur = len(fs) >= 6 && strings.HasPrefix(fs[5], prefix) && strings.HasSuffix(fs[5], ".zap")
			if cur {
				seen[fs[5]] = true
			}
			continue
		}
		if rest, ok := strings.CutPrefix(l, "Rss:"); ok && cur {
			k, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			kb += k
		}
	}
	return kb, len(seen)
}

// TestReleaseIndexPages: searching a day's index leaves pages of its segment
// files resident; the release takes them out of the resident set (the
// segments held meanwhile), and the index answers the same afterwards.
func TestReleaseIndexPages(t *testing.T) {
	o := DefaultOptions()
	o.ChunkMaxLines = 200
	o.PageRelease, o.ReleaseAfterRead = time.Hour, 1<<40 // released by the test only
	s := testOpen(t, t.TempDir(), o)
	defer s.Close()
	fillVlog(t, s)
	s.persistWG.Wait() // every batch in a segment file
	// An attribute: always in the index (a word of every line is a day word,
	// which no chunk's document holds).
	word := AttrTerm("status", "200")
	if got := count(t, s, word, nil); got != 60000 {
		t.Fatalf("%d lines in chunks holding the term, want 60000", got)
	}
	before, files := zapResident(t, s)
	if files == 0 || before == 0 {
		t.Fatalf("%d kB of %d segment files resident after a search, want some", before, files)
	}
	s.releaseIndexPages()
	if after, _ := zapResident(t, s); after != 0 {
		t.Fatalf("%d kB of the segment files still resident after the release (before %d)", after, before)
	}
	if got := count(t, s, word, nil); got != 60000 {
		t.Fatalf("after the release: %d lines in chunks holding the term, want 60000", got)
	}
	if n := s.idx.searches.Load(); n < 2 {
		t.Fatalf("%d index searches, want the two counts' (the term must go through the index)", n)
	}
}

//go:build linux

package store

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// releaseMappedPages drops this process's page-table entries for Badger's
// value-log files that are no longer written. Badger writes and reads the
// value log through shared memory maps, so every chunk written or read stays
// in the process's resident set until the kernel is short of memory: RSS
// would grow with the data stored, not with what is being used. MADV_DONTNEED
// on a shared file mapping only unmaps the pages from this process; they stay
// in the page cache (a later read is a minor fault, no disk read) and dirty
// ones are written back as usual.
//
// Only finished value-log files are touched: the one being written (the
// highest-numbered) is moved by mremap when Badger rotates it, and the others
// are unmapped only by value-log GC (reclaim) and Close, which never run at
// the same time as this (vlogMu; Close stops the maintenance loop first).
// So no range advised can have been reused for other memory.
func (s *Store) releaseMappedPages() {
	dir, ok := resolvedDir(s.dir)
	if !ok {
		return
	}
	prefix := filepath.Join(dir, "badger") + string(filepath.Separator)
	byFile := map[int][]span{} // by value-log file number
	last := -1
	forMappings(func(sp span, path string) {
		if !strings.HasPrefix(path, prefix) || !strings.HasSuffix(path, ".vlog") {
			return
		}
		fid, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(path), ".vlog"))
		if err != nil {
			return
		}
		byFile[fid] = append(byFile[fid], sp)
		last = max(last, fid)
	})
	for fid, spans := range byFile {
		if fid == last {
			continue
		}
		for _, sp := range spans {
			sp.dontNeed()
		}
	}
}

// releaseIndexPages drops this process's page-table entries for the open day
// indexes' segment files (Bleve maps them read-only): merging and searching
// a day's index leave its pages resident, so every day indexed stayed in
// the resident set (~20 MiB after a 10M-line, 5-day ingest, 2-4 after one
// day). Only segments held referenced meanwhile are touched (heldSegments),
// so no range advised can have been unmapped and reused.
func (s *Store) releaseIndexPages() {
	dir, ok := resolvedDir(s.dir)
	if !ok {
		return
	}
	s.idx.mu.Lock()
	defer s.idx.mu.Unlock()
	files, release := s.idx.heldSegments(s.dir)
	defer release()
	if len(files) == 0 {
		return
	}
	forMappings(func(sp span, path string) {
		if rel, err := filepath.Rel(dir, path); err == nil && files[rel] {
			sp.dontNeed()
		}
	})
}

// resolvedDir is dir as /proc/self/maps names it: absolute, symlinks
// resolved.
func resolvedDir(dir string) (string, bool) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	return dir, true
}

type span struct{ start, end uintptr }

// dontNeed unmaps the span's pages from this process (MADV_DONTNEED).
func (sp span) dontNeed() {
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, sp.start, sp.end-sp.start, syscall.MADV_DONTNEED)
}

// forMappings calls fn with every file mapping of this process.
func forMappings(fn func(sp span, path string)) {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || !strings.HasPrefix(f[5], "/") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			continue
		}
		fn(span{uintptr(start), uintptr(end)}, f[5])
	}
}

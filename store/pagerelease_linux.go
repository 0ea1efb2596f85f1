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
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	// /proc/self/maps names files by absolute path, symlinks resolved.
	dir, err := filepath.Abs(s.dir)
	if err != nil {
		return
	}
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	prefix := filepath.Join(dir, "badger") + string(filepath.Separator)
	type span struct{ start, end uintptr }
	byFile := map[int][]span{} // by value-log file number
	last := -1
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || !strings.HasPrefix(f[5], prefix) || !strings.HasSuffix(f[5], ".vlog") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		fid, err3 := strconv.Atoi(strings.TrimSuffix(filepath.Base(f[5]), ".vlog"))
		if !ok || err1 != nil || err2 != nil || err3 != nil || end <= start {
			continue
		}
		byFile[fid] = append(byFile[fid], span{uintptr(start), uintptr(end)})
		last = max(last, fid)
	}
	for fid, spans := range byFile {
		if fid == last {
			continue
		}
		for _, sp := range spans {
			_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, sp.start, sp.end-sp.start, syscall.MADV_DONTNEED)
		}
	}
}

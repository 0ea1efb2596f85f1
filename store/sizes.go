package store

import (
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// dirSizes is what the last walk of the data directory measured, for
// /metrics: a scrape reads it, it never walks the directory itself, so
// the cost is one walk per Options.SizeCheck whatever the scrape rate.
type dirSizes struct {
	mu        sync.Mutex
	total     int64            // allocated bytes of every file
	dirs      map[string]int64 // allocated bytes under each top-level directory
	lsm, vlog int64            // sizes of Badger's .sst and .vlog files
}

// measureSizes walks the data directory once and keeps what it found; the
// gauge shiplog_store_disk_bytes follows it.
func (s *Store) measureSizes() {
	dirs := map[string]int64{}
	var total, lsm, vlog int64
	_ = filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		used := info.Size()
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			used = st.Blocks * 512
		}
		total += used
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return nil
		}
		top, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		dirs[top] += used
		if top == "badger" {
			switch filepath.Ext(p) {
			case ".sst":
				lsm += info.Size()
			case ".vlog":
				vlog += info.Size()
			}
		}
		return nil
	})
	s.sizes.mu.Lock()
	s.sizes.total, s.sizes.dirs, s.sizes.lsm, s.sizes.vlog = total, dirs, lsm, vlog
	s.sizes.mu.Unlock()
	s.m.diskBytes.Set(float64(total))
}

// sizeLoop measures the data directory every Options.SizeCheck.
func (s *Store) sizeLoop() {
	defer s.maintWG.Done()
	t := time.NewTicker(s.opts.SizeCheck)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.measureSizes()
		}
	}
}

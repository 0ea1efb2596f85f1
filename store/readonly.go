package store

// A store opened read-only because its disk is full (Options.MinFreeToWrite).

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ReadOnly reports whether the store was opened read-only (a full disk), and why.
func (s *Store) ReadOnly() (bool, string) { return s.readOnly, s.roWhy }

func (s *Store) errReadOnly() error {
	return fmt.Errorf("%w: %s; free space on it and restart the server to accept writes again", ErrReadOnly, s.roWhy)
}

// freeBytes is the space left for an unprivileged writer on dir's disk.
func freeBytes(dir string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device")
}

// filesBytes is the space taken by dir's files whose names end in suffix.
func filesBytes(dir, suffix string) uint64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n uint64
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		if fi, err := e.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += uint64(st.Blocks) * 512
			} else {
				n += uint64(fi.Size())
			}
		}
	}
	return n
}

// memtableAside is the suffix of a Badger memtable file set aside by a
// read-only Open. Badger refuses to open read-only with memtable files not
// cut to their last entry (which a crash leaves), and reading one on a full
// tmpfs faults; so a read-only store renames them out of Badger's sight (the
// chunks sealed last before the crash are then not visible) and the next
// writable Open puts them back before Badger opens.
const memtableAside = ".readonly-aside"

func memtablesAside(bdir string, aside bool, log *slog.Logger) error {
	ents, err := os.ReadDir(bdir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	from, to := memtableAside, ""
	if aside {
		from, to = "", memtableAside
	}
	n := 0
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".mem"+from)
		if !ok || strings.HasSuffix(name, ".mem") {
			continue
		}
		if err := os.Rename(filepath.Join(bdir, e.Name()), filepath.Join(bdir, name+".mem"+to)); err != nil {
			return fmt.Errorf("memtable file: %w", err)
		}
		n++
	}
	if n > 0 && aside {
		log.Warn("store: read-only: Badger's memtable files set aside until the next writable start; chunks sealed in the last moments before the disk filled are not visible meanwhile", "files", n)
	} else if n > 0 {
		log.Info("store: memtable files set aside by a read-only start put back", "files", n)
	}
	return nil
}

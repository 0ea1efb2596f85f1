package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A backup file is the line "SHIPLOG-BACKUP 1\n" followed by Badger's backup
// stream of every key: chunks, metadata, blooms, agents, runs, the retention
// floor (and metrics). Open lines are sealed first, so everything acked before
// the backup started is in it. Bleve indexes are left out: Open rebuilds the
// index of any day that has chunks but no index directory.
const backupMagic = "SHIPLOG-BACKUP 1\n"

// Backup writes a consistent copy of the store to w.
func (s *Store) Backup(w io.Writer) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.inflight.Add(1) // Close waits for us before it closes sealCh
	var mine []uint64
	for _, h := range s.heads {
		mine = append(mine, h.meta.ID)
	}
	s.mu.Unlock()
	defer s.inflight.Done()
	s.maintain(true)
	if err := s.ms.sealAll(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		s.mu.RLock()
		// Wait for the heads this backup sealed, not for later ones.
		n := 0
		for _, id := range mine {
			if _, ok := s.sealing[id]; ok {
				n++
			}
		}
		var names []string
		var vals [][]byte
		for a, st := range s.agents {
			names = append(names, a)
			vals = append(vals, encodeAgent(nil, &st.AgentInfo))
		}
		s.mu.RUnlock()
		if n == 0 {
			if err := s.saveAgents(names, vals); err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backup: %d chunks still being written after a minute", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := io.WriteString(w, backupMagic); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := s.db.Backup(w, 0); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// Restore creates a store in dir (which must be empty or absent) from a backup.
func Restore(r io.Reader, dir string) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("restore: %s is not empty", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	br := bufio.NewReaderSize(r, 1<<20)
	head := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(br, head); err != nil || string(head) != backupMagic {
		return fmt.Errorf("restore: not a shiplog backup (it should start with %q)", backupMagic[:len(backupMagic)-1])
	}
	opts := badger.DefaultOptions(filepath.Join(dir, "badger")).WithLogger(nil).
		WithCompression(0).WithValueThreshold(1 << 10).WithMemTableSize(32 << 20).WithValueLogFileSize(256 << 20)
	db, err := badger.Open(opts)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := db.Load(br, 256); err != nil {
		_ = db.Close()
		return fmt.Errorf("restore: %w", err)
	}
	return db.Close()
}

// missingIndexes finds days with chunks but no Bleve index and marks their
// chunks for indexing. Caller has the store to itself (Open).
func (s *Store) missingIndexes() []*ChunkMeta {
	var out []*ChunkMeta
	for day, metas := range s.days {
		if _, err := os.Stat(filepath.Join(s.idx.dir, dayName(day))); err == nil {
			continue
		}
		for _, m := range metas {
			if _, ok := s.unindexed[m.ID]; !ok {
				s.unindexed[m.ID] = m
				out = append(out, m)
			}
		}
	}
	return out
}

// checkIndexes opens every day index on disk; one that does not open (a crash
// while it was being created leaves it without its mapping) is removed, so
// that missingIndexes rebuilds it from Badger.
func (s *Store) checkIndexes() {
	ents, err := os.ReadDir(s.idx.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		t, err := time.Parse("2006-01-02", e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		day := uint32(t.Unix() / 86400)
		if _, err := s.idx.get(day, false); err != nil {
			s.log.Warn("store: a day index does not open; rebuilding it from Badger", "day", e.Name(), "err", err)
			if err := os.RemoveAll(filepath.Join(s.idx.dir, e.Name())); err != nil {
				s.log.Error("store: remove broken index", "day", e.Name(), "err", err)
			}
		}
	}
}

package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/shiplog/shiplog/internal/wire"
	"github.com/shiplog/shiplog/model"
)

// Retention drops whole day partitions: those older than Options.Retention,
// then the oldest ones while the data directory is larger than
// Options.RetentionBytes (never the newest day). Everything of a day goes:
// chunks, metadata, bloom filters, pending marks, its Bleve index, and what
// other parts of the store registered with OnDropDay (metrics).
//
// The floor (key "!floor": uvarint day) records that every day below it is
// gone, so a WAL replay does not bring dropped lines back.

var floorKey = []byte("!floor")

// dayPrefixes are the key prefixes partitioned by day.
var dayPrefixes = []byte{pfxChunk, pfxTimes, pfxMeta, pfxBloom, pfxPending, pfxAttrKey, pfxDict, pfxDayWords}

// OnDropDay registers fn to run when a day partition is dropped.
func (s *Store) OnDropDay(fn func(day uint32) error) {
	s.mu.Lock()
	s.dayDroppers = append(s.dayDroppers, fn)
	s.mu.Unlock()
}

// Days lists the day partitions holding log chunks, oldest first.
func (s *Store) Days() []uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]uint32, 0, len(s.days))
	for d := range s.days {
		out = append(out, d)
	}
	for _, h := range s.heads {
		if _, ok := s.days[h.meta.Day]; !ok {
			out = append(out, h.meta.Day)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return compactDays(out)
}

func compactDays(ds []uint32) []uint32 {
	out := ds[:0]
	for i, d := range ds {
		if i == 0 || d != ds[i-1] {
			out = append(out, d)
		}
	}
	return out
}

// DropDaysBefore drops every day partition below day.
func (s *Store) DropDaysBefore(day uint32) error {
	if s.readOnly {
		return s.errReadOnly()
	}
	for _, d := range s.Days() {
		if d >= day {
			break
		}
		if err := s.dropDay(d); err != nil {
			return err
		}
	}
	return s.raiseFloor(day)
}

func (s *Store) raiseFloor(day uint32) error {
	s.mu.Lock()
	if day <= s.floor {
		s.mu.Unlock()
		return nil
	}
	s.floor = day
	s.mu.Unlock()
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(floorKey, wire.AppendUvarint(nil, uint64(day)))
	})
}

func (s *Store) loadFloor(txn *badger.Txn) error {
	it, err := txn.Get(floorKey)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return it.Value(func(v []byte) error {
		r := wire.NewReader(v, nil)
		d := r.Uvarint()
		if r.Err() != nil {
			return fmt.Errorf("%w: floor", errCorrupt)
		}
		s.floor = uint32(d)
		return nil
	})
}

// dropDay removes one day partition.
func (s *Store) dropDay(day uint32) error {
	s.mu.Lock()
	metas := s.days[day]
	delete(s.days, day)
	delete(s.attrKeys, day)
	touched := map[uint64]bool{}
	for _, m := range metas {
		delete(s.chunks, m.ID)
		delete(s.unindexed, m.ID)
		touched[m.Stream] = true
	}
	for k, h := range s.heads {
		if k.day == day {
			delete(s.heads, k)
			touched[h.meta.Stream] = true
		}
	}
	for k := range s.nextLine {
		if k.day == day {
			delete(s.nextLine, k)
		}
	}
	for st := range touched {
		cs := s.streams[st][:0]
		for _, m := range s.streams[st] {
			if m.Day != day {
				cs = append(cs, m)
			}
		}
		si := &StreamInfo{ID: st}
		for _, m := range cs {
			si.Labels = m.Labels
			si.add(m)
		}
		if len(cs) == 0 {
			if old := s.streamInfo[st]; old != nil {
				s.indexStreamLabels(st, old.Labels, false)
			}
			delete(s.streams, st)
			delete(s.streamInfo, st)
		} else {
			s.streams[st] = cs
			s.streamInfo[st] = si
		}
	}
	droppers := append([]func(uint32) error(nil), s.dayDroppers...)
	s.mu.Unlock()

	var prefixes [][]byte
	for _, p := range dayPrefixes {
		k := make([]byte, 5)
		k[0] = p
		binary.BigEndian.PutUint32(k[1:], day)
		prefixes = append(prefixes, k)
	}
	if err := s.db.DropPrefix(prefixes...); err != nil {
		return fmt.Errorf("drop day %s: %w", dayName(day), err)
	}
	s.dicts.drop(day)
	s.words.drop(day)
	if err := s.idx.drop(day); err != nil {
		return fmt.Errorf("drop day %s: %w", dayName(day), err)
	}
	for _, fn := range droppers {
		if err := fn(day); err != nil {
			return fmt.Errorf("drop day %s: %w", dayName(day), err)
		}
	}
	s.m.droppedDays.Inc()
	s.log.Info("retention: dropped a day partition", "day", dayName(day), "chunks", len(metas))
	return nil
}

// reclaim gives the value log's dead space back to the file system.
func (s *Store) reclaim() {
	s.vlogMu.Lock() // GC deletes value-log files: not while their pages are released
	defer s.vlogMu.Unlock()
	for i := 0; i < 64; i++ {
		if s.db.RunValueLogGC(0.3) != nil {
			return
		}
	}
}

// DiskUsage is the space the data directory takes on disk (allocated blocks).
func (s *Store) DiskUsage() int64 { return dirUsage(s.dir) }

// applyRetention enforces Options.Retention and Options.RetentionBytes.
func (s *Store) applyRetention(now time.Time) {
	dropped := false
	if s.opts.Retention > 0 {
		keepFrom := model.Day(now.Add(-s.opts.Retention).UnixNano())
		for _, d := range s.Days() {
			if d >= keepFrom {
				break
			}
			if err := s.dropDay(d); err != nil {
				s.log.Error("retention", "err", err)
				s.m.errors.Inc()
				return
			}
			dropped = true
		}
		if err := s.raiseFloor(keepFrom); err != nil {
			s.log.Error("retention", "err", err)
		}
	}
	if dropped {
		s.reclaim()
	}
	if s.opts.RetentionBytes > 0 {
		for {
			usage := s.DiskUsage()
			s.m.diskBytes.Set(float64(usage))
			days := s.Days()
			// Never today or a later day (records may be stamped ahead of the
			// clock), and never the newest day.
			if usage <= s.opts.RetentionBytes || len(days) <= 1 || days[0] >= model.Day(now.UnixNano()) {
				break
			}
			if err := s.dropDay(days[0]); err != nil {
				s.log.Error("retention", "err", err)
				return
			}
			if err := s.raiseFloor(days[0] + 1); err != nil {
				s.log.Error("retention", "err", err)
				return
			}
			s.reclaim()
		}
	}
	s.m.diskBytes.Set(float64(s.DiskUsage()))
}

// drop closes and deletes the index of day.
func (x *indexSet) drop(day uint32) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if idx := x.open[day]; idx != nil {
		_ = idx.Close()
		delete(x.open, day)
	}
	delete(x.formats, day)
	if err := os.RemoveAll(filepath.Join(x.dir, dayName(day))); err != nil {
		return err
	}
	return nil
}

package store

import (
	"cmp"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// writeTextVersion is the c value version seal writes (tests set an older
// one, to check that such chunks read the same).
var writeTextVersion byte = textVersion

// sealReason is why a head was sealed (the reason label of
// shiplog_store_sealed_chunk_lines).
type sealReason uint8

const (
	sealFull    sealReason = iota // ChunkMaxLines or ChunkMaxBytes reached
	sealEvicted                   // the open heads held more than HeadsMaxBytes
	sealIdle                      // no line for ChunkIdleAge
	sealAge                       // open for ChunkMaxAge
	sealWAL                       // pinned a WAL segment past WALMaxSegments
	sealClose                     // Close, backups and tests: every head
	sealReplay                    // a gap in the stream's lines (WAL replay)
	numSealReasons
)

var sealReasonNames = [numSealReasons]string{"full", "evicted", "idle", "age", "wal", "close", "replay"}

// startSeal moves a head from heads to sealing, noting why. Caller holds mu
// and must send the head to sealCh after unlocking (or, during Open, seal it
// directly).
func (s *Store) startSeal(h *head, why sealReason) {
	h.why = why
	delete(s.heads, headKey{h.meta.Stream, h.meta.Day})
	s.headBytes -= int64(h.bytes)
	s.sealing[h.meta.ID] = h
	s.sealingBytes.Add(int64(h.bytes))
	s.sealingChunks.Add(1)
}

func (s *Store) sealLoop() {
	defer s.sealWG.Done()
	for h := range s.sealCh {
		s.seal(h)
	}
}

// seal writes a head as a chunk to Badger and queues it for Bleve.
func (s *Store) seal(h *head) {
	start := time.Now()
	lines := h.snapshot()
	meta := lines.Meta
	meta.Notable = buildNotable(lines)
	toks := chunkTokens(lines)
	doc := buildDoc(meta, toks, s.words.tableOf(meta.Day))
	day, id := meta.Day, meta.ID
	dict := s.dicts.encoder(day)
	tv, cv := encodeChunkDict(lines, toks, writeTextVersion, dict)
	s.mu.RLock()
	keys := s.attrKeysToWrite(lines)
	s.mu.RUnlock()
	for attempt := 0; ; attempt++ {
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if err := txn.Set(k, nil); err != nil {
					return err
				}
			}
			if err := txn.Set(chunkKey(pfxTimes, day, id), tv); err != nil {
				return err
			}
			if err := txn.Set(chunkKey(pfxChunk, day, id), cv); err != nil {
				return err
			}
			if err := txn.Set(chunkKey(pfxMeta, day, id), encodeMeta(meta)); err != nil {
				return err
			}
			if err := txn.Set(chunkKey(pfxBloom, day, id), toks.bloom.marshal()); err != nil {
				return err
			}
			return txn.Set(chunkKey(pfxPending, day, id), nil)
		})
		if err == nil {
			break
		}
		// The lines stay in the WAL and in memory; keep trying.
		s.log.Error("store: write chunk", "chunk", id, "attempt", attempt, "err", err)
		s.m.errors.Inc()
		select {
		case <-time.After(time.Second):
		case <-s.stop:
			return
		}
	}
	s.mu.Lock()
	delete(s.sealing, id)
	s.sealingChunks.Add(-1)
	if left := s.sealingBytes.Add(-int64(h.bytes)); left <= s.opts.SealBacklogBytes && left+int64(h.bytes) > s.opts.SealBacklogBytes {
		s.backlogDrained()
	}
	if day < s.floor {
		// Retention dropped the day while this chunk was being written.
		s.mu.Unlock()
		_ = s.db.DropPrefix(chunkKey(pfxChunk, day, id), chunkKey(pfxTimes, day, id), chunkKey(pfxMeta, day, id), chunkKey(pfxBloom, day, id), chunkKey(pfxPending, day, id))
		return
	}
	s.addSealed(meta)
	s.attrKeysWritten(day, keys)
	s.unindexed[id] = meta
	s.mu.Unlock()
	if dict == nil && writeTextVersion >= 5 {
		s.sampleDict(day, lines.Msgs)
	}
	s.countDayWords(day, lines.Msgs)
	s.m.chunks.Inc()
	s.m.chunkLines[h.why].Observe(float64(meta.Count))
	s.m.chunkBytes.Add(float64(len(tv) + len(cv)))
	s.noteMappedWrite(len(tv) + len(cv))
	s.m.sealSeconds.Observe(time.Since(start).Seconds())
	s.indexCh <- &indexJob{meta: meta, doc: doc}
}

// sampleDict notes the messages of a chunk of day sealed without a
// dictionary and, once there are samples enough, writes the day's message
// dictionary and makes it used (msgdict.go). A dictionary that cannot be
// written is made again from later chunks' samples.
func (s *Store) sampleDict(day uint32, msgs []string) {
	raw := s.dicts.sample(day, msgs)
	if raw == nil {
		return
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(dictKey(day), raw) }); err != nil {
		s.log.Error("store: write message dictionary", "day", dayName(day), "err", err)
		s.dicts.unwritten(day)
		return
	}
	if err := s.dicts.add(day, raw); err != nil {
		s.log.Error("store: message dictionary", "day", dayName(day), "err", err)
	}
}

// countDayWords notes the lines of a chunk of day and, once there are
// chunks enough, writes the day's words and makes them used (daywords.go).
// Words that cannot be written are counted again from later chunks.
func (s *Store) countDayWords(day uint32, msgs []string) {
	common := s.words.count(day, msgs)
	if common == nil {
		return
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(dayWordsKey(day), encodeDayWords(common)) }); err != nil {
		s.log.Error("store: write day words", "day", dayName(day), "err", err)
		s.words.unwritten(day)
		return
	}
	s.words.add(day, common)
}

// evictHeads starts sealing the heads written least recently while the
// heads hold more than HeadsMaxBytes, down to three quarters of it, and
// returns them appended to out (to send to sealCh after unlocking). Caller
// holds mu.
func (s *Store) evictHeads(out []*head) []*head {
	if s.headBytes <= s.opts.HeadsMaxBytes {
		return out
	}
	hs := make([]*head, 0, len(s.heads))
	for _, h := range s.heads {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b *head) int { return cmp.Compare(a.lastAt, b.lastAt) })
	low := s.opts.HeadsMaxBytes / 4 * 3
	n := 0
	for _, h := range hs {
		if s.headBytes <= low {
			break
		}
		s.startSeal(h, sealEvicted)
		out = append(out, h)
		n++
	}
	s.m.evictedHeads.Add(float64(n))
	return out
}

// maintLoop seals old heads and truncates the WAL.
func (s *Store) maintLoop() {
	defer s.maintWG.Done()
	t := time.NewTicker(s.opts.Maintenance)
	defer t.Stop()
	rt := time.NewTicker(s.opts.RetentionCheck)
	defer rt.Stop()
	if s.opts.Retention > 0 || s.opts.RetentionBytes > 0 {
		s.applyRetention(time.Now())
	}
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.maintain(false)
		case <-rt.C:
			if s.opts.Retention > 0 || s.opts.RetentionBytes > 0 {
				s.applyRetention(time.Now())
			}
		}
	}
}

// maintain seals heads that are too old or pin too much WAL (all heads when
// all is set), then deletes WAL segments no head needs any more.
func (s *Store) maintain(all bool) {
	now := time.Now()
	var seal []*head
	var why []sealReason
	s.mu.Lock()
	oldestAllowed := uint64(0)
	if s.wal.seg >= uint64(s.opts.WALMaxSegments) {
		oldestAllowed = s.wal.seg - uint64(s.opts.WALMaxSegments) + 1
	}
	idleBefore := now.Add(-s.opts.ChunkIdleAge).UnixNano()
	for _, h := range s.heads {
		r := sealReason(numSealReasons)
		switch {
		case all:
			r = sealClose
		case h.lastAt <= idleBefore && h.minSeg < s.wal.seg:
			r = sealIdle
		case now.Sub(h.opened) >= s.opts.ChunkMaxAge:
			r = sealAge
		case h.minSeg < oldestAllowed:
			r = sealWAL
		}
		if r < numSealReasons {
			seal, why = append(seal, h), append(why, r)
		}
	}
	for i, h := range seal {
		s.startSeal(h, why[i])
	}
	s.mu.Unlock()
	for _, h := range seal {
		s.sealCh <- h
	}
	s.truncateWAL()
}

// truncateWAL deletes segments every line of which is sealed in Badger. Agent
// watermarks are saved first, since the WAL is their only other record.
func (s *Store) truncateWAL() {
	// One at a time: a second call must not delete segments before the
	// first has saved the agents it took.
	s.truncMu.Lock()
	defer s.truncMu.Unlock()
	s.mu.Lock()
	floor := s.wal.seg
	if s.closed && len(s.heads) == 0 && len(s.sealing) == 0 {
		// Closing with everything sealed: the current segment can go too.
		floor++
	}
	for _, h := range s.heads {
		floor = min(floor, h.minSeg)
	}
	for _, h := range s.sealing {
		floor = min(floor, h.minSeg)
	}
	if floor <= s.walFloor {
		s.mu.Unlock()
		return
	}
	var dirty []string
	var vals [][]byte
	for a, st := range s.agents {
		if st.dirty {
			dirty = append(dirty, a)
			vals = append(vals, encodeAgent(nil, &st.AgentInfo))
			st.dirty = false
		}
	}
	s.mu.Unlock()

	err := s.saveAgents(dirty, vals)
	if err == nil {
		err = s.db.Sync()
	}
	if err == nil {
		err = s.wal.removeBefore(floor)
	}
	if err != nil {
		s.log.Error("store: truncate wal", "err", err)
		s.m.errors.Inc()
		s.mu.Lock()
		for _, a := range dirty {
			if st := s.agents[a]; st != nil {
				st.dirty = true
			}
		}
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.walFloor = floor
	s.mu.Unlock()
}

func (s *Store) saveAgents(names []string, vals [][]byte) error {
	if len(names) == 0 {
		return nil
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for i, a := range names {
		if err := wb.Set(append([]byte{pfxAgent}, a...), vals[i]); err != nil {
			return err
		}
	}
	return wb.Flush()
}

package store

import "context"

// The sealing backlog: heads that left s.heads (and HeadsMaxBytes) for the
// sealers stay in memory until Badger has them. evictHeads hands over a
// quarter of the bound at once and the sealers are slower than ingest, so
// without a bound the backlog held another 10-30 MiB of heads (300-400 of
// them) through a 10M-line ingest. Append waits instead: the sealers, not
// the memory, set the pace.

// waitSealBacklog returns once the heads being sealed hold at most
// Options.SealBacklogBytes, ctx is done (its error) or the store is closed
// (ErrClosed). Caller holds no lock.
func (s *Store) waitSealBacklog(ctx context.Context) error {
	for s.sealingBytes.Load() > s.opts.SealBacklogBytes {
		s.backlogMu.Lock()
		if s.backlogFree == nil {
			s.backlogFree = make(chan struct{})
		}
		free := s.backlogFree
		s.backlogMu.Unlock()
		// Checked again now that free is ours: a drain before it was
		// taken closed an older channel.
		if s.sealingBytes.Load() <= s.opts.SealBacklogBytes {
			return nil
		}
		s.m.backlogWaits.Inc()
		select {
		case <-free:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stop:
			return ErrClosed
		}
	}
	return nil
}

// backlogDrained wakes the Appends waiting in waitSealBacklog: the backlog
// fell to its bound (or the store is stopping).
func (s *Store) backlogDrained() {
	s.backlogMu.Lock()
	if s.backlogFree != nil {
		close(s.backlogFree)
		s.backlogFree = nil
	}
	s.backlogMu.Unlock()
}

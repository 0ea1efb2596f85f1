package store

import "time"

// mapWindow is what one read through the value log's maps is counted as
// beyond its own bytes: the kernel maps the page cache's pages around each
// page faulted in (fault-around, 64 KiB), so reading a few KiB of a chunk
// makes up to 64 KiB more of the value log resident. Counted at their own
// size, the reads of a rare-word search at 10M lines let the value log's
// resident pages grow by ~100 MiB between two releases.
const mapWindow = 64 << 10

const vlogReleaseParts = 16 // see noteMappedWrite

// noteMappedRead counts a value of n bytes read through the value log's
// maps, and asks for a release once Options.ReleaseAfterRead have been: a
// search over days of chunks would otherwise map hundreds of MiB of the value
// log between two periodic releases.
func (s *Store) noteMappedRead(n int) {
	if s.readMapped.Add(int64(n)+mapWindow) >= s.opts.ReleaseAfterRead {
		s.askRelease()
	}
}

// noteMappedWrite counts n bytes of chunk values written (Badger writes
// the value log through its maps too): a file finished during an ingest
// stayed resident whole until the next periodic release, up to a second
// file's worth (64 MiB) beside the one being written. A release follows
// every vlogReleaseParts-th of a file written, so at most that much of a
// finished one stays (4 MiB: an eighth let a 10M-line ingest's value log
// hold up to 72 MiB at its peaks, a 2M-line one's 64, its only file).
func (s *Store) noteMappedWrite(n int) {
	if s.wroteMapped.Add(int64(n)) >= s.opts.BadgerVlogFile/vlogReleaseParts {
		s.askRelease()
	}
}

func (s *Store) askRelease() {
	select {
	case s.releaseNow <- struct{}{}:
	default:
	}
}

// releasePages releases the pages of the finished value-log files from the
// resident set.
func (s *Store) releasePages() {
	s.readMapped.Store(0)
	s.wroteMapped.Store(0)
	s.vlogMu.Lock()
	s.releaseMappedPages()
	s.vlogMu.Unlock()
}

// releaseLoop releases the value log's and the indexes' pages every
// Options.PageRelease, and the value log's when reads and writes ask for it. It is a goroutine of its own: the maintenance loop
// waits for the sealers when it hands them heads (right after an ingest, the
// very time the first searches read the most), and a release asked for then
// came only after it.
func (s *Store) releaseLoop() {
	defer s.maintWG.Done()
	t := time.NewTicker(s.opts.PageRelease)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.releasePages()
			// Only here: indexes grow resident by merges and searches, far
			// slower than reads map the value log.
			s.releaseIndexPages()
		case <-s.releaseNow:
			s.releasePages()
		}
	}
}

package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// A backup file (version 2) is the line "SHIPLOG-BACKUP 2\n", Badger's backup
// stream of every key (chunks, metadata, blooms, agents, runs, the retention
// floor, metrics), and a trailer:
//
//	header  "SHIPLOG-BACKUP 2\n"
//	frames  length uint64 LE | protobuf KVList       (Badger's own format)
//	trailer 0xFFFFFFFFFFFFFFFF | body bytes uint64 LE | SHA-256 of header and frames
//
// The trailer's marker is a length no frame can have, so a reader meets it
// where it would read the next frame's length. Version 1 (written before
// 2026-12) is the same without the trailer; it is still restored, but a copy
// cut at a frame boundary cannot be told from a whole one. Open lines are
// sealed first, so everything acked before the backup started is in it.
// Bleve indexes are left out: Open rebuilds the index of any day that has
// chunks but no index directory.
const (
	backupMagicV1 = "SHIPLOG-BACKUP 1\n"
	backupMagic   = "SHIPLOG-BACKUP 2\n"
	// backupTrailerMark is the length field that starts the trailer.
	backupTrailerMark = ^uint64(0)
	backupTrailerSize = 8 + 8 + sha256.Size
	// maxBackupFrame bounds one frame: Badger cuts its stream into batches
	// of about 100 MiB, so a larger length is damage, not data.
	maxBackupFrame = 1 << 30
	// maxBackupKey is Badger's own limit on a key's length.
	maxBackupKey = 65000
	// maxBackupVersion bounds a key's version (Badger's commit timestamp),
	// which the loader adds one to.
	maxBackupVersion = 1 << 62
)

// ErrBadBackup is returned by Restore for a file that is not a whole, intact
// shiplog backup.
var ErrBadBackup = errors.New("not a valid shiplog backup")

// Backup writes a consistent copy of the store to w.
func (s *Store) Backup(w io.Writer) error {
	if s.readOnly {
		// It would miss the lines still in the WAL, which cannot be sealed.
		return fmt.Errorf("backup: %w", s.errReadOnly())
	}
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
	hw := &hashWriter{w: w, h: sha256.New()}
	if _, err := io.WriteString(hw, backupMagic); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := s.db.Backup(hw, 0); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	var tr [backupTrailerSize]byte
	binary.LittleEndian.PutUint64(tr[0:], backupTrailerMark)
	binary.LittleEndian.PutUint64(tr[8:], uint64(hw.n))
	hw.h.Sum(tr[16:16])
	if _, err := w.Write(tr[:]); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

type hashWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// Restore creates a store in dir (which must be empty or absent) from a
// backup. It restores into a temporary directory beside dir and renames it
// into place only once the whole backup is read and checked, so a truncated
// or damaged file leaves nothing behind; such a file gets an error wrapping
// ErrBadBackup that says what is wrong.
func Restore(r io.Reader, dir string) (err error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("restore: %s is not empty", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	vr, err := newBackupReader(r)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".restoring-")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := loadBackup(vr, filepath.Join(tmp, "badger")); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if _, err := tightenPerms(tmp); err != nil { // Badger creates some files 0666
		return fmt.Errorf("restore: %w", err)
	}
	// An empty directory at dir (checked above) gives way.
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// loadBackup loads the checked stream into a new Badger in dir. Badger's
// loader trusts its input; recover is the last line of defence for what
// backupReader's checks let through.
func loadBackup(vr *backupReader, dir string) (err error) {
	opts := badger.DefaultOptions(dir).WithLogger(nil).
		WithCompression(0).WithValueThreshold(1 << 10).WithMemTableSize(32 << 20).WithValueLogFileSize(256 << 20)
	db, err := badger.Open(opts)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: the loader failed on it: %v", ErrBadBackup, p)
		}
		if cerr := closeQuietly(db); err == nil {
			err = cerr
		}
	}()
	if err := db.Load(vr, 256); err != nil {
		if vr.err != nil {
			return vr.err
		}
		return fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	if vr.err != nil {
		return vr.err
	}
	if vr.v2 && !vr.done {
		return fmt.Errorf("%w: it ends before its trailer (truncated?)", ErrBadBackup)
	}
	return nil
}

func closeQuietly(db *badger.DB) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("close: %v", p)
		}
	}()
	return db.Close()
}

// backupReader hands Badger's loader the frames of a backup, each checked
// first: a length within bounds, a body that decodes as a KVList of sane
// entries, and (version 2) the trailer's length and checksum over all of it.
// It answers io.EOF only at a frame boundary of an intact file.
type backupReader struct {
	r    *bufio.Reader
	v2   bool
	h    hash.Hash
	n    int64  // bytes hashed (header and frames)
	buf  []byte // the current frame, length included
	off  int
	done bool
	err  error
}

// newBackupReader reads and checks a backup's header.
func newBackupReader(r io.Reader) (*backupReader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	vr := &backupReader{r: br, h: sha256.New()}
	head := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(br, head); err != nil || (string(head) != backupMagic && string(head) != backupMagicV1) {
		return nil, fmt.Errorf("%w (it should start with %q)", ErrBadBackup, backupMagic[:len(backupMagic)-1])
	}
	vr.v2 = string(head) == backupMagic
	vr.h.Write(head)
	vr.n = int64(len(head))
	return vr, nil
}

func (b *backupReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	for b.off == len(b.buf) {
		if b.done {
			return 0, io.EOF
		}
		if err := b.next(); err != nil {
			if err != io.EOF {
				b.err = err
			}
			return 0, err
		}
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	return n, nil
}

func (b *backupReader) bad(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadBackup}, a...)...)
}

// next reads and checks the next frame, or the trailer.
func (b *backupReader) next() error {
	var lb [8]byte
	if _, err := io.ReadFull(b.r, lb[:]); err != nil {
		if err == io.EOF {
			if b.v2 {
				return b.bad("it ends at byte %d with no trailer (truncated?)", b.n)
			}
			b.done = true
			return io.EOF
		}
		return b.bad("it ends inside a frame's length at byte %d (truncated?)", b.n)
	}
	sz := binary.LittleEndian.Uint64(lb[:])
	if b.v2 && sz == backupTrailerMark {
		return b.trailer()
	}
	if sz > maxBackupFrame {
		return b.bad("a frame at byte %d claims %d bytes (at most %d)", b.n, sz, maxBackupFrame)
	}
	if cap(b.buf) < 8+int(sz) {
		b.buf = make([]byte, 8+int(sz))
	}
	b.buf = b.buf[:8+int(sz)]
	copy(b.buf, lb[:])
	if _, err := io.ReadFull(b.r, b.buf[8:]); err != nil {
		return b.bad("it ends inside the frame at byte %d, which claims %d bytes (truncated?)", b.n, sz)
	}
	if err := checkKVList(b.buf[8:]); err != nil {
		return b.bad("the frame at byte %d: %v", b.n, err)
	}
	b.h.Write(b.buf)
	b.n += int64(len(b.buf))
	b.off = 0
	return nil
}

func (b *backupReader) trailer() error {
	var tr [backupTrailerSize - 8]byte
	if _, err := io.ReadFull(b.r, tr[:]); err != nil {
		return b.bad("its trailer is cut short (truncated?)")
	}
	if n := binary.LittleEndian.Uint64(tr[:8]); n != uint64(b.n) {
		return b.bad("its trailer counts %d bytes, the file holds %d", n, b.n)
	}
	if sum := b.h.Sum(nil); !bytes.Equal(sum, tr[8:]) {
		return b.bad("its checksum does not match (the file is damaged)")
	}
	if _, err := b.r.ReadByte(); err != io.EOF {
		return b.bad("bytes follow its trailer")
	}
	b.done = true
	b.buf, b.off = b.buf[:0], 0
	return io.EOF
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

// checkKVList checks a frame's body, a protobuf KVList (Badger's
// pb/badgerpb4.proto), by hand (the store does not link protobuf): every
// field well formed, and every entry one a backup could have written.
func checkKVList(b []byte) error {
	return walkProto(b, func(field uint64, wt byte, v uint64, sub []byte) error {
		if field == 1 {
			if wt != 2 {
				return errors.New("a KVList entry is not a message")
			}
			return checkKV(sub)
		}
		return nil
	})
}

func checkKV(b []byte) error {
	var key, meta, userMeta []byte
	var version uint64
	var done bool
	err := walkProto(b, func(field uint64, wt byte, v uint64, sub []byte) error {
		want := byte(2)
		switch field {
		case 1:
			key = sub
		case 3:
			userMeta = sub
		case 6:
			meta = sub
		case 4, 5, 10, 11:
			want = 0
			if field == 4 {
				version = v
			}
			if field == 11 {
				done = v != 0
			}
		default:
			return nil
		}
		if wt != want {
			return fmt.Errorf("field %d of an entry has wire type %d", field, wt)
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case len(key) == 0 || len(key) > maxBackupKey:
		return fmt.Errorf("an entry has a key of %d bytes", len(key))
	case version == 0 || version > maxBackupVersion:
		return fmt.Errorf("an entry has version %d", version)
	case len(meta) > 1 || len(meta) == 1 && meta[0]&^0x0f != 0:
		return fmt.Errorf("an entry has unknown flags %x", meta)
	case done || len(userMeta) > 1:
		return errors.New("an entry is of a kind no backup writes")
	}
	return nil
}

// walkProto calls fn for each field of a protobuf message: v for varints,
// sub for length-delimited fields (fixed-size fields are skipped).
func walkProto(b []byte, fn func(field uint64, wt byte, v uint64, sub []byte) error) error {
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return errors.New("a bad field tag")
		}
		b = b[n:]
		field, wt := tag>>3, byte(tag&7)
		if field == 0 {
			return errors.New("field number 0")
		}
		var v uint64
		var sub []byte
		switch wt {
		case 0:
			if v, n = binary.Uvarint(b); n <= 0 {
				return errors.New("a bad varint")
			}
			b = b[n:]
		case 1, 5:
			size := 8
			if wt == 5 {
				size = 4
			}
			if len(b) < size {
				return errors.New("a field runs past the end")
			}
			b = b[size:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return errors.New("a field runs past the end")
			}
			sub, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return fmt.Errorf("wire type %d", wt)
		}
		if err := fn(field, wt, v, sub); err != nil {
			return err
		}
	}
	return nil
}

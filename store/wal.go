package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// The write-ahead log holds every acked batch until its lines are sealed into
// chunks in Badger. It is a directory of segment files wal/<16 hex digits>.wal,
// each a sequence of frames:
//
//	length uint32 BE | crc32c(payload) uint32 BE | payload
//
// A frame is written with one write(2) before the batch is acked, so it survives
// a kill of the process (the kernel holds it); with Options.Fsync the segment is
// fsynced first and it survives a power cut too. A torn or corrupt frame ends the
// replay of its segment. Segments are deleted once every line in them is sealed.

var crcTable = crc32.MakeTable(crc32.Castagnoli)

const walFrameHeader = 8

// maxWALFrame bounds a frame so that a corrupt length cannot make replay
// allocate without limit.
const maxWALFrame = 1 << 30

type wal struct {
	dir      string
	segBytes int64
	fsync    bool

	f    *os.File
	seg  uint64 // current segment number
	size int64
	hdr  [walFrameHeader]byte
}

// openWAL opens the log in dir, creating dir unless readOnly (a read-only
// store replays the log and never appends).
func openWAL(dir string, segBytes int64, fsync, readOnly bool) (*wal, error) {
	if readOnly {
		return &wal{dir: dir, segBytes: segBytes, fsync: fsync}, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	return &wal{dir: dir, segBytes: segBytes, fsync: fsync}, nil
}

func (w *wal) segPath(seg uint64) string {
	return filepath.Join(w.dir, fmt.Sprintf("%016x.wal", seg))
}

// segments lists the segment numbers on disk, ascending.
func (w *wal) segments() ([]uint64, error) {
	ents, err := os.ReadDir(w.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // a read-only store's log that was never created
	}
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	var segs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".wal")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		segs = append(segs, n)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	return segs, nil
}

// replay calls fn for every intact frame of every segment, in order. It returns
// the number of frames that were torn or corrupt (and skipped).
func (w *wal) replay(fn func(seg uint64, payload []byte) error) (bad int, err error) {
	segs, err := w.segments()
	if err != nil {
		return 0, err
	}
	for _, seg := range segs {
		data, err := os.ReadFile(w.segPath(seg))
		if err != nil {
			return bad, fmt.Errorf("wal: %w", err)
		}
		for p := 0; p < len(data); {
			if len(data)-p < walFrameHeader {
				bad++
				break
			}
			n := binary.BigEndian.Uint32(data[p:])
			sum := binary.BigEndian.Uint32(data[p+4:])
			if n > maxWALFrame || int(n) > len(data)-p-walFrameHeader {
				bad++
				break
			}
			payload := data[p+walFrameHeader : p+walFrameHeader+int(n)]
			if crc32.Checksum(payload, crcTable) != sum {
				bad++
				break
			}
			if err := fn(seg, payload); err != nil {
				return bad, err
			}
			p += walFrameHeader + int(n)
		}
		if seg >= w.seg {
			w.seg = seg
		}
	}
	return bad, nil
}

// startSegment opens a fresh segment after every existing one.
func (w *wal) startSegment() error {
	if w.f != nil {
		if w.fsync {
			if err := w.f.Sync(); err != nil {
				return fmt.Errorf("wal: sync: %w", err)
			}
		}
		if err := w.f.Close(); err != nil {
			return fmt.Errorf("wal: close: %w", err)
		}
	}
	w.seg++
	f, err := os.OpenFile(w.segPath(w.seg), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	if w.fsync {
		if d, err := os.Open(w.dir); err == nil {
			_ = d.Sync()
			_ = d.Close()
		}
	}
	w.f, w.size = f, 0
	return nil
}

// append writes one frame and returns the segment that holds it. The payload
// must have walFrameHeader bytes of room in front of it (as encodeWALBatch leaves).
func (w *wal) append(frame []byte) (uint64, error) {
	if w.f == nil || w.size >= w.segBytes {
		if err := w.startSegment(); err != nil {
			w.f = nil
			return 0, err
		}
	}
	payload := frame[walFrameHeader:]
	binary.BigEndian.PutUint32(frame[0:], uint32(len(payload)))
	binary.BigEndian.PutUint32(frame[4:], crc32.Checksum(payload, crcTable))
	if _, err := w.f.Write(frame); err != nil {
		// Cut the torn frame off and move on to a fresh segment, so that no
		// later frame sits behind it (replay stops at a torn frame).
		_ = w.f.Truncate(w.size)
		_ = w.f.Close()
		w.f = nil
		return 0, fmt.Errorf("wal: write: %w", err)
	}
	w.size += int64(len(frame))
	if w.fsync {
		if err := w.f.Sync(); err != nil {
			// Not known to be durable: not acked, and nothing more goes here.
			_ = w.f.Truncate(w.size - int64(len(frame)))
			_ = w.f.Close()
			w.f = nil
			return 0, fmt.Errorf("wal: sync: %w", err)
		}
	}
	return w.seg, nil
}

// removeBefore deletes every segment numbered below seg.
func (w *wal) removeBefore(seg uint64) error {
	segs, err := w.segments()
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s >= seg {
			break
		}
		if err := os.Remove(w.segPath(s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: %w", err)
		}
	}
	return nil
}

func (w *wal) close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

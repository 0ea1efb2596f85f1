package agent

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/shiplog/shiplog/internal/wire"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// ErrSpoolLocked is returned when another running agent holds the spool directory.
var ErrSpoolLocked = errors.New("spool directory is in use by another running agent")

// errCorrupt marks a batch file that does not decode.
var errCorrupt = errors.New("corrupt spool batch")

const spoolMagic = "SHIPSPL1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Position is how far a followed file has been read into records that are in
// the spool: the file (by device and inode) and the offset just past the last
// line of the last such record.
type Position struct {
	Path   string `json:"path"`
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Offset int64  `json:"offset"`
}

// spoolState is state.json.
type spoolState struct {
	NextSeq   uint64              `json:"next_seq"`
	NextEntry uint64              `json:"next_entry"`
	Dropped   uint64              `json:"dropped"`
	Positions map[string]Position `json:"positions"`
}

// entryMeta is the JSON head of a batch file.
type entryMeta struct {
	ID        uint64              `json:"id"`
	FirstSeq  uint64              `json:"first_seq"`
	LastSeq   uint64              `json:"last_seq"`
	Records   int                 `json:"records"`
	NextSeq   uint64              `json:"next_seq"`
	Dropped   uint64              `json:"dropped"`
	Positions map[string]Position `json:"positions,omitempty"`
}

// entry is one batch in the spool.
type entry struct {
	id       uint64
	first    uint64
	last     uint64
	records  int
	size     int64
	path     string                 // "" when it could not be written: memory only
	req      *shiplogv1.PushRequest // nil when not kept in memory
	removed  bool
	inMemory int64  // bytes counted against the memory budget
	sentAs   string // the agent id it was last sent under
}

// spool is the directory of unacked batches. The Shipper's mutex guards it.
type spool struct {
	dir       string
	lock      *os.File
	fsync     bool
	maxBytes  int64
	memBudget int64
	log       *slog.Logger

	agentID  string
	entries  []*entry // by id
	bytes    int64
	memBytes int64
	state    spoolState
}

// openSpool locks dir (creating it) and loads its agent id, state and batches.
func openSpool(dir string, maxBytes, memBudget int64, fsync bool, log *slog.Logger) (*spool, error) {
	if err := os.MkdirAll(filepath.Join(dir, "queue"), 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	// The spool holds unacked lines: the agent's alone (older versions
	// created it 0755).
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	sp := &spool{dir: dir, lock: lock, fsync: fsync, maxBytes: maxBytes, memBudget: memBudget, log: log}
	if err := sp.load(); err != nil {
		unlockDir(lock)
		return nil, err
	}
	return sp, nil
}

func (sp *spool) load() error {
	idPath := filepath.Join(sp.dir, "agent_id")
	b, err := os.ReadFile(idPath)
	switch {
	case err == nil && len(bytes.TrimSpace(b)) > 0:
		sp.agentID = string(bytes.TrimSpace(b))
	case err == nil || errors.Is(err, os.ErrNotExist):
		if err := sp.newAgentID(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("spool: %w", err)
	}

	sp.state = spoolState{NextSeq: 1, NextEntry: 1}
	if b, err := os.ReadFile(filepath.Join(sp.dir, "state.json")); err == nil {
		if err := json.Unmarshal(b, &sp.state); err != nil {
			return fmt.Errorf("spool: %s: %w", filepath.Join(sp.dir, "state.json"), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: %w", err)
	}
	if sp.state.Positions == nil {
		sp.state.Positions = map[string]Position{}
	}
	sp.state.NextSeq = max(sp.state.NextSeq, 1)
	sp.state.NextEntry = max(sp.state.NextEntry, 1)

	qdir := filepath.Join(sp.dir, "queue")
	des, err := os.ReadDir(qdir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, de := range des {
		name := de.Name()
		path := filepath.Join(qdir, name)
		if strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(path)
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, ".batch"), 16, 64)
		if err != nil || !strings.HasSuffix(name, ".batch") {
			continue
		}
		meta, size, err := readMeta(path)
		if err != nil || meta.ID != id {
			sp.log.Warn("spool: deleting unreadable batch", "file", path, "err", err)
			_ = os.Remove(path)
			continue
		}
		e := &entry{id: id, first: meta.FirstSeq, last: meta.LastSeq, records: meta.Records, size: size, path: path}
		sp.entries = append(sp.entries, e)
		sp.bytes += size
		if id >= sp.state.NextEntry {
			// Written after state.json was: its meta is the newer state.
			sp.state.NextEntry = id + 1
			sp.state.NextSeq = max(sp.state.NextSeq, meta.NextSeq)
			sp.state.Dropped = max(sp.state.Dropped, meta.Dropped)
			for k, v := range meta.Positions {
				sp.state.Positions[k] = v
			}
		}
	}
	sort.Slice(sp.entries, func(i, j int) bool { return sp.entries[i].id < sp.entries[j].id })
	for _, e := range sp.entries {
		sp.state.NextSeq = max(sp.state.NextSeq, e.last+1)
	}
	return sp.writeState()
}

// newAgentID gives the spool a new random agent id and keeps it.
func (sp *spool) newAgentID() error {
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return fmt.Errorf("spool: agent id: %w", err)
	}
	id := hex.EncodeToString(r[:])
	if err := writeFileAtomic(filepath.Join(sp.dir, "agent_id"), []byte(id+"\n"), true); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	sp.agentID = id
	return nil
}

// readMeta reads a batch file's head.
func readMeta(path string) (entryMeta, int64, error) {
	var m entryMeta
	f, err := os.Open(path)
	if err != nil {
		return m, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return m, 0, err
	}
	r := bufio.NewReaderSize(f, 4096)
	magic := make([]byte, len(spoolMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != spoolMagic {
		return m, 0, fmt.Errorf("%w: bad magic", errCorrupt)
	}
	head, _ := r.Peek(binary.MaxVarintLen64)
	hr := wire.NewReader(head, nil)
	n := hr.Uvarint()
	if hr.Err() != nil || n > uint64(fi.Size()) {
		return m, 0, fmt.Errorf("%w: bad meta length", errCorrupt)
	}
	if _, err := r.Discard(len(head) - hr.Len()); err != nil {
		return m, 0, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	mb := make([]byte, n)
	if _, err := io.ReadFull(r, mb); err != nil {
		return m, 0, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if err := json.Unmarshal(mb, &m); err != nil {
		return m, 0, fmt.Errorf("%w: meta: %v", errCorrupt, err)
	}
	return m, fi.Size(), nil
}

func encodeEntry(meta *entryMeta, req []byte) []byte {
	mb, _ := json.Marshal(meta)
	b := make([]byte, 0, len(spoolMagic)+len(mb)+len(req)+24)
	b = append(b, spoolMagic...)
	b = wire.AppendBytes(b, mb)
	b = wire.AppendBytes(b, req)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeEntry(b []byte) (*shiplogv1.PushRequest, error) {
	if len(b) < len(spoolMagic)+6 || string(b[:len(spoolMagic)]) != spoolMagic {
		return nil, fmt.Errorf("%w: bad magic", errCorrupt)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	r := wire.NewReader(body[len(spoolMagic):], nil)
	if r.Bytes(); r.Err() != nil {
		return nil, fmt.Errorf("%w: bad meta length", errCorrupt)
	}
	if n := r.Uvarint(); r.Err() != nil || n != uint64(r.Len()) {
		return nil, fmt.Errorf("%w: bad request length", errCorrupt)
	}
	req := &shiplogv1.PushRequest{}
	if err := proto.Unmarshal(r.Rest(), req); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return req, nil
}

// append writes req as the next batch, first deleting the oldest batches while
// the spool would grow over maxBytes; their records count as dropped and are
// returned. A batch that cannot be written is kept in memory (and said so).
func (sp *spool) append(req *shiplogv1.PushRequest, first, last uint64, records int) (dropped []*entry, err error) {
	raw, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("spool: encode batch: %w", err)
	}
	meta := entryMeta{ID: sp.state.NextEntry, FirstSeq: first, LastSeq: last, Records: records,
		NextSeq: sp.state.NextSeq, Dropped: sp.state.Dropped, Positions: sp.state.Positions}
	data := encodeEntry(&meta, raw)
	for len(sp.entries) > 0 && sp.bytes+int64(len(data)) > sp.maxBytes {
		e := sp.entries[0]
		sp.remove(e)
		sp.state.Dropped += uint64(e.records)
		dropped = append(dropped, e)
	}
	if len(dropped) > 0 {
		meta.Dropped = sp.state.Dropped
		data = encodeEntry(&meta, raw)
	}
	sp.state.NextEntry++
	e := &entry{id: meta.ID, first: first, last: last, records: records, size: int64(len(data)),
		path: filepath.Join(sp.dir, "queue", fmt.Sprintf("%016x.batch", meta.ID))}
	if werr := writeFileAtomic(e.path, data, sp.fsync); werr != nil {
		e.path = ""
		err = fmt.Errorf("spool: write batch (kept in memory only): %w", werr)
	}
	if e.path == "" || sp.memBytes+int64(len(raw)) <= sp.memBudget {
		e.req, e.inMemory = req, int64(len(raw))
		sp.memBytes += e.inMemory
	}
	sp.entries = append(sp.entries, e)
	sp.bytes += e.size
	if serr := sp.writeState(); serr != nil && err == nil {
		err = serr
	}
	return dropped, err
}

// remove deletes a batch (acked or dropped).
func (sp *spool) remove(e *entry) {
	if e.removed {
		return
	}
	e.removed = true
	if e.path != "" {
		if err := os.Remove(e.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			sp.log.Warn("spool: cannot delete batch", "file", e.path, "err", err)
		}
	}
	sp.bytes -= e.size
	sp.memBytes -= e.inMemory
	e.req, e.inMemory = nil, 0
	i := sort.Search(len(sp.entries), func(i int) bool { return sp.entries[i].id >= e.id })
	if i < len(sp.entries) && sp.entries[i] == e {
		copy(sp.entries[i:], sp.entries[i+1:])
		sp.entries[len(sp.entries)-1] = nil
		sp.entries = sp.entries[:len(sp.entries)-1]
	}
}

// after returns the first batch with an id above id, or nil.
func (sp *spool) after(id uint64) *entry {
	i := sort.Search(len(sp.entries), func(i int) bool { return sp.entries[i].id > id })
	if i < len(sp.entries) {
		return sp.entries[i]
	}
	return nil
}

// pendingRecords counts the records of every batch not yet acked.
func (sp *spool) pendingRecords() int {
	n := 0
	for _, e := range sp.entries {
		n += e.records
	}
	return n
}

// readEntry loads a batch kept only on disk. Called without the lock: the
// file's name and contents never change.
func readEntry(path string) (*shiplogv1.PushRequest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeEntry(b)
}

func (sp *spool) writeState() error {
	b, err := json.Marshal(&sp.state)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(sp.dir, "state.json"), b, sp.fsync); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

func (sp *spool) close() error {
	err := sp.writeState()
	unlockDir(sp.lock)
	return err
}

// writeFileAtomic writes data to path by way of a temporary file and a rename.
func writeFileAtomic(path string, data []byte, fsync bool) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

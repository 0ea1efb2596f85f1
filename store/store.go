package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/model"
)

// Errors callers test for.
var (
	ErrClosed   = errors.New("store is closed")
	ErrNoSpace  = errors.New("no space left on the data directory's disk")
	ErrNotFound = errors.New("not found")
	// ErrStreamLimit refuses a batch that would open more new streams than
	// Options.MaxStreamsPerDay allows today.
	ErrStreamLimit = errors.New("over the limit of new streams a day")
	// ErrAgentBound refuses a batch whose agent id belongs to another sender.
	ErrAgentBound = errors.New("agent id belongs to another token")
	// ErrSeqJump refuses a seq further than Options.MaxSeqJump above the
	// agent's highest stored seq.
	ErrSeqJump = errors.New("seq jumps too far ahead")
	// ErrReadOnly: the store was opened read-only (its disk was full at
	// Open); it answers queries and refuses writes until reopened.
	ErrReadOnly = errors.New("the store is read-only")
)

// Options tune the store. DefaultOptions gives production values.
type Options struct {
	ChunkMaxLines   int           // seal a chunk at this many lines
	ChunkMaxBytes   int           // ... or this many bytes of text
	ChunkMaxAge     time.Duration // ... or when it has been open this long
	WALSegmentBytes int64         // size of one WAL segment file
	WALMaxSegments  int           // heads pinning older segments are sealed early
	Fsync           bool          // fsync the WAL before every ack (survives power cuts)
	Sealers         int           // goroutines compressing and writing chunks
	Indexers        int           // goroutines feeding Bleve
	BadgerMemTable  int64         // Badger memtable size
	BadgerCache     int64         // Badger block cache size
	Maintenance     time.Duration // period of the sealing/WAL truncation loop
	Retention       time.Duration // drop day partitions older than this (0: keep)
	RetentionBytes  int64         // drop the oldest days while the data directory is larger (0: no bound)
	RetentionCheck  time.Duration // how often retention runs (default 1m)
	SizeCheck       time.Duration // how often the data directory's sizes are measured for /metrics (default 30s)
	// StreamSeed, when not zero, is mixed into every stream id, so that stores
	// holding different partitions of one cluster never give two streams the
	// same id (and so no two records the same id). Fixed for a data directory.
	StreamSeed uint64
	// MaxStreamsPerDay bounds the streams the store has never seen that it
	// accepts per UTC day (by its clock); a batch that would open more is
	// refused whole with ErrStreamLimit, while streams it knows keep
	// working. 0: no limit.
	MaxStreamsPerDay int
	// MaxSeqJump bounds how far an agent's seq may move above its highest
	// stored seq (0 for a new agent) in one step; further is refused with
	// ErrSeqJump. 0: no bound.
	MaxSeqJump uint64
	// MinFreeToWrite: Open opens the store read-only when the data
	// directory's disk has less free space than this plus what starting
	// writes (the WALs' lines are sealed into Badger, Badger's memtables
	// flushed): Badger writes through memory-mapped files, and a write
	// there on a full disk kills the process (SIGBUS). 0: never read-only.
	// Open also falls back to read-only when Badger cannot open for lack
	// of space. A read-only store answers queries (with the WAL's lines,
	// replayed into memory), refuses writes with ErrReadOnly and writes
	// nothing: the WAL keeps its lines for the next writable Open.
	MinFreeToWrite uint64

	// Metrics tunes the metric store (metrics_store.go); Retention applies to it too.
	Metrics MetricsOptions
}

// DefaultOptions returns the options shiplog runs with.
func DefaultOptions() Options {
	return Options{
		ChunkMaxLines:   1024,
		ChunkMaxBytes:   512 << 10,
		ChunkMaxAge:     5 * time.Minute,
		WALSegmentBytes: 32 << 20,
		WALMaxSegments:  8,
		Sealers:         2,
		Indexers:        2,
		BadgerMemTable:  32 << 20,
		BadgerCache:     64 << 20,
		Maintenance:     time.Second,
		RetentionCheck:  time.Minute,
		SizeCheck:       30 * time.Second,
		// Sized for a big fleet: 100,000 new (service, host, build, deploy)
		// combinations a day. An open stream costs a few KiB until its chunk
		// is sealed, and its metadata stays in memory for good.
		MaxStreamsPerDay: 100_000,
		// A real agent's seq moves up by its lines; 2^40 is ~35 years of
		// 1,000 lines a second, and leaves 2^64 far away.
		MaxSeqJump:     1 << 40,
		MinFreeToWrite: 16 << 20,
		Metrics:        DefaultMetricsOptions(),
	}
}

type headKey struct {
	stream uint64
	day    uint32
}

// head is a chunk still open for appends. After sealing starts it is immutable.
type head struct {
	meta   ChunkMeta
	lines  Lines
	bytes  int
	opened time.Time
	minSeg uint64 // oldest WAL segment holding one of its lines
}

func (h *head) full(o *Options) bool {
	return int(h.meta.Count) >= o.ChunkMaxLines || h.bytes >= o.ChunkMaxBytes
}

// snapshot returns a reader's view of the lines appended so far. Appends only
// write past the snapshot's length, so it stays valid without the lock.
func (h *head) snapshot() *Lines {
	m := h.meta
	n := int(m.Count)
	l := h.lines
	return &Lines{
		Meta: &m, Times: l.Times[:n:n], Levels: l.Levels[:n:n], Msgs: l.Msgs[:n:n],
		Traces: l.Traces[:n:n], Spans: l.Spans[:n:n], Attrs: l.Attrs[:n:n], Seqs: l.Seqs[:n:n],
	}
}

// Store keeps log records: a WAL for acked lines, compressed chunks and their
// metadata in Badger, and one Bleve index per day over chunks. See doc.go.
type Store struct {
	opts  Options
	log   *slog.Logger
	dir   string
	db    *badger.DB
	idx   *indexSet
	m     *metrics
	ms    *metricStore // metric series beside the logs (metrics_*.go)
	sizes dirSizes     // the data directory as last measured (sizes.go)
	// readOnly is set by Open when the disk was full (roWhy says how full);
	// nothing is then written, sealed, indexed, truncated or dropped.
	readOnly bool
	roWhy    string

	mu        sync.RWMutex // guards everything below
	closed    bool
	wal       *wal
	heads     map[headKey]*head
	sealing   map[uint64]*head
	nextLine  map[headKey]uint32
	agents    map[string]*agentState
	chunks    map[uint64]*ChunkMeta   // sealed chunks by id
	days      map[uint32][]*ChunkMeta // sealed chunks per day, append-only
	streams   map[uint64][]*ChunkMeta // sealed chunks per stream, by (day, first line)
	unindexed map[uint64]*ChunkMeta   // sealed, not yet searchable in Bleve
	walFloor  uint64                  // WAL segments below this are deleted
	// streamInfo sums up sealed chunks per stream; lastRecv is the wall clock
	// of each stream's last append; runs are shiplog run reports by build.
	streamInfo map[uint64]*StreamInfo
	lastRecv   map[uint64]int64
	runs       map[string][]model.Run
	attrKeys   map[uint32]*dayKeys // attribute keys per day (attrkeys.go)
	// newDay is the UTC day (by the clock) newStreams counts the streams
	// first seen on, against Options.MaxStreamsPerDay.
	newDay      uint32
	newStreams  int
	limitWarned uint32 // the day the limit was last logged as reached
	// floor: every day below it was dropped by retention; dayDroppers drop
	// the other parts of a day (metrics).
	floor       uint32
	dayDroppers []func(uint32) error

	truncMu       sync.Mutex // serialises truncateWAL
	nextChunk     atomic.Uint64
	indexFailures atomic.Uint64 // searches a day index could not answer
	sealCh        chan *head
	indexCh       chan *indexJob
	sealWG        sync.WaitGroup
	indexWG       sync.WaitGroup
	persistWG     sync.WaitGroup
	inflight      sync.WaitGroup // Appends between their lock and their last send to sealCh
	stop          chan struct{}
	maintWG       sync.WaitGroup
}

// fill sets every field left at zero (or below) to its default.
func (o *Options) fill() {
	def := DefaultOptions()
	setIfUnset(&o.ChunkMaxLines, def.ChunkMaxLines)
	setIfUnset(&o.ChunkMaxBytes, def.ChunkMaxBytes)
	setIfUnset(&o.ChunkMaxAge, def.ChunkMaxAge)
	setIfUnset(&o.WALSegmentBytes, def.WALSegmentBytes)
	setIfUnset(&o.WALMaxSegments, def.WALMaxSegments)
	setIfUnset(&o.Sealers, def.Sealers)
	setIfUnset(&o.Indexers, def.Indexers)
	setIfUnset(&o.BadgerMemTable, def.BadgerMemTable)
	setIfUnset(&o.BadgerCache, def.BadgerCache)
	setIfUnset(&o.Maintenance, def.Maintenance)
	setIfUnset(&o.RetentionCheck, def.RetentionCheck)
	setIfUnset(&o.SizeCheck, def.SizeCheck)
}

func setIfUnset[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Open opens or creates the store in dir, replays the WAL and resumes indexing
// of sealed chunks that were not yet in Bleve.
func Open(dir string, opts Options, log *slog.Logger, reg prometheus.Registerer) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.fill()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if n, err := tightenPerms(dir); err != nil {
		return nil, fmt.Errorf("open store: make the data directory private: %w", err)
	} else if n > 0 {
		log.Warn("store: made the data directory private: removed group and other permissions (left by an older version)", "dir", dir, "entries", n)
	}
	db, roWhy, err := openBadger(dir, opts, log)
	if err != nil {
		return nil, err
	}
	readOnly := roWhy != ""
	if readOnly {
		log.Warn("store: opened READ-ONLY: queries are answered, writes refused; free space and restart (the write-ahead log keeps every acked line until then)", "why", roWhy, "dir", dir)
	}
	s := newStore(dir, opts, log, reg, db, roWhy)
	pending, toSeal, err := s.restore(reg)
	if err != nil {
		s.idx.closeAll()
		_ = db.Close()
		return nil, err
	}
	s.dayDroppers = append(s.dayDroppers, s.ms.dropDay)
	s.measureSizes()
	if readOnly {
		// Lines replayed from the WAL stay in memory, searchable; chunks
		// not yet in Bleve are scanned. Nothing is sealed or indexed.
		return s, nil
	}
	s.start()
	if len(toSeal) > 0 {
		s.inflight.Add(1)
		go func() {
			defer s.inflight.Done()
			for _, h := range toSeal {
				s.sealCh <- h
			}
		}()
	}
	if len(pending) > 0 {
		log.Info("store: indexing chunks left unindexed", "chunks", len(pending))
		s.sealWG.Add(1)
		go s.reindex(pending)
	}
	return s, nil
}

// openBadger opens the Badger DB under dir. On a full disk it opens it
// read-only and says why in roWhy (empty when writable): Badger would write
// into its memory-mapped files and die of SIGBUS (and sealing the WAL's
// lines needs space).
func openBadger(dir string, opts Options, log *slog.Logger) (db *badger.DB, roWhy string, err error) {
	bdir := filepath.Join(dir, "badger")
	bopts := badger.DefaultOptions(bdir).
		WithLogger(badgerLogger{log}).
		WithLoggingLevel(badger.WARNING).
		WithCompression(options.None).
		WithValueThreshold(1 << 10).
		WithMemTableSize(opts.BadgerMemTable).
		WithNumMemtables(2).
		WithBlockCacheSize(opts.BadgerCache).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(256 << 20).
		WithMetricsEnabled(false).
		WithNumCompactors(2)
	if free, ok := freeBytes(dir); ok && opts.MinFreeToWrite > 0 {
		need := opts.MinFreeToWrite + filesBytes(filepath.Join(dir, "wal"), ".wal") +
			filesBytes(filepath.Join(dir, "mwal"), ".wal") + filesBytes(filepath.Join(dir, "badger"), ".mem")
		if free < need {
			roWhy = fmt.Sprintf("the data directory's disk had %d bytes free at start, under the %d needed to start writing", free, need)
		}
	}
	if roWhy == "" {
		if err := memtablesAside(bdir, false, log); err != nil {
			return nil, "", fmt.Errorf("open store: %w", err)
		}
		db, err = badger.Open(bopts)
		if err != nil && isNoSpace(err) {
			roWhy = fmt.Sprintf("the data directory's disk is full: %v", err)
		}
	}
	if roWhy != "" {
		if err := memtablesAside(bdir, true, log); err != nil {
			return nil, "", fmt.Errorf("open store: %w", err)
		}
		db, err = badger.Open(bopts.WithReadOnly(true))
	}
	if err != nil {
		return nil, "", fmt.Errorf("open store: badger: %w", err)
	}
	return db, roWhy, nil
}

// newStore returns a Store over an open Badger DB with empty in-memory state.
func newStore(dir string, opts Options, log *slog.Logger, reg prometheus.Registerer, db *badger.DB, roWhy string) *Store {
	s := &Store{
		opts:       opts,
		log:        log,
		dir:        dir,
		db:         db,
		readOnly:   roWhy != "",
		roWhy:      roWhy,
		idx:        newIndexSet(filepath.Join(dir, "index")),
		m:          newMetrics(reg),
		heads:      map[headKey]*head{},
		sealing:    map[uint64]*head{},
		nextLine:   map[headKey]uint32{},
		agents:     map[string]*agentState{},
		chunks:     map[uint64]*ChunkMeta{},
		days:       map[uint32][]*ChunkMeta{},
		streams:    map[uint64][]*ChunkMeta{},
		unindexed:  map[uint64]*ChunkMeta{},
		streamInfo: map[uint64]*StreamInfo{},
		lastRecv:   map[uint64]int64{},
		runs:       map[string][]model.Run{},
		attrKeys:   map[uint32]*dayKeys{},
		sealCh:     make(chan *head, 64),
		indexCh:    make(chan *indexJob, 256),
		stop:       make(chan struct{}),
	}
	s.idx.readOnly = s.readOnly
	return s
}

// restore loads the chunk metadata, opens and replays the WAL and opens the
// metric store. It returns the sealed chunks Bleve still lacks and the heads
// replay filled. Open closes Bleve and Badger when it fails.
func (s *Store) restore(reg prometheus.Registerer) (pending []*ChunkMeta, toSeal []*head, err error) {
	if err := s.loadMeta(); err != nil {
		return nil, nil, err
	}
	if s.wal, err = openWAL(filepath.Join(s.dir, "wal"), s.opts.WALSegmentBytes, s.opts.Fsync, s.readOnly); err != nil {
		return nil, nil, err
	}
	if pending, err = s.pendingIndex(); err != nil {
		return nil, nil, err
	}
	if !s.readOnly {
		s.checkIndexes() // removes indexes that do not open
	}
	if missing := s.missingIndexes(); len(missing) > 0 && !s.readOnly {
		s.log.Info("store: rebuilding missing day indexes from Badger", "chunks", len(missing))
		pending = append(pending, missing...)
	}
	if toSeal, err = s.replayWAL(); err != nil {
		return nil, nil, err
	}
	if s.ms, err = openMetricStore(s, s.opts.Metrics, reg); err != nil {
		_ = s.wal.close()
		return nil, nil, err
	}
	return pending, toSeal, nil
}

func (s *Store) start() {
	for i := 0; i < s.opts.Sealers; i++ {
		s.sealWG.Add(1)
		go s.sealLoop()
	}
	for i := 0; i < s.opts.Indexers; i++ {
		s.indexWG.Add(1)
		go s.indexLoop()
	}
	s.maintWG.Add(2)
	go s.maintLoop()
	go s.sizeLoop()
}

// Key prefixes in Badger (see doc.go).
const (
	pfxChunk   = 'c'
	pfxTimes   = 't'
	pfxMeta    = 'm'
	pfxBloom   = 'b'
	pfxPending = 'p'
	pfxAgent   = 'a'
	pfxRun     = 'r'
)

func chunkKey(pfx byte, day uint32, id uint64) []byte {
	k := make([]byte, 13)
	k[0] = pfx
	binary.BigEndian.PutUint32(k[1:], day)
	binary.BigEndian.PutUint64(k[5:], id)
	return k
}

func (s *Store) loadMeta() error {
	var maxID uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{pfxMeta}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 13 {
				continue
			}
			day, id := binary.BigEndian.Uint32(k[1:]), binary.BigEndian.Uint64(k[5:])
			var m *ChunkMeta
			if err := it.Item().Value(func(v []byte) (err error) {
				m, err = decodeMeta(day, id, v)
				return err
			}); err != nil {
				return err
			}
			s.addSealed(m)
			maxID = max(maxID, id)
		}
		it2 := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte{pfxAgent}})
		defer it2.Close()
		for it2.Rewind(); it2.Valid(); it2.Next() {
			agent := string(it2.Item().Key()[1:])
			if err := it2.Item().Value(func(v []byte) error {
				a := &agentState{}
				r := &walReader{b: v}
				decodeAgent(r, &a.AgentInfo)
				if r.err != nil {
					return fmt.Errorf("agent %q: %w", agent, r.err)
				}
				a.ID = agent
				s.agents[agent] = a
				return nil
			}); err != nil {
				return err
			}
		}
		s.loadAttrKeys(txn)
		if err := s.loadFloor(txn); err != nil {
			return err
		}
		return s.loadRuns(txn)
	})
	if err != nil {
		return fmt.Errorf("open store: load metadata: %w", err)
	}
	s.nextChunk.Store(maxID)
	return nil
}

// addSealed records a sealed chunk in the in-memory maps. Caller holds mu (or
// has the store to itself).
func (s *Store) addSealed(m *ChunkMeta) {
	s.chunks[m.ID] = m
	s.days[m.Day] = append(s.days[m.Day], m)
	cs := s.streams[m.Stream]
	i := sort.Search(len(cs), func(i int) bool {
		return cs[i].Day > m.Day || cs[i].Day == m.Day && cs[i].FirstLine > m.FirstLine
	})
	cs = append(cs, nil)
	copy(cs[i+1:], cs[i:])
	cs[i] = m
	s.streams[m.Stream] = cs
	si := s.streamInfo[m.Stream]
	if si == nil {
		si = &StreamInfo{ID: m.Stream, Labels: m.Labels}
		s.streamInfo[m.Stream] = si
	}
	si.add(m)
	k := headKey{m.Stream, m.Day}
	if next := m.FirstLine + m.Count; next > s.nextLine[k] {
		s.nextLine[k] = next
	}
}

// covered reports whether line of stream/day is in a sealed chunk.
func (s *Store) covered(stream uint64, day uint32, line uint32) bool {
	cs := s.streams[stream]
	i := sort.Search(len(cs), func(i int) bool {
		return cs[i].Day > day || cs[i].Day == day && cs[i].LastLine() >= line
	})
	return i < len(cs) && cs[i].Day == day && cs[i].FirstLine <= line
}

// StreamID is the id of the stream with the given labels.
func StreamID(l model.Labels) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(l.Service)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(l.Host)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(l.BuildID)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(l.DeployID)
	return d.Sum64()
}

// seededStreamID is StreamID with Options.StreamSeed mixed in.
func seededStreamID(l model.Labels, seed uint64) uint64 {
	id := StreamID(l)
	if seed == 0 {
		return id
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], id)
	binary.BigEndian.PutUint64(b[8:], seed)
	return xxhash.Sum64(b[:])
}

// group is the part of a batch that goes to one head.
type group struct {
	key       headKey
	labels    model.Labels
	firstLine uint32
	recs      []int // indexes into the batch
}

// Append stores a batch durably: when it returns without error, every accepted
// record is in the WAL (and fsynced with Options.Fsync) and visible to queries.
// Records whose (agent, seq) were stored before come back as duplicates.
func (s *Store) Append(ctx context.Context, b model.Batch) (model.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return model.AppendResult{}, err
	}
	if s.readOnly {
		return model.AppendResult{}, s.errReadOnly()
	}
	start := time.Now()
	keys := make([]headKey, len(b.Records))
	for i := range b.Records {
		r := &b.Records[i]
		keys[i] = headKey{seededStreamID(r.Labels, s.opts.StreamSeed), model.Day(r.Time)}
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return model.AppendResult{}, ErrClosed
	}
	s.inflight.Add(1)
	defer s.inflight.Done()
	now := time.Now().UnixNano()
	var ag *agentState
	newAgent := false
	if b.AgentID != "" {
		ag = s.agents[b.AgentID]
		if ag == nil {
			ag, newAgent = &agentState{AgentInfo: AgentInfo{ID: b.AgentID, Sender: b.Sender}}, true
		}
		if err := checkSender(ag, b.Sender); err != nil {
			s.mu.Unlock()
			return model.AppendResult{}, err
		}
	}
	a, err := s.admit(&b, keys, ag)
	if err != nil {
		s.mu.Unlock()
		return model.AppendResult{}, err
	}
	var fresh int
	if a.res.Accepted > 0 {
		if fresh, err = s.checkNewStreams(a.groups, now); err != nil {
			s.mu.Unlock()
			s.m.streamsRefused.Inc()
			return model.AppendResult{}, err
		}
	}
	if newAgent {
		s.agents[b.AgentID] = ag
	}
	// The agent's new accounting is applied only once the batch is durable: a
	// batch that fails to reach the WAL must not count as stored.
	var next AgentInfo
	if ag != nil {
		next = nextAgentInfo(ag, &b, a, now)
	}
	if a.res.Accepted == 0 {
		return s.appendNoLines(&b, ag, next, a.res)
	}
	res, err := s.appendLines(&b, ag, next, a, fresh, now)
	if err != nil {
		return res, err
	}
	s.m.appendSeconds.Observe(time.Since(start).Seconds())
	if b.Run != nil {
		if err := s.putRun(b.Run); err != nil {
			return res, err
		}
	}
	return res, nil
}

// admitted is what admit makes of a batch: the accepted records grouped by
// head, the counts so far, and the agent's seq accounting.
type admitted struct {
	groups []*group
	res    model.AppendResult
	gaps   uint64 // seqs skipped over
	maxSeq uint64 // the agent's highest seq once the batch is stored
}

// admit sorts a batch's records into accepted (grouped by head), expired and
// duplicate, and clears their ids. Caller holds mu.
func (s *Store) admit(b *model.Batch, keys []headKey, ag *agentState) (admitted, error) {
	var a admitted
	if ag != nil {
		a.maxSeq = ag.AckedSeq
	}
	byKey := make(map[headKey]*group, 4)
	for i := range b.Records {
		r := &b.Records[i]
		r.ID = model.ID{}
		if keys[i].day < s.floor {
			// Older than retention keeps: dropped as if stored and expired.
			a.res.Expired++
			continue
		}
		if ag != nil && r.Seq != 0 {
			if r.Seq <= a.maxSeq {
				a.res.Duplicates++
				continue
			}
			if w := s.opts.MaxSeqJump; w > 0 && r.Seq-ag.AckedSeq > w {
				// Measured from the batch's start: a batch moves the agent at most w.
				return admitted{}, fmt.Errorf("%w: record %d: seq %d is %d above agent %q's highest stored seq %d; the window is %d",
					ErrSeqJump, i, r.Seq, r.Seq-ag.AckedSeq, b.AgentID, ag.AckedSeq, w)
			}
			a.gaps += r.Seq - a.maxSeq - 1
			a.maxSeq = r.Seq
		}
		g := byKey[keys[i]]
		if g == nil {
			g = &group{key: keys[i], labels: r.Labels}
			byKey[keys[i]] = g
			a.groups = append(a.groups, g)
		}
		g.recs = append(g.recs, i)
		a.res.Accepted++
	}
	return a, nil
}

// nextAgentInfo is the agent's accounting once the batch is stored (but for
// AckedSeq, which appendLines sets). Caller holds mu.
func nextAgentInfo(ag *agentState, b *model.Batch, a admitted, now int64) AgentInfo {
	next := ag.AgentInfo
	next.Hosts = append([]HostKey(nil), ag.Hosts...)
	next.Received += uint64(len(b.Records))
	next.Duplicates += uint64(a.res.Duplicates)
	next.Gaps += a.gaps
	next.Dropped = max(next.Dropped, b.Dropped)
	next.LastSeen = now
	if next.Sender == "" {
		next.Sender = b.Sender // an agent seen without auth, or before ids were bound
	}
	next.Closed = b.Closing
	if b.Closing {
		next.ClosedAt = now
	}
	tmp := agentState{AgentInfo: next}
	for _, g := range a.groups {
		tmp.addHost(HostKey{Service: g.labels.Service, Host: g.labels.Host})
	}
	return tmp.AgentInfo
}

// appendNoLines finishes a batch none of whose records was accepted: the
// agent's accounting, its goodbye, and the run report. Caller holds mu, which
// appendNoLines releases.
func (s *Store) appendNoLines(b *model.Batch, ag *agentState, next AgentInfo, res model.AppendResult) (model.AppendResult, error) {
	if ag != nil {
		ag.AgentInfo, ag.dirty = next, true
		res.AckedSeq = ag.AckedSeq
	}
	var closed []byte
	if ag != nil && b.Closing {
		closed = encodeAgent(nil, &ag.AgentInfo)
	}
	s.mu.Unlock()
	s.m.duplicates.Add(float64(res.Duplicates))
	if closed != nil {
		// A goodbye without lines has no WAL entry: keep it now.
		if err := s.saveAgents([]string{b.AgentID}, [][]byte{closed}); err != nil {
			return res, fmt.Errorf("append: %w", err)
		}
	}
	if b.Run != nil {
		if err := s.putRun(b.Run); err != nil {
			return res, err
		}
	}
	return res, nil
}

// appendLines numbers the accepted lines, writes the batch to the WAL, then
// adds the lines to their heads and sends the full heads to be sealed. Caller
// holds mu, which appendLines releases.
func (s *Store) appendLines(b *model.Batch, ag *agentState, next AgentInfo, a admitted, fresh int, now int64) (model.AppendResult, error) {
	res, groups := a.res, a.groups
	for _, g := range groups {
		g.firstLine = s.nextLine[g.key]
		s.nextLine[g.key] = g.firstLine + uint32(len(g.recs))
	}
	var agentRec []byte
	if ag != nil {
		next.AckedSeq = a.maxSeq
		agentRec = encodeAgent(nil, &next)
	}
	frame := encodeWALBatch(*b, agentRec, groups)
	seg, err := s.wal.append(frame)
	if err != nil {
		// The lines were not acked: give their numbers back.
		for _, g := range groups {
			s.nextLine[g.key] = g.firstLine
		}
		s.mu.Unlock()
		if errors.Is(err, syscall.ENOSPC) {
			return model.AppendResult{}, fmt.Errorf("%w: the write-ahead log could not be written", ErrNoSpace)
		}
		return model.AppendResult{}, fmt.Errorf("append: %w", err)
	}
	if ag != nil {
		ag.AgentInfo, ag.dirty = next, true
		res.AckedSeq = a.maxSeq
	}
	s.newStreams += fresh
	for _, g := range groups {
		s.lastRecv[g.key.stream] = now
		for j, ri := range g.recs {
			b.Records[ri].ID = model.ID{Stream: g.key.stream, Day: g.key.day, Line: g.firstLine + uint32(j)}
		}
	}
	var full []*head
	for _, g := range groups {
		for j, ri := range g.recs {
			if h := s.appendLine(g.key, g.labels, g.firstLine+uint32(j), &b.Records[ri], seg); h != nil {
				full = append(full, h)
			}
		}
	}
	s.mu.Unlock()
	s.countLines(b, groups)

	for _, h := range full {
		s.sealCh <- h
	}
	s.m.lines.Add(float64(res.Accepted))
	s.m.duplicates.Add(float64(res.Duplicates))
	return res, nil
}

// appendLine adds one line to its head, opening one if needed, and returns the
// head if it is now full (already moved to sealing). Caller holds mu.
func (s *Store) appendLine(k headKey, labels model.Labels, line uint32, r *model.Record, seg uint64) *head {
	h := s.heads[k]
	if h != nil && h.meta.FirstLine+h.meta.Count != line {
		// Not contiguous (only during WAL replay): seal what we have.
		s.startSeal(h)
		h = nil
	}
	if h == nil {
		h = &head{opened: time.Now(), minSeg: seg}
		h.meta = ChunkMeta{ID: s.nextChunk.Add(1), Stream: k.stream, Day: k.day, FirstLine: line, Labels: labels, MinT: r.Time, MaxT: r.Time}
		// Small at first: a stream that sends a line or two (a big fleet's
		// many hosts) should not cost kilobytes until its chunk is sealed.
		n := 8
		h.lines = Lines{
			Times: make([]int64, 0, n), Levels: make([]model.Level, 0, n), Msgs: make([]string, 0, n),
			Traces: make([]string, 0, n), Spans: make([]string, 0, n), Attrs: make([][]model.Attr, 0, n), Seqs: make([]uint64, 0, n),
		}
		s.heads[k] = h
	}
	s.noteAttrKeys(h, k.day, r.Attrs)
	l := &h.lines
	l.Times = append(l.Times, r.Time)
	l.Levels = append(l.Levels, r.Level)
	l.Msgs = append(l.Msgs, r.Message)
	l.Traces = append(l.Traces, r.TraceID)
	l.Spans = append(l.Spans, r.SpanID)
	l.Attrs = append(l.Attrs, r.Attrs)
	l.Seqs = append(l.Seqs, r.Seq)
	m := &h.meta
	m.Count++
	m.MinT = min(m.MinT, r.Time)
	m.MaxT = max(m.MaxT, r.Time)
	lv := r.Level
	if lv == model.LevelUnset || lv >= model.NumLevels {
		lv = model.LevelInfo
	}
	m.Levels[lv]++
	m.RawBytes += uint64(len(r.Message))
	h.bytes += len(r.Message) + len(r.TraceID) + len(r.SpanID) + 32
	for _, a := range r.Attrs {
		h.bytes += len(a.Key) + len(a.Value)
	}
	if h.full(&s.opts) {
		s.startSeal(h)
		return h
	}
	return nil
}

// startSeal moves a head from heads to sealing. Caller holds mu and must send
// the head to sealCh after unlocking (or, during Open, seal it directly).
func (s *Store) startSeal(h *head) {
	delete(s.heads, headKey{h.meta.Stream, h.meta.Day})
	s.sealing[h.meta.ID] = h
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
	doc := buildDoc(meta, toks)
	tv, cv := encodeChunk(lines)
	day, id := meta.Day, meta.ID
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
	s.m.chunks.Inc()
	s.m.chunkBytes.Add(float64(len(tv) + len(cv)))
	s.m.sealSeconds.Observe(time.Since(start).Seconds())
	s.indexCh <- &indexJob{meta: meta, doc: doc}
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
	s.mu.Lock()
	oldestAllowed := uint64(0)
	if s.wal.seg >= uint64(s.opts.WALMaxSegments) {
		oldestAllowed = s.wal.seg - uint64(s.opts.WALMaxSegments) + 1
	}
	for _, h := range s.heads {
		if all || now.Sub(h.opened) >= s.opts.ChunkMaxAge || h.minSeg < oldestAllowed {
			seal = append(seal, h)
		}
	}
	for _, h := range seal {
		s.startSeal(h)
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

// Close seals every open head, waits for Bleve to persist, truncates the WAL and
// closes Badger. Appends after Close fail with ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	close(s.stop)
	if s.readOnly {
		s.mu.Lock()
		errs := []error{s.wal.close()}
		s.mu.Unlock()
		errs = append(errs, s.ms.close(), s.idx.closeAll(), s.db.Close())
		return errors.Join(errs...)
	}
	s.maintWG.Wait()
	s.maintain(true)
	close(s.sealCh)
	s.sealWG.Wait()
	close(s.indexCh)
	s.indexWG.Wait()
	// Bleve calls back once a batch is persisted; it may never do so for an
	// index it failed to write (a full disk). The pending marks stay in Badger
	// then, and the next Open indexes those chunks again.
	persisted := make(chan struct{})
	go func() { s.persistWG.Wait(); close(persisted) }()
	select {
	case <-persisted:
	case <-time.After(30 * time.Second):
		s.log.Warn("store: Bleve did not confirm every batch within 30s; those chunks are indexed again on the next start")
	}
	s.truncateWAL()
	var errs []error
	s.mu.Lock()
	errs = append(errs, s.wal.close())
	s.mu.Unlock()
	errs = append(errs, s.ms.close())
	errs = append(errs, s.idx.closeAll(), s.db.Close())
	return errors.Join(errs...)
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error("badger: " + fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn("badger: " + fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}

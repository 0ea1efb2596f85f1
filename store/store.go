package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/internal/wire"
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
	ChunkMaxLines int           // seal a chunk at this many lines
	ChunkMaxBytes int           // ... or this many bytes of text
	ChunkMaxAge   time.Duration // ... or when it has been open this long
	// ChunkIdleAge: a head that has had no line for this long is sealed when
	// it pins a WAL segment older than the one being written, so the WAL of
	// a stream that went quiet is trimmed (and its memory freed) soon.
	ChunkIdleAge time.Duration
	// HeadsMaxBytes bounds the text held in open heads of every stream
	// together: past it, the heads written least recently are sealed until
	// three quarters of it are left. Memory then follows the streams being
	// written, not how many were written to since the last seal (a backfill
	// of five days opens thousands of streams that each end with a part of
	// a chunk).
	HeadsMaxBytes int64
	// SealBacklogBytes bounds the open chunks handed to the sealers but not
	// yet written (no longer counted by HeadsMaxBytes, still in memory): an
	// Append waits while they hold more (sealbacklog.go).
	SealBacklogBytes int64
	WALSegmentBytes  int64         // size of one WAL segment file
	WALMaxSegments   int           // heads pinning older segments are sealed early
	Fsync            bool          // fsync the WAL before every ack (survives power cuts)
	Sealers          int           // goroutines compressing and writing chunks
	Indexers         int           // goroutines feeding Bleve
	BadgerMemTable   int64         // Badger memtable size
	BadgerCache      int64         // Badger block cache size
	BadgerVlogFile   int64         // Badger value-log file size (chunk bodies)
	Maintenance      time.Duration // period of the sealing/WAL truncation loop
	// PageRelease is how often the finished value-log files' pages are
	// released from the resident set, and ReleaseAfterRead how many value
	// bytes reads may copy out of them before that is done at once
	// (pagerelease_linux.go).
	PageRelease      time.Duration
	ReleaseAfterRead int64
	Retention        time.Duration // drop day partitions older than this (0: keep)
	RetentionBytes   int64         // drop the oldest days while the data directory is larger (0: no bound)
	RetentionCheck   time.Duration // how often retention runs (default 1m)
	SizeCheck        time.Duration // how often the data directory's sizes are measured for /metrics (default 30s)
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

	// Metrics tunes the metric store (metrics_*.go); Retention applies to it too.
	Metrics MetricsOptions
}

// DefaultOptions returns the options shiplog runs with.
func DefaultOptions() Options {
	return Options{
		// A stream's day is mostly one chunk: with 1,024 lines, a stream of
		// 1,100 lines a day made a full chunk and a runt, and more, smaller
		// chunks cost disk (a chunk's metadata, times header, bloom filter
		// and index document) and index terms per line. A chunk's messages
		// are 256-line blocks read one by one, so a larger chunk is not
		// decompressed whole. Open chunks are bounded by HeadsMaxBytes (an
		// open chunk that stops growing is sealed first), but chunks queued
		// for sealing are not: 4,096 lines raised the 2M peak RSS by ~50 MiB.
		ChunkMaxLines:    2048,
		ChunkMaxBytes:    1 << 20,
		ChunkMaxAge:      5 * time.Minute,
		ChunkIdleAge:     30 * time.Second,
		HeadsMaxBytes:    64 << 20,
		SealBacklogBytes: 16 << 20,
		WALSegmentBytes:  32 << 20,
		WALMaxSegments:   8,
		Sealers:          2,
		Indexers:         2,
		BadgerMemTable:   32 << 20,
		BadgerCache:      64 << 20,
		BadgerVlogFile:   64 << 20,
		Maintenance:      time.Second,
		// Every second, not 3: a day index's merges leave its segments
		// resident (5-10 MiB at the peaks of a 10M-line, 5-day ingest).
		PageRelease:      time.Second,
		ReleaseAfterRead: 32 << 20,
		RetentionCheck:   time.Minute,
		SizeCheck:        30 * time.Second,
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
	// lastAt is the wall clock (Unix ns) of the append that wrote its
	// newest line: how recently it was written (evictHeads, idle sealing).
	lastAt int64
	arena  headArena  // the text of its lines (head_arena.go)
	why    sealReason // why it was sealed (set by startSeal)
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
		Traces: sparseView(l.Traces, n, &zeroStrings), Spans: sparseView(l.Spans, n, &zeroStrings),
		Attrs: sparseView(l.Attrs, n, &zeroAttrs), Seqs: l.Seqs[:n:n],
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
	dicts *msgDicts // the days' message dictionaries (msgdict.go)
	words *dayWords // the days' words, in no chunk document (daywords.go)
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
	headBytes int64 // sum of the heads' bytes (HeadsMaxBytes bounds it)
	sealing   map[uint64]*head
	nextLine  map[headKey]uint32
	agents    map[string]*agentState
	chunks    map[uint64]*ChunkMeta   // sealed chunks by id
	days      map[uint32][]*ChunkMeta // sealed chunks per day, append-only
	streams   map[uint64][]*ChunkMeta // sealed chunks per stream, by (day, first line)
	// labelStreams lists the streams with sealed chunks by each of their
	// labels' values (labelstreams.go): a query for one build, deploy or host
	// finds its chunks from these without the day's index.
	labelStreams map[labelKey][]uint64
	unindexed    map[uint64]*ChunkMeta // sealed, not yet searchable in Bleve
	walFloor     uint64                // WAL segments below this are deleted
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

	truncMu sync.Mutex // serialises truncateWAL
	vlogMu  sync.Mutex // value-log GC vs releaseMappedPages
	// readMapped counts the value bytes reads copied out of the value log's
	// maps since its pages were last released; past releaseAfterRead,
	// releaseNow asks the maintenance loop to release them at once.
	readMapped    atomic.Int64
	wroteMapped   atomic.Int64 // chunk value bytes written since the last release
	releaseNow    chan struct{}
	nextChunk     atomic.Uint64
	indexFailures atomic.Uint64 // searches a day index could not answer
	daysRead      atomic.Uint64 // days whose candidates were looked up (tests read it)
	sealCh        chan *head
	indexCh       chan *indexJob
	// sealingBytes and sealingChunks sum up the heads in sealing: moved out
	// of heads (and out of headBytes) but in memory until written.
	sealingBytes  atomic.Int64
	sealingChunks atomic.Int64
	backlogMu     sync.Mutex
	backlogFree   chan struct{} // closed when sealingBytes falls to SealBacklogBytes
	walBuf        []byte        // the last WAL frame's memory, reused (guarded by mu)
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
	setIfUnset(&o.ChunkIdleAge, def.ChunkIdleAge)
	setIfUnset(&o.HeadsMaxBytes, def.HeadsMaxBytes)
	setIfUnset(&o.SealBacklogBytes, def.SealBacklogBytes)
	setIfUnset(&o.WALSegmentBytes, def.WALSegmentBytes)
	setIfUnset(&o.WALMaxSegments, def.WALMaxSegments)
	setIfUnset(&o.Sealers, def.Sealers)
	setIfUnset(&o.Indexers, def.Indexers)
	setIfUnset(&o.BadgerMemTable, def.BadgerMemTable)
	setIfUnset(&o.BadgerCache, def.BadgerCache)
	setIfUnset(&o.BadgerVlogFile, def.BadgerVlogFile)
	setIfUnset(&o.Maintenance, def.Maintenance)
	setIfUnset(&o.PageRelease, def.PageRelease)
	setIfUnset(&o.ReleaseAfterRead, def.ReleaseAfterRead)
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
	// Loading the chunk metadata read through the value log's maps.
	s.releasePages()
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
		WithValueLogFileSize(opts.BadgerVlogFile).
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
		opts:         opts,
		log:          log,
		dir:          dir,
		db:           db,
		readOnly:     roWhy != "",
		roWhy:        roWhy,
		idx:          newIndexSet(filepath.Join(dir, "index")),
		dicts:        newMsgDicts(),
		words:        newDayWords(),
		m:            newMetrics(reg),
		heads:        map[headKey]*head{},
		sealing:      map[uint64]*head{},
		nextLine:     map[headKey]uint32{},
		agents:       map[string]*agentState{},
		chunks:       map[uint64]*ChunkMeta{},
		days:         map[uint32][]*ChunkMeta{},
		streams:      map[uint64][]*ChunkMeta{},
		labelStreams: map[labelKey][]uint64{},
		unindexed:    map[uint64]*ChunkMeta{},
		streamInfo:   map[uint64]*StreamInfo{},
		lastRecv:     map[uint64]int64{},
		runs:         map[string][]model.Run{},
		attrKeys:     map[uint32]*dayKeys{},
		sealCh:       make(chan *head, 64),
		releaseNow:   make(chan struct{}, 1),
		indexCh:      make(chan *indexJob, 256),
		stop:         make(chan struct{}),
	}
	s.idx.readOnly = s.readOnly
	s.registerQueueGauges(reg)
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
	s.maintWG.Add(3)
	go s.maintLoop()
	go s.sizeLoop()
	go s.releaseLoop()
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
				m, err = decodeMetaShared(day, id, v, s.streamLabels)
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
				r := wire.NewReader(v, errWALPayload)
				decodeAgent(&r, &a.AgentInfo)
				if r.Err() != nil {
					return fmt.Errorf("agent %q: %w", agent, r.Err())
				}
				a.ID = agent
				s.agents[agent] = a
				return nil
			}); err != nil {
				return err
			}
		}
		s.loadAttrKeys(txn)
		bad, err := s.dicts.load(txn)
		if err != nil {
			return err
		}
		for day, err := range bad {
			s.log.Error("store: the message dictionary is damaged: chunks made with it cannot be read", "day", dayName(day), "err", err)
			s.m.errors.Inc()
		}
		broken, err := s.words.load(txn)
		if err != nil {
			return err
		}
		for _, day := range broken {
			s.log.Warn("store: day words do not decode; every chunk of the day is searched", "day", dayName(day))
		}
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

// streamLabels returns the labels of a stream with sealed chunks. Caller
// holds mu.
func (s *Store) streamLabels(stream uint64) (model.Labels, bool) {
	if si := s.streamInfo[stream]; si != nil {
		return si.Labels, true
	}
	return model.Labels{}, false
}

// addSealed records a sealed chunk in the in-memory maps. Its labels become
// those of its stream's first chunk: equal (the stream id is their hash), and
// held once a stream rather than once a chunk. Caller holds mu (or has the
// store to itself), and m is not yet shared with readers.
func (s *Store) addSealed(m *ChunkMeta) {
	if l, ok := s.streamLabels(m.Stream); ok {
		m.Labels = l
	}
	if m.Notable != nil && !m.notableMS {
		m.Notable, m.notableMS = compactNotable(m.Notable, m.MinT), true
	}
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
		s.indexStreamLabels(m.Stream, m.Labels, true)
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
	// The hash of the labels joined by NULs: in one call when they fit a
	// buffer on the stack (the digest's writes cost more than the hash).
	if n := len(l.Service) + len(l.Host) + len(l.BuildID) + len(l.DeployID) + 3; n <= 256 {
		var buf [256]byte
		b := append(buf[:0], l.Service...)
		b = append(b, 0)
		b = append(b, l.Host...)
		b = append(b, 0)
		b = append(b, l.BuildID...)
		b = append(b, 0)
		b = append(b, l.DeployID...)
		return xxhash.Sum64(b)
	}
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
	close(s.stop) // Appends waiting for the sealers (waitSealBacklog) return ErrClosed
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

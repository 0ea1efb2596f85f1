// Package store keeps shiplog's log lines on disk: Badger holds the data, Bleve
// an index over chunks of it. It knows nothing of protobuf or the network.
//
// # Model
//
// A stream is one (service, host, build_id, deploy_id) combination; its id is
// the xxhash64 of the four values joined by NUL bytes (with Options.StreamSeed
// set, as the partition stores of a cluster node do, the xxhash64 of that id
// and the seed, both big-endian, so partitions never share a stream id). A stream's lines on one
// UTC day are numbered 0, 1, 2 ... in the order they were acked; a record's id
// is (stream, day, line), rendered as 32 hex digits (model.ID).
//
// Lines are appended to an open chunk ("head") per (stream, day). A head is
// sealed when it reaches Options.ChunkMaxLines lines or ChunkMaxBytes bytes,
// when it has been open for ChunkMaxAge, when it pins too much of the WAL
// (WALMaxSegments), when it has had no line for ChunkIdleAge and pins a WAL
// segment older than the one being written, when the heads of all streams
// together hold more than HeadsMaxBytes (the least recently written first,
// down to three quarters of it), and at Close. A head's bytes count its text
// plus the memory of its column entries, so the bound is close to the memory
// the heads take.
//
// Badger reads and writes the value log through shared memory maps; every
// second the pages of the value-log files no longer written are released from
// the process (pagerelease_linux.go), so the resident set follows what is
// being used rather than what was stored.
//
// # Encoding
//
// Every value below and every WAL payload is read and written with
// internal/wire (the cluster's batch messages and the agent's spool too):
// "uvarint" and "varint" are encoding/binary's, a string is its uvarint
// length then its bytes, and a decoder reads with a sticky-error
// wire.Reader, checking its error once per record. TestEncodingsGolden pins
// the bytes.
//
// # Directory layout
//
//	DATA/wal/<16 hex>.wal      write-ahead log segments (see wal.go)
//	DATA/mwal/<16 hex>.wal     the metric samples' write-ahead log (same frames)
//	DATA/badger/               Badger: chunks, metadata, bloom filters, agents
//	DATA/index/YYYY-MM-DD/     one Bleve (scorch) index per day, one document per chunk
//
// # Badger keys
//
// Chunk keys are a prefix byte, the day (uint32 big-endian, days since
// 1970-01-01 UTC) and the chunk id (uint64 big-endian), so one day is one key
// range and retention can drop it whole:
//
//	t<day><id>  chunk times and levels (encodeChunk in chunk.go); since
//	            version 2 of the value the times are split into high and
//	            low parts (chunk_codec.go); version 1 is still read
//	c<day><id>  chunk text: messages, trace and span ids, attributes, seqs;
//	            since version 3 of the value the messages are in blocks of
//	            512 lines, each compressed apart, with bloom filters of their
//	            ordinary words: one for the words of every block, one per
//	            block for the rest (chunk_blocks.go); since version 4 the
//	            message lengths are in byte planes (chunk_codec.go); since
//	            version 5 the blocks hold 256 lines (512 before) and are
//	            compressed with the day's message dictionary once it has
//	            one (msgdict.go); since version 6, when no message of the
//	            chunk holds a NUL byte, each message is followed by a NUL
//	            in its block and the lengths column is empty (a reader
//	            finds the lengths in the blocks it decompresses; a block
//	            whose NULs are not one a line is corrupt), else the
//	            lengths are stored as in version 5; versions 1-5 are
//	            still read
//	m<day><id>  chunk metadata (encodeMeta in chunk.go): stream, first line,
//	            count, min/max time, lines per level, labels
//	b<day><id>  bloom filter of the chunk's id-like tokens (tokens.go): one
//	            byte k, then the bit array; 10 bits per distinct token
//	p<day><id>  present while the chunk's Bleve document may not be persisted
//	z<day>      the day's message dictionary (zstd's dictionary format, id
//	            day+1), made from samples of its first 64 chunks and written
//	            before any chunk compressed with it (msgdict.go)
//	w<day>      the day's words (daywords.go): version byte 1, count
//	            uvarint, then each word (a string); the ordinary message
//	            words in at least one line in 300 of the day's first 64
//	            sealed chunks (256 lines of each, at most), written before
//	            any chunk document leaves them out
//	k<day><key> an attribute key seen in a sealed chunk of day (empty value),
//	            written in that chunk's transaction (attrkeys.go)
//	k<day>      the day's attribute keys are complete: its first chunk was
//	            sealed by a version that records them; without it, any key
//	            may occur on the day (Store.HasAttrKey says yes)
//	a<agent>    the agent's delivery accounting (encodeAgent in catalog.go):
//	            highest stored seq, counts, hosts, and the name of the token
//	            it is bound to
//	S<id>       a metric series (id uint64 big-endian): its labels, sorted
//	            by name (encodeSeriesLabels in metrics_chunk.go)
//	D<day><id>  the series has samples on day; value: the series' newest
//	            sample time when last written (varint, Unix ms)
//	X<day><id><mint><seq>  one chunk of the series' samples on day: mint is
//	            its first sample time (uint64 big-endian Unix ms, so a day's
//	            chunks sort by time), seq a unique uint64; value: encoding
//	            byte, maxt-mint uvarint, then the chunk in Prometheus'
//	            encoding of that number (chunkenc.Encoding): 1 XOR (floats),
//	            2 histogram (native histograms, integer counts), 3 float
//	            histogram; before native histograms were stored, always 1
//	ns<key>     alerting state (alertstate.go): one opaque value per key, written
//	            by the alert package (rule states, notification log)
//	nh<seq>     one alert transition (seq uint64 big-endian, from 1); the newest
//	            MaxAlertHistory are kept
//	nc          the last alert transition seq given out (uint64 big-endian)
//
// Chunk values are never rewritten. Badger runs with compression off (chunk
// columns are zstd already) and a 1 KiB value threshold, so chunk bodies live in
// the value log and the LSM tree holds keys, metadata and small values.
//
// # Message blocks
//
// A search whose every match holds a word (query: the required token) loads
// a chunk with Store.LoadWord: the chunk's Bleve document said the word is
// somewhere in it, and the blocks' filters say where it may be, so only
// those blocks are decompressed. Of their lines, those whose message does
// not hold the word (ASCII case folded, found with FoldNeedle's scan for the
// word's rarest byte) and has no escape sequence are left out too: every
// line left out comes back marked in Lines.Skipped with empty text columns,
// whose trace, span and attribute columns are not decoded, and Lines.Word
// says the marks are exact. In blocks of separated messages (version 6)
// the lines kept are found as the blocks are split (holdingLines: the NULs
// before each match counted, not every line's length read). A word the
// common filter says may be in every block is probed: when the first block
// whose own filter does not hold it has no line holding it, the word is not
// in every block, and the blocks whose own filter does not hold it are
// skipped as for any other word (chunk_blocks.go, probeClean). A caller
// done with a loaded chunk (the search,
// after copying its hits) gives its buffers and columns back with
// Lines.Release (pools in pool.go). Id-like words are in no block filter
// (they are in the chunk's bloom filter): a load for one decompresses every
// block. Filters are built from the word sets chunkTokens makes for the
// Bleve document anyway (a bit per block a word is in), so sealing does
// not cut messages into tokens twice.
//
// # Bleve documents
//
// One document per chunk, id = chunk id in hex, built by hand (no mapping, no
// stored fields, no term vectors, no doc values, no norms). Fields, each a list
// of exact terms: service, host, build_id, deploy_id (the labels), level (the
// levels present), msg (the distinct ordinary tokens of the messages, less
// the day's words once they are written: w<day>; a search for a day word
// takes every chunk of the day, whose block filters then skip the blocks
// without it), head
// (format 2: the leading letters, before the first digit, of the id-like
// message tokens, when 3 or more: for prefix search) and attr
// (key=value of attributes with short, not id-like values). Message tokens
// are cut by token format 2 (tokens.go: escape sequences removed, non-ASCII
// runs cut at punctuation and into CJK bigrams and case-folded); each day
// index stores its format in Bleve's internal key "shiplog.token_format"
// (one byte, 2). An index without it was created before (format 1: non-ASCII
// runs whole, ASCII lower-casing only), and a search never narrows a Wide
// term (Cond.Wide) through it, nor through any bloom filter. Tokens that look
// like identifiers (IsIDLike: 4+ bytes with a digit, or 40+ bytes), long or
// id-like attribute values, trace and span ids go to the chunk's bloom filter
// instead: there are too many of them and each is nearly unique.
//
// # Durability
//
// Append writes the batch to the WAL with one write(2) before it returns: an
// acked batch survives a kill of the process. With Options.Fsync (the server's
// --fsync) the segment is fsynced first, and an ack survives a power cut too.
// Sealing writes a chunk, its metadata, its bloom filter and its pending mark in
// one Badger transaction; the Bleve document follows, and the pending mark is
// removed once Bleve has persisted it. WAL segments are deleted only after
// Badger has been synced and every line in them is in a sealed chunk.
//
// On Open: metadata is loaded into memory, and with it each stream's chunks
// and each label value's streams (labelstreams.go: the chunks of one build,
// deploy or host are found from these rather than the day's index; nothing
// of it is stored, so a store of any version reads the same); chunks still marked pending are
// indexed again (Bleve replaces a document with the same id, so nothing is
// doubled); the WAL is replayed, skipping every line already in a sealed chunk
// (by stream, day and line number), so nothing is lost or doubled.
//
// # Metrics
//
// Metric samples (float64 at a Unix millisecond, per series, or a native
// histogram with integer or float counts) live in the same Badger DB
// (metrics_*.go). A series is its sorted labels, __name__ included;
// it gets the next id when first seen, and its S key is written before any
// of its samples is acked. On Open every S and D key is read into memory:
// the label index (label name -> value -> ascending series ids, and all ids)
// and each series' days. A selector's series are the intersection of its
// matchers' postings (a matcher that matches "" takes every series less
// those with a non-matching value, as in Prometheus), kept when they have a
// day in the query's range.
//
// Samples are encoded with Prometheus' XOR chunk encoding (tsdb/chunkenc:
// delta-of-delta times, XOR'd values, about 1-2 bytes a sample), bit for bit,
// so NaN, ±Inf and Prometheus' stale marker are kept as sent. Native
// histograms use Prometheus' HistogramChunk and FloatHistogramChunk
// encodings. A chunk holds one kind of sample: a series' open chunk is
// sealed when a sample of another kind (float, integer or float histogram)
// follows, and when the histogram encoding starts a new chunk (a counter
// reset, a bucket layout it cannot recode); the next histogram chunk takes
// its counter reset header from the last one sealed, as in Prometheus' head.
// A float chunk is cut in segments of MetricsOptions.ChunkSegmentSamples
// (120) samples, each its own XOR chunk; the open chunk keeps its closed
// segments (immutable, shared with readers) and one open segment, and is
// written as one value of encoding 4 (encodeSegmentsValue: the segments with
// their time bounds), so a read of a short window decodes only the segments
// it overlaps. Values of encodings 1-3 (one chunk) are read as before. Each
// series remembers the newest time it has in Badger (sealedMaxT, from the D
// keys after a restart): a read of later times does not look in Badger.
// Each series has one open chunk, in time order and on one day; it is sealed (queued, then
// written with its D key in one write batch) at MetricsOptions.ChunkMaxSamples
// samples, at a new day, or after ChunkMaxAge. When it pins a WAL segment
// older than WALMaxSegments, a copy is written under the key its final
// version will overwrite (same seq; writes are serialised in queue order), so
// the WAL can be trimmed without cutting chunks short; readers skip such a
// checkpoint while its chunk is open. A sample older than the series' newest
// but within OutOfOrderWindow goes to a small sorted buffer, sealed as its own
// chunks (one per day); older ones are refused (MetricsResult.OutOfWindow), and
// one at the time of the newest is dropped (Duplicates). Out-of-order floats
// and histograms are buffered apart; histogram chunks sealed from the buffer
// leave the counter reset header unknown (the engine then compares samples).
// Chunks of a series
// may thus overlap: readers merge them and keep one sample per time.
//
// The series index (series, byHash, postings, allIDs) is in memory and holds
// at most MetricsOptions.MaxSeries series: creation (under createMu) makes
// only as many new series as there is room for, and the samples of the
// others are refused (MetricsResult.OverSeriesLimit). Only retention removes
// series, so the room cannot shrink between the count and the insert.
//
// Appends write the accepted samples to the metrics WAL with one write(2)
// before they are acked. A frame's payload is a version byte, then per
// series its id (uvarint), float count (uint32 BE) and per float its time
// (varint) and value bits (uint64 BE); version 2 (written when the append
// holds histograms; 1 otherwise) follows each series' floats with a
// histogram count (uint32 BE) and per histogram its time (varint), encoding
// byte (2 or 3) and a one-sample chunk of that encoding (uvarint length +
// bytes). A series' floats and histograms are added in time order together. Segments are deleted once Badger is synced and no open chunk holds
// a sample from them; Close seals everything and deletes the WAL. On Open the
// WAL is replayed into open chunks (samples that were sealed already come
// back as overlapping chunks, merged away on read).
//
// Retention drops a day with two DropPrefix calls (X<day>, D<day>), through
// Store.OnDropDay and for days with metrics only; series left without days
// are deleted, and samples on dropped days are refused.
//
// shiplog_log_lines_total{service, level, deploy_id} (metrics_loglines.go):
// Append adds each group's lines per level to in-memory counters; every
// LogLinesInterval they are written as samples, and on Open they continue
// from the newest stored values.
//
// metricStore.mu guards the series maps, the postings, days, open chunks,
// out-of-order buffers, the seal queue and the metrics WAL; createMu
// serialises the creation of series (their ids and S keys), writeMu the
// writing of queued chunks. Sealed chunks are immutable; readers copy an open
// chunk's bytes under mu. A queued chunk leaves its series' sealing list only
// after it is in Badger, and sealGen (under mu) counts those removals: a
// reader whose Badger view predates the last one takes a new view, under mu,
// before reading a series' chunks, so it sees every chunk in memory or on disk.
//
// # Files, backups, read-only
//
// Directories are created 0700 and files 0600; Open removes group and other
// permissions left by older versions (perms.go). A backup (backup.go) is a
// header line, Badger's backup frames and a trailer with the length and
// SHA-256 of all before it; Restore checks every frame and the trailer and
// loads into a temporary directory renamed into place at the end.
//
// With too little free space at Open (Options.MinFreeToWrite plus the WALs
// and memtable files), or Badger failing to open for lack of space, the store
// opens read-only: Badger with ReadOnly (its memtable files renamed to
// *.mem.readonly-aside, put back by the next writable Open), Bleve indexes
// with read_only; the WALs are replayed into memory and left on disk; no
// goroutine seals, indexes, truncates or drops, and writes get ErrReadOnly.
// Store.readOnly is set once by Open and never changes.
//
// # Locking
//
// Store.mu guards heads, sealing, nextLine, agents, chunks, days, streams,
// labelStreams, unindexed, attrKeys, walFloor, the count of new streams a day (newDay, newStreams)
// and the WAL file. Sealed ChunkMeta values are immutable
// once published. A head's columns are appended under mu; readers take a
// snapshot (slices cut to the current length) under mu and read it without it,
// since appends only write past that length.
package store

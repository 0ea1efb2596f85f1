// Package store keeps shiplog's log lines on disk: Badger holds the data, Bleve
// an index over chunks of it. It knows nothing of protobuf or the network.
//
// # Model
//
// A stream is one (service, host, build_id, deploy_id) combination; its id is
// the xxhash64 of the four values joined by NUL bytes. A stream's lines on one
// UTC day are numbered 0, 1, 2 ... in the order they were acked; a record's id
// is (stream, day, line), rendered as 32 hex digits (model.ID).
//
// Lines are appended to an open chunk ("head") per (stream, day). A head is
// sealed when it reaches Options.ChunkMaxLines lines or ChunkMaxBytes bytes,
// when it has been open for ChunkMaxAge, when it pins too much of the WAL
// (WALMaxSegments), and at Close.
//
// # Directory layout
//
//	DATA/wal/<16 hex>.wal      write-ahead log segments (see wal.go)
//	DATA/badger/               Badger: chunks, metadata, bloom filters, agents
//	DATA/index/YYYY-MM-DD/     one Bleve (scorch) index per day, one document per chunk
//
// # Badger keys
//
// Chunk keys are a prefix byte, the day (uint32 big-endian, days since
// 1970-01-01 UTC) and the chunk id (uint64 big-endian), so one day is one key
// range and retention can drop it whole:
//
//	t<day><id>  chunk times and levels (encodeChunk in chunk.go)
//	c<day><id>  chunk text: messages, trace and span ids, attributes, seqs
//	m<day><id>  chunk metadata (encodeMeta in chunk.go): stream, first line,
//	            count, min/max time, lines per level, labels
//	b<day><id>  bloom filter of the chunk's id-like tokens (tokens.go): one
//	            byte k, then the bit array; 10 bits per distinct token
//	p<day><id>  present while the chunk's Bleve document may not be persisted
//	a<agent>    the agent's highest stored seq (uvarint)
//
// Chunk values are never rewritten. Badger runs with compression off (chunk
// columns are zstd already) and a 1 KiB value threshold, so chunk bodies live in
// the value log and the LSM tree holds keys, metadata and small values.
//
// # Bleve documents
//
// One document per chunk, id = chunk id in hex, built by hand (no mapping, no
// stored fields, no term vectors, no doc values, no norms). Fields, each a list
// of exact terms: service, host, build_id, deploy_id (the labels), level (the
// levels present), msg (the distinct ordinary tokens of the messages) and attr
// (key=value of attributes with short, not id-like values). Tokens that look
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
// On Open: metadata is loaded into memory; chunks still marked pending are
// indexed again (Bleve replaces a document with the same id, so nothing is
// doubled); the WAL is replayed, skipping every line already in a sealed chunk
// (by stream, day and line number), so nothing is lost or doubled.
//
// # Locking
//
// Store.mu guards heads, sealing, nextLine, agents, chunks, days, streams,
// unindexed, walFloor and the WAL file. Sealed ChunkMeta values are immutable
// once published. A head's columns are appended under mu; readers take a
// snapshot (slices cut to the current length) under mu and read it without it,
// since appends only write past that length.
package store

package store

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/shiplog/shiplog/internal/wire"
	"github.com/shiplog/shiplog/model"
)

// Lines is a chunk's content, column by column. Text columns (Msgs, Traces,
// Spans, Attrs, Seqs) are nil unless loaded.
type Lines struct {
	Meta   *ChunkMeta
	Times  []int64
	Levels []model.Level
	Msgs   []string
	// MsgBlock is every message of a sealed chunk back to back (Msgs are its
	// substrings; in c values of version 6 each may be followed by a NUL)
	// and MsgStarts the offset of each (of each line not in Skipped, when
	// Word is set); empty for open chunks.
	MsgBlock  string
	MsgStarts []int32
	Traces    []string
	Spans     []string
	Attrs     [][]model.Attr
	Seqs      []uint64
	// Skipped, when not nil, marks the lines left out by Store.LoadWord:
	// in message blocks not decompressed, or (with Word set) not holding
	// the word. Their text columns are empty.
	Skipped []bool
	// Word, when set, is the word of Store.LoadWord: every line whose
	// message does not hold it (ASCII case folded) and has no escape
	// sequence is in Skipped.
	Word string
	// Src is the Src of the ChunkRef a sealed chunk was loaded from.
	Src int
	// pooled are the buffers the text columns are in, and attrArray the
	// array every line's Attrs are cut from, for Release.
	pooled    []*[]byte
	attrArray []model.Attr
}

// Len is the number of lines.
func (l *Lines) Len() int { return len(l.Times) }

// ID returns the id of line i.
func (l *Lines) ID(i int) model.ID {
	return model.ID{Stream: l.Meta.Stream, Day: l.Meta.Day, Line: l.Meta.FirstLine + uint32(i)}
}

// Record returns line i as a record (text columns must be loaded).
func (l *Lines) Record(i int) model.Record {
	r := model.Record{
		ID:     l.ID(i),
		Time:   l.Times[i],
		Labels: l.Meta.Labels,
		Level:  l.Levels[i],
	}
	if l.Msgs != nil {
		r.Message = l.Msgs[i]
		r.TraceID = l.Traces[i]
		r.SpanID = l.Spans[i]
		r.Attrs = l.Attrs[i]
		r.Seq = l.Seqs[i]
	}
	if r.Level == model.LevelUnset {
		r.Level = model.LevelInfo
	}
	return r
}

// A chunk is stored as two values, so that counting by time and level reads
// only a few bytes a line:
//
//	t<day><id>  times and levels: columns 0-1
//	c<day><id>  the text: columns 2-7
//
// Each value is a column directory followed by the columns:
//
//	version byte (t values: 2, see timesVersion; c values: 6, see textVersion)
//	count uvarint (lines)
//	ncols uvarint, then per column its stored length uvarint
//	column bytes, in order, each a codec byte (0 raw, 1 zstd) and the data
//
// Columns:
//
//	0 times: deltas from the line before (the first from the chunk's MinT),
//	  split into high and low parts (t value version 2: chunk_codec.go;
//	  version 1, still read: zig-zag varints)
//	1 levels: one byte per line
//	2 message lengths (c value version 4: byte planes, chunk_codec.go;
//	  before, uvarint each; c value version 6: empty when every message
//	  is followed by a NUL in its block instead), 3 message bytes,
//	  concatenated (c value version 3: in blocks, each with a filter of its
//	  words: chunk_blocks.go)
//	4 trace ids, 5 span ids: uvarint length + bytes each
//	6 attributes: per line uvarint n, then n x (key, value) as uvarint length + bytes
//	7 seqs: zig-zag varint deltas from the previous line's (c value version 2;
//	  version 1, still read, stored plain uvarints)
const (
	colTimes = iota
	colLevels
	colMsgLens
	colMsgs
	colTraces
	colSpans
	colAttrs
	colSeqs
	numCols
)

const (
	codecRaw  = 0
	codecZstd = 1
)

var (
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
)

// errCorrupt marks a chunk that does not decode.
var errCorrupt = errors.New("corrupt chunk")

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// scratchPool holds the buffers decompressTo decodes a chunk's times and
// levels into: empty when new (a column decoded into one made here takes a
// buffer of its size, not bufPool's 64 KiB), and kept as grown.
var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

// encodeChunk returns the t (times, levels) and c (text) values of a chunk.
func encodeChunk(l *Lines) (tv, cv []byte) {
	return encodeChunkVersion(l, chunkTokens(l), textVersion)
}

// encodeChunkVersion encodes a chunk with its c value in the given version
// (versions before textVersion are written by tests only); toks
// (chunkTokensFor the same version) gives versions 3 on their blocks' word
// filters.
func encodeChunkVersion(l *Lines, toks *chunkToks, version byte) (tv, cv []byte) {
	return encodeChunkDict(l, toks, version, nil)
}

// encodeChunkDict is encodeChunkVersion with the message blocks compressed
// with dict, the encoder of the day's message dictionary (nil: none;
// version 5 on: msgdict.go).
func encodeChunkDict(l *Lines, toks *chunkToks, version byte, dict *zstd.Encoder) (tv, cv []byte) {
	n := l.Len()
	cols := make([][]byte, numCols)
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	defer func() { *bp = b; bufPool.Put(bp) }()

	if version >= 4 {
		cols[colTimes] = encodeTimes(l.Times, l.Meta.MinT)
	} else {
		prev := l.Meta.MinT
		for _, t := range l.Times {
			b = wire.AppendVarint(b, t-prev)
			prev = t
		}
		cols[colTimes] = compress(b)
	}
	b = b[:0]
	for _, lv := range l.Levels {
		b = append(b, byte(lv))
	}
	cols[colLevels] = compress(b)
	b = b[:0]
	sep := version >= 6 && !anyNUL(l.Msgs)
	if sep {
		// Each message is followed by a NUL in its block: no lengths.
	} else if version >= 4 {
		b = appendLenPlanes(b, l.Msgs)
	} else {
		for _, m := range l.Msgs {
			b = wire.AppendUvarint(b, uint64(len(m)))
		}
	}
	cols[colMsgLens] = compress(b)
	if version >= 3 {
		var filters *msgFilters
		if toks != nil {
			filters = toks.blocks
		}
		if version < 5 {
			dict = nil
		}
		cols[colMsgs] = encodeMsgBlocks(&b, l.Msgs, blockLines(n, version), filters, dict, sep)
	} else {
		b = b[:0]
		for _, m := range l.Msgs {
			b = append(b, m...)
		}
		cols[colMsgs] = compress(b)
	}
	b = appendStrings(b[:0], l.Traces)
	cols[colTraces] = compress(b)
	b = appendStrings(b[:0], l.Spans)
	cols[colSpans] = compress(b)
	b = b[:0]
	for _, as := range l.Attrs {
		b = wire.AppendUvarint(b, uint64(len(as)))
		for _, a := range as {
			b = wire.AppendString(b, a.Key)
			b = wire.AppendString(b, a.Value)
		}
	}
	cols[colAttrs] = compress(b)
	b = b[:0]
	prevSeq := uint64(0)
	for _, s := range l.Seqs {
		// An agent numbers its lines 1, 2, 3 ...: deltas are mostly 1.
		b = wire.AppendVarint(b, int64(s-prevSeq))
		prevSeq = s
	}
	cols[colSeqs] = compress(b)

	tver := byte(1)
	if version >= 4 {
		tver = timesVersion
	}
	return packColumns(tver, n, cols[:colMsgLens]), packColumns(version, n, cols[colMsgLens:])
}

// textVersion 6 ends each message with a NUL in its block when no message
// of the chunk holds one, and then stores no message lengths (an empty
// lengths column; msgSeparated); textVersion 5 compresses message blocks with the day's dictionary once it
// has one (msgdict.go); since 4, the message lengths are in byte planes
// (appendLenPlanes; before: uvarints); since 3, messages are in blocks with word filters
// (version 2: one column); since 2, seqs are zig-zag deltas (version 1:
// plain uvarints). timesVersion 2 (written with text version 4) stores times
// split (encodeTimes; version 1: zig-zag varint deltas).
const (
	textVersion  = 6
	timesVersion = 2
)

func packColumns(version byte, n int, cols [][]byte) []byte {
	size := 16
	for _, c := range cols {
		size += len(c) + 6
	}
	out := make([]byte, 0, size)
	out = append(out, version)
	out = wire.AppendUvarint(out, uint64(n))
	out = wire.AppendUvarint(out, uint64(len(cols)))
	for _, c := range cols {
		out = wire.AppendUvarint(out, uint64(len(c)))
	}
	for _, c := range cols {
		out = append(out, c...)
	}
	return out
}

// compress returns codec byte + payload; tiny columns stay raw.
func compress(b []byte) []byte { return compressWith(zenc, b) }

// compressWith is compress with the given encoder.
func compressWith(enc *zstd.Encoder, b []byte) []byte {
	if len(b) < 64 {
		return appendCompressed(enc, make([]byte, 0, 1+len(b)), b)
	}
	return appendCompressed(enc, make([]byte, 0, len(b)/2+16), b)
}

// appendCompressed appends compressWith(enc, b) to dst.
func appendCompressed(enc *zstd.Encoder, dst, b []byte) []byte {
	start := len(dst)
	if len(b) >= 64 {
		dst = enc.EncodeAll(b, append(dst, codecZstd))
		if len(dst)-start < len(b)+1 {
			return dst
		}
	}
	return append(append(dst[:start], codecRaw), b...)
}

func decompress(c []byte) ([]byte, error) {
	if len(c) == 0 {
		return nil, fmt.Errorf("%w: empty column", errCorrupt)
	}
	switch c[0] {
	case codecRaw:
		return c[1:], nil
	case codecZstd:
		out, err := zdec.DecodeAll(c[1:], nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errCorrupt, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: codec %d", errCorrupt, c[0])
}

// decompressTo is decompress into *bp's buffer (grown as needed, and kept
// grown for the next use), for a column read and dropped at once.
func decompressTo(c []byte, bp *[]byte) ([]byte, error) {
	if len(c) == 0 || c[0] != codecZstd {
		return decompress(c)
	}
	out, err := zdec.DecodeAll(c[1:], (*bp)[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	*bp = out[:0]
	return out, nil
}

// splitColumns returns the stored bytes of each column of a t or c value.
func splitColumns(v []byte, want int) (n int, cols [][]byte, err error) {
	if len(v) < 1 || v[0] < 1 || v[0] > textVersion {
		return 0, nil, fmt.Errorf("%w: version", errCorrupt)
	}
	r := wire.NewReader(v[1:], nil)
	cnt := r.Uvarint()
	if r.Err() != nil {
		return 0, nil, fmt.Errorf("%w: count", errCorrupt)
	}
	nc := r.Uvarint()
	if r.Err() != nil || nc > 64 {
		return 0, nil, fmt.Errorf("%w: columns", errCorrupt)
	}
	var lens [64]uint64
	for i := range nc {
		if lens[i] = r.Uvarint(); r.Err() != nil {
			return 0, nil, fmt.Errorf("%w: column length", errCorrupt)
		}
	}
	cols = make([][]byte, nc)
	for i, l := range lens[:nc] {
		if uint64(r.Len()) < l {
			return 0, nil, fmt.Errorf("%w: short column %d", errCorrupt, i)
		}
		cols[i] = r.Next(int(l))
	}
	if len(cols) < want {
		return 0, nil, fmt.Errorf("%w: %d columns", errCorrupt, len(cols))
	}
	return int(cnt), cols, nil
}

// decodeChunk decodes times and levels from tv, and the text columns from cv
// when cv is not nil.
func decodeChunk(meta *ChunkMeta, tv, cv []byte) (*Lines, error) {
	n, cols, err := splitColumns(tv, colMsgLens)
	if err != nil {
		return nil, err
	}
	if n != int(meta.Count) {
		return nil, fmt.Errorf("%w: %d lines, meta says %d", errCorrupt, n, meta.Count)
	}
	l := &Lines{Meta: meta, Times: int64Cols.get(n), Levels: make([]model.Level, n)}
	if err := decodeTimes(tv[0], cols[colTimes], meta.MinT, l.Times); err != nil {
		return nil, err
	}
	bp := scratchPool.Get().(*[]byte)
	defer scratchPool.Put(bp)
	b, err := decompressTo(cols[colLevels], bp)
	if err != nil {
		return nil, err
	}
	if len(b) != n {
		return nil, fmt.Errorf("%w: levels", errCorrupt)
	}
	for i := range b {
		l.Levels[i] = model.Level(b[i])
	}
	if cv != nil {
		if err := l.decodeText(cv, zdec); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Lines) decodeText(cv []byte, dec *zstd.Decoder) error { return l.decodeTextWord(cv, "", dec) }

// decodeTextWord decodes the text columns; with word set, only the message
// blocks (version 3) that may hold it are decompressed (see Lines.Skipped).
// dec decodes the message blocks (zdec, or a store's with its
// dictionaries).
func (l *Lines) decodeTextWord(cv []byte, word string, dec *zstd.Decoder) error {
	p, err := splitText(cv, l.Len(), word, false, dec)
	if err != nil {
		return err
	}
	return l.setText(p)
}

// textParts are a c value's columns cut apart, with the message lengths and
// the messages (only the blocks that may hold word, for version 3)
// decompressed.
type textParts struct {
	version  byte
	cols     [][]byte // stored columns, numbered as in a chunk (from colMsgLens)
	msgs     []byte
	skip     []bool
	n        int
	word     string    // leave out the lines not holding it (Lines.Word)
	lineLens []int32   // the message lengths, read (their offsets with starts)
	sep      bool      // each message is followed by a NUL (msgSeparated)
	starts   bool      // lineLens are offsets, skip leaves out the lines not holding word
	bufs     []*[]byte // from textBufs, for Lines.Release
}

// textBufs holds the buffers of released Lines (Lines.Release): a search
// decompresses hundreds of MiB of messages, which would otherwise all be
// new garbage.
var textBufs sync.Pool

// pooledBuf returns an empty buffer of capacity n or more from textBufs,
// noting it in bufs.
func pooledBuf(n int, bufs *[]*[]byte) *[]byte {
	bp, _ := textBufs.Get().(*[]byte)
	if bp == nil || cap(*bp) < n {
		b := make([]byte, 0, n)
		bp = &b
	}
	*bp = (*bp)[:0]
	*bufs = append(*bufs, bp)
	return bp
}

// decompressPooled is decompress into a buffer from textBufs.
func decompressPooled(c []byte, bufs *[]*[]byte) ([]byte, error) {
	if len(c) == 0 || c[0] != codecZstd {
		return decompress(c)
	}
	size := 0
	var h zstd.Header
	if h.Decode(c[1:]) == nil && h.HasFCS && h.FrameContentSize <= maxMsgBytes {
		size = int(h.FrameContentSize)
	}
	bp := pooledBuf(size+64, bufs)
	out, err := zdec.DecodeAll(c[1:], *bp)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	*bp = out[:0]
	return out, nil
}

// Release gives the buffers of l's text columns back for later loads to
// reuse: neither l nor any string taken from its text may be used after
// (copy what is kept). Calling it is optional: what is not released is
// garbage collected.
func (l *Lines) Release() {
	for _, bp := range l.pooled {
		textBufs.Put(bp)
	}
	stringCols.put(l.Msgs)
	stringCols.put(l.Traces)
	stringCols.put(l.Spans)
	int32Cols.put(l.MsgStarts)
	uint64Cols.put(l.Seqs)
	int64Cols.put(l.Times)
	attrCols.put(l.Attrs)
	attrArrays.put(l.attrArray)
	*l = Lines{Meta: l.Meta}
}

// splitText cuts cv into textParts. With own, nothing in them shares
// memory with cv, which may then be Badger's (valid only in its Value
// callback): only what is used is copied, not the message blocks skipped.
func splitText(cv []byte, n int, word string, own bool, dec *zstd.Decoder) (*textParts, error) {
	cn, tcols, err := splitColumns(cv, numCols-colMsgLens)
	if err != nil {
		return nil, err
	}
	if cn != n {
		return nil, fmt.Errorf("%w: text has %d lines, times %d", errCorrupt, cn, n)
	}
	p := &textParts{version: cv[0], cols: make([][]byte, numCols), n: n, word: word}
	// Text columns are numbered from colMsgLens.
	copy(p.cols[colMsgLens:], tcols)
	lens, err := decompress(p.cols[colMsgLens])
	if err != nil {
		return nil, err
	}
	if p.sep = msgSeparated(p.version, lens); p.sep {
		p.lineLens = int32Cols.get(n) // read from the blocks
	} else if p.lineLens, err = decodeLens(p.version, lens, n); err != nil {
		return nil, err
	}
	var keep *FoldNeedle
	if p.version >= 3 && p.sep && word != "" {
		// The lines holding word are found as the blocks are split into
		// lines (Lines.keepHolding's marks, without the others' lengths).
		fn := NewFoldNeedle(word)
		keep, p.starts = &fn, true
	}
	if p.version >= 3 {
		p.msgs, p.skip, err = decodeMsgBlocks(p.cols[colMsgs], p.lineLens, word, p.sep, keep, &p.bufs, dec) // not cv's memory
	} else if p.msgs, err = decompress(p.cols[colMsgs]); err == nil && own {
		p.msgs = bytes.Clone(p.msgs)
	}
	if err != nil {
		int32Cols.put(p.lineLens)
		return nil, err
	}
	if own {
		for _, c := range []int{colTraces, colSpans, colAttrs, colSeqs} {
			p.cols[c] = bytes.Clone(p.cols[c])
		}
		p.cols[colMsgLens], p.cols[colMsgs] = nil, nil
	}
	return p, nil
}

// setText decodes the text columns of p into l. With lines left out
// (Lines.Skipped), the other columns are read only as far as the last line
// kept, and not at all (not even decompressed) when none is.
func (l *Lines) setText(p *textParts) error {
	n := p.n
	switch {
	case p.starts:
		l.setMsgsStarts(p.lineLens, p.msgs, p.skip)
		l.Word = p.word
	default:
		if err := l.setMsgsLens(p.lineLens, p.msgs, p.skip, p.sep); err != nil {
			return err
		}
		if p.word != "" {
			l.keepHolding(p.word)
		}
	}
	var err error
	upto := n // lines up to the last one kept
	if l.Skipped != nil {
		for upto > 0 && l.Skipped[upto-1] {
			upto--
		}
	}
	defer func() { l.pooled = append(l.pooled, p.bufs...) }()
	if l.Traces, err = decodeStrings(p.cols[colTraces], n, upto, l.Skipped, &p.bufs); err != nil {
		return err
	}
	if l.Spans, err = decodeStrings(p.cols[colSpans], n, upto, l.Skipped, &p.bufs); err != nil {
		return err
	}
	if l.Attrs, l.attrArray, err = decodeAttrs(p.cols[colAttrs], n, upto, l.Skipped, &p.bufs); err != nil {
		return err
	}
	l.Seqs = uint64Cols.get(n)
	if upto == 0 {
		return nil
	}
	sb, err := decompress(p.cols[colSeqs])
	if err != nil {
		return err
	}
	if allEmpty(sb, n) {
		return nil // every line unnumbered (Seqs are zeroed)
	}
	sr := wire.NewReader(sb, nil)
	if p.version >= 2 {
		prev := uint64(0)
		for i := range l.Seqs[:upto] {
			prev += uint64(sr.Varint())
			l.Seqs[i] = prev
		}
	} else {
		for i := range l.Seqs[:upto] {
			l.Seqs[i] = sr.Uvarint()
		}
	}
	if sr.Err() != nil {
		return fmt.Errorf("%w: seqs", errCorrupt)
	}
	return nil
}

// decodeAttrs decodes the attributes column of n lines, of the first upto
// only and but for the lines skip marks (nil: none), decompressed into a
// buffer noted in bufs. Every line's attributes share one backing array
// (capacity-limited slices of it), so a chunk costs one allocation, not one
// a line.
func decodeAttrs(c []byte, n, upto int, skip []bool, bufs *[]*[]byte) (attrs [][]model.Attr, array []model.Attr, err error) {
	if upto == 0 {
		return attrCols.get(n), nil, nil
	}
	ab, err := decompressPooled(c, bufs)
	if err != nil {
		return nil, nil, err
	}
	if allEmpty(ab, n) {
		return attrCols.get(n), nil, nil
	}
	// First pass: count them (and check the layout).
	total := 0
	r := wire.NewReader(ab, nil)
	for i := 0; i < upto && r.Err() == nil; i++ {
		na := r.Uvarint()
		if na > uint64(r.Len()) {
			r.Fail()
		}
		for j := uint64(0); j < 2*na && r.Err() == nil; j++ {
			r.Bytes()
		}
		if skip == nil || !skip[i] {
			total += int(na)
		}
	}
	if r.Err() != nil {
		return nil, nil, fmt.Errorf("%w: attributes", errCorrupt)
	}
	all := attrArrays.get(total)
	out := attrCols.get(n)
	p := 0
	r = wire.NewReader(ab, nil)
	for i := 0; i < upto; i++ {
		na := int(r.Uvarint())
		if na == 0 {
			continue
		}
		if skip != nil && skip[i] {
			for range 2 * na {
				r.Bytes()
			}
			continue
		}
		as := all[p : p+na : p+na]
		p += na
		for j := range as {
			as[j].Key, as[j].Value = r.StrAlias(), r.StrAlias()
		}
		out[i] = as
	}
	return out, all, nil
}

// allEmpty reports whether a decompressed column of n lines, each a
// uvarint count or length first, has nothing but those, all 0 (no line has
// a trace id, say): n zero bytes. The common case is then not read line by
// line (a rare-word search read the empty columns of a thousand lines a
// chunk for the one or two lines it kept).
func allEmpty(b []byte, n int) bool {
	return len(b) == n && bytes.Count(b, zeroByte) == n
}

var zeroByte = []byte{0}

// decodeStrings decodes a column of n length-prefixed strings, leaving those
// of the lines skip marks (nil: none) and from upto on empty; the column is
// decompressed into a buffer noted in bufs.
func decodeStrings(c []byte, n, upto int, skip []bool, bufs *[]*[]byte) ([]string, error) {
	out := stringCols.get(n)
	if upto == 0 {
		return out, nil
	}
	b, err := decompressPooled(c, bufs)
	if err != nil {
		return nil, err
	}
	if allEmpty(b, n) {
		return out, nil
	}
	r := wire.NewReader(b, nil)
	for i := range out[:upto] {
		if skip != nil && skip[i] {
			r.Bytes()
			continue
		}
		out[i] = r.StrAlias()
	}
	if r.Err() != nil {
		return nil, fmt.Errorf("%w: strings", errCorrupt)
	}
	return out, nil
}

func appendStrings(b []byte, ss []string) []byte {
	for _, s := range ss {
		b = wire.AppendString(b, s)
	}
	return b
}

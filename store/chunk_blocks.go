package store

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unsafe"

	"github.com/klauspost/compress/zstd"

	"github.com/shiplog/shiplog/internal/wire"
)

// Message blocks (c values of version 3). The message bytes of a chunk are
// cut into blocks of msgBlockLines lines (oldBlockLines before version 5), each compressed on its own, with
// bloom filters of the ordinary words (tokens.go: not id-like) of their
// messages: one for the words in every block, one per block for the others.
// A search for a word decompresses only the blocks whose filter may hold it
// (Store.LoadWord): a rare word in a 1,024-line chunk is mostly in one of
// its four blocks. Alone, smaller blocks skip more but compress worse
// (measured on gen_logs.py's lines: 33.6 B/line of messages whole, 35.7 in
// blocks of 512 lines, 39.1 of 256, 44.5 of 128); with the day's message
// dictionary (msgdict.go, c values of version 5) blocks of 256 lines take
// 31.8 B/line and 1.1 of filters (512: 31.6 and 0.7; 128: 32.1 and 2.0),
// and decompress at about half the speed of blocks without one, so a
// search for a rare word decompresses about as long as with blocks of 512
// lines without (and scans half the lines). Chunks sealed before version 5
// have blocks of 512 lines; each value says how many lines its blocks hold.
//
// The column colMsgs of a version 3 value:
//
//	common filter length uvarint, then the filter: words in every block
//	blocks uvarint
//	per block: lines uvarint, filter length uvarint, stored length uvarint
//	per block: its filter (words in it and not in every block)
//	per block: the stored bytes (codec byte and data, as a column)
//
// A filter is a bloom filter (k byte, then the bits; blockBloomBits bits a
// word); an empty one may hold any word: a chunk of one block has none, and
// a word the common filter may hold is looked for in every block.
const (
	msgBlockLines  = 256
	oldBlockLines  = 512 // in values of versions 3 and 4
	maxMsgBlocks   = 64
	maxMsgBytes    = 1 << 30 // a chunk's messages decompress to no more (as zdec's bound)
	blockBloomBits = 8       // bits a word in a block filter: ~2% false positives
)

// msgFilters are the word filters of a chunk's message blocks.
type msgFilters struct {
	common *bloom   // words in every block
	blocks []*bloom // per block, its other words
}

// blockLines is the number of lines of each message block of a chunk of n
// lines (the last block holds the rest).
// lines of a c value of the given version (3 on).
func blockLines(n int, version byte) int {
	size := msgBlockLines
	if version < 5 {
		size = oldBlockLines
	}
	return max(size, (n+maxMsgBlocks-1)/maxMsgBlocks)
}

// encodeMsgBlocks encodes the messages as blocks of bl lines (blockLines)
// with the given filters (nil: none) and dictionary encoder (nil: none),
// using *bp as scratch (kept grown for the next chunk); with sep, each
// message is followed by a NUL (msgSeparated). The blocks are compressed
// one after another into one pooled buffer, not each into its own.
func encodeMsgBlocks(bp *[]byte, msgs []string, bl int, filters *msgFilters, dict *zstd.Encoder, sep bool) []byte {
	enc := zenc
	if dict != nil {
		enc = dict
	}
	nb := (len(msgs) + bl - 1) / bl
	fs := make([][]byte, nb)
	ends := make([]int, nb) // of each block's stored bytes in z
	zp := bufPool.Get().(*[]byte)
	z, b := (*zp)[:0], *bp
	defer func() { *zp, *bp = z, b; bufPool.Put(zp) }()
	size := 8
	for i := range nb {
		b = b[:0]
		for _, m := range msgs[i*bl : min(len(msgs), (i+1)*bl)] {
			b = append(b, m...)
			if sep {
				b = append(b, 0)
			}
		}
		z = appendCompressed(enc, z, b)
		ends[i] = len(z)
		if filters != nil && i < len(filters.blocks) {
			fs[i] = filters.blocks[i].marshal()
		}
		size += len(fs[i]) + 12
	}
	var common []byte
	if filters != nil && filters.common != nil {
		common = filters.common.marshal()
	}
	out := make([]byte, 0, size+len(common)+len(z))
	out = wire.AppendUvarint(out, uint64(len(common)))
	out = append(out, common...)
	out = wire.AppendUvarint(out, uint64(nb))
	start := 0
	for i, end := range ends {
		out = wire.AppendUvarint(out, uint64(min(bl, len(msgs)-i*bl)))
		out = wire.AppendUvarint(out, uint64(len(fs[i])))
		out = wire.AppendUvarint(out, uint64(end-start))
		start = end
	}
	for _, f := range fs {
		out = append(out, f...)
	}
	return append(out, z...) // the stored blocks, in order
}

// msgBlock is one block of a version 3 message column, not yet decompressed.
type msgBlock struct {
	lines  int
	filter []byte
	stored []byte
}

// errBadBlocks is a message column whose block directory does not read
// (made once: a search splits thousands of columns).
var errBadBlocks = fmt.Errorf("%w: message blocks", errCorrupt)

// splitMsgBlocks reads the common filter and the block directory of a
// version 3 message column of n lines.
func splitMsgBlocks(c []byte, n int) (common []byte, blocks []msgBlock, err error) {
	r := wire.NewReader(c, errBadBlocks)
	cl := r.Uvarint()
	if r.Err() != nil || cl > uint64(r.Len()) {
		return nil, nil, errBadBlocks
	}
	common = r.Next(int(cl))
	nb := r.Uvarint()
	if r.Err() != nil || nb > uint64(n) || nb > uint64(r.Len()) {
		return nil, nil, errBadBlocks
	}
	blocks = make([]msgBlock, nb)
	total := 0
	lens := make([]uint64, 2*nb)
	for i := range blocks {
		lines := r.Uvarint()
		lens[2*i], lens[2*i+1] = r.Uvarint(), r.Uvarint()
		if r.Err() != nil || lines > uint64(n-total) {
			return nil, nil, errBadBlocks
		}
		blocks[i].lines = int(lines)
		total += int(lines)
	}
	if total != n {
		return nil, nil, errBadBlocks
	}
	for i := range blocks {
		if uint64(r.Len()) < lens[2*i] {
			return nil, nil, errBadBlocks
		}
		blocks[i].filter = r.Next(int(lens[2*i]))
	}
	for i := range blocks {
		if uint64(r.Len()) < lens[2*i+1] {
			return nil, nil, errBadBlocks
		}
		blocks[i].stored = r.Next(int(lens[2*i+1]))
	}
	return common, blocks, nil
}

// mayHold reports whether the block may hold word (an ordinary token; "" for
// any), not one the common filter may hold.
func (b *msgBlock) mayHold(word string) bool {
	return word == "" || len(b.filter) == 0 || unmarshalBloom(b.filter).mayContain(word)
}

// decodeMsgBlocks decompresses the blocks that may hold word (every block
// when word is "") back to back: the message bytes of the lines of the
// others are left out, and skip (when any) marks those lines. The buffer
// they are in comes from textBufs, noted in bufs. lineLens are the
// message lengths (decodeLens): each block must decompress to its lines'
// lengths. With sep, each message is followed by a NUL instead
// (msgSeparated): the lengths of the lines of the blocks decompressed are
// read from them into lineLens, and each must hold one NUL a line, the
// last at its end. With keep as well (a load for its word: sep only),
// lineLens become the lines' offsets in msgs instead, and skip marks every
// line but those holding keep's word or an escape sequence (holdingLines).
func decodeMsgBlocks(c []byte, lineLens []int32, word string, sep bool, keep *FoldNeedle, bufs *[]*[]byte, dec *zstd.Decoder) (msgs []byte, skip []bool, err error) {
	n := len(lineLens)
	if keep != nil {
		skip = make([]bool, n)
	}
	common, blocks, err := splitMsgBlocks(c, n)
	if err != nil {
		return nil, nil, err
	}
	// own, when not nil, are the blocks whose own filter may hold the
	// word, which the common filter says may be in every block: see probe.
	var own []bool
	if word != "" && len(common) > 0 && unmarshalBloom(common).mayContain(word) {
		if keep != nil && len(blocks) > 1 {
			own = make([]bool, len(blocks))
			for i := range blocks {
				own[i] = blocks[i].mayHold(word)
			}
		}
		word = "" // in every block
	}
	hold := make([]bool, len(blocks))
	sizes, total, err := blockSizes(blocks, lineLens, word, sep, hold)
	if err != nil {
		return nil, nil, err
	}
	if total > 0 {
		// zstd decodes on its fast path only with room to spare (its
		// compressedBlockOverAlloc, 32 bytes) past each block.
		bp := pooledBuf(total+64, bufs)
		msgs = *bp
		defer func() { *bp = msgs[:0] }()
	}
	line := 0
	probe := probeNone
	for i := range blocks {
		b := &blocks[i]
		if probe == probeClean && !own[i] {
			hold[i] = false
		}
		if !hold[i] {
			if skip == nil {
				skip = make([]bool, n)
			}
			for j := line; j < line+b.lines; j++ {
				skip[j] = true
				if keep != nil {
					lineLens[j] = int32(len(msgs)) // offsets stay in order
				}
			}
		} else {
			before := len(msgs)
			if msgs, err = decompressAppend(msgs, b.stored, dec); err != nil {
				return nil, nil, err
			}
			if sep {
				if len(msgs) > maxMsgBytes {
					return nil, nil, fmt.Errorf("%w: messages", errCorrupt)
				}
				if keep != nil {
					err = holdingLines(msgs[before:], before, keep, lineLens[line:line+b.lines], skip[line:line+b.lines])
				} else {
					err = separatedLens(msgs[before:], lineLens[line:line+b.lines])
				}
				if err != nil {
					return nil, nil, fmt.Errorf("%w (block %d)", err, i)
				}
				if own != nil && !own[i] && probe == probeNone {
					probe = probeClean
					if slices.Contains(skip[line:line+b.lines], false) {
						probe = probeHeld
					}
				}
			} else if len(msgs)-before != sizes[i] {
				return nil, nil, fmt.Errorf("%w: message block %d of %d bytes, its lines have %d", errCorrupt, i, len(msgs)-before, sizes[i])
			}
		}
		line += b.lines
	}
	return msgs, skip, nil
}

// The probe of a load for a word the common filter of a chunk's blocks
// says may be in every block (decodeMsgBlocks): a bloom filter's false
// positive there decompressed every block of the chunk (half the blocks
// decompressed for nothing by a rare-word search at 10M lines). The first
// block whose own filter does not hold the word is decompressed as the
// others; if none of its lines holds the word (ASCII case folded, as the
// words of the filters are) or an escape sequence, the word is not in every
// block, so it is in the own filter of every block that holds it (words in
// every block are in the common filter only, the others in the filters of
// their blocks): the blocks after it whose own filter does not hold it are
// skipped. Otherwise every block is decompressed.
const (
	probeNone  = iota // no block looked at yet
	probeClean        // the word is not in every block
	probeHeld         // it may be
)

// blockSizes returns the decompressed sizes of blocks (for the buffer only,
// with sep: their frames' content sizes), marks in hold those that may hold
// word, and returns the total size of those.
func blockSizes(blocks []msgBlock, lineLens []int32, word string, sep bool, hold []bool) (sizes []int, total int, err error) {
	sizes = make([]int, len(blocks))
	k := 0
	for i := range blocks {
		if sep {
			sizes[i] = contentSize(blocks[i].stored)
		}
		for _, ml := range lineLens[k : k+blocks[i].lines] {
			if sizes[i] += int(ml); sizes[i] > maxMsgBytes {
				return nil, 0, fmt.Errorf("%w: messages", errCorrupt)
			}
		}
		k += blocks[i].lines
		if hold[i] = blocks[i].mayHold(word); hold[i] {
			total += sizes[i]
		}
	}
	if total > maxMsgBytes {
		return nil, 0, fmt.Errorf("%w: messages", errCorrupt)
	}
	return sizes, total, nil
}

// decompressAppend appends a stored column's bytes to dst, decoded with dec.
// The frame is decoded straight into dst's spare capacity, passed as an
// empty slice: given dst's bytes, zstd decodes into a buffer of its own and
// copies the result after them.
func decompressAppend(dst, c []byte, dec *zstd.Decoder) ([]byte, error) {
	if len(c) > 0 && c[0] == codecZstd {
		free := dst[len(dst):]
		out, err := dec.DecodeAll(c[1:], free)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errCorrupt, err)
		}
		if len(out) > 0 && len(out) <= cap(free) && &out[0] == &free[:1][0] {
			return dst[:len(dst)+len(out)], nil // decoded in place
		}
		return append(dst, out...), nil
	}
	b, err := decompress(c)
	if err != nil {
		return nil, err
	}
	return append(dst, b...), nil
}

// setMsgsLens cuts the message bytes into l's lines by their lengths
// (decodeLens); the lines skip marks have no bytes in all and get empty
// messages. With sep, each message is followed by a NUL in all. lineLens
// becomes MsgStarts.
func (l *Lines) setMsgsLens(lineLens []int32, all []byte, skip []bool, sep bool) error {
	s := unsafe.String(unsafe.SliceData(all), len(all)) // all is never written again
	l.Msgs = stringCols.get(len(lineLens))
	after := 0
	if sep {
		after = 1
	}
	p := 0
	for i, ml := range lineLens {
		lineLens[i] = int32(p)
		if skip != nil && skip[i] {
			continue
		}
		if len(s)-p < int(ml)+after {
			return fmt.Errorf("%w: messages", errCorrupt)
		}
		l.Msgs[i] = s[p : p+int(ml)]
		p += int(ml) + after
	}
	l.MsgStarts = lineLens
	l.MsgBlock = s
	l.Skipped = skip
	return nil
}

// BlockMarks marks the lines of l whose message, in MsgBlock, holds a match
// of find (the offset of the first one in its argument, -1 for none), or an
// escape sequence (a line may match once they are removed). A match running
// over the end of a message marks the line it starts in. One match a line is
// enough: the scan goes on at the next line's start.
func (l *Lines) BlockMarks(find func(string) int) []bool {
	n := l.Len()
	marks := make([]bool, n)
	block := l.MsgBlock
	starts := l.MsgStarts
	// lineAt is the line whose message holds offset off of the block.
	lineAt := func(off int) int {
		return sort.Search(len(starts), func(j int) bool { return int(starts[j]) > off }) - 1
	}
	// next is where the message after line i starts (the block's end for
	// the last).
	next := func(i int) int {
		if i+1 < n {
			return int(starts[i+1])
		}
		return len(block)
	}
	esc := func(s string) int { return strings.IndexByte(s, 0x1b) }
	for _, f := range []func(string) int{find, esc} {
		for p := 0; p < len(block); {
			i := f(block[p:])
			if i < 0 {
				break
			}
			line := max(lineAt(p+i), 0)
			marks[line] = true
			p = max(next(line), p+i+1)
		}
	}
	return marks
}

// keepHolding leaves out the lines whose message does not hold word (ASCII
// case folded) and has no escape sequence (one may hold it once they are
// removed): they join Skipped with empty messages, and Word is set. A
// search for word looks at no other line, and their other text columns are
// then not decoded.
func (l *Lines) keepHolding(word string) {
	fn := NewFoldNeedle(word)
	hold := l.BlockMarks(fn.Index)
	if l.Skipped == nil {
		l.Skipped = make([]bool, l.Len())
	}
	for i, h := range hold {
		if !h {
			l.Skipped[i] = true
			l.Msgs[i] = ""
		}
	}
	l.Word = word
}

// anyNUL reports whether a message holds a NUL byte (its chunk then stores
// message lengths: msgSeparated).
func anyNUL(msgs []string) bool {
	for _, m := range msgs {
		if strings.IndexByte(m, 0) >= 0 {
			return true
		}
	}
	return false
}

// msgSeparated reports whether a c value of version ver whose message
// lengths column decompressed to lens ends each message with a NUL in its
// block instead (version 6 on, when no message holds one: the column is
// then empty).
func msgSeparated(ver byte, lens []byte) bool { return ver >= 6 && len(lens) == 0 }

// separatedLens reads the lengths of the messages of a decompressed block
// of separated messages (msgSeparated) into lens, one per line: the block
// must hold exactly len(lens) NULs, the last at its end.
func separatedLens(block []byte, lens []int32) error {
	p := 0
	for i := range lens {
		j := bytes.IndexByte(block[p:], 0)
		if j < 0 {
			return fmt.Errorf("%w: message block of %d lines has %d", errCorrupt, len(lens), i)
		}
		lens[i] = int32(j)
		p += j + 1
	}
	if p != len(block) {
		return fmt.Errorf("%w: message block of %d lines has more", errCorrupt, len(lens))
	}
	return nil
}

// holdingLines is separatedLens for a load for a word (Store.LoadWord): of
// a decompressed block of separated messages at offset base of the chunk's,
// only the lines whose message holds keep's word or has an escape sequence
// (one may hold it once they are removed) are looked for, their offsets
// (base + their start in block) written to starts; the others are marked in
// skip, with the offset of the first line after the last one kept (starts
// stay in order). The NULs are counted, not looked for one by one, and the
// block must hold exactly len(starts), the last at its end.
func holdingLines(block []byte, base int, keep *FoldNeedle, starts []int32, skip []bool) error {
	n := len(starts)
	if len(block) == 0 || block[len(block)-1] != 0 {
		return fmt.Errorf("%w: message block of %d lines does not end one", errCorrupt, n)
	}
	s := unsafe.String(unsafe.SliceData(block), len(block)) // block is never written again
	line, ls := 0, 0                                        // the next line not looked at, and its start
	hit, esc := -2, -2                                      // the next offsets >= ls of a match and of an escape (-1: none)
	drop := func(k int) error {                             // lines line..line+k-1 hold neither
		if line+k > n {
			return fmt.Errorf("%w: message block of %d lines has more", errCorrupt, n)
		}
		for j := line; j < line+k; j++ {
			skip[j], starts[j] = true, int32(base+ls)
		}
		line += k
		return nil
	}
	for {
		if hit != -1 && hit < ls {
			if hit = keep.Index(s[ls:]); hit >= 0 {
				hit += ls
			}
		}
		if esc != -1 && esc < ls {
			if esc = strings.IndexByte(s[ls:], 0x1b); esc >= 0 {
				esc += ls
			}
		}
		h := hit
		if h < 0 || esc >= 0 && esc < h {
			h = esc
		}
		if h < 0 {
			break
		}
		if k := bytes.Count(block[ls:h], nulByte); k > 0 {
			if err := drop(k); err != nil {
				return err
			}
			ls = bytes.LastIndexByte(block[:h], 0) + 1
		}
		if line >= n {
			return fmt.Errorf("%w: message block of %d lines has more", errCorrupt, n)
		}
		starts[line] = int32(base + ls)
		line++
		ls += bytes.IndexByte(block[ls:], 0) + 1 // the block ends in a NUL
	}
	if k := bytes.Count(block[ls:], nulByte); line+k != n {
		return fmt.Errorf("%w: message block of %d lines has %d", errCorrupt, n, line+k)
	}
	return drop(n - line)
}

var nulByte = []byte{0}

// setMsgsStarts cuts the message bytes into l's lines by their offsets
// (holdingLines) for the lines skip does not mark: the others get empty
// messages. starts becomes MsgStarts (those of lines skipped are not
// theirs).
func (l *Lines) setMsgsStarts(starts []int32, all []byte, skip []bool) {
	s := unsafe.String(unsafe.SliceData(all), len(all)) // all is never written again
	l.Msgs = stringCols.get(len(starts))
	for i, st := range starts {
		if !skip[i] {
			m := s[st:]
			l.Msgs[i] = m[:strings.IndexByte(m, 0)] // holdingLines found it
		}
	}
	l.MsgStarts = starts
	l.MsgBlock = s
	l.Skipped = skip
}

// contentSize is the size a stored block says it decompresses to (0 when
// it does not say, or says more than maxMsgBytes).
func contentSize(c []byte) int {
	if len(c) == 0 {
		return 0
	}
	if c[0] == codecRaw {
		return len(c) - 1
	}
	var h zstd.Header
	if h.Decode(c[1:]) == nil && h.HasFCS && h.FrameContentSize <= maxMsgBytes {
		return int(h.FrameContentSize)
	}
	return 0
}

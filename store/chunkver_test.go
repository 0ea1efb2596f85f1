package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/model"
)

// Seqs are stored as deltas (c values of version 2); version 1 values, with
// plain uvarints, still read.
func TestChunkSeqVersions(t *testing.T) {
	meta := &ChunkMeta{Count: 3, MinT: 100}
	l := &Lines{Meta: meta, Times: []int64{100, 101, 103}, Levels: []model.Level{3, 5, 3},
		Msgs: []string{"a", "b", "c"}, Traces: []string{"", "", ""}, Spans: []string{"", "", ""},
		Attrs: make([][]model.Attr, 3), Seqs: []uint64{7, 8, 1 << 40}}
	tv, cv := encodeChunkVersion(l, nil, 2)
	if cv[0] != 2 {
		t.Fatalf("c value version %d", cv[0])
	}
	got, err := decodeChunk(meta, tv, cv)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range l.Seqs {
		if got.Seqs[i] != s {
			t.Fatalf("seq %d: %d, want %d", i, got.Seqs[i], s)
		}
	}
	// Rebuild the c value as version 1 wrote it.
	_, cols, err := splitColumns(cv, numCols-colMsgLens)
	if err != nil {
		t.Fatal(err)
	}
	var plain []byte
	for _, s := range l.Seqs {
		plain = binary.AppendUvarint(plain, s)
	}
	cols[colSeqs-colMsgLens] = compress(plain)
	v1 := packColumns(1, 3, cols)
	old, err := decodeChunk(meta, tv, v1)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range l.Seqs {
		if old.Seqs[i] != s || old.Msgs[i] != l.Msgs[i] {
			t.Fatalf("version 1, line %d: seq %d msg %q", i, old.Seqs[i], old.Msgs[i])
		}
	}
}

// Version 3 keeps messages in blocks with word filters: a load for a word
// decompresses only the blocks that may hold it, and leaves out (skipped)
// every line not holding it; a whole load gives every line, and version 2
// values (one message column) are decompressed whole for a word too.
func TestChunkWordBlocks(t *testing.T) {
	const n = 1300 // blocks of 256 lines, and 20
	meta := &ChunkMeta{Count: n, MinT: 100}
	l := &Lines{Meta: meta}
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("request %d done id=%08x", i, i*7919)
		if i == 700 {
			msg = "transaction aborted: Deadlock detected"
		}
		l.Times = append(l.Times, 100+int64(i))
		l.Levels = append(l.Levels, model.LevelInfo)
		l.Msgs = append(l.Msgs, msg)
		l.Traces, l.Spans = append(l.Traces, ""), append(l.Spans, "")
		l.Attrs, l.Seqs = append(l.Attrs, nil), append(l.Seqs, uint64(i+1))
	}
	meta.Levels[model.LevelInfo] = n
	tv, cv := encodeChunk(l)
	if cv[0] != textVersion {
		t.Fatalf("c value version %d", cv[0])
	}
	_, cv2 := encodeChunkVersion(l, nil, 2)
	all := blockBytes(l.Msgs) + n // each followed by a NUL (version 6)
	for _, tc := range []struct {
		name, word string
		cv         []byte
		skipped    int
		block      int // bytes of messages decompressed
	}{
		{"whole", "", cv, 0, all},
		{"word in block 2", "deadlock", cv, n - 1, blockBytes(l.Msgs[512:768]) + 256},
		{"word in every block", "request", cv, 1, all},
		{"word nowhere", "nosuchword", cv, n, 0},
		{"version 2", "deadlock", cv2, n - 1, all - n},
	} {
		got, err := decodeChunk(meta, tv, nil)
		if err == nil {
			err = got.decodeTextWord(tc.cv, tc.word, zdec)
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		skipped := 0
		for i := range n {
			if got.Skipped != nil && got.Skipped[i] {
				skipped++
				if got.Msgs[i] != "" {
					t.Fatalf("%s: skipped line %d has message %q", tc.name, i, got.Msgs[i])
				}
				continue
			}
			if s := int(got.MsgStarts[i]); got.Msgs[i] != l.Msgs[i] || got.MsgBlock[s:s+len(got.Msgs[i])] != l.Msgs[i] || got.Seqs[i] != l.Seqs[i] {
				t.Fatalf("%s: line %d: %q, want %q", tc.name, i, got.Msgs[i], l.Msgs[i])
			}
		}
		if skipped != tc.skipped || len(got.MsgBlock) != tc.block {
			t.Fatalf("%s: %d lines skipped, %d bytes of messages decompressed; want %d, %d", tc.name, skipped, len(got.MsgBlock), tc.skipped, tc.block)
		}
	}
}

func blockBytes(msgs []string) int {
	n := 0
	for _, m := range msgs {
		n += len(m)
	}
	return n
}

// Times (t value version 2) and message lengths (c value version 4) read
// back exactly for any spacing: nanosecond noise, whole milliseconds,
// times going back, equal times, the extremes of int64, messages past 64
// KiB; and the values earlier versions wrote (t 1, c 3) still read.
func TestChunkTimesLensVersions(t *testing.T) {
	cases := map[string]func(i int) int64{
		"nanoseconds":   func(i int) int64 { return 1_767_225_600_000_000_000 + int64(i)*4_312_345_679 + int64(i*i%977) },
		"milliseconds":  func(i int) int64 { return 1_767_225_600_000_000_000 + int64(i*i%5000)*1_000_000 },
		"back and fore": func(i int) int64 { return 1_000_000 + int64((i%7)-3)*123_456_789 },
		"equal":         func(int) int64 { return 42 },
		"extremes": func(i int) int64 {
			return []int64{math.MinInt64, math.MaxInt64, 0, -1, math.MaxInt64, math.MinInt64 + 1}[i%6]
		},
	}
	for name, at := range cases {
		for _, n := range []int{1, 2, 700} {
			meta := &ChunkMeta{Count: uint32(n), MinT: math.MaxInt64}
			l := &Lines{Meta: meta}
			for i := range n {
				ti := at(i)
				meta.MinT = min(meta.MinT, ti)
				l.Times = append(l.Times, ti)
				l.Levels = append(l.Levels, model.LevelInfo)
				msg := strings.Repeat("x", i%300)
				if i == n/2 {
					msg = strings.Repeat("long line ", 7000) // 70,000 bytes: three planes
				}
				l.Msgs = append(l.Msgs, msg)
				l.Traces, l.Spans = append(l.Traces, ""), append(l.Spans, "")
				l.Attrs, l.Seqs = append(l.Attrs, nil), append(l.Seqs, uint64(i+1))
			}
			for _, v := range []byte{3, textVersion} {
				tv, cv := encodeChunkVersion(l, chunkTokensFor(l, v), v)
				if want := map[bool]byte{true: timesVersion, false: 1}[v >= 4]; tv[0] != want || cv[0] != v {
					t.Fatalf("%s: t version %d, c version %d", name, tv[0], cv[0])
				}
				got, err := decodeChunk(meta, tv, cv)
				if err != nil {
					t.Fatalf("%s, %d lines, version %d: %v", name, n, v, err)
				}
				for i := range n {
					if got.Times[i] != l.Times[i] || got.Msgs[i] != l.Msgs[i] {
						t.Fatalf("%s, %d lines, version %d, line %d: time %d, %d bytes; want %d, %d bytes",
							name, n, v, i, got.Times[i], len(got.Msgs[i]), l.Times[i], len(l.Msgs[i]))
					}
				}
			}
		}
	}
}

// Version 6 ends each message with a NUL in its block and stores no
// lengths, unless a message of the chunk holds a NUL (lengths as version
// 5); a block whose NULs do not match its lines is corrupt.
func TestChunkSeparatedMessages(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const n = 700
	l := randLines(rng, n)
	for i, m := range l.Msgs {
		l.Msgs[i] = strings.ReplaceAll(m, "\x00", "")
	}
	l.Msgs[3] = "" // an empty message is a lone NUL
	withNUL := *l
	withNUL.Msgs = append([]string(nil), l.Msgs...)
	withNUL.Msgs[650] = "a\x00b deadlock"
	for _, tc := range []struct {
		name string
		l    *Lines
		lens bool
	}{{"no NUL", l, false}, {"a NUL", &withNUL, true}} {
		tv, cv := encodeChunk(tc.l)
		_, cols, err := splitColumns(cv, numCols-colMsgLens)
		if err != nil {
			t.Fatal(err)
		}
		lens, err := decompress(cols[0])
		if cv[0] != 6 || err != nil || (len(lens) > 0) != tc.lens {
			t.Fatalf("%s: version %d, %d bytes of lengths (%v)", tc.name, cv[0], len(lens), err)
		}
		for _, word := range []string{"", "deadlock", "nosuchword"} {
			got, err := decodeChunk(tc.l.Meta, tv, nil)
			if err == nil {
				err = got.decodeTextWord(cv, word, zdec)
			}
			if err != nil {
				t.Fatalf("%s, %q: %v", tc.name, word, err)
			}
			for i := range n {
				if got.Skipped != nil && got.Skipped[i] {
					continue
				}
				if s := int(got.MsgStarts[i]); got.Msgs[i] != tc.l.Msgs[i] || got.MsgBlock[s:s+len(got.Msgs[i])] != tc.l.Msgs[i] || got.Seqs[i] != tc.l.Seqs[i] {
					t.Fatalf("%s, %q: line %d: %q, want %q", tc.name, word, i, got.Msgs[i], tc.l.Msgs[i])
				}
			}
		}
	}
	// Blocks with a NUL too many, or without the last one.
	tv, cv := encodeChunk(l)
	_, cols, _ := splitColumns(cv, numCols-colMsgLens)
	extra := append([]string(nil), l.Msgs...)
	extra[300] = "x\x00y"
	short := make([]string, n)
	for i, m := range l.Msgs {
		short[i] = m + "\x00"
	}
	short[n-1] = l.Msgs[n-1]
	for name, blocks := range map[string][]byte{
		"extra NUL":   encodeMsgBlocks(new([]byte), extra, blockLines(n, 6), nil, nil, true),
		"no last NUL": encodeMsgBlocks(new([]byte), short, blockLines(n, 6), nil, nil, false),
	} {
		cols[colMsgs-colMsgLens] = blocks
		bad := packColumns(6, n, cols)
		got, err := decodeChunk(l.Meta, tv, nil)
		if err == nil {
			err = got.decodeText(bad, zdec)
		}
		if !errors.Is(err, errCorrupt) {
			t.Fatalf("%s: %v, want a corrupt chunk", name, err)
		}
	}
}

package store

import (
	"encoding/binary"
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
	tv, cv := encodeChunk(l)
	if cv[0] != textVersion {
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

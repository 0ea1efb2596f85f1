package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// randLines returns n random lines: times around minT (not in order), every
// level byte in range, messages from empty to a few KiB (so some columns are
// compressed and some stored raw), odd bytes included.
func randLines(rng *rand.Rand, n int) *Lines {
	str := func(max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			if rng.IntN(4) == 0 {
				b[i] = byte(rng.IntN(256))
			} else {
				b[i] = "abc xyz 0123456789 ERROR=:/"[rng.IntN(26)]
			}
		}
		return string(b)
	}
	minT := rng.Int64N(1<<62) - 1<<61
	m := &ChunkMeta{ID: rng.Uint64(), Stream: rng.Uint64(), Day: rng.Uint32(), FirstLine: rng.Uint32() / 2, Count: uint32(n), MinT: minT, MaxT: minT}
	l := &Lines{Meta: m}
	for i := 0; i < n; i++ {
		t := minT + rng.Int64N(1<<40)
		m.MaxT = max(m.MaxT, t)
		l.Times = append(l.Times, t)
		l.Levels = append(l.Levels, model.Level(rng.IntN(int(model.NumLevels))))
		msgLen := 200
		if rng.IntN(10) == 0 {
			msgLen = 5000
		}
		l.Msgs = append(l.Msgs, str(msgLen))
		l.Traces = append(l.Traces, str(2)+strings.Repeat("f", rng.IntN(2)*32))
		l.Spans = append(l.Spans, str(16))
		var as []model.Attr
		for range rng.IntN(4) {
			as = append(as, model.Attr{Key: str(8), Value: str(40)})
		}
		l.Attrs = append(l.Attrs, as)
		seq := rng.Uint64()
		if rng.IntN(2) == 0 {
			seq = uint64(i)
		}
		l.Seqs = append(l.Seqs, seq)
	}
	return l
}

// TestChunkRoundTrip: decodeChunk gives back what encodeChunk was given.
func TestChunkRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 2, 3, 64, 1024}
	for i := 0; i < 60; i++ {
		sizes = append(sizes, rng.IntN(300))
	}
	for _, n := range sizes {
		l := randLines(rng, n)
		tv, cv := encodeChunk(l)
		tv, cv = bytes.Clone(tv), bytes.Clone(cv)
		got, err := decodeChunk(l.Meta, tv, nil)
		if err != nil {
			t.Fatalf("%d lines, times only: %v", n, err)
		}
		if !slices.Equal(got.Times, l.Times) || !slices.Equal(got.Levels, l.Levels) || got.Msgs != nil {
			t.Fatalf("%d lines, times only: decoded differently", n)
		}
		got, err = decodeChunk(l.Meta, tv, cv)
		if err != nil {
			t.Fatalf("%d lines: %v", n, err)
		}
		if got.Len() != n || !slices.Equal(got.Times, l.Times) || !slices.Equal(got.Levels, l.Levels) ||
			!slices.Equal(got.Msgs, l.Msgs) || !slices.Equal(got.Traces, l.Traces) || !slices.Equal(got.Spans, l.Spans) ||
			!slices.Equal(got.Seqs, l.Seqs) {
			t.Fatalf("%d lines: decoded differently", n)
		}
		for i := range n {
			if !slices.Equal(got.Attrs[i], l.Attrs[i]) || (got.Attrs[i] == nil) != (len(l.Attrs[i]) == 0) {
				t.Fatalf("%d lines: attributes of line %d: %v, want %v", n, i, got.Attrs[i], l.Attrs[i])
			}
			if s := int(got.MsgStarts[i]); got.MsgBlock[s:s+len(got.Msgs[i])] != l.Msgs[i] {
				t.Fatalf("%d lines: line %d is not at its offset in the message block", n, i)
			}
		}
	}
}

// chunkSeeds are encoded chunks for the fuzz corpus.
func chunkSeeds() [][2][]byte {
	rng := rand.New(rand.NewPCG(3, 4))
	var out [][2][]byte
	for _, n := range []int{0, 1, 5, 40, 600} {
		l := randLines(rng, n)
		tv, cv := encodeChunk(l)
		out = append(out, [2][]byte{bytes.Clone(tv), bytes.Clone(cv)})
		tv1, cv2 := encodeChunkVersion(l, nil, 2) // t value version 1
		out = append(out, [2][]byte{bytes.Clone(tv1), bytes.Clone(cv2)})
		_, cv3 := encodeChunkVersion(l, chunkTokensFor(l, 3), 3)
		out = append(out, [2][]byte{bytes.Clone(tv1), bytes.Clone(cv3)})
		_, cv5 := encodeChunkVersion(l, chunkTokensFor(l, 5), 5)
		out = append(out, [2][]byte{bytes.Clone(tv), bytes.Clone(cv5)})
		for i, m := range l.Msgs { // version 6 with messages followed by NULs
			l.Msgs[i] = strings.ReplaceAll(m, "\x00", "")
		}
		tv6, cv6 := encodeChunk(l)
		out = append(out, [2][]byte{bytes.Clone(tv6), bytes.Clone(cv6)})
	}
	return out
}

// FuzzDecodeChunk: a corrupt chunk is an error, never a panic.
func FuzzDecodeChunk(f *testing.F) {
	for _, s := range chunkSeeds() {
		f.Add(s[0], s[1])
	}
	f.Add([]byte{1, 2, 2, 0, 0}, []byte{1, 2, 6, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, tv, cv []byte) {
		// The line count comes from the metadata, which agrees with the
		// value's own count when both are intact.
		n := uint64(3)
		if len(tv) > 1 {
			if c, k := binary.Uvarint(tv[1:]); k > 0 {
				n = c
			}
		}
		if n > 1<<16 {
			return
		}
		m := &ChunkMeta{Count: uint32(n), MinT: 1000}
		for _, c := range [][]byte{nil, cv} {
			l, err := decodeChunk(m, tv, c)
			if err != nil {
				continue
			}
			if l.Len() != int(n) || len(l.Levels) != l.Len() {
				t.Fatalf("%d lines decoded, %d levels; meta says %d", l.Len(), len(l.Levels), n)
			}
			if c != nil && (len(l.Msgs) != l.Len() || len(l.Attrs) != l.Len() || len(l.Seqs) != l.Len() || len(l.Traces) != l.Len() || len(l.Spans) != l.Len()) {
				t.Fatalf("text columns of the wrong length")
			}
		}
		// A load for a word (message blocks skipped by their filters).
		if l, err := decodeChunk(m, tv, nil); err == nil && l.decodeTextWord(cv, "request", zdec) == nil {
			if len(l.Msgs) != l.Len() || len(l.MsgStarts) != l.Len() || l.Skipped != nil && len(l.Skipped) != l.Len() {
				t.Fatalf("text columns of the wrong length")
			}
		}
	})
}

// FuzzDecodeMeta: corrupt metadata is an error, never a panic, and what
// decodes encodes back to something that decodes the same.
func FuzzDecodeMeta(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 30} {
		l := randLines(rng, n)
		l.Meta.Labels = model.Labels{Service: "api", Host: "web-1", BuildID: "b", DeployID: "d"}
		for _, lv := range l.Levels {
			l.Meta.Levels[lv]++
		}
		l.Meta.Notable = buildNotable(l)
		f.Add(encodeMeta(l.Meta))
	}
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, v []byte) {
		m, err := decodeMeta(7, 8, v)
		if err != nil {
			return
		}
		if m.Day != 7 || m.ID != 8 {
			t.Fatalf("day %d id %d", m.Day, m.ID)
		}
		n := 0
		m.eachNotable(func(model.Level, int64, int64) bool { n++; return true })
		m.HasNotable()
		_ = m.LastLine()
		again, err := decodeMeta(7, 8, encodeMeta(m))
		if err != nil {
			t.Fatalf("re-encoded metadata does not decode: %v", err)
		}
		if !bytes.Equal(encodeMeta(again), encodeMeta(m)) {
			t.Fatalf("metadata changes through a round trip: %+v then %+v", m, again)
		}
	})
}

// bareStore is a Store with its in-memory maps and a WAL in dir, enough to
// replay a WAL without Badger or Bleve.
func bareStore(t testing.TB, dir string) *Store {
	t.Helper()
	w, err := openWAL(dir, 1<<20, false, false)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.ChunkMaxLines = 8
	return &Store{
		opts: o, log: slog.New(slog.DiscardHandler), dir: dir, wal: w,
		heads: map[headKey]*head{}, sealing: map[uint64]*head{}, nextLine: map[headKey]uint32{},
		agents: map[string]*agentState{}, chunks: map[uint64]*ChunkMeta{}, days: map[uint32][]*ChunkMeta{},
		streams: map[uint64][]*ChunkMeta{}, unindexed: map[uint64]*ChunkMeta{}, streamInfo: map[uint64]*StreamInfo{},
		lastRecv: map[uint64]int64{}, runs: map[string][]model.Run{},
	}
}

func walFrame(payload []byte) []byte {
	out := make([]byte, walFrameHeader, walFrameHeader+len(payload))
	binary.BigEndian.PutUint32(out, uint32(len(payload)))
	binary.BigEndian.PutUint32(out[4:], crc32.Checksum(payload, crcTable))
	return append(out, payload...)
}

// walPayload encodes b as Append would, each record in the group of its
// labels and day, line numbers from 0.
func walPayload(b model.Batch) []byte {
	var groups []*group
	byKey := map[headKey]*group{}
	for i, r := range b.Records {
		k := headKey{StreamID(r.Labels), model.Day(r.Time)}
		g := byKey[k]
		if g == nil {
			g = &group{key: k, labels: r.Labels}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.recs = append(g.recs, i)
	}
	var agent []byte
	if b.AgentID != "" {
		agent = encodeAgent(nil, &AgentInfo{ID: b.AgentID, AckedSeq: uint64(len(b.Records)), Received: 3, Hosts: []HostKey{{"api", "web-1"}}})
	}
	return encodeWALBatch(b, agent, groups)[walFrameHeader:]
}

func walBatch(n int) model.Batch {
	t0 := time.Date(2026, 3, 1, 23, 59, 59, 0, time.UTC)
	b := model.Batch{AgentID: "agent-1"}
	for i := 0; i < n; i++ {
		r := model.Record{
			Time:    t0.Add(time.Duration(i) * 300 * time.Millisecond).UnixNano(),
			Labels:  model.Labels{Service: "api", Host: fmt.Sprintf("web-%d", i%2), BuildID: "b1", DeployID: "d1"},
			Level:   model.Level(i % int(model.NumLevels)),
			Message: fmt.Sprintf("line %d", i),
			Seq:     uint64(i + 1),
		}
		if i%3 == 0 {
			r.TraceID, r.SpanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			r.Attrs = []model.Attr{{Key: "k", Value: "v"}, {Key: "n", Value: fmt.Sprint(i)}}
		}
		b.Records = append(b.Records, r)
	}
	return b
}

// TestWALBatchRoundTrip: a replayed WAL frame gives back every line of the
// batch, with the line numbers it was written with.
func TestWALBatchRoundTrip(t *testing.T) {
	dir := t.TempDir()
	b := walBatch(20) // across midnight: two days, two hosts
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.wal", 1)), walFrame(walPayload(b)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := bareStore(t, dir)
	defer s.wal.close()
	toSeal, err := s.replayWAL()
	if err != nil {
		t.Fatal(err)
	}
	got := map[headKey][]model.Record{}
	var heads []*head
	for _, h := range s.heads {
		heads = append(heads, h)
	}
	heads = append(heads, toSeal...)
	for _, h := range heads {
		l := h.snapshot()
		for i := 0; i < l.Len(); i++ {
			got[headKey{l.Meta.Stream, l.Meta.Day}] = append(got[headKey{l.Meta.Stream, l.Meta.Day}], l.Record(i))
		}
	}
	want := map[headKey][]model.Record{}
	for _, r := range b.Records {
		k := headKey{StreamID(r.Labels), model.Day(r.Time)}
		r.ID = model.ID{Stream: k.stream, Day: k.day, Line: uint32(len(want[k]))}
		if r.Level == model.LevelUnset {
			r.Level = model.LevelInfo
		}
		want[k] = append(want[k], r)
	}
	if len(got) != len(want) {
		t.Fatalf("%d streams and days, want %d", len(got), len(want))
	}
	for k, ws := range want {
		gs := got[k]
		slices.SortFunc(gs, func(a, b model.Record) int { return a.ID.Compare(b.ID) })
		if len(gs) != len(ws) {
			t.Fatalf("%v: %d lines, want %d", k, len(gs), len(ws))
		}
		for i := range ws {
			g, w := gs[i], ws[i]
			if g.ID != w.ID || g.Time != w.Time || g.Labels != w.Labels || g.Level != w.Level || g.Message != w.Message ||
				g.TraceID != w.TraceID || g.SpanID != w.SpanID || g.Seq != w.Seq || !slices.Equal(g.Attrs, w.Attrs) {
				t.Fatalf("%v line %d: %+v, want %+v", k, i, g, w)
			}
		}
	}
	if ag := s.agents["agent-1"]; ag == nil || ag.AckedSeq != 20 {
		t.Fatalf("agent state %+v", ag)
	}
}

// FuzzWALReplay: a WAL segment holding a frame with any payload (a valid
// checksum over garbage) followed by any bytes replays or fails with an
// error, never a panic.
func FuzzWALReplay(f *testing.F) {
	for _, n := range []int{0, 1, 20} {
		f.Add(walPayload(walBatch(n)), []byte{})
	}
	p := walPayload(walBatch(3))
	f.Add(p, walFrame(p))
	f.Add(p, walFrame(p)[:10])
	f.Add([]byte{1}, []byte{0, 0, 0, 1, 0, 0, 0, 0, 9})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, payload, tail []byte) {
		// One directory for every run (of this fuzzing process): cheaper than
		// a new one each time.
		old, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		seg := append(walFrame(payload), tail...)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.wal", 1)), seg, 0o644); err != nil {
			t.Fatal(err)
		}
		s := bareStore(t, dir)
		defer s.wal.close()
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("replay panicked: %v\n%s", r, debug.Stack())
			}
		}()
		toSeal, err := s.replayWAL()
		if err != nil {
			return
		}
		for _, h := range toSeal {
			if h.meta.Count == 0 || int(h.meta.Count) != h.snapshot().Len() {
				t.Fatalf("head with %d lines, meta says %d", h.snapshot().Len(), h.meta.Count)
			}
		}
	})
}

// FuzzDecodeDayWords: a corrupt w value is an error, never a panic, and what
// decodes encodes back the same.
func FuzzDecodeDayWords(f *testing.F) {
	f.Add(encodeDayWords(nil))
	f.Add(encodeDayWords([]string{"caller", "completed", "status"}))
	f.Add([]byte{dayWordsVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{dayWordsVersion, 2, 1, 'a'})
	f.Fuzz(func(t *testing.T, v []byte) {
		set, err := decodeDayWords(v)
		if err != nil {
			return
		}
		words := make([]string, 0, len(set))
		for w := range set {
			words = append(words, w)
		}
		slices.Sort(words)
		again, err := decodeDayWords(encodeDayWords(words))
		if err != nil || len(again) != len(set) {
			t.Fatalf("re-encoded day words: %d words, %v; want %d", len(again), err, len(set))
		}
		for w := range set {
			if _, ok := again[w]; !ok {
				t.Fatalf("word %q lost in a round trip", w)
			}
		}
	})
}

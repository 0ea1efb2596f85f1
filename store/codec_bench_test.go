package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDecodeChunk decodes a 1,000-line chunk, times only and with its
// text (the read path of every query).
func BenchmarkDecodeChunk(b *testing.B) {
	l := randLines(rand.New(rand.NewPCG(5, 6)), 1000)
	tv, cv := encodeChunk(l)
	tv, cv = bytes.Clone(tv), bytes.Clone(cv)
	for _, text := range []bool{false, true} {
		b.Run(fmt.Sprintf("text=%v", text), func(b *testing.B) {
			b.ReportAllocs()
			c := cv
			if !text {
				c = nil
			}
			for b.Loop() {
				if _, err := decodeChunk(l.Meta, tv, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWALReplay replays a WAL segment of 20 batches of 1,000 records.
func BenchmarkWALReplay(b *testing.B) {
	src := b.TempDir()
	var seg []byte
	for _, bt := range benchBatches(20) {
		seg = append(seg, walFrame(walPayload(bt))...)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(seg)))
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(src, fmt.Sprint(b.N, rand.Int()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016x.wal", 1)), seg, 0o644); err != nil {
			b.Fatal(err)
		}
		s := bareStore(b, dir)
		s.opts = DefaultOptions()
		s.log = slog.New(slog.DiscardHandler)
		b.StartTimer()
		if _, err := s.replayWAL(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.wal.close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}

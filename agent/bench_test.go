package agent

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkShipLines measures the agent's cost per text line: splitting, level
// detection, batching, spooling and sending to an in-process fake server.
func BenchmarkShipLines(b *testing.B) {
	f := newFakeServer(b, "")
	o := DefaultOptions()
	o.Servers, o.Dir = []string{f.addr}, b.TempDir()
	sh, err := Open(o, nil)
	if err != nil {
		b.Fatal(err)
	}
	ho := DefaultHandlerOptions()
	ho.Multiline = false
	h := NewHandler(sh, ho, nil)
	sp := newSplitter(ho.MaxLineBytes, func(line []byte, tr bool, _ int64) { h.Line(line, tr, nil) })
	var chunk []byte
	for i := 0; i < 1000; i++ {
		chunk = fmt.Appendf(chunk, "2026-01-01T12:00:00.%03dZ INFO request %d handled in %dms path=/v1/users/%d status=200\n", i, i, i%97, i)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)) / 1000)
	for i := 0; i < b.N; i += 1000 {
		sp.Write(chunk)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sh.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/line")
}

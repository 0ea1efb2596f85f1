package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// benchBatches returns batches of 1000 records from 20 services x 10 hosts,
// with messages of about 150 bytes.
func benchBatches(n int) []model.Batch {
	rng := rand.New(rand.NewPCG(1, 1))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	methods := []string{"GET", "POST", "PUT", "DELETE"}
	paths := []string{"/api/v1/users", "/api/v1/orders", "/api/v1/items", "/healthz", "/api/v2/search"}
	out := make([]model.Batch, n)
	for bi := range out {
		recs := make([]model.Record, 1000)
		for i := range recs {
			svc, host := rng.IntN(20), rng.IntN(10)
			status := 200
			if rng.IntN(20) == 0 {
				status = 500
			}
			r := model.Record{
				Time: t0.Add(time.Duration(bi*1000+i) * time.Millisecond).UnixNano(),
				Labels: model.Labels{
					Service:  fmt.Sprintf("service-%02d", svc),
					Host:     fmt.Sprintf("service-%02d-host-%02d", svc, host),
					BuildID:  fmt.Sprintf("build-%06d", 1000+svc),
					DeployID: "deploy-0042",
				},
				Level: model.LevelInfo,
				Message: fmt.Sprintf("%s %s/%d?page=%d completed status=%d bytes=%d duration=%dms request_id=%016x user=u%05d client=10.%d.%d.%d proto=HTTP/1.1",
					methods[rng.IntN(4)], paths[rng.IntN(5)], rng.IntN(100000), rng.IntN(50), status, rng.IntN(1<<20), rng.IntN(2000), rng.Uint64(), rng.IntN(100000), rng.IntN(256), rng.IntN(256), rng.IntN(256)),
				Attrs: []model.Attr{{Key: "method", Value: methods[rng.IntN(4)]}, {Key: "status", Value: fmt.Sprint(status)}},
			}
			if status == 500 {
				r.Level = model.LevelError
			}
			if rng.IntN(4) == 0 {
				r.TraceID = fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
				r.SpanID = fmt.Sprintf("%016x", rng.Uint64())
			}
			recs[i] = r
		}
		out[bi] = model.Batch{Records: recs}
	}
	return out
}

// BenchmarkAppend is the in-process ingest rate: batches of 1000 lines
// appended one after another while chunks are sealed and indexed behind.
func BenchmarkAppend(b *testing.B) {
	batches := benchBatches(20)
	var size int
	for _, r := range batches[0].Records {
		size += len(r.Message)
	}
	for _, fsync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			o := DefaultOptions()
			o.Fsync = fsync
			s := testOpen(b, b.TempDir(), o)
			defer s.Close()
			ctx := context.Background()
			lines := 0
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				if _, err := s.Append(ctx, batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
				lines += len(batches[0].Records)
			}
			b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
			b.ReportMetric(float64(size)/float64(len(batches[0].Records)), "msg-bytes/line")
		})
	}
}

// BenchmarkChunkTokens is the seal-time work of cutting a chunk's messages
// and attributes into index terms (chunkTokens), per line.
func BenchmarkChunkTokens(b *testing.B) {
	recs := benchBatches(1)[0].Records
	l := &Lines{Meta: &ChunkMeta{Count: uint32(len(recs))}}
	for _, r := range recs {
		l.Msgs = append(l.Msgs, r.Message)
		l.Attrs = append(l.Attrs, r.Attrs)
		l.Traces = append(l.Traces, r.TraceID)
		l.Spans = append(l.Spans, r.SpanID)
	}
	b.ReportAllocs()
	for b.Loop() {
		chunkTokens(l)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/line")
}

// BenchmarkSealChunk is the CPU work of sealing a 1,024-line chunk (its
// index terms and document, notable lines, compressed columns), per line.
func BenchmarkSealChunk(b *testing.B) {
	recs := append(benchBatches(1)[0].Records, benchBatches(2)[1].Records[:24]...)
	l := &Lines{Meta: &ChunkMeta{Count: uint32(len(recs)), MinT: recs[0].Time}}
	for _, r := range recs {
		l.Times = append(l.Times, r.Time)
		l.Levels = append(l.Levels, r.Level)
		l.Msgs = append(l.Msgs, r.Message)
		l.Attrs = append(l.Attrs, r.Attrs)
		l.Traces = append(l.Traces, r.TraceID)
		l.Spans = append(l.Spans, r.SpanID)
		l.Seqs = append(l.Seqs, r.Seq)
		l.Meta.Levels[r.Level]++
	}
	b.ReportAllocs()
	for b.Loop() {
		buildNotable(l)
		toks := chunkTokens(l)
		buildDoc(l.Meta, toks, nil)
		encodeChunkVersion(l, toks, textVersion)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(recs)), "ns/line")
}

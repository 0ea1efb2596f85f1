//go:build unix

package store

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/shiplog/shiplog/model"
)

// jsonlChunks reads up to 700k lines of the JSON lines file
// $SHIPLOG_BENCH_JSONL (gen_logs.py's fields: time, service, host, level,
// build_id, deploy_id, message) and cuts them into the chunks sealing
// sees: 2,048 lines of one host, their messages back to back as a head's
// arena holds them. Without the variable the benchmark is skipped.
func jsonlChunks(tb testing.TB) []*Lines {
	path := os.Getenv("SHIPLOG_BENCH_JSONL")
	if path == "" {
		tb.Skip("SHIPLOG_BENCH_JSONL not set")
	}
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	byHost := map[string]*Lines{}
	var out []*Lines
	for n := 0; n < 700000 && sc.Scan(); n++ {
		var r struct {
			Time    time.Time
			Service string
			Host    string
			Level   string
			Build   string `json:"build_id"`
			Deploy  string `json:"deploy_id"`
			Message string
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			tb.Fatal(err)
		}
		l := byHost[r.Host]
		if l == nil {
			l = &Lines{Meta: &ChunkMeta{ID: uint64(len(out) + 1), MinT: r.Time.UnixNano(), Labels: model.Labels{Service: r.Service, Host: r.Host, BuildID: r.Build, DeployID: r.Deploy}}}
			byHost[r.Host] = l
		}
		lv := model.LevelInfo
		switch r.Level {
		case "error":
			lv = model.LevelError
		case "warn":
			lv = model.LevelWarn
		case "debug":
			lv = model.LevelDebug
		}
		t := r.Time.UnixNano()
		l.Times = append(l.Times, t)
		l.Meta.MaxT = t
		l.Levels = append(l.Levels, lv)
		l.Msgs = append(l.Msgs, r.Message)
		l.Traces = append(l.Traces, "")
		l.Spans = append(l.Spans, "")
		l.Attrs = append(l.Attrs, nil)
		l.Seqs = append(l.Seqs, 0)
		l.Meta.Levels[lv]++
		l.Meta.Count++
		if l.Len() == 2048 {
			var a headArena
			for i, m := range l.Msgs {
				l.Msgs[i] = a.str(m)
			}
			out = append(out, l)
			delete(byHost, r.Host)
		}
	}
	return out
}

// BenchmarkSealJSONL is sealing's CPU work (BenchmarkSealChunk's) on real
// lines, with the day's message dictionary and words made from them as a
// store makes them; cpu-ns/line counts the process's CPU time (GC too),
// steadier than ns/line on a shared machine:
//
//	SHIPLOG_BENCH_JSONL=/path/logs-2M.jsonl go test ./store -run '^$' -bench JSONL
func BenchmarkSealJSONL(b *testing.B) {
	chunks := jsonlChunks(b)
	dict, common := sealDictWords(b, chunks)
	b.Logf("%d chunks", len(chunks))
	benchSeal(b, chunks, dict, common)
}

// BenchmarkSealJSONLChunkLines is BenchmarkSealJSONL on the same lines cut
// into chunks of fewer lines, as most chunks are: a stream sends a few
// hundred lines a day (gen_logs.py's median stream-day: 882). Its cpu-ns/line
// at 2,048 / 1,024 / 512 lines make sealing's cost a line and a chunk (on
// the 2M set, one run: 1,106 / 1,192 / 1,334 ns, about 1.0 µs a line and
// 180 µs a chunk, the chunk's share mostly its distinct words).
func BenchmarkSealJSONLChunkLines(b *testing.B) {
	chunks := jsonlChunks(b)
	dict, common := sealDictWords(b, chunks)
	for _, n := range []int{2048, 1024, 512} {
		var cut []*Lines
		for _, l := range chunks {
			cut = append(cut, cutLines(l, n)...)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchSeal(b, cut, dict, common) })
	}
}

// sealDictWords returns the dictionary encoder and the common words a store
// makes from chunks' messages (as day 0's).
func sealDictWords(b *testing.B, chunks []*Lines) (*zstd.Encoder, *wordTable) {
	dicts, words := newMsgDicts(), newDayWords()
	var common *wordTable
	for _, l := range chunks {
		if raw := dicts.sample(0, l.Msgs); raw != nil {
			if err := dicts.add(0, raw); err != nil {
				b.Fatal(err)
			}
		}
		if w := words.count(0, l.Msgs); w != nil {
			words.add(0, w)
			common = words.tableOf(0)
		}
	}
	dict := dicts.encoder(0)
	if dict == nil || common == nil {
		b.Fatalf("no dict or words (%d chunks)", len(chunks))
	}
	return dict, common
}

// cutLines cuts l into chunks of n lines (the last holds the rest).
func cutLines(l *Lines, n int) []*Lines {
	var out []*Lines
	for i := 0; i < l.Len(); i += n {
		j := min(i+n, l.Len())
		m := *l.Meta
		m.Count, m.MinT, m.MaxT = uint32(j-i), l.Times[i], l.Times[j-1]
		m.Levels = [len(m.Levels)]uint32{}
		for _, lv := range l.Levels[i:j] {
			m.Levels[lv]++
		}
		out = append(out, &Lines{Meta: &m, Times: l.Times[i:j], Levels: l.Levels[i:j], Msgs: l.Msgs[i:j],
			Traces: l.Traces[i:j], Spans: l.Spans[i:j], Attrs: l.Attrs[i:j], Seqs: l.Seqs[i:j]})
	}
	return out
}

// benchSeal seals chunks round and round (BenchmarkSealJSONL).
func benchSeal(b *testing.B, chunks []*Lines, dict *zstd.Encoder, common *wordTable) {
	b.ReportAllocs()
	lines, bytes := 0, 0
	c0 := cpuNow()
	for i := 0; b.Loop(); i++ {
		l := chunks[i%len(chunks)]
		buildNotable(l)
		toks := chunkTokens(l)
		buildDoc(l.Meta, toks, common)
		tv, cv := encodeChunkDict(l, toks, textVersion, dict)
		lines += l.Len()
		bytes += len(tv) + len(cv) + len(toks.bloom.marshal())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(lines), "ns/line")
	b.ReportMetric(float64(bytes)/float64(lines), "B/line")
	b.ReportMetric(float64(cpuNow()-c0)/float64(lines), "cpu-ns/line")
}

// BenchmarkChunkTokensJSONL is chunkTokens on real lines (see
// BenchmarkSealJSONL).
func BenchmarkChunkTokensJSONL(b *testing.B) {
	chunks := jsonlChunks(b)
	lines := 0
	b.ReportAllocs()
	c0 := cpuNow()
	for i := 0; b.Loop(); i++ {
		l := chunks[i%len(chunks)]
		chunkTokens(l)
		lines += l.Len()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(lines), "ns/line")
	b.ReportMetric(float64(cpuNow()-c0)/float64(lines), "cpu-ns/line")
}

// cpuNow is the process's CPU time so far, in nanoseconds.
func cpuNow() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

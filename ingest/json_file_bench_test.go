package ingest

import (
	"bytes"
	"io"
	"os"
	"testing"
)

// BenchmarkJSONLReaderFile is BenchmarkJSONLReader on the first 64 MiB of
// the JSON lines file $SHIPLOG_BENCH_JSONL (gen_logs.py's, whose labels
// have hundreds of values, not the handful of benchJSONBatch's); skipped
// without the variable:
//
//	SHIPLOG_BENCH_JSONL=/path/logs-2M.jsonl go test ./ingest -run '^$' -bench File
func BenchmarkJSONLReaderFile(b *testing.B) {
	path := os.Getenv("SHIPLOG_BENCH_JSONL")
	if path == "" {
		b.Skip("SHIPLOG_BENCH_JSONL not set")
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 64<<20)
	n, err := io.ReadFull(f, data)
	f.Close()
	if err != nil && err != io.ErrUnexpectedEOF {
		b.Fatal(err)
	}
	data = data[:bytes.LastIndexByte(data[:n], '\n')+1]
	lines := 0
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		lines += readJSONL(b, data)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(lines), "ns/record")
}

// readJSONL reads every record of data with a JSONLReader and returns how
// many there were.
func readJSONL(b *testing.B, data []byte) int {
	jr := NewJSONLReader(bytes.NewReader(data), nil, 0)
	n := 0
	for {
		_, _, err := jr.Next()
		if err == io.EOF {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
}

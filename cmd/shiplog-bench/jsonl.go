package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// buildJSONL cuts the input file into bodies of about 1 MiB at line ends,
// dealt round-robin to conns clients, as Fluent Bit or Vector send them.
func buildJSONL(path string, conns int) (bodies [][][]byte, lines [][]int, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	bodies, lines = make([][][]byte, conns), make([][]int, conns)
	for c := 0; len(data) > 0; c = (c + 1) % conns {
		n := min(len(data), 1<<20)
		if i := bytes.LastIndexByte(data[:n], '\n'); i >= 0 && n < len(data) {
			n = i + 1
		}
		bodies[c] = append(bodies[c], data[:n])
		lines[c] = append(lines[c], bytes.Count(data[:n], []byte{'\n'}))
		data = data[n:]
	}
	return bodies, lines, nil
}

// ingestJSONL posts the bodies to /v1/logs:jsonl and checks each answer
// accepted every line.
func ingestJSONL(ctx context.Context, httpAddr string, bodies [][][]byte, lines [][]int, start func()) (time.Duration, error) {
	return postBodies(ctx, "http://"+httpAddr+"/v1/logs:jsonl", "application/x-ndjson", bodies, start, func(c, i int, rb []byte) error {
		var ans struct {
			Accepted int `json:"accepted"`
			Rejected int `json:"rejected"`
		}
		if err := json.Unmarshal(rb, &ans); err != nil {
			return err
		}
		if ans.Accepted != lines[c][i] || ans.Rejected != 0 {
			return fmt.Errorf("accepted %d and rejected %d of %d lines: %.300s", ans.Accepted, ans.Rejected, lines[c][i], rb)
		}
		return nil
	})
}

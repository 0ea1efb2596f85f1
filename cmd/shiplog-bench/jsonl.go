package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: len(bodies), MaxConnsPerHost: len(bodies), DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	u := "http://" + httpAddr + "/v1/logs:jsonl"
	errs := make([]error, len(bodies))
	var wg sync.WaitGroup
	start()
	t0 := time.Now()
	for c := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, body := range bodies[c] {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/x-ndjson")
				resp, err := hc.Do(req)
				if err != nil {
					errs[c] = fmt.Errorf("client %d body %d: %w", c, i, err)
					cancel()
					return
				}
				rb, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				var ans struct {
					Accepted int `json:"accepted"`
					Rejected int `json:"rejected"`
				}
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("HTTP %s: %.500s", resp.Status, rb)
				}
				if err == nil {
					err = json.Unmarshal(rb, &ans)
				}
				if err == nil && (ans.Accepted != lines[c][i] || ans.Rejected != 0) {
					err = fmt.Errorf("accepted %d and rejected %d of %d lines: %.300s", ans.Accepted, ans.Rejected, lines[c][i], rb)
				}
				if err != nil {
					errs[c] = fmt.Errorf("client %d body %d: %w", c, i, err)
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(t0), firstErr(errs)
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shiplog/shiplog/ingest"
)

// The scale runs (-live, -vl) stream the input file instead of holding it
// parsed in memory: 10M lines are 3 GB of JSON, and the bench shares the
// machine with the server it measures.

// scanInput reads the whole file once with the server's own JSONL decoder
// (untimed) and counts the stats floors' answers; it checks the line count
// against the expectation. The file is in the page cache afterwards.
func scanInput(path string, exp *expectation) (*statsWant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	jr := ingest.NewJSONLReader(f, nil, maxBenchLine)
	in := interner{}
	w := newStatsWant(exp.ABuild.BuildID)
	n := 0
	for {
		rec, line, err := jr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, line, err)
		}
		w.add(in.proto(&rec))
		n++
	}
	w.finish()
	if n != exp.N {
		return nil, fmt.Errorf("%s has %d lines but its .expect.json says n=%d", path, n, exp.N)
	}
	return w, nil
}

// bodySource cuts a file into bodies of about 1 MiB at line ends, handed out
// in file order to whichever client asks next (as a shipper's workers take
// them).
type bodySource struct {
	mu    sync.Mutex
	f     *os.File
	rest  []byte // read past the last body's final newline
	eof   bool
	lines int // handed out so far
}

const bodySize = 1 << 20

func newBodySource(path string) (*bodySource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &bodySource{f: f}, nil
}

func (s *bodySource) close() { s.f.Close() }

// next returns the next body and its line count; ok is false at the end.
func (s *bodySource) next() (body []byte, lines int, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := max(bodySize, len(s.rest))
	buf := make([]byte, 0, want)
	buf = append(buf, s.rest...)
	for {
		if !s.eof && len(buf) < want {
			buf = append(buf, make([]byte, want-len(buf))...)[:len(buf)]
			n, err := io.ReadFull(s.f, buf[len(buf):want])
			buf = buf[:len(buf)+n]
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				s.eof = true
			} else if err != nil {
				return nil, 0, false, err
			}
		}
		if len(buf) == 0 {
			return nil, 0, false, nil
		}
		cut := len(buf)
		if !s.eof {
			i := bytes.LastIndexByte(buf, '\n')
			if i < 0 { // a line longer than a body: read on
				if len(buf) > maxBenchLine {
					return nil, 0, false, fmt.Errorf("a line longer than %d bytes", maxBenchLine)
				}
				want += bodySize
				continue
			}
			cut = i + 1
		}
		s.rest = append(s.rest[:0], buf[cut:]...)
		body = buf[:cut]
		lines = bytes.Count(body, []byte{'\n'})
		if cut > 0 && body[cut-1] != '\n' {
			lines++
		}
		s.lines += lines
		return body, lines, true, nil
	}
}

// postStream POSTs the source's bodies from conns clients at once, one request
// at a time per client, checking every 2xx answer with check (which gets the
// body's line count). It returns the wall time from the first request to the
// last answer and the lines sent; start is called just before the first
// request.
func postStream(ctx context.Context, u, contentType string, conns int, src *bodySource, start func(), check func(lines int, answer []byte) error) (time.Duration, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	errs := make([]error, conns)
	var wg sync.WaitGroup
	start()
	t0 := time.Now()
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				body, lines, ok, err := src.next()
				if err == nil && ok {
					err = postOne(ctx, hc, u, contentType, body, lines, check)
				}
				if err != nil {
					errs[c] = fmt.Errorf("client %d body %d: %w", c, i, err)
					cancel()
					return
				}
				if !ok {
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(t0), src.lines, firstErr(errs)
}

func postOne(ctx context.Context, hc *http.Client, u, contentType string, body []byte, lines int, check func(int, []byte) error) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	rb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %s: %.500s", resp.Status, rb)
	}
	return check(lines, rb)
}

// procStatusKB reads one "Key:  N kB" line of /proc/PID/status, in bytes.
func procStatusKB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, key+":"); ok {
			if f := strings.Fields(rest); len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// diskSize is a data dir's size both ways: blocks in use (du -sB1: what the
// disk holds; a sparse preallocated file counts only its written part) and
// the files' apparent size (du -sb).
type diskSize struct {
	Blocks   int64 `json:"blocks_bytes"`
	Apparent int64 `json:"apparent_bytes"`
	// At is when it was measured, in seconds after ingest ended.
	At float64 `json:"seconds_after_ingest"`
}

func measureDisk(dir string, since time.Time) diskSize {
	d := diskSize{Blocks: duBlocks(dir), At: time.Since(since).Seconds()}
	if n, err := diskUsage(dir); err == nil {
		d.Apparent = n
	} else {
		d.Apparent = -1
	}
	return d
}

// Command shiplog-agent-bench measures `shiplog agent` shipping a gen_logs.py
// dataset from stdin to a real server: lines/s, agent CPU per line and agent
// peak RSS, and checks that every line arrived.
//
//	shiplog-agent-bench -bin bin/shiplog -input /tmp/shiplog-bench/logs-2M.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shiplog/shiplog/internal/harness"
)

func main() {
	bin := flag.String("bin", "bin/shiplog", "shiplog binary")
	input := flag.String("input", "", "JSONL from gen_logs.py --keys shiplog")
	flag.Parse()
	if err := run(*bin, *input); err != nil {
		fmt.Fprintln(os.Stderr, "shiplog-agent-bench:", err)
		os.Exit(1)
	}
}

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		_, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		n++
	}
}

func run(bin, input string) error {
	if input == "" {
		return fmt.Errorf("-input is required")
	}
	lines, err := countLines(input)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "shiplog-agent-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	srv, err := harness.Start(harness.Config{Bin: bin, Args: []string{"--data", filepath.Join(tmp, "data"), "--log-level", "warn"},
		LogPath: filepath.Join(tmp, "server.log")})
	if err != nil {
		return err
	}
	defer func() { _ = srv.Stop(time.Minute) }()
	if err := srv.WaitReady(15 * time.Second); err != nil {
		return err
	}
	grpcAddr := srv.GRPCAddr
	in, err := os.Open(input)
	if err != nil {
		return err
	}
	defer in.Close()
	ag := exec.Command(bin, "agent", "--server", grpcAddr, "--format", "json", "--spool", filepath.Join(tmp, "spool"), "--shutdown-timeout", "5m")
	ag.Stdin, ag.Stderr = in, os.Stderr
	t0 := time.Now()
	if err := ag.Run(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	wall := time.Since(t0)
	ru := ag.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	// Every line arrived: count them all.
	var h struct {
		Total int `json:"total"`
	}
	q := url.Values{"start": {"2000-01-01T00:00:00Z"}, "end": {time.Now().Add(48 * time.Hour).Format(time.RFC3339)}, "step": {"8760h"}}
	resp, err := http.Get(srv.HTTPBase + "/v1/logs:histogram?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return err
	}
	fmt.Printf("agent shipped %d lines from stdin in %.2fs: %.0f lines/s, agent CPU %.2f µs/line, agent peak RSS %d MiB; server holds %d lines\n",
		lines, wall.Seconds(), float64(lines)/wall.Seconds(), float64(cpu.Microseconds())/float64(lines), ru.Maxrss/1024, h.Total)
	if h.Total != lines {
		return fmt.Errorf("server holds %d lines, want %d", h.Total, lines)
	}
	return nil
}

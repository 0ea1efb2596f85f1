// Package harness starts `shiplog server` processes for end-to-end tests and
// the bench tools: on loopback ports the kernel picks (127.0.0.1:0), read back
// from the address block the server prints once it listens, so no port is
// picked, closed and reused by someone else in between.
package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config describes one server process.
type Config struct {
	Bin  string   // the shiplog binary
	Args []string // after "server"; --http and --grpc default to 127.0.0.1:0
	// LogPath receives the process's stdout and stderr (appended); empty
	// discards them.
	LogPath string
	// Env, when set, is the process's environment.
	Env []string
	// Client asks /readyz (TLS listeners need one with their roots); nil is
	// http.DefaultClient.
	Client *http.Client
}

// Proc is a running server.
type Proc struct {
	Cmd *exec.Cmd
	// HTTPAddr and GRPCAddr are HOST:PORT as the server reported them;
	// SyslogAddr and SyslogTLSAddr are set when it listens for syslog.
	HTTPAddr, GRPCAddr, SyslogAddr, SyslogTLSAddr string
	// HTTPBase is scheme://HTTPAddr.
	HTTPBase string

	cfg    Config
	done   chan struct{}
	err    error
	logf   *os.File
	copied sync.WaitGroup
}

// addrWait bounds how long a server may take to print its addresses: a
// cluster node first waits for a quorum of its peers.
const addrWait = 120 * time.Second

// Start runs the server and returns once it has printed where it listens
// (or exited). It does not wait for /readyz: see WaitReady.
func Start(cfg Config) (*Proc, error) {
	args := append([]string{"server"}, cfg.Args...)
	if !hasFlag(cfg.Args, "--http") {
		args = append(args, "--http", "127.0.0.1:0")
	}
	if !hasFlag(cfg.Args, "--grpc") {
		args = append(args, "--grpc", "127.0.0.1:0")
	}
	p := &Proc{cfg: cfg, done: make(chan struct{})}
	var logw io.Writer = io.Discard
	if cfg.LogPath != "" {
		f, err := os.OpenFile(cfg.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(f, "\n==== harness: %s %s\n", cfg.Bin, strings.Join(args, " "))
		p.logf, logw = f, f
	}
	p.Cmd = exec.Command(cfg.Bin, args...)
	p.Cmd.Env = cfg.Env
	p.Cmd.Stderr = logw
	out, err := p.Cmd.StdoutPipe()
	if err != nil {
		p.closeLog()
		return nil, err
	}
	if err := p.Cmd.Start(); err != nil {
		p.closeLog()
		return nil, fmt.Errorf("start %s: %w", cfg.Bin, err)
	}
	addrs := make(chan map[string]string, 1)
	p.copied.Add(1)
	go p.copyStdout(out, logw, addrs)
	go func() {
		p.copied.Wait() // Wait closes the pipe: read it to the end first
		p.err = p.Cmd.Wait()
		p.closeLog()
		close(p.done)
	}()
	select {
	case a := <-addrs:
		if err := p.setAddrs(a); err != nil {
			p.Kill()
			return nil, err
		}
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("server exited before listening: %v", p.err)
	case <-time.After(addrWait):
		p.Kill()
		return nil, fmt.Errorf("server printed no addresses within %s", addrWait)
	}
}

// copyStdout copies the process's stdout to w and sends the address block
// ("  gRPC:   ADDR" lines after "shiplog is serving") when it has passed.
func (p *Proc) copyStdout(r io.Reader, w io.Writer, addrs chan<- map[string]string) {
	defer p.copied.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var block map[string]string
	sent := false
	for sc.Scan() {
		line := sc.Text()
		_, _ = io.WriteString(w, line+"\n")
		switch {
		case sent:
		case line == "shiplog is serving":
			block = map[string]string{}
		case block != nil && strings.HasPrefix(line, "  "):
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
				block[k] = strings.TrimSpace(v)
			}
			if _, ok := block["data"]; ok { // the block's last fixed line
				addrs <- block
				sent = true
			}
		}
	}
	_, _ = io.Copy(w, r)
}

// setAddrs reads the addresses out of the printed block.
func (p *Proc) setAddrs(a map[string]string) error {
	web := a["web UI and HTTP API"]
	u, err := url.Parse(web)
	if err != nil || u.Host == "" {
		return fmt.Errorf("server printed no HTTP address (%q)", web)
	}
	p.HTTPAddr, p.HTTPBase = u.Host, strings.TrimSuffix(web, "/")
	if p.GRPCAddr = a["gRPC"]; p.GRPCAddr == "" {
		return errors.New("server printed no gRPC address")
	}
	p.SyslogAddr, p.SyslogTLSAddr = a["syslog (tcp, udp)"], a["syslog (tls)"]
	return nil
}

// Addrs are the addresses a server printed.
type Addrs struct {
	HTTP, HTTPBase, GRPC, Syslog, SyslogTLS string
}

// ParseServing reads the first complete address block in a server's output
// (for servers run in process, whose stdout is a buffer); ok is false until
// the block has been printed.
func ParseServing(out string) (a Addrs, ok bool) {
	ch := make(chan map[string]string, 1)
	p := &Proc{}
	p.copied.Add(1)
	p.copyStdout(strings.NewReader(out), io.Discard, ch)
	select {
	case block := <-ch:
		if p.setAddrs(block) != nil {
			return a, false
		}
		return Addrs{p.HTTPAddr, p.HTTPBase, p.GRPCAddr, p.SyslogAddr, p.SyslogTLSAddr}, true
	default:
		return a, false
	}
}

// WaitReady waits until /readyz answers 200, the process exits or d passes.
func (p *Proc) WaitReady(d time.Duration) error {
	hc := p.cfg.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", p.HTTPBase+"/readyz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("server exited before ready: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("server not ready after %s", d)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Restart starts the process again over the same data on the same ports
// (a client holding the old addresses reaches the new process).
func (p *Proc) Restart() (*Proc, error) {
	cfg := p.cfg
	cfg.Args = slices.Clone(cfg.Args)
	if !hasFlag(cfg.Args, "--http") {
		cfg.Args = append(cfg.Args, "--http", p.HTTPAddr)
	}
	if !hasFlag(cfg.Args, "--grpc") {
		cfg.Args = append(cfg.Args, "--grpc", p.GRPCAddr)
	}
	return Start(cfg)
}

// Done is closed when the process has exited; Err then says how.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error (nil for exit code 0), once Done is closed.
func (p *Proc) Err() error { <-p.done; return p.err }

// Kill sends SIGKILL and waits for the process to go.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to d; past d it kills the process and says so.
func (p *Proc) Stop(d time.Duration) error {
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		p.Kill()
		return fmt.Errorf("server ignored SIGTERM for %s, killed it", d)
	}
}

func (p *Proc) closeLog() {
	if p.logf != nil {
		_ = p.logf.Close()
	}
}

// hasFlag reports whether args sets flag (as "--f v" or "--f=v").
func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

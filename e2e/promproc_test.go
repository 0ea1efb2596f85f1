package e2e

import (
	"bufio"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// promProcess is a running Prometheus-family server (prometheus,
// prometheus-alertmanager) started on 127.0.0.1:0.
type promProcess struct {
	addr string // HOST:PORT it logged ("Listening on")
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
}

// logText is its log so far.
func (p *promProcess) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

var listeningRE = regexp.MustCompile(`msg="Listening on" address=(\S+)`)

// startPromProcess runs bin with args (which must listen on 127.0.0.1:0) and
// waits for the address it logs; the process is killed when the test ends.
func startPromProcess(tb testing.TB, bin string, args ...string) *promProcess {
	tb.Helper()
	p := &promProcess{cmd: exec.Command(bin, args...)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case p.addr = <-addrc:
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s did not start listening within 30s\n%s", bin, p.logText())
	}
	return p
}

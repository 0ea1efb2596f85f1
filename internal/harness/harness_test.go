package harness

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The block the server prints, read as the harness reads it, with the
// syslog lines it prints when asked to listen for syslog.
func TestCopyStdoutReadsTheBlock(t *testing.T) {
	out := "shiplog is serving\n  web UI and HTTP API: https://127.0.0.1:40001/\n  gRPC:                127.0.0.1:40002\n" +
		"  health:              https://127.0.0.1:40001/readyz\n  syslog (tcp, udp):   127.0.0.1:40003\n  syslog (tls):        127.0.0.1:40004\n" +
		"  data:                /tmp/x\nlater line\n"
	p := &Proc{}
	addrs := make(chan map[string]string, 1)
	var sb strings.Builder
	p.copied.Add(1)
	p.copyStdout(strings.NewReader(out), &sb, addrs)
	if sb.String() != out {
		t.Errorf("copied %q", sb.String())
	}
	if err := p.setAddrs(<-addrs); err != nil {
		t.Fatal(err)
	}
	if p.HTTPAddr != "127.0.0.1:40001" || p.HTTPBase != "https://127.0.0.1:40001" || p.GRPCAddr != "127.0.0.1:40002" ||
		p.SyslogAddr != "127.0.0.1:40003" || p.SyslogTLSAddr != "127.0.0.1:40004" {
		t.Errorf("addresses %+v", p)
	}
	if err := (&Proc{}).setAddrs(map[string]string{"gRPC": "x"}); err == nil {
		t.Error("a block without the HTTP address was taken")
	}
}

// The real binary on port 0: reported ports answer, a restart takes the same
// ones, SIGTERM ends it with exit 0.
func TestStartRestartStop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "shiplog")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/shiplog/shiplog/cmd/shiplog").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cfg := Config{Bin: bin, Args: []string{"--data", filepath.Join(dir, "data")}, LogPath: filepath.Join(dir, "log")}
	p, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{p.HTTPAddr, p.GRPCAddr} {
		if _, port, _ := net.SplitHostPort(a); port == "0" || port == "" {
			t.Fatalf("address %q", a)
		}
	}
	p.Kill()
	q, err := p.Restart()
	if err != nil {
		t.Fatal(err)
	}
	if q.HTTPAddr != p.HTTPAddr || q.GRPCAddr != p.GRPCAddr {
		t.Errorf("restart moved from %s/%s to %s/%s", p.HTTPAddr, p.GRPCAddr, q.HTTPAddr, q.GRPCAddr)
	}
	if err := q.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := q.Stop(time.Minute); err != nil {
		t.Errorf("stop: %v", err)
	}
}

package e2e

// Syslog (--syslog): util-linux logger over UDP and TCP, in RFC 5424 and RFC
// 3164, and a real rsyslogd forwarding over TCP with octet-counted RFC 5424
// frames (installed by `make deps` / scripts/deps.sh).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startSyslogServer(t *testing.T) (*server, string) {
	t.Helper()
	s := startServer(t, t.TempDir(), "--syslog", "127.0.0.1:0")
	return s, s.syslogAddr
}

func logger(t *testing.T, args ...string) {
	t.Helper()
	path, err := exec.LookPath("logger")
	if err != nil {
		t.Skip("logger (util-linux) is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, args...).CombinedOutput(); err != nil {
		t.Fatalf("logger %v: %v\n%s", args, err, out)
	}
}

func TestSyslogLogger(t *testing.T) {
	s, addr := startSyslogServer(t)
	host, port, _ := net.SplitHostPort(addr)
	hostname, _ := os.Hostname()
	for _, c := range []struct {
		name  string
		args  []string
		attrs map[string]string
	}{
		{"udp rfc5424", []string{"--udp", "--rfc5424", "--msgid", "M1", "--sd-id", "deploy@32473", "--sd-param", `id="deploy-0042"`},
			map[string]string{"msgid": "M1", "deploy@32473.id": "deploy-0042", "procid": "4242", "facility": "local0"}},
		{"udp rfc3164", []string{"--udp", "--rfc3164"}, map[string]string{"procid": "4242", "facility": "local0"}},
		{"tcp rfc5424 octet counting", []string{"--tcp", "--rfc5424", "--octet-count"}, map[string]string{"procid": "4242"}},
		{"tcp rfc5424", []string{"--tcp", "--rfc5424"}, map[string]string{"procid": "4242"}},
		{"tcp rfc3164", []string{"--tcp", "--rfc3164"}, map[string]string{"procid": "4242"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tag := "svc-" + strings.NewReplacer(" ", "-").Replace(c.name)
			args := append([]string{"--server", host, "--port", port, "--tag", tag, "--id=4242", "--priority", "local0.err"}, c.args...)
			logger(t, append(args, "disk full on /var/lib/"+tag)...)
			r := waitRecords(t, s, "service:"+tag, 1)[0]
			if r.Level != "error" || r.Message != "disk full on /var/lib/"+tag || r.Host == "" {
				t.Errorf("record: %+v", r)
			}
			if r.Host != hostname && !strings.HasPrefix(r.Host, hostname+".") {
				t.Errorf("host %q, want %q", r.Host, hostname)
			}
			for k, v := range c.attrs {
				if r.Attributes[k] != v {
					t.Errorf("attribute %s = %q, want %q (all: %v)", k, r.Attributes[k], v, r.Attributes)
				}
			}
		})
	}
}

func TestSyslogFramingAndMalformed(t *testing.T) {
	s, addr := startSyslogServer(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []string{
		`<11>1 2026-01-01T12:00:00Z web-1 frame-api - - [meta build="build-9"] counted one`,
		"<11>1 - web-1 frame-api - - - counted\nwith a newline inside",
	}
	var stream strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&stream, "%d %s", len(m), m)
	}
	stream.WriteString("<12>Jan  2 03:04:05 web-2 frame-api[7]: newline framed\n")
	stream.WriteString("this is not syslog\n")
	stream.WriteString("<999>1 - - - - - - bad priority\n")
	stream.WriteString("<14>1 - web-3 frame-api - - - after the bad ones\n")
	if _, err := io.WriteString(c, stream.String()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	recs := waitRecords(t, s, "service:frame-api", 4)
	got := map[string]fullRecord{}
	for _, r := range recs {
		got[r.Message] = r
	}
	if r, ok := got["counted one"]; !ok || r.Attributes["meta.build"] != "build-9" || !r.Time.Equal(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("counted one: %+v", r)
	}
	if _, ok := got["counted\nwith a newline inside"]; !ok {
		t.Errorf("a newline inside an octet-counted frame: %v", recs)
	}
	if r, ok := got["newline framed"]; !ok || r.Host != "web-2" || r.Level != "warn" || r.Attributes["procid"] != "7" {
		t.Errorf("newline framed: %+v", r)
	}
	// The malformed lines are counted, and the server goes on.
	resp, err := http.Get("http://" + s.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "shiplog_syslog_malformed_total 2") {
		t.Errorf("/metrics: want shiplog_syslog_malformed_total 2:\n%s", grepLines(string(body), "shiplog_syslog"))
	}
	if !strings.Contains(s.logText(), "malformed syslog message dropped") {
		t.Errorf("no log line about the malformed message")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// rsyslogd reads a local socket and forwards to shiplog over TCP, RFC 5424
// in octet-counted frames.
func TestSyslogRsyslog(t *testing.T) {
	rsyslogd := rsyslogdPath(t)
	s, addr := startSyslogServer(t)
	host, port, _ := net.SplitHostPort(addr)
	sock := startRsyslogd(t, rsyslogd, "", fmt.Sprintf(`target="%s" port="%s" protocol="tcp" TCP_Framing="octet-counted"`, host, port))
	logger(t, "--socket", sock, "--tag", "rsys-api", "--priority", "daemon.warning", "--id=77", "queue is backing up")
	logger(t, "--socket", sock, "--tag", "rsys-api", "--priority", "daemon.info", "second line")
	recs := waitRecords(t, s, "service:rsys-api", 2)
	hostname, _ := os.Hostname()
	r := recs[0]
	if r.Message != "queue is backing up" || r.Level != "warn" || r.Attributes["facility"] != "daemon" || r.Attributes["procid"] != "77" {
		t.Errorf("record: %+v", r)
	}
	if r.Host != hostname && !strings.HasPrefix(r.Host, hostname+".") {
		t.Errorf("host %q, want %q", r.Host, hostname)
	}
	if recs[1].Message != "second line" || recs[1].Level != "info" {
		t.Errorf("record: %+v", recs[1])
	}
}

func TestSyslogFlag(t *testing.T) {
	for _, c := range []struct {
		addr, want string
	}{
		{"nonsense", `--syslog "nonsense": want HOST:PORT`},
		{"0.0.0.0:0", "(--syslog) without --auth-file"},
	} {
		cmd := exec.Command(binary, "server", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--syslog", c.addr)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
			t.Errorf("--syslog %s: %v\n%s\nwant exit 2 and %q", c.addr, err, out, c.want)
		}
	}
}

// rsyslogdPath finds rsyslogd, or skips the test.
func rsyslogdPath(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("rsyslogd"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/rsyslogd", "/sbin/rsyslogd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("rsyslogd is not installed (make deps installs it)")
	return ""
}

// startRsyslogd runs rsyslogd reading a unix socket it creates, which it
// returns, and forwarding every message in RFC 5424 with the omfwd
// parameters fwd; global is added to its global() settings.
func startRsyslogd(t testing.TB, rsyslogd, global, fwd string) (sock string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "rsyslog") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock = filepath.Join(dir, "log.sock")
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`
global(workDirectory="%s" %s)
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="%s" CreatePath="on" RateLimit.Interval="0")
*.* action(type="omfwd" %s
           template="RSYSLOG_SyslogProtocol23Format" action.resumeRetryCount="-1" action.resumeInterval="1")
`, dir, global, sock, fwd)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(rsyslogd, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	out, err := os.Create(filepath.Join(dir, "rsyslogd.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		out.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("rsyslogd did not create %s:\n%s", sock, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

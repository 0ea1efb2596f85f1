package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSyslogTLS: the server with --syslog-tls (and --tls-client-ca) takes
// RFC 5425 syslog (octet-counted messages inside TLS) from a client with a
// certificate, and the messages are searchable; one without a certificate
// gets nothing in.
func TestSyslogTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	p := newPKI(t)
	s := startServerTLS(t, t.TempDir()+"/data", p.clientTLS(t, true), "--tls-cert", p.srvCert, "--tls-key", p.srvKey,
		"--tls-client-ca", p.caFile, "--syslog-tls", "127.0.0.1:0")
	addr := s.proc.SyslogTLSAddr
	if !strings.Contains(s.logText(), "syslog (tls):        "+addr) {
		t.Fatalf("banner does not show the TLS syslog address:\n%s", s.logText())
	}
	send := func(cfg *tls.Config, tag string, n int, refused bool) error {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := range n {
			msg := fmt.Sprintf("<11>1 %s web-9 payments 77 - - %s message %d", time.Now().UTC().Format(time.RFC3339Nano), tag, i)
			if _, err := fmt.Fprintf(c, "%d %s", len(msg), msg); err != nil {
				return err
			}
		}
		if !refused {
			return nil // the records found below tell it was served
		}
		// With TLS 1.3 a refused client certificate shows at the first read:
		// the server's alert, or its close. The deadline is reached only if
		// the server took the client.
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = c.Read(make([]byte, 1))
		if strings.Contains(fmt.Sprint(err), "timeout") {
			return nil
		}
		return err
	}
	if err := send(p.clientTLS(t, true), "tlsok", 20, false); err != nil {
		t.Fatal(err)
	}
	if err := send(p.clientTLS(t, false), "nocert", 5, true); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	search := func(q string) int {
		recs := tlsSearch(t, s, p, q)
		for _, r := range recs {
			if r["host"] != "web-9" || r["service"] != "payments" || r["level"] != "error" {
				t.Fatalf("record: %v", r)
			}
		}
		return len(recs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for search("tlsok") < 20 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := search("tlsok"); n != 20 {
		t.Fatalf("%d syslog-over-TLS messages found, want 20", n)
	}
	if n := search("nocert"); n != 0 {
		t.Fatalf("%d messages of a client without a certificate stored", n)
	}
}

// tlsSearch searches a server whose HTTP listener speaks TLS.
func tlsSearch(t *testing.T, s *server, p *pki, q string) []map[string]any {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS(t, true)}, Timeout: 10 * time.Second}
	resp, err := hc.Get("https://" + s.httpAddr + "/v1/logs:search?" + url.Values{"q": {q}, "limit": {"100"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Records []map[string]any `json:"records"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return r.Records
}

// TestSyslogRsyslogTLS: a real rsyslogd forwards over TLS (its gtls driver,
// package rsyslog-gnutls) with a client certificate, octet-counted RFC 5424,
// to --syslog-tls with --tls-client-ca.
func TestSyslogRsyslogTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	rsyslogd := rsyslogdPath(t)
	if m, _ := filepath.Glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"); len(m) == 0 {
		t.Skip("rsyslog's gtls driver is not installed (package rsyslog-gnutls; make deps installs it)")
	}
	p := newPKI(t)
	s := startServerTLS(t, t.TempDir()+"/data", p.clientTLS(t, true), "--tls-cert", p.srvCert, "--tls-key", p.srvKey,
		"--tls-client-ca", p.caFile, "--syslog-tls", "127.0.0.1:0")
	addr := s.proc.SyslogTLSAddr
	host, port, _ := net.SplitHostPort(addr)
	sock := startRsyslogd(t, rsyslogd,
		fmt.Sprintf(`DefaultNetstreamDriverCAFile="%s" DefaultNetstreamDriverCertFile="%s" DefaultNetstreamDriverKeyFile="%s"`, p.caFile, p.cliCert, p.cliKey),
		fmt.Sprintf(`target="%s" port="%s" protocol="tcp" TCP_Framing="octet-counted"
           StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/certvalid"`, host, port))
	logger(t, "--socket", sock, "--tag", "rsys-tls", "--priority", "daemon.err", "--id=78", "sent over tls")
	deadline := time.Now().Add(15 * time.Second)
	var recs []map[string]any
	for len(recs) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		recs = tlsSearch(t, s, p, "service:rsys-tls")
	}
	if len(recs) != 1 {
		b, _ := os.ReadFile(filepath.Join(filepath.Dir(sock), "rsyslogd.out"))
		t.Fatalf("%d records from rsyslog over TLS, want 1\nrsyslogd:\n%s\nserver:\n%s", len(recs), b, s.logText())
	}
	if r := recs[0]; r["message"] != "sent over tls" || r["level"] != "error" {
		t.Fatalf("record: %v", r)
	}
}

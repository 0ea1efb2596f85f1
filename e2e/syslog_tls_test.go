package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	addr := freePort(t)
	s := startServerTLS(t, t.TempDir()+"/data", p.clientTLS(t, true), "--tls-cert", p.srvCert, "--tls-key", p.srvKey,
		"--tls-client-ca", p.caFile, "--syslog-tls", addr)
	if !strings.Contains(s.logText(), "syslog (tls):        "+addr) {
		t.Fatalf("banner does not show the TLS syslog address:\n%s", s.logText())
	}
	send := func(cfg *tls.Config, tag string, n int) error {
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
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = c.Read(make([]byte, 1))
		if strings.Contains(fmt.Sprint(err), "timeout") {
			return nil
		}
		return err
	}
	if err := send(p.clientTLS(t, true), "tlsok", 20); err != nil {
		t.Fatal(err)
	}
	if err := send(p.clientTLS(t, false), "nocert", 5); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS(t, true)}, Timeout: 10 * time.Second}
	search := func(q string) int {
		resp, err := hc.Get("https://" + s.httpAddr + "/v1/logs:search?" + url.Values{"q": {q}, "limit": {"100"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var r searchResp
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		for _, rec := range r.Records {
			if rec.Host != "web-9" || rec.Service != "payments" || rec.Level != "error" {
				t.Fatalf("record: %+v", rec)
			}
		}
		return len(r.Records)
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

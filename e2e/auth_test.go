package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// pki is a throwaway CA with server and client certificates, as PEM files.
type pki struct {
	dir                        string
	ca                         *x509.Certificate
	caKey                      *ecdsa.PrivateKey
	caFile, srvCert, srvKey    string
	cliCert, cliKey            string
	serverSerial, clientSerial int64
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shiplog test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	p.srvCert, p.srvKey = filepath.Join(p.dir, "server.pem"), filepath.Join(p.dir, "server-key.pem")
	p.issue(t, 100, false, p.srvCert, p.srvKey)
	p.cliCert, p.cliKey = filepath.Join(p.dir, "client.pem"), filepath.Join(p.dir, "client-key.pem")
	p.issue(t, 200, true, p.cliCert, p.cliKey)
	return p
}

func (p *pki) issue(t testing.TB, serial int64, client bool, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "shiplog test"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, certPath, "CERTIFICATE", der)
	writePEM(t, keyPath, "EC PRIVATE KEY", kd)
}

func (p *pki) clientTLS(t testing.TB, withCert bool) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	if withCert {
		c, err := tls.LoadX509KeyPair(p.cliCert, p.cliKey)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

// newToken runs `shiplog token new` and returns the token and its auth-file entry.
func newToken(t testing.TB, name, scopes string) (string, string) {
	t.Helper()
	out, err := exec.Command(binary, "token", "new", "--name", name, "--scopes", scopes).Output()
	if err != nil {
		t.Fatal(err)
	}
	tok := regexp.MustCompile(`token: (\S+)`).FindStringSubmatch(string(out))[1]
	entry := string(out[strings.Index(string(out), "  - name:"):])
	return tok, entry
}

type tokenCreds struct{ tok string }

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if c.tok == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + c.tok}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return true }

func TestAuthAndTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	p := newPKI(t)
	ingestTok, e1 := newToken(t, "agent", "ingest")
	queryTok, e2 := newToken(t, "grafana", "query")
	adminTok, e3 := newToken(t, "ops", "admin")
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte("tokens:\n"+e1+e2+e3), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mutual := range []bool{false, true} {
		name := "tls"
		flags := []string{"--auth-file", authFile, "--tls-cert", p.srvCert, "--tls-key", p.srvKey}
		if mutual {
			name = "mutual tls"
			flags = append(flags, "--tls-client-ca", p.caFile)
		}
		t.Run(name, func(t *testing.T) {
			s := startServerTLS(t, t.TempDir()+"/data", p.clientTLS(t, true), flags...)
			tlsCfg := p.clientTLS(t, true)
			call := func(tok string) (ingestErr, queryErr error) {
				cc, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)), grpc.WithPerRPCCredentials(tokenCreds{tok}))
				if err != nil {
					t.Fatal(err)
				}
				defer cc.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, ingestErr = shiplogv1.NewIngestServiceClient(cc).Write(ctx, &shiplogv1.PushRequest{Records: []*shiplogv1.Record{{Message: "hello " + tok[:min(8, len(tok))]}}})
				_, queryErr = shiplogv1.NewQueryServiceClient(cc).Search(ctx, &shiplogv1.SearchRequest{Q: "hello"})
				return
			}
			cases := []struct {
				tok          string
				ingest, qury codes.Code
			}{
				{ingestTok, codes.OK, codes.PermissionDenied},
				{queryTok, codes.PermissionDenied, codes.OK},
				{adminTok, codes.OK, codes.OK},
				{"", codes.Unauthenticated, codes.Unauthenticated},
				{"shp_wrong", codes.Unauthenticated, codes.Unauthenticated},
			}
			for _, c := range cases {
				ie, qe := call(c.tok)
				if status.Code(ie) != c.ingest || status.Code(qe) != c.qury {
					t.Fatalf("grpc token %.8q: ingest %v, query %v; want %v, %v", c.tok, ie, qe, c.ingest, c.qury)
				}
			}
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS(t, true)}, Timeout: 10 * time.Second}
			do := func(method, path, tok, body string) int {
				req, _ := http.NewRequest(method, "https://"+s.httpAddr+path, strings.NewReader(body))
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			write := `{"records":[{"message":"over http"}]}`
			for _, c := range []struct {
				method, path, tok, body string
				want                    int
			}{
				{"POST", "/v1/logs:write", ingestTok, write, 200},
				{"POST", "/v1/logs:write", queryTok, write, 403},
				{"POST", "/v1/logs:write", "", write, 401},
				{"GET", "/v1/logs:search?q=http", queryTok, "", 200},
				{"GET", "/v1/logs:search?q=http", ingestTok, "", 403},
				{"GET", "/v1/hosts", "", "", 401},
				{"GET", "/healthz", "", "", 200},
				{"GET", "/readyz", "", "", 200},
				{"GET", "/debug/pprof/", queryTok, "", 403},
				{"GET", "/debug/pprof/", adminTok, "", 200},
			} {
				if got := do(c.method, c.path, c.tok, c.body); got != c.want {
					t.Fatalf("%s %s with %.8q: %d, want %d", c.method, c.path, c.tok, got, c.want)
				}
			}
			// Plain HTTP to a TLS listener does not get through.
			if resp, err := http.Get("http://" + s.httpAddr + "/healthz"); err == nil && resp.StatusCode == 200 {
				t.Fatal("plain HTTP served by a TLS listener")
			}
			if mutual {
				// Without a client certificate the handshake fails.
				noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS(t, false)}, Timeout: 5 * time.Second}
				if resp, err := noCert.Get("https://" + s.httpAddr + "/healthz"); err == nil {
					resp.Body.Close()
					t.Fatal("mutual TLS let a client without a certificate in")
				}
			}
			// SIGHUP reloads the certificate: new connections see the new one.
			p.issue(t, 101, false, p.srvCert, p.srvKey)
			if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				conn, err := tls.Dial("tcp", s.httpAddr, p.clientTLS(t, true))
				if err == nil {
					serial := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
					conn.Close()
					if serial == 101 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatal("certificate not reloaded on SIGHUP")
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	t.Run("refuses a public address without auth", func(t *testing.T) {
		cmd := exec.Command(binary, "server", "--data", t.TempDir(), "--http", "0.0.0.0:0", "--grpc", "127.0.0.1:0")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "--auth-file") {
			t.Fatalf("exit %v, stderr %q", err, stderr.String())
		}
	})
}

// startServerTLS is startServer for a server whose HTTP listener speaks TLS.
func startServerTLS(t testing.TB, dir string, cfg *tls.Config, extra ...string) *server {
	t.Helper()
	s := &server{t: t, dir: dir, extraFlags: extra, tls: cfg}
	s.start()
	t.Cleanup(func() { s.kill() })
	return s
}

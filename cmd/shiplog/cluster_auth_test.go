package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeRouteCert writes a self-signed CA and a certificate it signs for
// 127.0.0.1, with the key in a file of mode keyMode; it returns the paths.
func writeRouteCert(t *testing.T, dir string, keyMode os.FileMode) (certFile, keyFile, caFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile, caFile = filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"), filepath.Join(dir, "ca.pem")
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{{certFile, "CERTIFICATE", der, 0o644}, {keyFile, "EC PRIVATE KEY", kd, keyMode}, {caFile, "CERTIFICATE", caDER, 0o644}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, f.mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	return certFile, keyFile, caFile
}

func writeSecret(t *testing.T, dir, name, secret string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(secret), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestClusterPortNeedsAuth: a --cluster-listen beyond loopback is refused
// (a usage error, before anything listens) without --cluster-secret-file or
// --cluster-tls-*, unless --insecure; the secret file and TLS key must be
// private, the secret long enough, the TLS flags complete.
func TestClusterPortNeedsAuth(t *testing.T) {
	clearShiplogEnv(t)
	dir := t.TempDir()
	good := writeSecret(t, dir, "secret", "  0123456789abcdef0123456789abcdef\n", 0o600)
	open := writeSecret(t, dir, "open", "0123456789abcdef0123456789abcdef", 0o644)
	groupOnly := writeSecret(t, dir, "group", "0123456789abcdef0123456789abcdef", 0o640)
	short := writeSecret(t, dir, "short", "abc\n", 0o600)
	cert, key, ca := writeRouteCert(t, dir, 0o600)
	_, openKey, _ := writeRouteCert(t, t.TempDir(), 0o644)
	wide := "0.0.0.0:" + strings.Split(freeAddr(t), ":")[1]
	cl := func(listen string, more ...string) []string {
		return append([]string{"--node", "n1", "--cluster-listen", listen, "--cluster-peers", "10.0.0.2:7072"}, more...)
	}

	for _, c := range []struct {
		args []string
		want string // in the error
	}{
		{cl(wide), "refusing --cluster-listen"},
		{cl(":7072"), "refusing --cluster-listen"},
		{cl("192.0.2.1:7072"), "refusing --cluster-listen"},
		{cl(wide, "--cluster-secret-file", open), "chmod 600"},
		{cl(wide, "--cluster-secret-file", groupOnly), "chmod 600"},
		{cl(wide, "--cluster-secret-file", short), "at least 16"},
		{cl(wide, "--cluster-secret-file", filepath.Join(dir, "missing")), "--cluster-secret-file"},
		{cl(wide, "--cluster-secret-file", dir), "not a regular file"},
		{cl(wide, "--cluster-tls-cert", cert), "go together"},
		{cl(wide, "--cluster-tls-cert", cert, "--cluster-tls-key", key), "go together"},
		{cl(wide, "--cluster-tls-cert", cert, "--cluster-tls-key", openKey, "--cluster-tls-ca", ca), "chmod 600"},
		{cl(wide, "--cluster-tls-cert", cert, "--cluster-tls-key", key, "--cluster-tls-ca", cert+"x"), "--cluster-tls-ca"},
		{cl(wide, "--cluster-tls-cert", ca, "--cluster-tls-key", key, "--cluster-tls-ca", ca), "--cluster-tls-cert"},
		{[]string{"--cluster-secret-file", good}, "need cluster mode"},
	} {
		full := append([]string{"server", "--data", t.TempDir(), "--http", freeAddr(t), "--grpc", freeAddr(t)}, c.args...)
		err := Run(context.Background(), full, io.Discard, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want a usage error saying %q", c.args, err, c.want)
		}
	}

	// What is accepted, and what it configures.
	parse := func(args ...string) *clusterFlags {
		fs := flag.NewFlagSet("server", flag.ContinueOnError)
		cf := addClusterFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return cf
	}
	if cfg, err := parse(cl(wide, "--cluster-secret-file", good)...).config(false); err != nil || cfg.Secret != "0123456789abcdef0123456789abcdef" || cfg.RouteTLS != nil {
		t.Errorf("with a secret: %+v %v, want the secret without its white space", cfg, err)
	}
	if cfg, err := parse(cl(wide, "--cluster-tls-cert", cert, "--cluster-tls-key", key, "--cluster-tls-ca", ca)...).config(false); err != nil ||
		cfg.RouteTLS == nil || cfg.RouteTLS.ClientAuth != tls.RequireAndVerifyClientCert || cfg.RouteTLS.ClientCAs == nil ||
		cfg.RouteTLS.RootCAs == nil || len(cfg.RouteTLS.Certificates) != 1 || cfg.Secret != "" {
		t.Errorf("with TLS: %+v %v, want mutual TLS", cfg, err)
	}
	if cfg, err := parse(cl(wide)...).config(true); err != nil || cfg.Secret != "" {
		t.Errorf("--insecure: %v, want it accepted", err)
	}
	if _, err := parse(cl("127.0.0.1:7072")...).config(false); err != nil {
		t.Errorf("loopback without a secret: %v, want it accepted", err)
	}
	if _, err := parse(cl("localhost:7072")...).config(false); err != nil {
		t.Errorf("localhost without a secret: %v, want it accepted", err)
	}
}

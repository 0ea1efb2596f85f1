package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/shiplog/shiplog/ingest"
)

// selfSigned returns a certificate for 127.0.0.1, signed by itself.
func selfSigned(t *testing.T, client bool) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, cert
}

// Syslog over TLS (RFC 5425): octet-counted messages inside TLS are stored;
// with a client CA, a client without a certificate gets nothing in.
func TestSyslogTLS(t *testing.T) {
	srvCert, srvX := selfSigned(t, false)
	cliCert, cliX := selfSigned(t, true)
	roots := x509.NewCertPool()
	roots.AddCert(srvX)
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(cliX)
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("mutual=%v", mutual), func(t *testing.T) {
			cfg := &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
			if mutual {
				cfg.ClientCAs, cfg.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
			}
			sink := &syslogSink{}
			in := ingest.New(sink, ingest.DefaultOptions(), nil, nil)
			sl, err := ListenSyslog(in, SyslogOptions{TLSAddr: "127.0.0.1:0", TLS: cfg, BatchSize: 10, Linger: 10 * time.Millisecond}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if sl.Addr() != "" {
				t.Fatalf("plain listener at %s without Addr", sl.Addr())
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sl.Serve(ctx) }()
			defer func() { cancel(); <-done }()

			send := func(withCert bool, n int) error {
				ccfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
				if withCert {
					ccfg.Certificates = []tls.Certificate{cliCert}
				}
				c, err := tls.Dial("tcp", sl.TLSAddr(), ccfg)
				if err != nil {
					return err
				}
				defer c.Close()
				for i := range n {
					msg := fmt.Sprintf("<14>1 2026-01-01T00:00:00Z web-1 api - - - over tls %d", i)
					if _, err := fmt.Fprintf(c, "%d %s", len(msg), msg); err != nil {
						return err
					}
				}
				if withCert {
					return nil // the records stored tell it was served
				}
				// With TLS 1.3 a refused client certificate shows at the first
				// read: the server's alert, or its close.
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, err = c.Read(make([]byte, 1))
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return nil
				}
				return err
			}
			if err := send(true, 25); err != nil {
				t.Fatal(err)
			}
			eventually(t, "25 records stored", func() bool { return sink.count() >= 25 })
			if n := sink.count(); n != 25 {
				t.Fatalf("%d records stored, want 25", n)
			}
			if r := sink.recs[24]; r.Host != "web-1" || r.Service != "api" || r.Message != "over tls 24" {
				t.Fatalf("record: %+v", r)
			}
			if mutual {
				if err := send(false, 5); err == nil {
					t.Fatal("a client without a certificate was served")
				}
				// The server has refused it; a record wrongly queued would be
				// stored within the 10ms linger: give it that window.
				time.Sleep(100 * time.Millisecond)
				if n := sink.count(); n != 25 {
					t.Fatalf("%d records after a client without a certificate, want 25", n)
				}
			}
			// Plain TCP on the TLS port stores nothing.
			c, err := net.Dial("tcp", sl.TLSAddr())
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "<14>1 - web-1 api - - - plain\n")
			select {
			case <-closedBy(c): // the server read it and failed the handshake
			case <-time.After(30 * time.Second):
				t.Fatal("the server did not close a plain TCP connection on the TLS port")
			}
			c.Close()
			// A record wrongly queued would be stored within the 10ms linger:
			// give it that window.
			time.Sleep(100 * time.Millisecond)
			if n := sink.count(); n != 25 {
				t.Fatalf("%d records after plain TCP on the TLS port, want 25", n)
			}
		})
	}
}

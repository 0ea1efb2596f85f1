package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
)

// CertReloader serves a certificate that Reload re-reads from disk (on SIGHUP),
// so certificates can be rotated without a restart.
type CertReloader struct {
	certPath, keyPath string
	mu                sync.RWMutex
	cert              *tls.Certificate
}

// NewCertReloader loads the certificate and key.
func NewCertReloader(certPath, keyPath string) (*CertReloader, error) {
	c := &CertReloader{certPath: certPath, keyPath: keyPath}
	if err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload re-reads the files; on error the previous certificate stays in use.
func (c *CertReloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		return fmt.Errorf("tls: load %s and %s: %w", c.certPath, c.keyPath, err)
	}
	c.mu.Lock()
	c.cert = &cert
	c.mu.Unlock()
	return nil
}

func (c *CertReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, nil
}

// ServerTLSConfig builds the listeners' TLS configuration; with clientCA set,
// clients must present a certificate signed by it (mutual TLS).
func ServerTLSConfig(c *CertReloader, clientCA string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.getCertificate, NextProtos: []string{"h2", "http/1.1"}}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: client CA %s holds no PEM certificate", clientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

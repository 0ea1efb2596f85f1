package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// connFlags are how a client reaches a server: token and TLS.
type connFlags struct {
	token     *string
	tokenFile *string
	tlsCA     *string
}

func addConnFlags(fs *flag.FlagSet) *connFlags {
	return &connFlags{
		token:     fs.String("token", "", "bearer token for a server with --auth-file"),
		tokenFile: fs.String("token-file", "", "file holding the bearer token"),
		tlsCA:     fs.String("tls-ca", "", "connect with TLS, trusting this CA (PEM); use the system roots with --tls-ca system"),
	}
}

// bearerToken returns the token from --token or --token-file.
func (c *connFlags) bearerToken() (string, error) {
	if *c.token != "" && *c.tokenFile != "" {
		return "", usagef("--token and --token-file exclude each other")
	}
	if *c.tokenFile != "" {
		warn, err := checkSecretFile(*c.tokenFile, "token-file")
		if err != nil {
			return "", err
		}
		if warn != "" {
			fmt.Fprintln(os.Stderr, "shiplog: warning:", warn)
		}
		b, err := os.ReadFile(*c.tokenFile)
		if err != nil {
			return "", usagef("--token-file: %v", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return *c.token, nil
}

// TLSConfig is the client TLS configuration, nil without --tls-ca.
func (c *connFlags) TLSConfig() (*tls.Config, error) {
	if *c.tlsCA == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if *c.tlsCA != "system" {
		pem, err := os.ReadFile(*c.tlsCA)
		if err != nil {
			return nil, usagef("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--tls-ca %s holds no PEM certificate", *c.tlsCA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

func (c *connFlags) dialOptions() ([]grpc.DialOption, error) {
	tok, err := c.bearerToken()
	if err != nil {
		return nil, err
	}
	cfg, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	var opts []grpc.DialOption
	if cfg != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if tok != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerCreds{tok}))
	}
	return opts, nil
}

// bearerCreds sends "authorization: Bearer <token>" with every call.
type bearerCreds struct{ token string }

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerCreds) RequireTransportSecurity() bool { return false }

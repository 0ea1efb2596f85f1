package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/shiplog/shiplog/cluster"
)

// clusterFlags are the server's cluster-mode flags (SCALE-OUT.md).
type clusterFlags struct {
	node       *string
	listen     *string
	peers      *string
	partitions *int
	maxStore   byteSize
	maxMemory  byteSize
	leaseTTL   *time.Duration
	readWait   *time.Duration
	secretFile *string
	tlsCert    *string
	tlsKey     *string
	tlsCA      *string
}

func addClusterFlags(fs *flag.FlagSet) *clusterFlags {
	c := &clusterFlags{
		node:       fs.String("node", "", "cluster mode: this node's name, unique in the cluster (with --cluster-listen)"),
		listen:     fs.String("cluster-listen", "", "cluster mode: HOST:PORT where the other nodes reach this one"),
		peers:      fs.String("cluster-peers", "", "cluster mode: the other nodes' --cluster-listen addresses, comma-separated"),
		partitions: fs.Int("cluster-partitions", 16, "cluster mode: partitions of the replicated log; fixed when the cluster is created"),
		leaseTTL:   fs.Duration("cluster-lease-ttl", 10*time.Second, "cluster mode: a dead node's partitions move after this long; renewed every fifth of it"),
		readWait:   fs.Duration("cluster-read-wait", 2*time.Second, "cluster mode: a query waits up to this long for partition owners to store every batch acked before it started; an owner still behind is reported missing (partial)"),
		secretFile: fs.String("cluster-secret-file", "", "cluster mode: file holding the secret every node presents to join (at least 16 characters, mode 0600)"),
		tlsCert:    fs.String("cluster-tls-cert", "", "cluster mode: this node's certificate (PEM) for TLS between nodes; with --cluster-tls-key and --cluster-tls-ca"),
		tlsKey:     fs.String("cluster-tls-key", "", "cluster mode: the private key (PEM, mode 0600) of --cluster-tls-cert"),
		tlsCA:      fs.String("cluster-tls-ca", "", "cluster mode: the CA (PEM) that signs every node's certificate; peers without one are refused"),
		maxStore:   64 << 30,
		maxMemory:  256 << 20,
	}
	fs.Var(&c.maxStore, "cluster-max-store", "cluster mode: disk the replicated log (JetStream) may use on this node")
	fs.Var(&c.maxMemory, "cluster-max-memory", "cluster mode: memory JetStream may use on this node")
	return c
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// config validates the flags; nil means a single node (no cluster flags).
// insecure (--insecure) allows a non-loopback --cluster-listen with neither
// a secret nor TLS.
func (c *clusterFlags) config(insecure bool) (*cluster.Config, error) {
	if *c.node == "" && *c.listen == "" && *c.peers == "" {
		if *c.secretFile != "" || *c.tlsCert != "" || *c.tlsKey != "" || *c.tlsCA != "" {
			return nil, usagef("server: --cluster-secret-file and --cluster-tls-* need cluster mode (--node and --cluster-listen)")
		}
		return nil, nil
	}
	if *c.node == "" || *c.listen == "" {
		return nil, usagef("server: cluster mode needs both --node and --cluster-listen")
	}
	if !nodeName.MatchString(*c.node) {
		return nil, usagef("server: --node %q: want 1-64 letters, digits, '-' or '_'", *c.node)
	}
	if _, _, err := net.SplitHostPort(*c.listen); err != nil {
		return nil, usagef("server: --cluster-listen %q: want HOST:PORT", *c.listen)
	}
	var peers []string
	if *c.peers != "" {
		for _, p := range strings.Split(*c.peers, ",") {
			p = strings.TrimSpace(p)
			if _, _, err := net.SplitHostPort(p); err != nil {
				return nil, usagef("server: --cluster-peers: %q: want HOST:PORT", p)
			}
			if p != *c.listen {
				peers = append(peers, p)
			}
		}
	}
	if *c.partitions < 1 || *c.partitions > 1024 {
		return nil, usagef("server: --cluster-partitions %d: want 1 to 1024", *c.partitions)
	}
	if *c.leaseTTL < time.Second || *c.leaseTTL > 5*time.Minute {
		return nil, usagef("server: --cluster-lease-ttl %s: want 1s to 5m", *c.leaseTTL)
	}
	if *c.readWait < 10*time.Millisecond || *c.readWait > time.Minute {
		return nil, usagef("server: --cluster-read-wait %s: want 10ms to 1m", *c.readWait)
	}
	if c.maxStore < 64<<20 || c.maxMemory < 16<<20 {
		return nil, usagef("server: --cluster-max-store must be at least 64MiB and --cluster-max-memory at least 16MiB")
	}
	cfg := &cluster.Config{Node: *c.node, Listen: *c.listen, Peers: peers, Partitions: *c.partitions,
		MaxStore: int64(c.maxStore), MaxMemory: int64(c.maxMemory), LeaseTTL: *c.leaseTTL, ReadWait: *c.readWait}
	if *c.secretFile != "" {
		secret, err := readClusterSecret(*c.secretFile)
		if err != nil {
			return nil, err
		}
		cfg.Secret = secret
	}
	if *c.tlsCert != "" || *c.tlsKey != "" || *c.tlsCA != "" {
		tc, err := clusterTLS(*c.tlsCert, *c.tlsKey, *c.tlsCA)
		if err != nil {
			return nil, err
		}
		cfg.RouteTLS = tc
	}
	if cfg.Secret == "" && cfg.RouteTLS == nil && !insecure && !loopback(cfg.Listen) {
		return nil, usagef("server: refusing --cluster-listen %s without --cluster-secret-file or --cluster-tls-cert/--cluster-tls-key/--cluster-tls-ca: "+
			"anyone who can reach it could join the cluster, read every stored batch and write forged ones; add a secret (or mutual TLS), or --insecure if the network is trusted", cfg.Listen)
	}
	return cfg, nil
}

// minClusterSecret is the shortest cluster secret accepted, in bytes.
const minClusterSecret = 16

// readClusterSecret reads the cluster secret: the file's content without
// surrounding white space, from a file only its owner may read.
func readClusterSecret(path string) (string, error) {
	if err := checkPrivateFile("--cluster-secret-file", path); err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("server: --cluster-secret-file: %v", err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < minClusterSecret {
		return "", usagef("server: --cluster-secret-file %s: the secret is %d bytes, want at least %d (e.g. `openssl rand -hex 32 > %s`)",
			path, len(secret), minClusterSecret, path)
	}
	return secret, nil
}

// clusterTLS builds the routes' TLS configuration: the node's certificate,
// offered both as a server (to peers that connect) and as a client (to the
// peers it connects to), and the CA every peer's certificate must chain to,
// both ways.
func clusterTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, usagef("server: --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together")
	}
	if err := checkPrivateFile("--cluster-tls-key", keyFile); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, usagef("server: --cluster-tls-cert/--cluster-tls-key: %v", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, usagef("server: --cluster-tls-ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, usagef("server: --cluster-tls-ca %s holds no PEM certificate", caFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}, nil
}

// warnInsecureCluster logs, at start, a cluster port open to the network
// with no authentication (allowed by --insecure).
func warnInsecureCluster(cfg *cluster.Config, log *slog.Logger) {
	if cfg != nil && cfg.Secret == "" && cfg.RouteTLS == nil && !loopback(cfg.Listen) {
		log.Warn("cluster: --cluster-listen is not on loopback and routes are not authenticated (--insecure): anyone who reaches it can join the cluster, read every stored batch and write forged ones",
			"cluster_listen", cfg.Listen)
	}
}

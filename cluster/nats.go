package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names in JetStream. Streams and buckets are created by whichever node comes
// first; the others find them.
const (
	clusterName   = "shiplog"
	logsSubject   = "shiplog.logs." // + partition
	tailSubject   = "shiplog.tail"
	interestSubj  = "shiplog.tailinterest"
	rpcSubject    = "shiplog.rpc." // + node name
	metaBucket    = "shiplog-cluster"
	leaseBucket   = "shiplog-leases"
	nodesBucket   = "shiplog-nodes"
	alertsBucket  = "shiplog-alerts"
	alertsHistory = "SHIPLOG_ALERT_HISTORY"
	historySubj   = "shiplog.alerts.history"
	maxPayload    = 8 << 20
)

func streamName(p int) string { return "LOGS_" + strconv.Itoa(p) }

// natsLogger sends nats-server's log to slog, quietly; a fatal message also
// goes to fatal, for startNATS to report.
type natsLogger struct {
	log   *slog.Logger
	fatal chan string
}

func (l natsLogger) Noticef(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.Contains(msg, "Slow Consumer") {
		l.log.Warn("nats: " + msg)
		return
	}
	l.log.Debug("nats: " + msg)
}
func (l natsLogger) Warnf(f string, v ...any) { l.log.Warn("nats: " + fmt.Sprintf(f, v...)) }
func (l natsLogger) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	l.log.Error("nats: " + msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
func (l natsLogger) Errorf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.Contains(msg, "trying to connect to route") {
		// Once a second per dead peer: /v1/cluster shows who is missing.
		l.log.Debug("nats: " + msg)
		return
	}
	if strings.Contains(msg, " - rid:") && strings.Contains(msg, "authentication error") {
		l.log.Warn("cluster: refused a route without the cluster's secret (an outsider, or a node with another --cluster-secret-file)", "nats", msg)
		return
	}
	l.log.Warn("nats: " + msg)
}
func (l natsLogger) Debugf(f string, v ...any) {}
func (l natsLogger) Tracef(f string, v ...any) {}

// routeUser is the user name routes present with the cluster secret.
const routeUser = "shiplog"

// routePassword is the route password derived from the cluster secret: hex,
// so that any secret is safe in a URL and never taken for one of the
// bcrypt hashes ("$2a$...") nats-server accepts as passwords.
func routePassword(secret string) string {
	h := sha256.Sum256([]byte("shiplog cluster route\x00" + secret))
	return hex.EncodeToString(h[:])
}

func randomToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// startNATS starts the embedded NATS server with JetStream and connects to it
// in process.
func startNATS(cfg *Config) (*natsserver.Server, *nats.Conn, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster listen %q: bad port", cfg.Listen)
	}
	// Each route URL carries the secret: nats-server sends a URL's user
	// and password in the route's CONNECT (and those of ClusterOpts on the
	// routes it learns from its peers).
	var routes []*url.URL
	for _, p := range cfg.Peers {
		u := &url.URL{Scheme: "nats", Host: p}
		if cfg.Secret != "" {
			u.User = url.UserPassword(routeUser, routePassword(cfg.Secret))
		}
		routes = append(routes, u)
	}
	opts := &natsserver.Options{
		ServerName: cfg.Node,
		// Routing only starts once a client listener is up (nats-server
		// 2.15 starts routes after its client accept loop, which
		// DontListen skips), so there is one: loopback only, a random
		// port, a random 192-bit token nobody outside this process knows.
		// The node itself connects in process.
		Host:          "127.0.0.1",
		Port:          natsserver.RANDOM_PORT,
		Authorization: randomToken(),
		// The node's own connection carries every partition's replay.
		MaxPending:         512 << 20,
		NoSigs:             true,
		MaxPayload:         maxPayload,
		JetStream:          true,
		StoreDir:           filepath.Join(cfg.Dir, "jetstream"),
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamMaxStore:  cfg.MaxStore,
	}
	if len(routes) > 0 {
		// With no peer, JetStream runs standalone (one replica): nats-server
		// refuses a cluster of one.
		opts.Cluster = natsserver.ClusterOpts{Name: clusterName, Host: host, Port: port}
		opts.Routes = routes
		if cfg.Secret != "" {
			// An incoming route whose CONNECT lacks these is closed with
			// "Authorization Violation" before it sees or sends anything.
			opts.Cluster.Username, opts.Cluster.Password = routeUser, routePassword(cfg.Secret)
		}
		if cfg.RouteTLS != nil {
			// TLS before anything else, both ways; a peer without a
			// certificate signed by the CA fails the handshake.
			opts.Cluster.TLSConfig = cfg.RouteTLS.Clone()
			opts.Cluster.TLSTimeout = 5
		}
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: start NATS: %w", err)
	}
	fatal := make(chan string, 1)
	ns.SetLoggerV2(natsLogger{log: cfg.Log, fatal: fatal}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		select {
		case msg := <-fatal:
			return nil, nil, fmt.Errorf("cluster: NATS did not start: %s", msg)
		default:
		}
		return nil, nil, fmt.Errorf("cluster: NATS did not start on %s within 30s", cfg.Listen)
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name(cfg.Node), nats.Token(opts.Authorization),
		nats.MaxReconnects(-1), nats.ReconnectBufSize(64<<20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				cfg.Log.Warn("cluster: connection to the embedded NATS lost", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { cfg.Log.Info("cluster: reconnected to the embedded NATS") }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			cfg.Log.Warn("cluster: NATS client error", "err", err)
		}))
	if err != nil {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("cluster: connect to embedded NATS: %w", err)
	}
	return ns, nc, nil
}

// waitJetStream waits until JetStream answers (the cluster has a meta leader:
// a quorum of the peers is up).
func waitJetStream(ctx context.Context, js jetstream.JetStream, log *slog.Logger) error {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Since(last) > 5*time.Second {
			log.Info("cluster: waiting for JetStream (a quorum of peers)", "err", err)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: JetStream not available: %w (are a majority of --cluster-peers up?)", err)
		case <-t.C:
		}
	}
}

// retry calls fn until it succeeds or ctx ends: creating streams right after
// the meta leader is elected can fail for a moment.
func retry(ctx context.Context, what string, fn func(context.Context) error) error {
	var err error
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = fn(cctx)
		cancel()
		var fe *fixedError
		if err == nil || errors.As(err, &fe) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s: %w", what, err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// setup creates (or finds) the streams and buckets and checks the partition
// count the cluster was created with.
func (n *Node) setup(ctx context.Context) error {
	js, cfg := n.js, &n.cfg
	r := cfg.Replicas
	kvOf := func(kc jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		var kv jetstream.KeyValue
		err := retry(ctx, "bucket "+kc.Bucket, func(c context.Context) error {
			var err error
			kv, err = js.CreateKeyValue(c, kc)
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(c, kc.Bucket)
			}
			return err
		})
		return kv, err
	}
	meta, err := kvOf(jetstream.KeyValueConfig{Bucket: metaBucket, Replicas: r, Storage: jetstream.FileStorage})
	if err != nil {
		return err
	}
	want := strconv.Itoa(cfg.Partitions)
	err = retry(ctx, "partition count", func(c context.Context) error {
		if _, err := meta.Create(c, "partitions", []byte(want)); err == nil || !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		e, err := meta.Get(c, "partitions")
		if err != nil {
			return err
		}
		if got := string(e.Value()); got != want {
			return &fixedError{fmt.Errorf("cluster: it was created with %s partitions; --cluster-partitions %s differs (the count is fixed at creation)", got, want)}
		}
		return nil
	})
	var fe *fixedError
	if errors.As(err, &fe) {
		return fe.err
	}
	if err != nil {
		return err
	}
	if n.leases, err = kvOf(jetstream.KeyValueConfig{Bucket: leaseBucket, Replicas: r, TTL: cfg.LeaseTTL, Storage: jetstream.FileStorage}); err != nil {
		return err
	}
	if n.nodes, err = kvOf(jetstream.KeyValueConfig{Bucket: nodesBucket, Replicas: r, TTL: cfg.LeaseTTL, Storage: jetstream.FileStorage}); err != nil {
		return err
	}
	if n.alertKV, err = kvOf(jetstream.KeyValueConfig{Bucket: alertsBucket, Replicas: r, Storage: jetstream.FileStorage}); err != nil {
		return err
	}
	for p := 0; p < cfg.Partitions; p++ {
		sc := jetstream.StreamConfig{
			Name: streamName(p), Subjects: []string{logsSubject + strconv.Itoa(p)},
			Storage: jetstream.FileStorage, Replicas: r, Retention: jetstream.LimitsPolicy,
			Discard: jetstream.DiscardOld, MaxAge: cfg.StreamMaxAge, MaxMsgSize: maxPayload,
			Duplicates: 2 * time.Minute,
		}
		if err := retry(ctx, "stream "+sc.Name, func(c context.Context) error {
			_, err := js.CreateStream(c, sc)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				_, err = js.Stream(c, sc.Name)
			}
			return err
		}); err != nil {
			return err
		}
	}
	return retry(ctx, "stream "+alertsHistory, func(c context.Context) error {
		_, err := js.CreateStream(c, jetstream.StreamConfig{Name: alertsHistory, Subjects: []string{historySubj},
			Storage: jetstream.FileStorage, Replicas: r, MaxMsgs: 100000, Discard: jetstream.DiscardOld})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			_, err = js.Stream(c, alertsHistory)
		}
		return err
	})
}

// fixedError is an error retrying cannot cure.
type fixedError struct{ err error }

func (e *fixedError) Error() string { return e.err.Error() }

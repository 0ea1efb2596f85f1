// Package cluster runs shiplog as several nodes over NATS JetStream (see
// ../shared/SCALE-OUT.md and docs/cluster.md). Ingest publishes each batch to
// one of P replicated streams; each partition has one owner, chosen by a lease
// in a JetStream KV bucket, that consumes the stream into a local store of its
// own; queries fan out to the owners and merge. Without cluster flags none of
// this runs: the server keeps its single store.
package cluster

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// Hub is where a node hands stored records for its live tails.
type Hub interface {
	Publish(recs []model.Record)
	Subscribers() int
}

// Config describes one node.
type Config struct {
	Node       string   // unique name in the cluster
	Listen     string   // HOST:PORT for the other nodes (NATS routes)
	Peers      []string // the other nodes' Listen addresses
	Partitions int      // fixed at cluster creation
	Dir        string   // this node's cluster directory (JetStream, partition stores)
	MaxMemory  int64    // JetStream memory limit
	MaxStore   int64    // JetStream disk limit
	Replicas   int      // stream replicas (default min(3, nodes))
	LeaseTTL   time.Duration
	// StreamMaxAge bounds how long the streams keep batches (0: forever). The
	// streams are what a new owner replays, so keep it at least --retention.
	StreamMaxAge   time.Duration
	PublishTimeout time.Duration // an ack later than this answers Unavailable
	StartTimeout   time.Duration // for a quorum of peers to appear
	// ReadWait bounds how long a query waits for the owners to store every
	// batch acked before it started (default 2s); an owner still behind
	// then is reported missing and the answer says partial.
	ReadWait   time.Duration
	Store      store.Options // for the partition stores
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Hub        Hub
	// OnAlertLease, when set, makes this node compete for the alert lease and
	// is called when it gains (true) or loses (false) it.
	OnAlertLease func(held bool)
	// Secret, when set, authenticates routes: a peer must present it (as
	// the route password) to join, and this node presents it to its peers.
	Secret string
	// RouteTLS, when set, makes routes speak TLS with it both ways: it holds
	// this node's certificate, the CA to verify peers against (RootCAs and
	// ClientCAs) and ClientAuth RequireAndVerifyClientCert.
	RouteTLS *tls.Config

	// beforeApply, when set (tests), is called by a partition's consumer
	// before it stores each batch; blocking in it holds the consumer back.
	beforeApply func(ctx context.Context, partition int)
}

func (c *Config) defaults() error {
	if c.Node == "" {
		return errors.New("cluster: --node is required")
	}
	if c.Partitions <= 0 || c.Partitions > 1024 {
		return fmt.Errorf("cluster: --cluster-partitions %d: want 1 to 1024", c.Partitions)
	}
	if c.Replicas <= 0 {
		c.Replicas = min(3, 1+len(c.Peers))
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 2 * time.Minute
	}
	if c.ReadWait <= 0 {
		c.ReadWait = 2 * time.Second
	}
	if c.MaxMemory <= 0 {
		c.MaxMemory = 256 << 20
	}
	if c.MaxStore <= 0 {
		c.MaxStore = 64 << 30
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Node is one shiplog node of a cluster.
type Node struct {
	cfg     Config
	log     *slog.Logger
	ns      *natsserver.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	leases  jetstream.KeyValue
	nodes   jetstream.KeyValue
	alertKV jetstream.KeyValue

	parts  []*partition
	owners atomic.Pointer[[]string] // partition -> owner node ("" none), from the last tick
	peers  atomic.Pointer[map[string]nodeStatus]

	alertRev   atomic.Uint64 // revision of our alert lease; 0: not held
	alertRenew time.Time     // last renewal of it (tick goroutine only)
	interest   atomic.Int64  // Unix ns of the last tail interest seen
	started    time.Time
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	subs       []*nats.Subscription
	ins        *instruments
	gate       *streamGate // --max-streams-per-day, checked before publishing
	closeOnce  sync.Once
}

// partition is this node's view of one partition.
type partition struct {
	id int

	mu     sync.Mutex // guards st, cancel, done, rev
	st     *store.Store
	cancel context.CancelFunc
	done   chan struct{}
	rev    uint64    // our lease revision; 0: not ours
	renew  time.Time // last successful create or renewal of the lease

	owned   atomic.Bool
	ready   atomic.Bool   // caught up with the stream as it was when claimed
	applied atomic.Uint64 // last stream sequence stored locally
	last    atomic.Uint64 // stream's last sequence, as last seen
	wm      *os.File      // the applied watermark, 8 bytes

	moved   chan struct{} // closed when applied, ready or owned changes; guarded by movedMu
	movedMu sync.Mutex
}

// changed wakes the queries waiting for p to catch up (see caughtUp).
func (p *partition) changed() {
	p.movedMu.Lock()
	if p.moved != nil {
		close(p.moved)
		p.moved = nil
	}
	p.movedMu.Unlock()
}

// caughtUp waits until p, owned, has stored every batch up to stream
// sequence target, or until deadline or ctx ends; it reports whether p got
// there. A partition this node does not own fails at once, and so does one
// still replaying after it was taken (not ready) and short of target: it is
// more than a moment behind, and waiting would only slow every answer down
// while it replays.
func (p *partition) caughtUp(ctx context.Context, target uint64, deadline time.Time) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		p.movedMu.Lock()
		if p.moved == nil {
			p.moved = make(chan struct{})
		}
		moved := p.moved
		p.movedMu.Unlock()
		// Read after taking the channel: a change from here on closes it.
		if !p.owned.Load() {
			return false
		}
		if p.applied.Load() >= target {
			return true
		}
		d := time.Until(deadline)
		if d <= 0 || !p.ready.Load() {
			return false
		}
		if timer == nil {
			timer = time.NewTimer(d)
		}
		select {
		case <-moved:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// nodeStatus is what each node writes to the nodes bucket every tick.
type nodeStatus struct {
	Node       string       `json:"node"`
	Started    time.Time    `json:"started"`
	Seen       time.Time    `json:"seen"`
	Partitions []partStatus `json:"partitions"`
	Alerts     bool         `json:"alerts"`
	Tails      int          `json:"tails"`
}

type partStatus struct {
	Owner     string `json:"-"`
	Partition int    `json:"partition"`
	Applied   uint64 `json:"applied"`
	Ready     bool   `json:"ready"`
}

// Start starts the embedded NATS server, joins the peers, creates the streams
// and buckets when missing and begins claiming partitions.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "partitions"), 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	ns, nc, err := startNATS(&cfg)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Log.With("node", cfg.Node), ns: ns, nc: nc, started: time.Now()}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if n.js, err = jetstream.New(nc); err != nil {
		n.Close()
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	if err := waitJetStream(sctx, n.js, n.log); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.setup(sctx); err != nil {
		n.Close()
		return nil, err
	}
	n.parts = make([]*partition, cfg.Partitions)
	for i := range n.parts {
		p := &partition{id: i}
		if err := n.openWatermark(p); err != nil {
			n.Close()
			return nil, err
		}
		n.parts[i] = p
	}
	empty := make([]string, cfg.Partitions)
	n.owners.Store(&empty)
	n.gate = newStreamGate(cfg.Store.MaxStreamsPerDay, n.log)
	n.ins = newInstruments(n, cfg.Registerer)
	if err := n.subscribe(); err != nil {
		n.Close()
		return nil, err
	}
	n.tick()
	n.wg.Add(1)
	go n.loop()
	n.log.Info("cluster: joined", "partitions", cfg.Partitions, "replicas", cfg.Replicas, "peers", cfg.Peers)
	return n, nil
}

// Close releases every lease (so survivors take over at once), stops the
// consumers, closes the partition stores and the NATS server.
func (n *Node) Close() error {
	var first error
	n.closeOnce.Do(func() {
		n.cancel()
		n.wg.Wait()
		for _, p := range n.parts {
			if p == nil {
				continue
			}
			n.release(p, true)
			p.mu.Lock()
			if p.st != nil {
				if err := p.st.Close(); err != nil && first == nil {
					first = err
				}
				p.st = nil
			}
			p.mu.Unlock()
			if p.wm != nil {
				_ = p.wm.Close()
			}
		}
		if rev := n.alertRev.Swap(0); rev != 0 && n.leases != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.leases.Delete(ctx, "alerts", jetstream.LastRevision(rev))
			cancel()
		}
		if n.nodes != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.nodes.Delete(ctx, n.cfg.Node)
			cancel()
		}
		for _, s := range n.subs {
			_ = s.Unsubscribe()
		}
		if n.nc != nil {
			_ = n.nc.Drain()
			n.nc.Close()
		}
		if n.ns != nil {
			n.ns.Shutdown()
			n.ns.WaitForShutdown()
		}
	})
	return first
}

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.Node }

// Partitions is the partition count.
func (n *Node) Partitions() int { return n.cfg.Partitions }

// PartitionOf is the partition of a batch: the hash of its agent id, or, for
// batches without one, of its first record's service and host (so one host's
// unnumbered lines stay together).
func PartitionOf(b *model.Batch, parts int) int {
	key := b.AgentID
	if key == "" && len(b.Records) > 0 {
		key = "\x00" + b.Records[0].Service + "\x00" + b.Records[0].Host
	}
	return int(xxhash.Sum64String(key) % uint64(parts))
}

func (n *Node) openWatermark(p *partition) error {
	dir := n.partDir(p.id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "applied"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	var b [8]byte
	if k, _ := f.ReadAt(b[:], 0); k == 8 {
		p.applied.Store(binary.BigEndian.Uint64(b[:]))
	}
	p.wm = f
	return nil
}

func (n *Node) partDir(p int) string {
	return filepath.Join(n.cfg.Dir, "partitions", fmt.Sprintf("%04d", p))
}

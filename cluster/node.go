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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
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

// loop renews leases, claims and releases partitions and writes this node's
// status, several times per lease TTL.
func (n *Node) loop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.LeaseTTL / 5)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.tick()
		}
	}
}

func leaseKey(p int) string { return "p." + strconv.Itoa(p) }

// tick is one round of lease keeping. Partition leases are renewed by an
// Update on their last revision (the revision is the fencing epoch: a node
// that lost its lease cannot renew it); an expired lease disappears with the
// bucket's TTL and any node may Create it.
func (n *Node) tick() {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LeaseTTL/2)
	defer cancel()
	peers := n.readPeers(ctx)
	owners, mine := n.renewLeases(ctx)
	v := shareView{self: n.cfg.Node, owners: owners, mine: mine, applied: make([]uint64, len(n.parts))}
	for name := range peers {
		v.peers = append(v.peers, name)
	}
	for _, p := range n.parts {
		v.applied[p.id] = p.applied.Load()
	}
	if time.Since(n.started) < n.cfg.LeaseTTL {
		// Just started: the configured peers are probably starting too;
		// take only a share, not everything, to save a round of handovers.
		v.minLive = 1 + len(n.cfg.Peers)
	}
	plan := rebalance(v)
	for _, id := range plan.claim {
		if mine >= plan.target {
			break
		}
		if n.claim(ctx, n.parts[id]) {
			owners[id] = n.cfg.Node
			mine++
		}
	}
	for _, id := range plan.release {
		if p := n.parts[id]; p.owned.Load() {
			n.log.Info("cluster: handing partition over", "partition", p.id)
			n.release(p, true)
			owners[id] = ""
		}
	}
	n.tickAlerts(ctx)
	n.owners.Store(&owners)
	st := n.status()
	st.Seen = time.Now()
	if b, err := json.Marshal(st); err == nil {
		if _, err := n.nodes.Put(ctx, n.cfg.Node, b); err != nil {
			n.log.Debug("cluster: heartbeat", "err", err)
		}
	}
	peers[n.cfg.Node] = st
	n.peers.Store(&peers)
}

// readPeers reads the heartbeats. When the bucket cannot be read (its leader
// is being elected), the last known peers stand: an empty answer would make
// this node think it is alone and claim everything.
func (n *Node) readPeers(ctx context.Context) map[string]nodeStatus {
	peers := map[string]nodeStatus{}
	keys, err := n.nodes.ListKeys(ctx)
	if err != nil {
		if last := n.peers.Load(); last != nil {
			maps.Copy(peers, *last)
		}
		return peers
	}
	for k := range keys.Keys() {
		e, err := n.nodes.Get(ctx, k)
		if err != nil {
			continue
		}
		var st nodeStatus
		if json.Unmarshal(e.Value(), &st) == nil {
			peers[k] = st
		}
	}
	return peers
}

// renewLeases reads every partition's lease holder ("" free, "?" unreadable)
// and renews this node's leases, giving up the ones lost or expired; mine is
// how many it still holds.
func (n *Node) renewLeases(ctx context.Context) (owners []string, mine int) {
	owners = make([]string, len(n.parts))
	for _, p := range n.parts {
		e, err := n.leases.Get(ctx, leaseKey(p.id))
		switch {
		case err == nil:
			owners[p.id] = string(e.Value())
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			n.log.Debug("cluster: lease read", "partition", p.id, "err", err)
			owners[p.id] = "?"
		}
		p.mu.Lock()
		rev := p.rev
		p.mu.Unlock()
		switch {
		case rev == 0: // not ours
		case n.renew(ctx, p, rev, owners[p.id]):
			owners[p.id] = n.cfg.Node
			mine++
		case owners[p.id] == n.cfg.Node:
			owners[p.id] = "" // lost this round
		}
	}
	return owners, mine
}

// renew renews p's lease (held at rev) and reports whether this node still
// holds it.
func (n *Node) renew(ctx context.Context, p *partition, rev uint64, owner string) bool {
	uctx, ucancel := context.WithTimeout(ctx, n.cfg.LeaseTTL/5)
	nrev, err := n.leases.Update(uctx, leaseKey(p.id), []byte(n.cfg.Node), rev)
	ucancel()
	if err == nil {
		p.mu.Lock()
		p.rev, p.renew = nrev, time.Now()
		p.mu.Unlock()
		return true
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// Expired, or another node holds it now: stop at once.
		n.log.Warn("cluster: lost lease", "partition", p.id, "owner", owner)
		n.release(p, false)
		return false
	}
	// Cannot reach the bucket: keep serving until the lease would expire.
	n.log.Warn("cluster: lease renewal failed", "partition", p.id, "err", err)
	// The bucket expires the key TTL after the last renewal; this round may
	// notice up to a round late, so stop two rounds early rather than
	// overlap with the next owner.
	p.mu.Lock()
	expired := time.Since(p.renew) > n.cfg.LeaseTTL-2*n.cfg.LeaseTTL/5
	p.mu.Unlock()
	if expired {
		n.log.Warn("cluster: lease expired unrenewed; stopping", "partition", p.id)
		n.release(p, false)
		return false
	}
	return true
}

// claim takes the free partition p's lease and starts owning it.
func (n *Node) claim(ctx context.Context, p *partition) bool {
	rev, err := n.leases.Create(ctx, leaseKey(p.id), []byte(n.cfg.Node))
	if err != nil {
		return false // someone was faster
	}
	if err := n.own(p, rev); err != nil {
		n.log.Error("cluster: cannot take partition", "partition", p.id, "err", err)
		_ = n.leases.Delete(ctx, leaseKey(p.id), jetstream.LastRevision(rev))
		return false
	}
	return true
}

func (n *Node) status() nodeStatus {
	st := nodeStatus{Node: n.cfg.Node, Started: n.started, Alerts: n.alertRev.Load() != 0}
	if n.cfg.Hub != nil {
		st.Tails = n.cfg.Hub.Subscribers()
	}
	for _, p := range n.parts {
		if p.owned.Load() {
			st.Partitions = append(st.Partitions, partStatus{Partition: p.id, Applied: p.applied.Load(), Ready: p.ready.Load()})
		}
	}
	return st
}

// own opens partition p's store and starts consuming its stream from the
// local watermark.
func (n *Node) own(p *partition, rev uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil {
		so := n.cfg.Store
		so.StreamSeed = uint64(p.id) + 1
		// The owner applies batches the replicated log has acked already: it
		// must refuse none, or the partition would stall on it.
		so.MaxStreamsPerDay, so.MaxSeqJump = 0, 0
		so.BadgerMemTable, so.BadgerCache = 8<<20, 16<<20
		st, err := store.Open(n.partDir(p.id), so, n.log.With("partition", p.id), nil)
		if err != nil {
			return err
		}
		p.st = st
	}
	p.rev, p.renew = rev, time.Now()
	p.ready.Store(false)
	p.owned.Store(true)
	ctx, cancel := context.WithCancel(n.ctx)
	p.cancel, p.done = cancel, make(chan struct{})
	go n.consume(ctx, p, p.st, p.done)
	n.log.Info("cluster: took partition", "partition", p.id, "from_seq", p.applied.Load()+1)
	return nil
}

// release stops consuming p; with deleteLease it also gives the lease up so
// another node can take it at once. The partition's store stays open: its
// data is kept for when the lease comes back, but queries no longer see it.
func (n *Node) release(p *partition, deleteLease bool) {
	p.mu.Lock()
	cancel, done, rev := p.cancel, p.done, p.rev
	p.cancel, p.done, p.rev = nil, nil, 0
	p.owned.Store(false)
	p.ready.Store(false)
	p.mu.Unlock()
	p.changed()
	if cancel != nil {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			// Never hold the lease loop (and every other partition's
			// renewal) hostage to one consumer.
			n.log.Error("cluster: consumer did not stop within 10s; going on", "partition", p.id)
		}
	}
	if deleteLease && rev != 0 && n.leases != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = n.leases.Delete(ctx, leaseKey(p.id), jetstream.LastRevision(rev))
		cancel()
	}
}

// consume reads p's stream from the watermark into st until ctx ends. Each
// batch is appended (durable in st's WAL when Append returns) before the
// watermark moves; a crash in between replays the batch, and st's (agent_id,
// seq) keys make that a duplicate, not a second copy.
func (n *Node) consume(ctx context.Context, p *partition, st *store.Store, done chan struct{}) {
	defer close(done)
	name := streamName(p.id)
	for ctx.Err() == nil {
		err := n.consumeOnce(ctx, p, st, name)
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("cluster: consumer stopped; restarting", "partition", p.id, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (n *Node) consumeOnce(ctx context.Context, p *partition, st *store.Store, name string) error {
	// The target is the stream's last sequence as its leader knows it, asked
	// when the partition is taken: a replica that has just restarted can be
	// behind, and its stream info or a consumer placed on it would call the
	// partition caught up too early, making short answers look complete.
	stream, err := n.js.Stream(ctx, name)
	if err != nil {
		return err
	}
	subject := logsSubject + strconv.Itoa(p.id)
	target, err := leaderLastSeq(ctx, stream, subject)
	if err != nil {
		return err
	}
	p.last.Store(max(p.last.Load(), target))
	if p.applied.Load() >= target {
		p.markReady(n.log, p.applied.Load())
	}
	cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if a := p.applied.Load(); a > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, a+1
	}
	cons, err := n.js.OrderedConsumer(ctx, name, cc)
	if err != nil {
		return err
	}
	// Bounded by bytes, not messages: with batches of a few hundred KiB,
	// 256 messages per partition in flight overran the connection's pending
	// limit on catch-up, and the server cut the node off as a slow consumer.
	it, err := cons.Messages(jetstream.PullMaxBytes(4 << 20))
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(cctx, it.Stop)
	defer stop()
	defer it.Stop()
	go watchConsumer(cctx, cancel, p, stream, subject)
	var wm [8]byte
	for {
		// The context, not only Stop, ends the wait: an ordered consumer
		// that is recreating its server-side consumer can miss a Stop.
		msg, err := it.Next(jetstream.NextContext(cctx))
		if err != nil {
			if c := context.Cause(cctx); c != nil && ctx.Err() == nil {
				return c
			}
			return err
		}
		md, err := msg.Metadata()
		if err != nil {
			return err
		}
		seq := md.Sequence.Stream
		if seq <= p.applied.Load() {
			continue
		}
		p.last.Store(max(p.last.Load(), seq+md.NumPending))
		if n.cfg.beforeApply != nil {
			n.cfg.beforeApply(ctx, p.id)
		}
		b, err := decodeBatch(msg.Data())
		if err != nil {
			n.ins.corrupt.Inc()
			n.log.Error("cluster: skipping undecodable message", "partition", p.id, "seq", seq, "err", err)
		} else if err := n.apply(ctx, p, st, &b); err != nil {
			return err
		}
		p.applied.Store(seq)
		binary.BigEndian.PutUint64(wm[:], seq)
		if _, err := p.wm.WriteAt(wm[:], 0); err != nil {
			return fmt.Errorf("watermark: %w", err)
		}
		if seq >= target {
			p.markReady(n.log, seq)
		}
		p.changed()
	}
}

// watchConsumer is consumeOnce's watchdog: it keeps p's lag current from the
// stream's leader, and cancels ctx (restarting the consumer) when the consumer
// has stopped delivering while the stream has more.
func watchConsumer(ctx context.Context, cancel context.CancelCauseFunc, p *partition, stream jetstream.Stream, subject string) {
	lastApplied, since := p.applied.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		last, err := leaderLastSeq(ctx, stream, subject)
		if err != nil {
			continue
		}
		p.last.Store(max(p.last.Load(), last))
		a := p.applied.Load()
		if a != lastApplied || a >= last {
			lastApplied, since = a, time.Now()
			continue
		}
		if time.Since(since) > 6*time.Second {
			cancel(fmt.Errorf("consumer delivered nothing for %s while the stream is at %d and we are at %d", time.Since(since).Round(time.Second), last, a))
			return
		}
	}
}

// leaderLastSeq is the stream's last sequence from its leader: a message get
// (not a direct get, which any replica may answer) of the last message on
// the stream's one subject; 0 when the stream is empty.
func leaderLastSeq(ctx context.Context, s jetstream.Stream, subject string) (uint64, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := s.GetLastMsgForSubject(c, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

// apply appends one batch, retrying while the store refuses for a passing
// reason (disk floor, closing) so that nothing acked by the log is skipped.
func (n *Node) apply(ctx context.Context, p *partition, st *store.Store, b *model.Batch) error {
	for {
		_, err := st.Append(ctx, *b)
		if err == nil {
			n.ins.applied.Add(float64(len(b.Records)))
			n.publishTail(b.Records)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n.log.Warn("cluster: store refused a batch; retrying", "partition", p.id, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// markReady marks the partition caught up (once per ownership).
func (p *partition) markReady(log *slog.Logger, seq uint64) {
	if p.ready.CompareAndSwap(false, true) {
		log.Info("cluster: partition caught up", "partition", p.id, "seq", seq)
		p.changed()
	}
}

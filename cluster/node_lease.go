package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiplog/shiplog/store"
)

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

package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

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

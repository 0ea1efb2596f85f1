package cluster

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
)

// maxMessage is the largest batch message published; bigger batches are cut.
const maxMessage = maxPayload - 256<<10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// Append implements ingest.Sink: it publishes the batch to its partition's
// stream and returns once JetStream has it on a quorum of replicas (the
// PubAck). A duplicate PubAck (the same agent_id:seq within the stream's
// dedup window) answers as duplicates. No ack within PublishTimeout answers
// model.ErrUnavailable: the client retries the same seq, here or elsewhere,
// and the owner's (agent_id, seq) keys keep it from being stored twice.
func (n *Node) Append(ctx context.Context, b model.Batch) (model.AppendResult, error) {
	start := time.Now()
	var res model.AppendResult
	_, res.AckedSeq = seqRange(&b)
	if err := n.gate.admit(&b, time.Now().UnixNano()); err != nil {
		n.ins.streamsRefused.Inc()
		return model.AppendResult{}, err
	}
	p := PartitionOf(&b, n.cfg.Partitions)
	if err := n.publish(ctx, p, &b, &res); err != nil {
		n.ins.publishErrors.Inc()
		return model.AppendResult{}, err
	}
	n.ins.published.Add(float64(len(b.Records)))
	n.ins.publishSeconds.Observe(time.Since(start).Seconds())
	return res, nil
}

func (n *Node) publish(ctx context.Context, p int, b *model.Batch, res *model.AppendResult) error {
	bp := bufPool.Get().(*[]byte)
	data := encodeBatch((*bp)[:0], b)
	defer func() { *bp = data[:0]; bufPool.Put(bp) }()
	if len(data) > maxMessage && len(b.Records) > 1 {
		// Too big for one message: two halves, each acked on its own. Only
		// the last half carries Closing, Dropped and Run.
		h := len(b.Records) / 2
		first := model.Batch{AgentID: b.AgentID, Records: b.Records[:h]}
		second := *b
		second.Records = b.Records[h:]
		if err := n.publish(ctx, p, &first, res); err != nil {
			return err
		}
		return n.publish(ctx, p, &second, res)
	}
	if len(data) > maxMessage {
		return fmt.Errorf("%w: one record of %d bytes is over the cluster's message limit", ingest.ErrInvalid, len(data))
	}
	msg := nats.NewMsg(logsSubject + strconv.Itoa(p))
	msg.Data = data
	if id := msgID(b); id != "" {
		msg.Header.Set(jetstream.MsgIDHeader, id)
	}
	pctx, cancel := context.WithTimeout(ctx, n.cfg.PublishTimeout)
	defer cancel()
	ack, err := n.js.PublishMsg(pctx, msg)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: the replicated log did not ack partition %d: %v; retry", model.ErrUnavailable, p, err)
	}
	if ack.Duplicate {
		res.Duplicates += len(b.Records)
	} else {
		res.Accepted += len(b.Records)
	}
	return nil
}

// msgID is the batch's JetStream dedup id: agent_id:first-last seq. Batches
// without an agent or seq numbers have none (they cannot be told apart).
func msgID(b *model.Batch) string {
	lo, hi := seqRange(b)
	if b.AgentID == "" || hi == 0 {
		return ""
	}
	return b.AgentID + ":" + strconv.FormatUint(lo, 10) + "-" + strconv.FormatUint(hi, 10)
}

// seqRange is the lowest and highest non-zero seq of the batch (0, 0: none).
func seqRange(b *model.Batch) (lo, hi uint64) {
	for i := range b.Records {
		s := b.Records[i].Seq
		if s == 0 {
			continue
		}
		if lo == 0 || s < lo {
			lo = s
		}
		hi = max(hi, s)
	}
	return lo, hi
}

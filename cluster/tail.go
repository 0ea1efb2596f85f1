package cluster

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/shiplog/shiplog/model"
)

// Live tail across nodes. The owner of a partition hands every batch it stores
// to its own Hub, and, while some node has live tails (it says so on
// interestSubj every interestEvery), publishes the stored records (ids set) on
// tailSubject for the other nodes' Hubs. With no tail anywhere nothing extra is
// encoded or sent.
const (
	interestEvery = 250 * time.Millisecond
	interestTTL   = 3 * time.Second
	nodeHeader    = "Shiplog-Node"
)

func (n *Node) subscribe() error {
	sub, err := n.nc.Subscribe(tailSubject, func(m *nats.Msg) {
		if n.cfg.Hub == nil || m.Header.Get(nodeHeader) == n.cfg.Node {
			return
		}
		b, err := decodeBatch(m.Data)
		if err != nil {
			n.log.Warn("cluster: bad tail message", "err", err)
			return
		}
		n.cfg.Hub.Publish(b.Records)
	})
	if err != nil {
		return err
	}
	n.subs = append(n.subs, sub)
	sub, err = n.nc.Subscribe(interestSubj, func(*nats.Msg) { n.interest.Store(time.Now().UnixNano()) })
	if err != nil {
		return err
	}
	n.subs = append(n.subs, sub)
	sub, err = n.nc.Subscribe(rpcSubject+n.cfg.Node, n.serveRPC)
	if err != nil {
		return err
	}
	n.subs = append(n.subs, sub)
	if n.cfg.Hub != nil {
		n.wg.Add(1)
		go n.announceInterest()
	}
	return nil
}

// announceInterest tells the owners while this node has live tails.
func (n *Node) announceInterest() {
	defer n.wg.Done()
	t := time.NewTicker(interestEvery)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			if n.cfg.Hub.Subscribers() > 0 {
				_ = n.nc.Publish(interestSubj, nil)
			}
		}
	}
}

// publishTail hands records just stored (ids set) to the live tails.
func (n *Node) publishTail(recs []model.Record) {
	if len(recs) == 0 {
		return
	}
	if n.cfg.Hub != nil {
		n.cfg.Hub.Publish(recs)
	}
	if time.Since(time.Unix(0, n.interest.Load())) > interestTTL {
		return
	}
	m := nats.NewMsg(tailSubject)
	m.Header.Set(nodeHeader, n.cfg.Node)
	m.Data = encodeBatch(nil, &model.Batch{Records: recs})
	if len(m.Data) > maxMessage {
		return // a tail is best effort; the lines are stored and searchable
	}
	_ = n.nc.PublishMsg(m)
}

package cluster

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Status is GET /v1/cluster: the nodes, each partition's owner and lag.
type Status struct {
	Enabled     bool              `json:"enabled"`
	Node        string            `json:"node"` // the node that answered
	Partitions  int               `json:"partitions"`
	Replicas    int               `json:"replicas"`
	AlertLeader string            `json:"alert_leader"`
	Nodes       []NodeStatus      `json:"nodes"`
	Parts       []PartitionStatus `json:"partition_owners"`
	Partial     bool              `json:"partial"` // some partition has no caught-up owner
	Missing     []int             `json:"missing_partitions"`
}

// NodeStatus is one live node.
type NodeStatus struct {
	Name       string    `json:"name"`
	Started    time.Time `json:"started"`
	LastSeen   time.Time `json:"last_seen"`
	Partitions []int     `json:"partitions"`
	Alerts     bool      `json:"alerts"`
	Tails      int       `json:"tails"`
}

// PartitionStatus is one partition.
type PartitionStatus struct {
	Partition int    `json:"partition"`
	Owner     string `json:"owner"` // "" when none
	State     string `json:"state"` // live, catching_up, unowned
	LastSeq   uint64 `json:"last_seq"`
	Applied   uint64 `json:"applied_seq"`
	Lag       uint64 `json:"lag"` // batches not yet stored by the owner
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
}

// ClusterStatus is Status as JSON: GET /v1/cluster (the server writes it and
// reads nothing of it).
func (n *Node) ClusterStatus(ctx context.Context) (json.RawMessage, error) {
	st, err := n.Status(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(st)
}

// Status reports the cluster as this node sees it.
func (n *Node) Status(ctx context.Context) (Status, error) {
	st := Status{Enabled: true, Node: n.cfg.Node, Partitions: n.cfg.Partitions, Replicas: n.cfg.Replicas, Missing: []int{}}
	peers := map[string]nodeStatus{}
	if p := n.peers.Load(); p != nil {
		peers = *p
	}
	applied := map[int]partStatus{}
	for _, ns := range peers {
		s := NodeStatus{Name: ns.Node, Started: ns.Started, LastSeen: ns.Seen, Alerts: ns.Alerts, Tails: ns.Tails, Partitions: []int{}}
		for _, p := range ns.Partitions {
			s.Partitions = append(s.Partitions, p.Partition)
			p.Owner = ns.Node
			applied[p.Partition] = p
		}
		if ns.Alerts {
			st.AlertLeader = ns.Node
		}
		st.Nodes = append(st.Nodes, s)
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].Name < st.Nodes[j].Name })
	owners := *n.owners.Load()
	// Stream sizes, asked in parallel with a short deadline: during an
	// election a stream may not answer, and the status must still come back.
	infos := make([]*jetstream.StreamInfo, len(owners))
	ictx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	var wg sync.WaitGroup
	for p := range owners {
		wg.Go(func() {
			if s, err := n.js.Stream(ictx, streamName(p)); err == nil {
				infos[p] = s.CachedInfo()
			}
		})
	}
	wg.Wait()
	cancel()
	for p, o := range owners {
		ps := PartitionStatus{Partition: p, Owner: o, State: "unowned"}
		if o == "?" {
			ps.Owner = ""
		}
		if info := infos[p]; info != nil {
			ps.LastSeq, ps.Messages, ps.Bytes = info.State.LastSeq, info.State.Msgs, info.State.Bytes
		}
		if a, ok := applied[p]; ok && ps.Owner != "" && a.Owner == ps.Owner {
			ps.Applied = a.Applied
			if ps.LastSeq > a.Applied {
				ps.Lag = ps.LastSeq - a.Applied
			}
			ps.State = "catching_up"
			if a.Ready {
				ps.State = "live"
			}
		}
		if ps.State != "live" {
			st.Partial = true
			st.Missing = append(st.Missing, p)
		}
		st.Parts = append(st.Parts, ps)
	}
	return st, nil
}

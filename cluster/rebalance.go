package cluster

import "sort"

// shareView is what one round of lease keeping knows: who holds each
// partition, who is alive, how far this node has applied each partition.
type shareView struct {
	self    string
	owners  []string // by partition: the lease holder, "" free, "?" unreadable
	mine    int      // partitions this node holds (renewed this round)
	peers   []string // nodes with a heartbeat (this one may be among them)
	applied []uint64 // by partition: how far this node has applied it
	minLive int      // count at least this many live nodes (just started)
}

// sharePlan is what the round does: claim free partitions in claim order
// until this node holds target, and hand back release.
type sharePlan struct {
	target  int
	claim   []int
	release []int
}

// rebalance decides a round. Each live node's share is ceil(partitions /
// live); a node below it claims free partitions, the ones it has applied
// furthest first (least to catch up). A node above it hands partitions back,
// highest id first, only as many as live peers lack of their floor
// (partitions / live): a node joined or came back.
func rebalance(v shareView) sharePlan {
	n := len(v.owners)
	alive := map[string]bool{v.self: true}
	for _, name := range v.peers {
		alive[name] = true
	}
	count := map[string]int{}
	for _, o := range v.owners {
		if o != "" && o != "?" {
			alive[o] = true
			count[o]++
		}
	}
	count[v.self] = v.mine
	live := max(len(alive), v.minLive)
	plan := sharePlan{target: (n + live - 1) / live}
	floor := n / live
	switch {
	case v.mine < plan.target:
		for id, o := range v.owners {
			if o == "" {
				plan.claim = append(plan.claim, id)
			}
		}
		sort.SliceStable(plan.claim, func(i, j int) bool { return v.applied[plan.claim[i]] > v.applied[plan.claim[j]] })
	case v.mine > plan.target:
		need := 0
		for _, name := range v.peers {
			if name != v.self && count[name] < floor {
				need += floor - count[name]
			}
		}
		extra := v.mine - plan.target
		for id := n - 1; id >= 0 && need > 0 && extra > 0; id-- {
			if v.owners[id] == v.self {
				plan.release = append(plan.release, id)
				need--
				extra--
			}
		}
	}
	return plan
}

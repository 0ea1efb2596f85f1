package cluster

// The limit on streams (--max-streams-per-day) in a cluster. A partition's
// owner cannot refuse a batch: the replicated log has acked it already, and
// a refused batch would stall the partition behind it. So the node a batch
// arrives at checks it before publishing, against the distinct streams
// written through that node this UTC day: a batch that would take them past
// the limit is refused whole (ResourceExhausted, as on a single node), and
// streams already written through the node today keep working.

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// streamGate counts the distinct streams written through this node in the
// current UTC day. Its memory is bounded by the limit: a stream over it is
// refused, not remembered.
type streamGate struct {
	limit int // 0: no limit
	log   *slog.Logger

	mu     sync.Mutex
	day    uint32
	seen   map[uint64]struct{}
	warned uint32 // the day the limit was last logged (+1; 0: never)
}

func newStreamGate(limit int, log *slog.Logger) *streamGate {
	return &streamGate{limit: limit, log: log, seen: map[uint64]struct{}{}}
}

// streamHash identifies a stream by its labels (collisions, at 64 bits, let
// a stream through as known; they never refuse one).
func streamHash(l *model.Labels) uint64 {
	d := xxhash.New()
	for _, s := range [...]string{l.Service, l.Host, l.BuildID, l.DeployID} {
		_, _ = d.WriteString(s)
		_, _ = d.Write([]byte{0})
	}
	return d.Sum64()
}

// admit counts b's streams against today's limit (now in Unix ns) and
// refuses the whole batch, wrapping store.ErrStreamLimit, when its new ones
// would take the day's count past it.
func (g *streamGate) admit(b *model.Batch, now int64) error {
	if g == nil || g.limit <= 0 || len(b.Records) == 0 {
		return nil
	}
	var fresh map[uint64]*model.Labels
	var prev *model.Labels
	g.mu.Lock()
	defer g.mu.Unlock()
	if day := model.Day(now); day != g.day {
		g.day, g.seen = day, map[uint64]struct{}{}
	}
	for i := range b.Records {
		l := &b.Records[i].Labels
		if prev != nil && *l == *prev {
			continue // lines of one stream mostly come in runs
		}
		prev = l
		h := streamHash(l)
		if _, ok := g.seen[h]; ok {
			continue
		}
		if fresh == nil {
			fresh = map[uint64]*model.Labels{}
		}
		if _, ok := fresh[h]; !ok {
			fresh[h] = l
		}
	}
	if len(g.seen)+len(fresh) <= g.limit {
		for h := range fresh {
			g.seen[h] = struct{}{}
		}
		return nil
	}
	if g.warned != g.day+1 {
		g.warned = g.day + 1
		g.log.Warn("cluster: the limit of streams a day through this node is reached: batches opening more are refused until 00:00 UTC; streams written today go on",
			"limit", g.limit, "flag", "--max-streams-per-day")
	}
	var first *model.Labels
	for i := range b.Records { // the first new stream in the batch's order
		if l, ok := fresh[streamHash(&b.Records[i].Labels)]; ok {
			first = l
			break
		}
	}
	return fmt.Errorf("%w: the batch opens %d new stream(s) (the first: service=%q host=%q build_id=%q deploy_id=%q) and %d of today's %d streams through this node are taken (--max-streams-per-day, counted per node in a cluster); streams written today are accepted, new ones again from 00:00 UTC",
		store.ErrStreamLimit, len(fresh), first.Service, first.Host, first.BuildID, first.DeployID, len(g.seen), g.limit)
}

// streamsToday is how many distinct streams went through this node today.
func (g *streamGate) streamsToday() int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen)
}

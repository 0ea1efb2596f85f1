package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// The Go collector lets the heap grow by as much as is live before it
// collects again (GOGC=100), so the peak resident set is twice the largest
// live heap the server ever had. Most of that heap is bounded working set
// (open chunks, the seal backlog, Badger's memtables), but the rest grows a
// little with what the store has seen (sealed chunks' metadata, a day's
// dictionary and index, metric series) and with the moment a collection
// happens to find the sealers and indexers at their fullest; doubled, a
// 10M-line, five-day ingest peaked 80-90 MiB above a 2M-line one of a day.
// A headroom caps the growth between collections instead: GOGC is lowered
// after each collection so that the next one starts once the heap has grown
// by the headroom (never below minGCPercent, never above GOGC as started).
// The collector then runs more often only while the live heap is larger
// than the headroom, and the peak is the live heap plus the headroom.

const minGCPercent = 25

// gcTuner sets GOGC after each collection from the heap it found live.
type gcTuner struct {
	headroom uint64
	base     int // GOGC as the process had it

	mu      sync.Mutex // guards below: stop vs. a finalizer's tune
	last    int
	stopped bool
	live    []metrics.Sample
}

// tuning is the process's one tuner: GOGC is process-wide, and servers
// started in one process (the cluster tests) share it, the first one's
// headroom applying; the last stop restores GOGC.
var tuning struct {
	sync.Mutex
	t     *gcTuner
	users int
}

// startGCHeadroom keeps the heap's growth between collections at most
// headroom bytes (see above); stop restores GOGC. A headroom <= 0, or GOGC
// off, leaves the collector alone.
func startGCHeadroom(headroom int64) (stop func()) {
	tuning.Lock()
	defer tuning.Unlock()
	if tuning.t == nil {
		base := debug.SetGCPercent(100)
		debug.SetGCPercent(base)
		if headroom <= 0 || base < 0 {
			return func() {}
		}
		tuning.t = &gcTuner{headroom: uint64(headroom), base: base, last: base,
			live: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
		tuning.t.tune()
		tuning.t.arm()
	}
	tuning.users++
	var once sync.Once
	return func() { once.Do(releaseGCHeadroom) }
}

func releaseGCHeadroom() {
	tuning.Lock()
	defer tuning.Unlock()
	if tuning.users--; tuning.users > 0 {
		return
	}
	t := tuning.t
	tuning.t = nil
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	debug.SetGCPercent(t.base)
}

// gcSentinel is garbage as soon as it is made: its finalizer runs after the
// next collection, and arms a new one.
type gcSentinel struct{ t *gcTuner }

func (t *gcTuner) arm() {
	runtime.SetFinalizer(&gcSentinel{t}, func(s *gcSentinel) {
		if s.t.tune() {
			s.t.arm()
		}
	})
}

// tune sets GOGC from the heap the last collection found live; false once
// stopped.
func (t *gcTuner) tune() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	metrics.Read(t.live)
	p := t.percent(t.live[0].Value.Uint64())
	if p != t.last {
		t.last = p
		debug.SetGCPercent(p)
	}
	return true
}

// percent is the GOGC that lets a heap of live bytes grow by the headroom.
func (t *gcTuner) percent(live uint64) int {
	if live == 0 || t.live[0].Value.Kind() != metrics.KindUint64 {
		return t.base
	}
	p := int(min(t.headroom*100/live, uint64(t.base)))
	return max(p, min(minGCPercent, t.base))
}

// defaultGCHeadroom is --gc-headroom's default: about the open chunks'
// and the seal backlog's bounds together, and the live heap's size in a
// 2M-line ingest (so that a short ingest collects as often as with GOGC
// alone, and a long one no more than a fifth more often).
const defaultGCHeadroom = 128 << 20

package server

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

func tailRecords(first, n int, msg string) []model.Record {
	recs := make([]model.Record, n)
	for i := range recs {
		recs[i] = model.Record{ID: model.ID{Stream: 1, Day: 1, Line: uint32(first + i + 1)}, Labels: model.Labels{Service: "api"},
			Level: model.LevelInfo, Message: msg}
	}
	return recs
}

// collector is what a tail's client received, in order.
type collector struct {
	mu      sync.Mutex
	lines   []uint32
	dropped []int // dropped counts, each at the position (len(lines)) it came
	at      []int
}

func (c *collector) send(recs []model.Record, dropped int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if dropped > 0 {
		c.dropped, c.at = append(c.dropped, dropped), append(c.at, len(c.lines))
	}
	for _, r := range recs {
		c.lines = append(c.lines, r.ID.Line)
	}
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

func mustParseQuery(t *testing.T, s string) *query.Query {
	t.Helper()
	q, err := query.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestPublishDoesNotMatch: a tail with a costly pattern that never reads does
// not slow publishing (on the old hub, matching ran inside Publish: a batch of
// 1,000 such lines took tens of seconds).
func TestPublishDoesNotMatch(t *testing.T) {
	h := NewHub(HubOptions{QueueRecords: 4096})
	for range 100 {
		h.subscribe(mustParseQuery(t, `/[a-j ]{1000}[k-z]/`))
	}
	msg := strings.Repeat("abcdefghij ", 182)[:2000]
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		for i := range 10 {
			h.Publish(tailRecords(i*1000, 1000, msg))
		}
		done <- time.Since(start)
	}()
	select {
	case d := <-done:
		t.Logf("10 batches of 1,000 records published to 100 hostile tails in %s; %d records skipped", d, h.Skipped())
	case <-time.After(20 * time.Second):
		t.Fatal("publishing to tails with a costly pattern did not end within 20s")
	}
	if h.Skipped() == 0 {
		t.Error("tails that never read skipped nothing: their queues are unbounded")
	}
}

// TestTailKeepsUp: a tail that keeps up gets every matching record, in order.
func TestTailKeepsUp(t *testing.T) {
	h := NewHub(HubOptions{QueueRecords: 1000})
	sub := h.subscribe(mustParseQuery(t, "level:info"))
	var c collector
	done := make(chan struct{})
	ended := make(chan error, 1)
	go func() { ended <- runTail(done, h, sub, c.send) }()
	const batches, per = 200, 100
	for i := range batches {
		recs := tailRecords(i*per, per, "hello")
		recs[0].Level = model.LevelWarn // not matched
		h.Publish(recs)
		// Stay within the queue: a client that keeps up.
		eventually(t, "the tail keeps up", func() bool { return c.count() >= (i+1)*(per-1)-2*per })
	}
	eventually(t, "every record sent", func() bool { return c.count() >= batches*(per-1) })
	close(done)
	if err := <-ended; err != nil {
		t.Fatal(err)
	}
	if len(c.dropped) > 0 {
		t.Errorf("a tail that keeps up was told it fell behind: %v", c.dropped)
	}
	if len(c.lines) != batches*(per-1) {
		t.Fatalf("got %d records, want %d", len(c.lines), batches*(per-1))
	}
	for i, l := range c.lines {
		want := uint32(i/(per-1)*per + i%(per-1) + 2)
		if l != want {
			t.Fatalf("record %d: line %d, want %d", i, l, want)
		}
	}
}

// TestTailFallsBehind: a tail whose queue is full skips whole batches and is
// told how many records it missed, at the place it missed them.
func TestTailFallsBehind(t *testing.T) {
	h := NewHub(HubOptions{QueueRecords: 100})
	sub := h.subscribe(mustParseQuery(t, ""))
	for i := range 10 {
		h.Publish(tailRecords(i*50, 50, "x")) // 2 fit, 8 are skipped
	}
	h.Publish(nil)
	var c collector
	done := make(chan struct{})
	ended := make(chan error, 1)
	go func() { ended <- runTail(done, h, sub, c.send) }()
	eventually(t, "the tail told of what it missed", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.dropped) > 0
	})
	// Then it keeps up again and gets what comes next.
	h.Publish(tailRecords(1000, 10, "y"))
	eventually(t, "the next records sent", func() bool { return c.count() >= 110 })
	close(done)
	<-ended
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lines) != 110 || len(c.dropped) != 1 || c.dropped[0] != 400 || c.at[0] != 100 {
		t.Errorf("got %d records and dropped %v at %v; want 100 records, 400 dropped, then 10 records", len(c.lines), c.dropped, c.at)
	}
	if h.Skipped() != 400 {
		t.Errorf("hub counted %d skipped, want 400", h.Skipped())
	}
}

// TestTailQueuesShareABudget: batches waiting in tails' queues are held once
// however many tails wait for them, and over QueueBytes a tail that is behind
// skips; every hold is released when tails end.
func TestTailQueuesShareABudget(t *testing.T) {
	h := NewHub(HubOptions{QueueRecords: 1 << 20, QueueBytes: 1 << 20})
	var subs []*subscriber
	for range 50 {
		subs = append(subs, h.subscribe(mustParseQuery(t, "")))
	}
	msg := strings.Repeat("x", 1000)
	for i := range 100 {
		h.Publish(tailRecords(i*100, 100, msg)) // 120 KB a batch
	}
	if held := h.Held(); held > 1<<20+200<<10 {
		t.Errorf("queues hold %d bytes, over the budget of %d by more than a batch", held, 1<<20)
	}
	if h.Skipped() == 0 {
		t.Error("nothing skipped over the budget")
	}
	t.Logf("held %d KiB for 50 tails, %d records skipped", h.Held()>>10, h.Skipped())
	// A tail reads its queue; then all end.
	var c collector
	done := make(chan struct{})
	ended := make(chan error, 1)
	go func() { ended <- runTail(done, h, subs[0], c.send) }()
	eventually(t, "the tail reads its queue", func() bool { return c.count() > 0 })
	close(done)
	<-ended
	for _, s := range subs {
		h.unsubscribe(s)
	}
	if h.Held() != 0 {
		t.Errorf("%d bytes still held after every tail ended", h.Held())
	}
}

// TestTailBatchOwnsItsBytes: a queued batch holds copies of its records'
// strings and attributes, not the decoder's blocks they came from, so what
// QueueBytes counts is what the queue keeps alive.
func TestTailBatchOwnsItsBytes(t *testing.T) {
	h := NewHub(HubOptions{QueueRecords: 100})
	sub := h.subscribe(mustParseQuery(t, ""))
	fields := []string{"api", "host-1", "b-7", "d-9", "connection reset by peer", "0af7", "b7ad", "status", "503"}
	var block []byte // all fields, one after another, as a decoder keeps them
	str := make([]string, len(fields))
	for _, f := range fields {
		block = append(block, f...)
	}
	at := 0
	for i, f := range fields {
		str[i] = unsafe.String(&block[at], len(f))
		at += len(f)
	}
	recs := tailRecords(0, 2, "")
	for i := range recs {
		recs[i].Labels = model.Labels{Service: str[0], Host: str[1], BuildID: str[2], DeployID: str[3]}
		recs[i].Message, recs[i].TraceID, recs[i].SpanID = str[4], str[5], str[6]
	}
	recs[0].Attrs = []model.Attr{{Key: str[7], Value: str[8]}}
	h.Publish(recs)
	clear(block) // the block's bytes are gone, and the attributes' array changed:
	recs[0].Attrs[0] = model.Attr{Key: "changed", Value: "x"}
	it, ok := sub.next() // the queued batch still has the records as published
	if !ok || len(it.b.recs) != 2 {
		t.Fatalf("queued: %v, %d records", ok, len(it.b.recs))
	}
	defer h.release(it.b)
	for i, r := range it.b.recs {
		got := []string{r.Service, r.Host, r.BuildID, r.DeployID, r.Message, r.TraceID, r.SpanID}
		for _, a := range r.Attrs {
			got = append(got, a.Key, a.Value)
		}
		want := fields
		if i == 1 {
			want = fields[:7]
		}
		if !slices.Equal(got, want) {
			t.Errorf("record %d: %q, want %q", i, got, want)
		}
	}
	if a := it.b.recs[1].Attrs; a != nil {
		t.Errorf("record without attributes has %v", a)
	}
}

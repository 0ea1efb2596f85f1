package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// hostBatch is one line for each of hosts, without an agent.
func hostBatch(t0 time.Time, hosts ...string) model.Batch {
	var b model.Batch
	for i, h := range hosts {
		b.Records = append(b.Records, model.Record{Time: t0.Add(time.Duration(i)).UnixNano(),
			Labels: model.Labels{Service: "api", Host: h}, Level: model.LevelInfo, Message: "hello from " + h})
	}
	return b
}

// New streams over Options.MaxStreamsPerDay are refused whole; streams the
// store knows keep working, also after a restart.
func TestStreamLimit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	o := DefaultOptions()
	o.MaxStreamsPerDay = 3
	s := testOpen(t, dir, o)
	now := time.Now()
	if _, err := s.Append(ctx, hostBatch(now, "h1", "h2")); err != nil {
		t.Fatal(err)
	}
	// Two more new streams would make 4: refused whole, nothing stored.
	_, err := s.Append(ctx, hostBatch(now, "h1", "h3", "h4"))
	if !errors.Is(err, ErrStreamLimit) || !strings.Contains(err.Error(), "--max-streams-per-day") || !strings.Contains(err.Error(), `host="h3"`) {
		t.Fatalf("over the limit: err %v, want ErrStreamLimit naming the flag and the first new stream", err)
	}
	// Known streams, many lines, and one more new one fit.
	if _, err := s.Append(ctx, hostBatch(now, "h1", "h2", "h1", "h3")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, hostBatch(now, "h4")); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("4th new stream: err %v", err)
	}
	// A known stream's line on another day (its own head) is still known.
	if _, err := s.Append(ctx, hostBatch(now.Add(-48*time.Hour), "h2")); err != nil {
		t.Fatal(err)
	}
	if got := count(t, s, nil, nil); got != 2+4+1 {
		t.Fatalf("stored %d lines, want 7", got)
	}
	if active, fresh := s.streamCounts(time.Now()); fresh != 3 || active == 0 {
		t.Fatalf("active %d, new today %d; want >0 and 3", active, fresh)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// After a restart the store still knows its streams (from sealed chunks).
	s = testOpen(t, dir, o)
	defer s.Close()
	if _, err := s.Append(ctx, hostBatch(now, "h1", "h2", "h3")); err != nil {
		t.Fatalf("known streams after a restart: %v", err)
	}
	o.MaxStreamsPerDay = 0
	s.opts.MaxStreamsPerDay = 0
	var many []string
	for i := range 50 {
		many = append(many, fmt.Sprintf("x%d", i))
	}
	if _, err := s.Append(ctx, hostBatch(now, many...)); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}

// An agent id stays with the sender that first used it, and its seq cannot
// jump further than MaxSeqJump: the poisoning of issue 13 (seq 2^64-1 under
// another agent's id) no longer hides that agent's lines.
func TestAgentSenderAndSeqWindow(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	o := DefaultOptions()
	o.MaxSeqJump = 1000
	s := testOpen(t, dir, o)
	now := time.Now()
	send := func(agent, sender string, seqs ...uint64) (model.AppendResult, error) {
		b := model.Batch{AgentID: agent, Sender: sender}
		for _, q := range seqs {
			b.Records = append(b.Records, model.Record{Time: now.UnixNano(), Labels: model.Labels{Service: "api", Host: "web-1"},
				Level: model.LevelInfo, Message: fmt.Sprintf("line %d", q), Seq: q})
		}
		return s.Append(ctx, b)
	}
	if _, err := send("a1", "ci", 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	// Another token under a1's id: refused, whatever the seq.
	_, err := send("a1", "intruder", math.MaxUint64)
	if !errors.Is(err, ErrAgentBound) || !strings.Contains(err.Error(), `"ci"`) {
		t.Fatalf("other sender: err %v, want ErrAgentBound naming the owner", err)
	}
	// The owner itself cannot jump past the window either.
	if _, err := send("a1", "ci", 4, 1004); !errors.Is(err, ErrSeqJump) || !strings.Contains(err.Error(), "window is 1000") {
		t.Fatalf("jump: err %v, want ErrSeqJump naming the window", err)
	}
	if _, err := send("a1", "ci", 1003); err != nil { // 1000 above 3: the window's edge
		t.Fatalf("jump within the window: %v", err)
	}
	// A new agent starts within the window of 0; without auth nothing binds.
	if _, err := send("a2", "", math.MaxUint64); !errors.Is(err, ErrSeqJump) {
		t.Fatalf("new agent at 2^64-1: err %v", err)
	}
	if _, err := send("a2", "", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := send("a2", "", 2); err != nil {
		t.Fatal(err)
	}
	// An agent first seen without auth is bound by the first token it uses.
	if _, err := send("a2", "late", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := send("a2", "other", 4); !errors.Is(err, ErrAgentBound) {
		t.Fatalf("a2 after its binding: err %v, want ErrAgentBound", err)
	}
	// A spool wiped: the agent restarts at 1, answered as duplicates with the
	// server's position, as before.
	res, err := send("a1", "ci", 1, 2)
	if err != nil || res.Duplicates != 2 || res.AckedSeq != 1003 {
		t.Fatalf("restart at 1: %+v, %v; want 2 duplicates, acked 1003", res, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The binding survives a restart (the WAL and the agent keys carry it).
	s = testOpen(t, dir, o)
	defer s.Close()
	if _, err := send("a1", "intruder", 1004); !errors.Is(err, ErrAgentBound) {
		t.Fatalf("after restart: err %v, want ErrAgentBound", err)
	}
	res, err = send("a1", "ci", 1004, 1005)
	if err != nil || res.Accepted != 2 || res.AckedSeq != 1005 {
		t.Fatalf("owner after restart: %+v, %v", res, err)
	}
	for _, a := range s.Agents() {
		if a.ID == "a1" && a.Sender != "ci" {
			t.Fatalf("a1 bound to %q", a.Sender)
		}
	}
}

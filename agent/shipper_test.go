package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

func testOptions(t testing.TB, addr, dir string) Options {
	o := DefaultOptions()
	o.Servers = []string{addr}
	o.Dir = dir
	o.Tags = Tags{Service: "svc", Host: "h1"}
	o.BatchMaxRecords = 100
	o.Linger = 10 * time.Millisecond
	o.BackoffMin, o.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	o.AckTimeout = 5 * time.Second
	return o
}

func openTest(t testing.TB, o Options) *Shipper {
	t.Helper()
	sh, err := Open(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

func addN(sh *Shipper, from, n int) {
	for i := from; i < from+n; i++ {
		sh.Add(&shiplogv1.Record{Message: fmt.Sprintf("line %d", i)}, nil)
	}
}

func closeOK(t testing.TB, sh *Shipper) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sh.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// checkExactlyOnce checks that the fake stored "line from" .. "line to-1", each once.
func checkExactlyOnce(t testing.TB, msgs []string, from, to int) {
	t.Helper()
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m]++
	}
	for i := from; i < to; i++ {
		if n := seen[fmt.Sprintf("line %d", i)]; n != 1 {
			t.Fatalf("line %d stored %d times (%d stored in all)", i, n, len(msgs))
		}
	}
	if len(msgs) != to-from {
		t.Fatalf("%d stored, want %d", len(msgs), to-from)
	}
}

// closeQuick closes a Shipper that cannot deliver.
func closeQuick(sh *Shipper) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_ = sh.Close(ctx)
}

func TestShipperDelivers(t *testing.T) {
	f := newFakeServer(t, "")
	sh := openTest(t, testOptions(t, f.addr, t.TempDir()))
	addN(sh, 0, 1000)
	closeOK(t, sh)
	checkExactlyOnce(t, f.messages(), 0, 1000)
	last := f.lastReq()
	if !last.Closing || len(last.Records) != 0 || last.AgentId != sh.AgentID() || last.Defaults.GetService() != "svc" {
		t.Fatalf("last request %v", last)
	}
	for i, r := range f.stored {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
	}
	if st := sh.Stats(); st.Added != 1000 || st.Acked != 1000 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
	if des, _ := os.ReadDir(filepath.Join(sh.Dir(), "queue")); len(des) != 0 {
		t.Fatalf("spool not empty: %d files", len(des))
	}
}

func TestShipperResendsAfterBrokenStream(t *testing.T) {
	f := newFakeServer(t, "")
	broken := 0
	f.breakAfterStore = func(req *shiplogv1.PushRequest) bool {
		if len(req.Records) > 0 && broken < 3 && req.Records[0].Seq > uint64(200*(broken+1)) {
			broken++
			return true
		}
		return false
	}
	sh := openTest(t, testOptions(t, f.addr, t.TempDir()))
	addN(sh, 0, 1000)
	closeOK(t, sh)
	checkExactlyOnce(t, f.messages(), 0, 1000)
	if broken != 3 || f.duplicates == 0 {
		t.Fatalf("broken %d times, %d duplicates", broken, f.duplicates)
	}
}

func TestShipperServerDownThenUp(t *testing.T) {
	f := newFakeServer(t, "")
	addr := f.addr
	f.stop()
	dir := t.TempDir()
	sh := openTest(t, testOptions(t, addr, dir))
	addN(sh, 0, 500)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := sh.Flush(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("flush with the server down: %v", err)
	}
	if st := sh.Stats(); st.Pending != 500 || st.LastErr == nil {
		t.Fatalf("stats %+v", st)
	}
	f.start(addr)
	closeOK(t, sh)
	checkExactlyOnce(t, f.messages(), 0, 500)
}

func TestShipperRestartResendsSpool(t *testing.T) {
	f := newFakeServer(t, "")
	addr := f.addr
	f.stop()
	dir := t.TempDir()
	sh := openTest(t, testOptions(t, addr, dir))
	id := sh.AgentID()
	addN(sh, 0, 300)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err := sh.Close(ctx)
	cancel()
	var ue *UndeliveredError
	if !errors.As(err, &ue) || ue.Records != 300 {
		t.Fatalf("close with the server down: %v", err)
	}
	f.start(addr)
	sh = openTest(t, testOptions(t, addr, dir))
	if sh.AgentID() != id {
		t.Fatalf("agent id changed: %s -> %s", id, sh.AgentID())
	}
	addN(sh, 300, 100)
	closeOK(t, sh)
	checkExactlyOnce(t, f.messages(), 0, 400)
	if f.stored[399].Seq != 400 {
		t.Fatalf("seq did not continue: %d", f.stored[399].Seq)
	}
}

func TestShipperDropsRejectedBatch(t *testing.T) {
	f := newFakeServer(t, "")
	f.reject = func(req *shiplogv1.PushRequest) bool {
		for _, r := range req.Records {
			if r.Message == "line 150" {
				return true
			}
		}
		return false
	}
	sh := openTest(t, testOptions(t, f.addr, t.TempDir()))
	addN(sh, 0, 300)
	closeOK(t, sh)
	msgs := f.messages()
	if len(msgs) != 200 || msgs[0] != "line 0" || msgs[100] != "line 200" {
		t.Fatalf("stored %d: %v ...", len(msgs), msgs[:3])
	}
	if st := sh.Stats(); st.Dropped != 100 || st.Lost != 100 {
		t.Fatalf("dropped %d", st.Dropped)
	}
	if last := f.lastReq(); !last.Closing || last.Dropped != 100 {
		t.Fatalf("last request: closing %v dropped %d", last.Closing, last.Dropped)
	}
}

func TestShipperSpoolFullDropsOldest(t *testing.T) {
	f := newFakeServer(t, "")
	addr := f.addr
	f.stop()
	o := testOptions(t, addr, t.TempDir())
	o.SpoolMaxBytes = 20 << 10
	o.BatchMaxRecords = 50
	o.Linger = time.Hour // batches are cut by count only
	sh := openTest(t, o)
	for i := 0; i < 2000; i++ {
		sh.Add(&shiplogv1.Record{Message: fmt.Sprintf("line %d %s", i, strings.Repeat("x", 40))}, nil)
	}
	sh.mu.Lock()
	sh.sealLocked()
	spooled, bytes := sh.sp.pendingRecords(), sh.sp.bytes
	sh.mu.Unlock()
	st := sh.Stats()
	if st.Dropped == 0 || bytes > o.SpoolMaxBytes || uint64(spooled)+st.Dropped != 2000 || st.Dropped%50 != 0 {
		t.Fatalf("spooled %d (%d bytes), dropped %d", spooled, bytes, st.Dropped)
	}
	f.start(addr)
	closeOK(t, sh)
	msgs := f.messages()
	if len(msgs) != spooled || !strings.HasPrefix(msgs[len(msgs)-1], "line 1999 ") ||
		!strings.HasPrefix(msgs[0], fmt.Sprintf("line %d ", st.Dropped)) {
		t.Fatalf("stored %d, first %.12q, last %.12q", len(msgs), msgs[0], msgs[len(msgs)-1])
	}
	if last := f.lastReq(); last.Dropped != st.Dropped {
		t.Fatalf("reported dropped %d, want %d", last.Dropped, st.Dropped)
	}
	// The count survives a restart.
	sh = openTest(t, o)
	defer closeQuick(sh)
	if got := sh.Stats().Dropped; got != st.Dropped {
		t.Fatalf("dropped after reopen %d, want %d", got, st.Dropped)
	}
}

func TestSpoolLocked(t *testing.T) {
	dir := t.TempDir()
	sh := openTest(t, testOptions(t, "127.0.0.1:1", dir))
	defer closeQuick(sh)
	if _, err := Open(testOptions(t, "127.0.0.1:1", dir), nil); !errors.Is(err, ErrSpoolLocked) {
		t.Fatalf("second open: %v", err)
	}
}

func TestSpoolRecoversNewerBatchThanState(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, 1<<20, 1<<20, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := func(first, n int) *shiplogv1.PushRequest {
		req := &shiplogv1.PushRequest{AgentId: sp.agentID}
		for i := 0; i < n; i++ {
			req.Records = append(req.Records, &shiplogv1.Record{Seq: uint64(first + i), Message: "m"})
		}
		return req
	}
	sp.state.Positions["/f"] = Position{Path: "/f", Ino: 7, Offset: 100}
	sp.state.NextSeq = 11
	if _, err := sp.append(batch(1, 10), 1, 10, 10); err != nil {
		t.Fatal(err)
	}
	oldState, _ := os.ReadFile(filepath.Join(dir, "state.json"))
	sp.state.Positions["/f"] = Position{Path: "/f", Ino: 7, Offset: 250}
	sp.state.NextSeq = 21
	if _, err := sp.append(batch(11, 10), 11, 20, 10); err != nil {
		t.Fatal(err)
	}
	// Crash between the batch file and state.json: the old state is on disk.
	if err := os.WriteFile(filepath.Join(dir, "state.json"), oldState, 0o644); err != nil {
		t.Fatal(err)
	}
	unlockDir(sp.lock)
	// And a half-written batch file.
	_ = os.WriteFile(filepath.Join(dir, "queue", "00000000000000ff.batch.tmp"), []byte("junk"), 0o644)

	sp2, err := openSpool(dir, 1<<20, 1<<20, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp2.close()
	if sp2.state.NextSeq != 21 || sp2.state.Positions["/f"].Offset != 250 || sp2.state.NextEntry != 3 || len(sp2.entries) != 2 {
		t.Fatalf("state %+v, %d entries", sp2.state, len(sp2.entries))
	}
	if sp2.agentID != sp.agentID {
		t.Fatal("agent id changed")
	}
	req, err := readEntry(sp2.entries[1].path)
	if err != nil || len(req.Records) != 10 || req.Records[0].Seq != 11 {
		t.Fatalf("read back: %v %v", req, err)
	}
	// A damaged batch is detected.
	b, _ := os.ReadFile(sp2.entries[0].path)
	b[len(b)-10] ^= 0xff
	_ = os.WriteFile(sp2.entries[0].path, b, 0o644)
	if _, err := readEntry(sp2.entries[0].path); !errors.Is(err, errCorrupt) {
		t.Fatalf("damaged batch: %v", err)
	}
}

// TestBackoff: the n-th wait is drawn from [d/2, d] with d = min·2ⁿ capped
// at max, and Reset starts again from min.
func TestBackoff(t *testing.T) {
	bo := newBackoff(100*time.Millisecond, time.Second)
	caps := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for round := 0; round < 50; round++ {
		bo.Reset()
		for i, c := range caps {
			d := c * time.Millisecond
			if got := bo.NextBackOff(); got < d/2 || got > d+time.Nanosecond {
				t.Fatalf("round %d, wait %d: %v, want in [%v, %v]", round, i, got, d/2, d)
			}
		}
	}
	// The draws spread over the range, not to one end of it.
	lo, hi := time.Hour, time.Duration(0)
	for range 200 {
		bo.Reset()
		d := bo.NextBackOff()
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo > 60*time.Millisecond || hi < 90*time.Millisecond {
		t.Fatalf("200 first waits span only [%v, %v] of [50ms, 100ms]", lo, hi)
	}
}

// Someone sent seq 2^64-1 under this agent's id (issue 13): the agent must
// not wrap its seq to 0 (every line would then be a duplicate); it takes a
// new id, and every line is stored once, none with seq 0.
func TestShipperPoisonedSeqTakesNewID(t *testing.T) {
	f := newFakeServer(t, "")
	sh := openTest(t, testOptions(t, f.addr, t.TempDir()))
	old := sh.AgentID()
	f.mu.Lock()
	f.acked[old] = math.MaxUint64
	f.mu.Unlock()
	addN(sh, 0, 500)
	closeOK(t, sh)
	checkExactlyOnce(t, f.messages(), 0, 500)
	if sh.AgentID() == old {
		t.Fatal("agent id unchanged")
	}
	for _, r := range f.stored {
		if r.Seq == 0 {
			t.Fatalf("record %q stored with seq 0", r.Message)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(sh.Dir(), "agent_id")); strings.TrimSpace(string(b)) != sh.AgentID() {
		t.Fatalf("agent_id file holds %q, want %q", b, sh.AgentID())
	}
}

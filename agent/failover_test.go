package agent

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// deadAddr is a loopback address nothing listens on: connecting is refused.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// logRecorder is a slog.Handler that keeps every record, for tests that look
// at what the Shipper logs.
type logRecorder struct {
	mu   sync.Mutex
	recs []logLine
}

type logLine struct {
	time  time.Time
	level slog.Level
	msg   string
	attrs map[string]string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l := logLine{time: r.Time, level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool { l.attrs[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	h.recs = append(h.recs, l)
	h.mu.Unlock()
	return nil
}

func (h *logRecorder) lines() []logLine {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]logLine(nil), h.recs...)
}

// failedOverTo reports whether an info line says the Shipper delivers to addr
// after a failover.
func (h *logRecorder) failedOverTo(addr string) bool {
	for _, l := range h.lines() {
		if l.level == slog.LevelInfo && strings.HasPrefix(l.msg, "failed over") && l.attrs["server"] == addr {
			return true
		}
	}
	return false
}

func TestShipperFailoverSkipsDeadServer(t *testing.T) {
	dead := deadAddr(t)
	a := newFakeServer(t, "")
	o := testOptions(t, "", t.TempDir())
	o.Servers = []string{dead, a.addr}
	// A wait between the two would show: the second server must be tried at once.
	o.BackoffMin, o.BackoffMax = 5*time.Second, 5*time.Second
	logs := &logRecorder{}
	start := time.Now()
	sh, err := Open(o, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	addN(sh, 0, 1000)
	closeOK(t, sh)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("delivery took %s: the dead server's failure was followed by a backoff wait", d)
	}
	checkExactlyOnce(t, a.messages(), 0, 1000)
	if st := sh.Stats(); st.Acked != 1000 || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !logs.failedOverTo(a.addr) {
		t.Errorf("no info line about failing over to %s: %+v", a.addr, logs.lines())
	}
}

// A server answers Unavailable (as a cluster node does when its replicated log
// cannot ack in time): the batch goes to the next server, nothing is lost and
// nothing is stored twice.
func TestShipperFailoverOnUnavailableAnswer(t *testing.T) {
	a, b := newFakeServer(t, ""), newFakeServer(t, "")
	var unavailable atomic.Int32
	a.unavailable = func(req *shiplogv1.PushRequest) bool {
		if len(req.Records) > 0 && req.Records[0].Seq > 400 {
			unavailable.Add(1)
			return true
		}
		return false
	}
	o := testOptions(t, "", t.TempDir())
	o.Servers = []string{a.addr, b.addr}
	logs := &logRecorder{}
	sh, err := Open(o, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	addN(sh, 0, 400)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sh.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	addN(sh, 400, 1600)
	closeOK(t, sh)

	if a.storedByThis() != 400 || b.storedByThis() != 1600 || unavailable.Load() == 0 {
		t.Fatalf("a stored %d, b %d (want 400, 1600); a answered Unavailable %d times", a.storedByThis(), b.storedByThis(), unavailable.Load())
	}
	checkExactlyOnce(t, append(a.messages(), b.messages()...), 0, 2000)
	if st := sh.Stats(); st.Acked != 2000 || st.Lost != 0 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !logs.failedOverTo(b.addr) {
		t.Errorf("no info line about failing over to %s", b.addr)
	}
}

// Server A crashes while the Shipper streams to it: it stores a batch, dies
// before it answers, and is stopped. The Shipper goes on with B and resends
// what A had not acked. A and B share one store (the replicated log of a
// cluster), which drops the batch A stored but did not ack.
func TestShipperFailoverServerStoppedMidStream(t *testing.T) {
	a := newFakeServer(t, "")
	b := newFakeServerSharing(t, "", a)
	crashed := make(chan struct{})
	var once sync.Once
	a.breakAfterStore = func(req *shiplogv1.PushRequest) bool {
		if len(req.Records) > 0 && req.Records[0].Seq > 2000 {
			once.Do(func() { close(crashed) })
			return true
		}
		return false
	}
	o := testOptions(t, "", t.TempDir())
	o.Servers = []string{a.addr, b.addr}
	o.BatchMaxRecords = 50
	logs := &logRecorder{}
	sh, err := Open(o, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	added := make(chan struct{})
	go func() {
		defer close(added)
		for i := 0; i < n; i += 500 {
			addN(sh, i, 500)
			// Paced, so that server A fails in the middle of the stream
			// rather than after it has all been spooled.
			time.Sleep(2 * time.Millisecond)
		}
	}()
	select {
	case <-crashed:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch past seq 2000 reached server A")
	}
	a.stop()
	<-added
	closeOK(t, sh)

	checkExactlyOnce(t, a.messages(), 0, n) // the shared store: A's and B's records
	if a.storedByThis() <= 2000 || b.storedByThis() == 0 || a.storedByThis()+b.storedByThis() != n {
		t.Fatalf("a stored %d, b %d, want a > 2000, b > 0 and %d in all", a.storedByThis(), b.storedByThis(), n)
	}
	a.mu.Lock()
	dups := a.duplicates
	a.mu.Unlock()
	if dups == 0 {
		t.Fatal("the batch A stored but did not ack was not resent to B")
	}
	if st := sh.Stats(); st.Acked != n || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
	if !logs.failedOverTo(b.addr) {
		t.Errorf("no info line about failing over to %s", b.addr)
	}
}

// With every server down, each is tried once at once, and the backoff wait
// comes between rounds, not between servers.
func TestShipperFailoverBackoffPerRound(t *testing.T) {
	d1, d2 := deadAddr(t), deadAddr(t)
	o := testOptions(t, "", t.TempDir())
	o.Servers = []string{d1, d2}
	o.BackoffMin, o.BackoffMax = time.Second, time.Second // waits in [500ms, 1s)
	logs := &logRecorder{}
	sh, err := Open(o, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	addN(sh, 0, 10)
	var tries []logLine
	attempts := func() []logLine {
		var out []logLine
		for _, l := range logs.lines() {
			if strings.HasPrefix(l.msg, "cannot deliver to server") {
				out = append(out, l)
			}
		}
		return out
	}
	// Three rounds of two take two backoff waits (at most 2 s); the deadline
	// is reached only if the rounds stop.
	for deadline := time.Now().Add(30 * time.Second); len(tries) < 6; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d attempts in 30s, want at least 3 rounds of 2", len(tries))
		}
		tries = attempts()
	}
	closeQuick(sh)
	for i, l := range tries {
		want := []string{d1, d2}[i%2]
		if l.attrs["server"] != want {
			t.Fatalf("attempt %d went to %s, want %s (round robin from the first)", i, l.attrs["server"], want)
		}
		if i == 0 {
			continue
		}
		gap := l.time.Sub(tries[i-1].time)
		if i%2 == 1 && gap > 400*time.Millisecond {
			t.Errorf("attempt %d (second server of a round) came %s after the first: want at once", i, gap)
		}
		if i%2 == 0 && gap < 490*time.Millisecond {
			t.Errorf("attempt %d (a new round) came %s after the last: want a backoff wait", i, gap)
		}
	}
}

// The first server accepts connections but never answers (a hung host): the
// Shipper gives up on it after ConnectTimeout and delivers to the second.
func TestShipperFailoverSkipsHungServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	b := newFakeServer(t, "")
	o := testOptions(t, "", t.TempDir())
	o.Servers = []string{l.Addr().String(), b.addr}
	o.ConnectTimeout = 300 * time.Millisecond
	o.BackoffMin, o.BackoffMax = 5*time.Second, 5*time.Second
	start := time.Now()
	sh := openTest(t, o)
	addN(sh, 0, 100)
	closeOK(t, sh)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("delivery took %s", d)
	}
	checkExactlyOnce(t, b.messages(), 0, 100)
}

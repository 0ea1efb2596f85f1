package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// TestFaults runs the server into a full disk, slow and idle clients, and
// queries that match everything.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault tests")
	}
	t.Run("disk full: the floor refuses ingest", testDiskFloor)
	t.Run("disk full: out of space", testDiskENOSPC)
	t.Run("disk full: the WAL out of space", testWALENOSPC)
	t.Run("slow clients", testSlowClients)
	t.Run("thousands of idle connections", testIdleConnections)
	t.Run("queries that match everything", testMatchEverything)
}

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory, or skips.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir() + "/mnt"
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// ballast writes a file of n bytes (incompressible, so it takes the space).
func ballast(t *testing.T, path string, n int) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func freeBytes(dir string) uint64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return st.Bavail * uint64(st.Bsize)
}

// randomRecords makes records with incompressible messages of about size bytes.
func randomRecords(service, host string, size int) func(seq uint64) *shiplogv1.Record {
	return func(seq uint64) *shiplogv1.Record {
		b := make([]byte, size/2)
		_, _ = rand.Read(b)
		return &shiplogv1.Record{Time: timestamppb.Now(), Service: service, Host: host, Level: "info",
			Message: fmt.Sprintf("fill %d %s", seq, hex.EncodeToString(b))}
	}
}

// fillResult is what pushing until the server refuses gave.
type fillResult struct {
	errs  []error // the error that ended each pusher
	acked uint64  // records acked, all pushers
}

// fillDisk pushes records of about 200 incompressible bytes over one stream a
// pusher until every pusher got an error (or timeout). With pace > 0 each
// pusher sends a batch of 500 records at most every pace.
func fillDisk(t *testing.T, cc *grpc.ClientConn, ps []*agentPusher, pace, timeout time.Duration) fillResult {
	t.Helper()
	var wg sync.WaitGroup
	res := fillResult{errs: make([]error, len(ps))}
	stop := make(chan struct{})
	timer := time.AfterFunc(timeout, func() { close(stop) })
	defer timer.Stop()
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := func() *shiplogv1.PushRequest {
				if pace > 0 {
					time.Sleep(pace) // the caller's rate of filling, on purpose
				}
				return p.batch(500, randomRecords("fill", p.agent, 200))
			}
			res.errs[i] = p.run(cc, stop, gen, nil)
		}()
	}
	wg.Wait()
	for _, p := range ps {
		p.mu.Lock()
		res.acked += p.acked
		for _, b := range p.bad {
			t.Errorf("%s: %s", p.agent, b)
		}
		p.mu.Unlock()
	}
	return res
}

// storedSeqs counts how often each seq of agent p is stored.
func storedSeqs(t *testing.T, s *server, p *agentPusher) map[uint64]int {
	t.Helper()
	seen := map[uint64]int{}
	s.searchEach(t, "host:"+p.agent, 10000, func(r *searchRecord) {
		seq, _ := strconv.ParseUint(r.Seq, 10, 64)
		seen[seq]++
	})
	return seen
}

// ackedMissing checks that p's seqs 1..acked are stored and nothing is stored
// twice; it returns the acked seqs that are missing and how many records of p
// are stored (and fails the test on duplicates).
func ackedMissing(t *testing.T, s *server, p *agentPusher) (missing []uint64, stored int) {
	t.Helper()
	seen := storedSeqs(t, s, p)
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("%s: seq %d stored %d times", p.agent, seq, n)
		}
	}
	p.mu.Lock()
	acked := p.acked
	p.mu.Unlock()
	for seq := uint64(1); seq <= acked; seq++ {
		if seen[seq] != 1 {
			missing = append(missing, seq)
		}
	}
	return missing, len(seen)
}

// checkAcked fails the test unless every acked record of ps is stored once;
// it returns the number of records stored.
func checkAcked(t *testing.T, s *server, ps []*agentPusher) int {
	t.Helper()
	total := 0
	for _, p := range ps {
		m, n := ackedMissing(t, s, p)
		if len(m) > 0 {
			t.Fatalf("%s: %d acked records missing: %s", p.agent, len(m), seqRanges(m))
		}
		total += n
	}
	return total
}

// seqRanges prints sorted seqs as ranges: "3-7,9".
func seqRanges(seqs []uint64) string {
	var parts []string
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.FormatUint(seqs[i], 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", seqs[i], seqs[j]))
		}
		i = j + 1
		if len(parts) == 10 {
			parts = append(parts, "...")
			break
		}
	}
	return strings.Join(parts, ",")
}

func dialNew(t *testing.T, s *server) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// testDiskFloor fills a 48 MiB tmpfs with --min-free-disk 16MiB: ingest must
// be refused with ResourceExhausted naming the disk while queries go on, every
// acked record stays readable, and ingest resumes once space is freed.
//
// The server looks at the free space once a second, so the test pushes at
// about 3 MB/s: at full speed (100+ MB/s here) ingest runs through a 16 MiB
// floor between two looks (see the out-of-space subtests).
func testDiskFloor(t *testing.T) {
	dir := mountTmpfs(t, "48m")
	// Room the test gives back at the end.
	ballast(t, dir+"/ballast", 20<<20)
	s := startServer(t, dir, "--min-free-disk", "16MiB", "--insecure")
	cc := dialNew(t, s)
	ps := []*agentPusher{{agent: "floor-0", window: 2}, {agent: "floor-1", window: 2}}
	began := time.Now()
	res := fillDisk(t, cc, ps, 50*time.Millisecond, 60*time.Second)
	t.Logf("after %s: acked %d records, free %d KiB; errors: %v", time.Since(began).Round(time.Millisecond), res.acked, freeBytes(dir)>>10, res.errs)
	floor := 0
	for _, err := range res.errs {
		switch {
		case err == nil:
			t.Fatalf("ingest never refused within 60s (free %d KiB)", freeBytes(dir)>>10)
		case isBackpressure(err) && strings.Contains(status.Convert(err).Message(), "disk"):
			floor++
		case isBackpressure(err):
			// Busy: not what we wait for, but allowed.
		default:
			t.Errorf("ingest failed with %v before the floor refused it\n%s", err, s.logProblems(60))
		}
	}
	if floor == 0 {
		t.Fatalf("no pusher was refused for the disk: %v", res.errs)
	}
	if t.Failed() {
		t.FailNow()
	}
	// Refused, and stays refused: a single Write says so in words, with a hint.
	one := &shiplogv1.PushRequest{Records: []*shiplogv1.Record{randomRecords("fill", "floor-x", 10)(0)}}
	_, err := shiplogv1.NewIngestServiceClient(cc).Write(t.Context(), one)
	if !isBackpressure(err) || !strings.Contains(err.Error(), "disk") || retryDelay(err, 0) <= 0 {
		t.Fatalf("Write below the floor: %v (retry hint %s)", err, retryDelay(err, 0))
	}
	// Over HTTP: 429 with the same words.
	code, body := postJSON(t, s, `{"records":[{"message":"floor"}]}`)
	if code != http.StatusTooManyRequests || !strings.Contains(body, "disk") {
		t.Fatalf("HTTP write below the floor: %d %s", code, body)
	}
	// Queries go on, and every acked record is there.
	var sr searchResp
	if code, body := s.getJSON(t, "/v1/logs:search", url.Values{"q": {"service:fill"}, "limit": {"10"}}, &sr); code != 200 || len(sr.Records) != 10 {
		t.Fatalf("search below the floor: %d %s", code, body)
	}
	stored := checkAcked(t, s, ps)
	if n := s.histogramTotal(t, "service:fill", began.Add(-time.Minute), time.Now().Add(time.Minute)); n != stored {
		t.Fatalf("histogram %d, search %d", n, stored)
	}
	t.Logf("below the floor (free %d KiB): %d acked, %d stored; search and histogram answer; %s",
		freeBytes(dir)>>10, res.acked, stored, firstMatch(s.logText(), "free disk below the floor"))

	// Give the space back: ingest resumes (the floor is checked every second),
	// and the tail refused before is stored once.
	if err := os.Remove(dir + "/ballast"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range ps {
		for {
			err := p.run(cc, closedChan(), func() *shiplogv1.PushRequest { return p.batch(100, randomRecords("fill", p.agent, 200)) }, nil)
			if err == nil {
				break
			}
			if !isBackpressure(err) || time.Now().After(deadline) {
				t.Fatalf("after freeing 20 MiB (free %d KiB): %v", freeBytes(dir)>>10, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// And it is all there, once, after a SIGKILL.
	s.kill()
	s.restart()
	checkAcked(t, s, ps)
	if p := s.logProblems(5); strings.Contains(p, "panic") || strings.Contains(p, "fatal error") {
		t.Fatalf("server log:\n%s", p)
	}
}

func firstMatch(text, substr string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// postJSON POSTs body to /v1/logs:write.
func postJSON(t *testing.T, s *server, body string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+s.httpAddr+"/v1/logs:write", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Known bugs the out-of-space subtests run into (see the report of issue 9).
const (
	bugSIGBUS = "known limitation, kept away by --min-free-disk (on by default; this subtest turns it off): the server dies with SIGBUS (fatal error: fault, in badger valueLog.write) when the disk fills: " +
		"badger's value log is an mmap'd sparse file, and a write to it on a full filesystem faults"
	bugAckedSeq = "BUG: a batch refused with ENOSPC (wal: write: no space left on device) is answered as duplicates when resent, " +
		"and never stored: store.Append sets the agent's AckedSeq before the WAL write and keeps it when the write fails"
	bugTornFrame = "BUG: after a WAL write failed part way (ENOSPC), acked frames written after the torn one in the same segment " +
		"are lost on the next start: replay stops at the torn frame (\"wal had torn or corrupt frames ... skipped them\")"
)

// outOfSpace runs ps against s until the filesystem of free (a directory) is
// full, then checks that the server stays up and answers in words, that what
// was not acked is not stored, and that after removing ballast, a resend of
// the tail and more batches are stored once and survive a SIGKILL.
func outOfSpace(t *testing.T, s *server, ps []*agentPusher, free, ballastFile string) {
	cc := dialNew(t, s)
	began := time.Now()
	res := fillDisk(t, cc, ps, 0, 60*time.Second)
	t.Logf("after %s: acked %d records, free %d KiB; errors: %v", time.Since(began).Round(time.Millisecond), res.acked, freeBytes(free)>>10, res.errs)
	for _, err := range res.errs {
		if err == nil {
			t.Fatalf("the disk never filled within 60s")
		}
		if st := status.Convert(err); st.Message() == "" {
			t.Errorf("error without words: %v", err)
		}
	}
	// A window for a server that the full disk kills to die in (the checks
	// below look for that), not a wait for something that must happen.
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-s.exited:
		s.exited <- err
		problems := s.logProblems(20)
		if strings.Contains(problems, "SIGBUS") {
			t.Logf("the server died: %v\n%s", err, problems)
			t.Skip(bugSIGBUS)
		}
		t.Fatalf("the server died on a full disk: %v\n%s", err, problems)
	default:
	}
	if code, body := s.getJSON(t, "/healthz", nil, nil); code != 200 {
		t.Fatalf("healthz on a full disk: %d %s", code, body)
	}
	// Nothing unacked beyond what a pipelined stream may leave, nothing twice.
	tops := make([]uint64, len(ps))
	for i, p := range ps {
		if m, _ := ackedMissing(t, s, p); len(m) > 0 {
			t.Fatalf("%s on a full disk: acked records missing: %s", p.agent, seqRanges(m))
		}
		for seq := range storedSeqs(t, s, p) {
			tops[i] = max(tops[i], seq)
		}
	}

	// Free the space. A new agent's batches are stored; then the others
	// resend their unanswered tails (as agents do), and everything acked
	// must survive a SIGKILL. Known bugs are collected and reported at the end.
	if err := os.Remove(ballastFile); err != nil {
		t.Fatal(err)
	}
	var bugs []string
	after := &agentPusher{agent: ps[0].agent + "-after", window: 2}
	if err := pushN(cc, after, 5, 100); err != nil {
		t.Fatalf("%s after freeing space: %v\n%s", after.agent, err, s.logProblems(20))
	}
	lostToResend := false
	for i, p := range ps {
		p.mu.Lock()
		var wantDup uint64
		for _, b := range p.pending {
			for _, r := range b.req.Records {
				if r.Seq <= tops[i] {
					wantDup++
				}
			}
		}
		p.resentAcc, p.resentDup = 0, 0
		p.mu.Unlock()
		if err := pushN(cc, p, 2, 100); err != nil {
			t.Fatalf("%s after freeing space: %v\n%s", p.agent, err, s.logProblems(20))
		}
		p.mu.Lock()
		for _, b := range p.bad {
			t.Errorf("%s: %s", p.agent, b)
		}
		acc, dup := p.resentAcc, p.resentDup
		p.mu.Unlock()
		t.Logf("%s: resent tail answered %d accepted, %d duplicates (the store held %d of it)", p.agent, acc, dup, wantDup)
		if dup != wantDup {
			m, _ := ackedMissing(t, s, p)
			if len(m) == 0 {
				t.Fatalf("%s: resent tail answered with %d duplicates, the store held %d of it", p.agent, dup, wantDup)
			}
			t.Logf("%s: %d acked records missing: %s", p.agent, len(m), seqRanges(m))
			if !lostToResend {
				bugs = append(bugs, bugAckedSeq)
			}
			lostToResend = true
		}
	}
	if !lostToResend {
		checkAcked(t, s, ps)
	}
	checkAcked(t, s, []*agentPusher{after})
	s.kill()
	s.restart()
	check := append([]*agentPusher{after}, ps...)
	if lostToResend {
		check = check[:1] // the others already lost records
	}
	torn := false
	for _, p := range check {
		if m, _ := ackedMissing(t, s, p); len(m) > 0 {
			msg := fmt.Sprintf("%s after SIGKILL: %d acked records missing: %s\n%s", p.agent, len(m), seqRanges(m), s.logProblems(20))
			if !strings.Contains(s.logText(), "torn or corrupt frames") {
				t.Fatal(msg)
			}
			t.Log(msg)
			torn = true
		}
	}
	if torn {
		bugs = append(bugs, bugTornFrame)
	}
	if len(bugs) > 0 {
		t.Fatal(strings.Join(bugs, "\n"))
	}
}

// pushN sends n new batches of size records (after p's unanswered tail) on one
// stream and waits for their answers.
func pushN(cc *grpc.ClientConn, p *agentPusher, n, size int) error {
	stop := make(chan struct{})
	sent := 0
	return p.run(cc, stop, func() *shiplogv1.PushRequest {
		sent++
		if sent == n {
			close(stop)
		}
		return p.batch(size, randomRecords("fill", p.agent, 200))
	}, nil)
}

// testDiskENOSPC runs the whole data directory out of space with the floor
// off.
func testDiskENOSPC(t *testing.T) {
	dir := mountTmpfs(t, "48m")
	ballast(t, dir+"/ballast", 12<<20)
	s := startServer(t, dir, "--min-free-disk", "0", "--insecure")
	outOfSpace(t, s, []*agentPusher{{agent: "full-0", window: 4}, {agent: "full-1", window: 4}}, dir, dir+"/ballast")
}

// testWALENOSPC runs the write-ahead log (on its own small filesystem, as an
// operator may mount it) out of space, leaving the rest of the store room.
func testWALENOSPC(t *testing.T) {
	wal := mountTmpfs(t, "16m")
	ballast(t, wal+"/ballast", 4<<20)
	dir := t.TempDir() + "/data"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(wal, dir+"/wal"); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir, "--min-free-disk", "0", "--insecure")
	outOfSpace(t, s, []*agentPusher{{agent: "wal-0", window: 4}, {agent: "wal-1", window: 4}}, wal, wal+"/ballast")
}

// rawHTTP opens a TCP connection with a small receive buffer and sends req.
func rawHTTP(t *testing.T, addr, req string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if req != "" {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
	}
	return c.(*net.TCPConn)
}

// ingestFor pushes over n streams for d and returns the records acked.
func ingestFor(t *testing.T, cc *grpc.ClientConn, prefix string, n int, d time.Duration) uint64 {
	t.Helper()
	stop := make(chan struct{})
	time.AfterFunc(d, func() { close(stop) })
	var wg sync.WaitGroup
	ps := make([]*agentPusher, n)
	for i := range ps {
		ps[i] = &agentPusher{agent: fmt.Sprintf("%s-%d", prefix, i), window: 4}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := ps[i]
			gen := func() *shiplogv1.PushRequest {
				now := timestamppb.Now()
				return p.batch(1000, func(seq uint64) *shiplogv1.Record {
					lvl := "info"
					if seq%100 == 0 {
						lvl = "error"
					}
					return &shiplogv1.Record{Time: now, Service: prefix, Host: p.agent, Level: lvl,
						Message: fmt.Sprintf("slow-client test line %d of %s with some words to index", seq, p.agent)}
				})
			}
			if err := p.run(cc, stop, gen, nil); err != nil {
				t.Errorf("%s: %v", p.agent, err)
			}
		}()
	}
	wg.Wait()
	var acked uint64
	for _, p := range ps {
		for _, b := range p.bad {
			t.Errorf("%s: %s", p.agent, b)
		}
		acked += p.acked
	}
	return acked
}

// testSlowClients: a live tail that never reads must not slow ingest or other
// tails and must skip records (and be told) rather than queue without bound;
// a slow-loris connection must be closed.
func testSlowClients(t *testing.T) {
	s := startServer(t, t.TempDir()+"/data")
	cc := dialNew(t, s)

	// Slow loris: headers at one byte a second, started first as it takes longest.
	loris := make(chan string, 1)
	go func() {
		c, err := net.Dial("tcp", s.httpAddr)
		if err != nil {
			loris <- err.Error()
			return
		}
		defer c.Close()
		start := time.Now()
		req := "GET /v1/logs:search HTTP/1.1\r\nHost: shiplog\r\nX-Slow: " + strings.Repeat("a", 100) + "\r\n\r\n"
		for i := 0; i < len(req); i++ {
			if _, err := c.Write([]byte{req[i]}); err != nil {
				loris <- fmt.Sprintf("closed after %s and %d bytes (write: %v)", time.Since(start).Round(time.Second), i, err)
				return
			}
			// Closed yet? Look without blocking for long.
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			var b [512]byte
			n, err := c.Read(b[:])
			if err == io.EOF || (err == nil && n >= 0) {
				loris <- fmt.Sprintf("closed after %s and %d bytes (answer %q)", time.Since(start).Round(time.Second), i+1, firstLine(b[:n]))
				return
			}
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				loris <- fmt.Sprintf("closed after %s and %d bytes (read: %v)", time.Since(start).Round(time.Second), i+1, err)
				return
			}
		}
		loris <- "still open after the whole request was sent one byte a second"
	}()

	// A well-behaved tail of errors, there all along.
	good, err := http.Get("http://" + s.httpAddr + "/v1/logs:tail?q=" + url.QueryEscape("level:error"))
	if err != nil {
		t.Fatal(err)
	}
	defer good.Body.Close()
	var goodLines, goodDropped atomic.Int64
	goodDone := make(chan struct{})
	go func() {
		defer close(goodDone)
		sc := bufio.NewScanner(good.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "fell behind") {
				goodDropped.Add(1)
			} else {
				goodLines.Add(1)
			}
		}
	}()
	// The server subscribes just after the answer's headers.
	waitFor(t, s, "the good tail subscribed", func() bool { return s.metric(t, "shiplog_tails") >= 1 })

	// The ingest rate without, then with a tail of everything that never reads.
	const secs = 3 * time.Second
	base := ingestFor(t, cc, "base", 4, secs)
	slow := rawHTTP(t, s.httpAddr, "GET /v1/logs:tail?q= HTTP/1.1\r\nHost: shiplog\r\n\r\n")
	waitFor(t, s, "the stuck tail subscribed", func() bool { return s.metric(t, "shiplog_tails") >= 2 })
	rssBefore := procStatusKB(s.pid(), "VmRSS")
	withTail := ingestFor(t, cc, "tailed", 4, secs)
	rssAfter := procStatusKB(s.pid(), "VmRSS")
	t.Logf("ingest: %d rec/s without a tail, %d rec/s with a stuck tail of everything (%.0f%%); server RSS %d -> %d MiB",
		base*uint64(time.Second)/uint64(secs), withTail*uint64(time.Second)/uint64(secs), 100*float64(withTail)/float64(max(base, 1)), rssBefore>>10, rssAfter>>10)

	// The well-behaved tail gets its records (1% of them are errors), however
	// long it takes on a busy machine.
	wantGood := int64((base + withTail) / 100)
	for deadline := time.Now().Add(15 * time.Second); goodLines.Load() < wantGood && goodDropped.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	// The stuck tail: read what is buffered now; the server must have skipped
	// records for it (a line says how many) rather than queueing without bound.
	_ = slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReaderSize(slow, 1<<20)
	var lines, dropMsg int
	var readErr error
	for {
		l, err := br.ReadString('\n')
		if strings.Contains(l, "fell behind") {
			dropMsg++
			break
		}
		if strings.Contains(l, `"message"`) {
			lines++
		}
		if err != nil {
			readErr = err
			break
		}
	}
	t.Logf("stuck tail: %d records delivered once read, then drop message=%v (err %v)", lines, dropMsg > 0, readErr)
	if dropMsg == 0 {
		t.Errorf("the stuck tail was not told it fell behind (read %d records, %v)", lines, readErr)
	}
	if uint64(lines) >= withTail {
		t.Errorf("the stuck tail got all %d records: nothing was skipped", lines)
	}
	// Others were not affected: the good tail saw the error lines and goes on.
	good.Body.Close()
	<-goodDone
	t.Logf("good tail: %d of %d error records, dropped=%v", goodLines.Load(), wantGood, goodDropped.Load() > 0)
	if goodDropped.Load() > 0 || goodLines.Load() != wantGood {
		t.Errorf("the well-behaved tail got %d of %d records (dropped %v)", goodLines.Load(), wantGood, goodDropped.Load() > 0)
	}

	msg := <-loris
	t.Logf("slow loris: %s", msg)
	if strings.HasPrefix(msg, "still open") {
		t.Errorf("slow loris: %s", msg)
	}
	// The server still serves.
	if got := s.histogramTotal(t, "service:tailed", time.Now().Add(-time.Hour), time.Now().Add(time.Minute)); got != int(withTail) {
		t.Errorf("stored %d of %d acked", got, withTail)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}

// testIdleConnections opens thousands of idle TCP connections to both ports;
// search and push must still work and the server's memory stay bounded.
func testIdleConnections(t *testing.T) {
	const httpConns, grpcConns = 2000, 500
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	need := uint64(httpConns+grpcConns) + 1000
	if lim.Cur < need {
		old := lim
		lim.Cur = min(need, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < need {
			t.Skipf("cannot raise the open file limit to %d (max %d): %v", need, lim.Max, err)
		}
		t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	}
	s := startServer(t, t.TempDir()+"/data")
	t.Logf("server limit: %s", procLimit(s.pid(), "Max open files"))
	cc := dialNew(t, s)
	acked := ingestFor(t, cc, "idle", 2, time.Second)
	rss0 := procStatusKB(s.pid(), "VmRSS")

	// Half of each kind sends nothing; the other half of the HTTP ones made
	// one request and stay open (keep-alive), the other half of the gRPC ones
	// sent the HTTP/2 preface and SETTINGS, so the server set up a transport.
	conns := make([]net.Conn, 0, httpConns+grpcConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	h2preface := "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
	began := time.Now()
	for i := range httpConns + grpcConns {
		addr, hello := s.httpAddr, ""
		switch {
		case i < httpConns/2:
		case i < httpConns:
			hello = "GET /healthz HTTP/1.1\r\nHost: shiplog\r\n\r\n"
		case i < httpConns+grpcConns/2:
			addr = s.grpcAddr
		default:
			addr, hello = s.grpcAddr, h2preface
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d to %s: %v", i, addr, err)
		}
		conns = append(conns, c)
		if hello != "" {
			if _, err := io.WriteString(c, hello); err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
		}
	}
	// The keep-alive ones got their answer.
	for _, c := range conns[httpConns/2 : httpConns] {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 512)
		if n, err := c.Read(b); err != nil || !strings.HasPrefix(string(b[:n]), "HTTP/1.1 200") {
			t.Fatalf("healthz on a kept connection: %q %v", b[:n], err)
		}
	}
	opened := time.Since(began)
	// Let the server take the silent connections in before the RSS reading
	// (it has no gauge of them to wait on); the bound below is generous.
	time.Sleep(500 * time.Millisecond)
	rss1 := procStatusKB(s.pid(), "VmRSS")

	// Search and push still work, over new connections.
	more := ingestFor(t, dialNew(t, s), "idle2", 2, time.Second)
	var sr searchResp
	if code, body := s.getJSON(t, "/v1/logs:search", url.Values{"q": {"service:idle2"}, "limit": {"100"}}, &sr); code != 200 || len(sr.Records) != 100 {
		t.Fatalf("search with %d idle connections: %d %.300s", len(conns), code, body)
	}
	if got := s.histogramTotal(t, "service:idle OR service:idle2", time.Now().Add(-time.Hour), time.Now().Add(time.Minute)); got != int(acked+more) {
		t.Fatalf("stored %d, acked %d", got, acked+more)
	}
	rss2 := procStatusKB(s.pid(), "VmRSS")
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid()))
	t.Logf("%d idle connections opened in %s; server fds %d; RSS %d MiB before, %d MiB with them, %d MiB after ingest+search (%d rec/s with them)",
		len(conns), opened.Round(time.Millisecond), len(fds), rss0>>10, rss1>>10, rss2>>10, more)
	// Bounded: an idle connection must cost well under 128 KiB.
	if per := (rss1 - rss0) * 1024 / int64(len(conns)); per > 128<<10 {
		t.Errorf("each idle connection costs %d KiB of server memory", per>>10)
	}
	if rss2 > 1<<20 {
		t.Errorf("server RSS %d MiB with idle connections", rss2>>10)
	}
}

// testMatchEverything fills a store with 300k records and asks for all of them.
func testMatchEverything(t *testing.T) {
	const n = 300_000
	s := startServer(t, t.TempDir()+"/data")
	cc := dialNew(t, s)
	began := time.Now()
	ps := make([]*agentPusher, 4)
	var wg sync.WaitGroup
	for i := range ps {
		ps[i] = &agentPusher{agent: fmt.Sprintf("all-%d", i), window: 4}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := ps[i]
			left := n / len(ps)
			t0 := time.Now().Add(-2 * time.Hour)
			gen := func() *shiplogv1.PushRequest {
				k := min(left, 5000)
				left -= k
				return p.batch(k, func(seq uint64) *shiplogv1.Record {
					return &shiplogv1.Record{Time: timestamppb.New(t0.Add(time.Duration(seq) * 20 * time.Millisecond)),
						Service: "all", Host: p.agent, Level: []string{"info", "warn", "error"}[seq%3],
						Message:    fmt.Sprintf("GET /api/v1/items/%d 200 %dms user=%d", seq, seq%250, seq%977),
						Attributes: map[string]string{"status": "200"}}
				})
			}
			stop := make(chan struct{})
			if err := p.run(cc, stop, func() *shiplogv1.PushRequest {
				r := gen()
				if left == 0 {
					close(stop)
				}
				return r
			}, nil); err != nil {
				t.Errorf("%s: %v", p.agent, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d records stored in %s", n, time.Since(began).Round(time.Millisecond))

	timed := func(name, path string, params url.Values, v any) (int, string) {
		t.Helper()
		start := time.Now()
		code, body := s.getJSON(t, path, params, v)
		t.Logf("%s: %d in %s", name, code, time.Since(start).Round(time.Millisecond))
		return code, body
	}
	var sr searchResp
	if code, body := timed("search q='' limit=10000", "/v1/logs:search", url.Values{"limit": {"10000"}}, &sr); code != 200 || len(sr.Records) != 10000 || sr.NextCursor == "" {
		t.Fatalf("search everything: %d, %d records, cursor %q %.300s", code, len(sr.Records), sr.NextCursor, body)
	}
	ascAll := url.Values{"limit": {"10000"}, "order": {"asc"}, "start": {"24h"}}
	if code, body := timed("search asc 24h", "/v1/logs:search", ascAll, &sr); code != 200 || len(sr.Records) != 10000 {
		t.Fatalf("asc: %d %.300s", code, body)
	}
	start, end := time.Now().Add(-3*time.Hour), time.Now().Add(time.Minute)
	for _, q := range []string{"", "/.*/", "*", "-level:fatal", "service:all OR level:info"} {
		var h struct {
			Buckets []struct{} `json:"buckets"`
			Total   int        `json:"total"`
		}
		params := url.Values{"q": {q}, "start": {start.Format(time.RFC3339)}, "end": {end.Format(time.RFC3339)}, "step": {"1m"}}
		if code, body := timed(fmt.Sprintf("histogram q=%q", q), "/v1/logs:histogram", params, &h); code != 200 || h.Total != n {
			t.Errorf("histogram %q: %d, total %d, want %d %.300s", q, code, h.Total, n, body)
		}
	}
	for _, q := range []string{"/.*/", "/[0-9]+/", "*"} {
		var r searchResp
		if code, body := timed(fmt.Sprintf("search q=%q limit=10000", q), "/v1/logs:search", url.Values{"q": {q}, "limit": {"10000"}}, &r); code != 200 || len(r.Records) != 10000 || r.NextCursor == "" {
			t.Errorf("search %q: %d, %d records %.300s", q, code, len(r.Records), body)
		}
	}
	// Over the page limit, and a histogram of too many buckets: 400 with words.
	for _, p := range []url.Values{{"limit": {"10001"}}, {"limit": {"1000000"}}} {
		code, body := s.getJSON(t, "/v1/logs:search", p, nil)
		if code != 400 || !strings.Contains(body, "maximum") {
			t.Errorf("search %v: %d %s", p, code, body)
		}
	}
	if code, body := s.getJSON(t, "/v1/logs:histogram", url.Values{"start": {"30d"}, "step": {"1s"}}, nil); code != 400 {
		t.Errorf("histogram of 2.6M buckets: %d %s", code, body)
	}
	// Paging on through everything: each record once, newest first.
	seen := make(map[string]struct{}, 5*10000)
	params := url.Values{"limit": {"10000"}}
	var last time.Time
	began = time.Now()
	for page := 0; page < 5; page++ {
		var r searchResp
		if code, body := s.getJSON(t, "/v1/logs:search", params, &r); code != 200 || len(r.Records) != 10000 || r.NextCursor == "" {
			t.Fatalf("page %d: %d, %d records, cursor %q %.300s", page, code, len(r.Records), r.NextCursor, body)
		}
		for _, rec := range r.Records {
			if _, dup := seen[rec.ID]; dup {
				t.Fatalf("page %d: record %s twice", page, rec.ID)
			}
			if !last.IsZero() && rec.Time.After(last) {
				t.Fatalf("page %d: not newest first", page)
			}
			seen[rec.ID], last = struct{}{}, rec.Time
		}
		params.Set("cursor", r.NextCursor)
	}
	t.Logf("5 pages of 10000 in %s", time.Since(began).Round(time.Millisecond))
	t.Logf("server peak RSS %d MiB", procStatusKB(s.pid(), "VmHWM")>>10)
}

package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// crashRounds is the number of SIGKILL rounds (SHIPLOG_CRASH_ROUNDS overrides).
func crashRounds() int {
	if n, err := strconv.Atoi(os.Getenv("SHIPLOG_CRASH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 20
}

// TestCrashLoop SIGKILLs the server at random moments of heavy concurrent
// ingest and checks after every restart that each acked record is stored
// exactly once, that what was stored but not acked is a clean prefix of the
// unacked tail, that a resend of that tail is answered as duplicates for
// exactly what was stored, and that earlier rounds are unchanged.
func TestCrashLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("crash loop")
	}
	t.Run("kill while a day index is created", testKillIndexCreate)
	t.Run("loop", testCrashLoop)
}

// testKillIndexCreate SIGKILLs the server the moment the index of a new day
// appears on disk: after a restart the day must be searchable.
func testKillIndexCreate(t *testing.T) {
	dir := t.TempDir() + "/data"
	s := startServer(t, dir)
	day := time.Now().UTC().AddDate(0, 0, -3).Truncate(24 * time.Hour)
	recs := makeRecords(5000, day.Add(time.Hour), 1)
	for i := range recs {
		recs[i].service, recs[i].host = "idx", "idx-1" // one stream: 4 sealed chunks, one open
	}
	pushAll(t, s.dial(t), toBatches(recs, "idx", 5000))
	// The indexer creates the day's index some 300 ms after the first seal.
	probe := filepath.Join(dir, "index", day.Format("2006-01-02"), "store", "root.bolt")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(probe); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no index at %s after 10s", probe)
		}
		time.Sleep(200 * time.Microsecond)
	}
	s.kill()
	s.restart()
	params := url.Values{"q": {"service:idx"}, "start": {day.Format(time.RFC3339)}, "end": {day.Add(24 * time.Hour).Format(time.RFC3339)}, "limit": {"10000"}}
	var r searchResp
	code, body := s.getJSON(t, "/v1/logs:search", params, &r)
	if code != 200 {
		skipIfIndexBug(t, body)
		t.Fatalf("search of the day after the kill: %d %s\n%s", code, body, s.logProblems(20))
	}
	if len(r.Records) != len(recs) {
		t.Fatalf("%d records of the day after the kill, want %d", len(r.Records), len(recs))
	}
	// And after another restart, with the index rebuilt or repaired.
	s.kill()
	s.restart()
	if n := s.histogramTotal(t, "handled", day, day.Add(24*time.Hour)); n != count(recs, func(r rec) bool { return strings.Contains(r.msg, "handled") }) {
		t.Fatalf("histogram of handled after a second restart: %d", n)
	}
}

func testCrashLoop(t *testing.T) {
	const pushers = 4
	rounds := crashRounds()
	began := time.Now()
	dir := t.TempDir() + "/data"
	s := startServer(t, dir)
	t0 := time.Now().Add(-time.Minute)
	// Today's index is made and persisted first, with a clean stop: a kill
	// while it is created is the subtest above.
	warm := makeRecords(3000, time.Now().Add(-time.Minute), 1)
	for i := range warm {
		warm[i].service = "warm"
	}
	pushAll(t, s.dial(t), toBatches(warm, "warm", 3000))
	s.stop()
	if _, err := os.Stat(filepath.Join(dir, "index", time.Now().UTC().Format("2006-01-02"), "store", "root.bolt")); err != nil {
		t.Fatalf("no index of today after a clean stop: %v", err)
	}
	s.restart()

	ps := make([]*agentPusher, pushers)
	for i := range ps {
		ps[i] = &agentPusher{agent: fmt.Sprintf("crash-p%d", i), window: 8}
	}
	// lo[r][p], hi[r][p]: the seqs pusher p gave out in round r (lo > hi: none).
	lo := make([][pushers]uint64, rounds)
	hi := make([][pushers]uint64, rounds)
	// stored[p]: every seq 1..stored[p] of pusher p is in the store, once.
	var stored [pushers]uint64
	pad := strings.Repeat("abcdefgh", 6)

	var totalAcked, totalUnackedStored, totalResent, totalResentDup int
	var killAfter, restartTook time.Duration
	for round := range rounds {
		// A fresh connection each round: the last one backs off after the kill.
		cc, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		// What each pusher expects its resend to be answered with: the
		// unacked tail's records that the last check found stored.
		var wantResentDup [pushers]uint64
		for p := range ps {
			ps[p].mu.Lock()
			ps[p].resentAcc, ps[p].resentDup = 0, 0
			for _, b := range ps[p].pending {
				for _, r := range b.req.Records {
					if r.Seq <= stored[p] {
						wantResentDup[p]++
					}
				}
				totalResent += len(b.req.Records)
			}
			lo[round][p] = ps[p].seq + 1
			ps[p].mu.Unlock()
		}

		var resent, done sync.WaitGroup
		errs := make([]error, pushers)
		for p := range ps {
			resent.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				n := 0
				gen := func() *shiplogv1.PushRequest {
					n++
					now := time.Now()
					return ps[p].batch(200+rand.IntN(301), func(seq uint64) *shiplogv1.Record {
						return &shiplogv1.Record{Time: timestamppb.New(now), Service: "crash", Host: ps[p].agent, Level: "info",
							Message:    fmt.Sprintf("crash round %d pusher %d seq %d %s", round, p, seq, pad),
							Attributes: map[string]string{"round": strconv.Itoa(round), "pusher": strconv.Itoa(p)}}
					})
				}
				var once sync.Once
				errs[p] = ps[p].run(cc, nil, gen, func() { once.Do(resent.Done) })
				once.Do(resent.Done)
			}()
		}
		resent.Wait()
		// Heavy ingest is under way: kill at a random moment of it.
		wait := time.Duration(50+rand.IntN(351)) * time.Millisecond
		killAfter += wait
		time.Sleep(wait)
		s.kill()
		done.Wait()
		cc.Close()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		for p := range ps {
			ps[p].mu.Lock()
			hi[round][p] = ps[p].seq
			if errs[p] == nil {
				t.Errorf("round %d pusher %d: stream ended without an error although the server was killed", round, p)
			}
			for _, b := range ps[p].bad {
				t.Errorf("round %d pusher %d: %s", round, p, b)
			}
			ps[p].bad = nil
			if round > 0 && (ps[p].resentDup != wantResentDup[p]) {
				t.Errorf("round %d pusher %d: the resent tail was answered with %d duplicates and %d accepted; the store held %d of it",
					round, p, ps[p].resentDup, ps[p].resentAcc, wantResentDup[p])
			}
			totalResentDup += int(ps[p].resentDup)
			ps[p].mu.Unlock()
		}
		if t.Failed() {
			t.FailNow()
		}

		restarted := time.Now()
		s.restart()
		took := time.Since(restarted)
		restartTook += took

		// This round: every acked record once, and what is stored beyond the
		// acks is a prefix of the unacked tail.
		got := roundSeqs(t, s, round)
		var acked, extra int
		for p := range ps {
			ps[p].mu.Lock()
			ack := ps[p].acked
			ps[p].mu.Unlock()
			l, h := lo[round][p], hi[round][p]
			top, err := checkPrefix(got[p], l, h, ack)
			if err != nil {
				t.Fatalf("round %d pusher %d (seqs %d-%d given out, acked to %d): %v\n%s", round, p, l, h, ack, err, s.logProblems(20))
			}
			if top >= l {
				stored[p] = top
			}
			if ack >= l {
				acked += int(min(ack, h) - l + 1)
			}
			if top > max(ack, l-1) {
				extra += int(top - max(ack, l-1))
			}
		}
		totalAcked += acked
		totalUnackedStored += extra
		// The round before is now whole: its tail was resent at the start of this one.
		if round > 0 {
			prev := roundSeqs(t, s, round-1)
			for p := range ps {
				l, h := lo[round-1][p], hi[round-1][p]
				if top, err := checkPrefix(prev[p], l, h, h); err != nil || (h >= l && top != h) {
					t.Fatalf("round %d after its resend, pusher %d (seqs %d-%d): top %d, %v", round-1, p, l, h, top, err)
				}
				stored[p] = max(stored[p], h)
			}
		}
		// Every round so far: each pusher holds exactly seqs 1..stored.
		end := time.Now().Add(time.Minute)
		for p := range ps {
			if n := s.histogramTotal(t, "host:"+ps[p].agent, t0, end); n != int(stored[p]) {
				t.Fatalf("after round %d pusher %d: %d records in the store, want %d", round, p, n, stored[p])
			}
		}
		t.Logf("round %2d: killed after %3dms; acked %5d, stored but unacked %4d, unanswered %4d; restart %s, checks %s",
			round, wait.Milliseconds(), acked, extra, unansweredAll(ps), took.Round(time.Millisecond), (time.Since(restarted) - took).Round(time.Millisecond))
	}
	var sum uint64
	for p := range ps {
		sum += stored[p]
	}
	if n := s.histogramTotal(t, "service:crash", t0, time.Now().Add(time.Minute)); n != int(sum) {
		t.Fatalf("at the end: %d records, want %d", n, sum)
	}
	if p := s.logProblems(10); p != "" {
		t.Logf("server log warnings and errors (first 10):\n%s", p)
		if strings.Contains(p, "panic") || strings.Contains(p, "fatal error") {
			t.Fatal("the server crashed by itself")
		}
	}
	t.Logf("CRASH: rounds=%d records=%d acked=%d stored_unacked=%d resent=%d resent_dup=%d mean_kill_after=%s mean_restart=%s took=%s",
		rounds, sum, totalAcked, totalUnackedStored, totalResent, totalResentDup,
		(killAfter / time.Duration(rounds)).Round(time.Millisecond), (restartTook / time.Duration(rounds)).Round(time.Millisecond),
		time.Since(began).Round(100*time.Millisecond))
}

func unansweredAll(ps []*agentPusher) int {
	n := 0
	for _, p := range ps {
		n += p.unanswered()
	}
	return n
}

// roundSeqs pages through round:N and returns, per pusher, how many times
// each seq is stored.
func roundSeqs(t *testing.T, s *server, round int) map[int]map[uint64]int {
	t.Helper()
	out := map[int]map[uint64]int{}
	s.searchEach(t, "round:"+strconv.Itoa(round), 10000, func(r *searchRecord) {
		p, err1 := strconv.Atoi(r.Attributes["pusher"])
		seq, err2 := strconv.ParseUint(r.Seq, 10, 64)
		if err1 != nil || err2 != nil || r.Attributes["round"] != strconv.Itoa(round) {
			t.Fatalf("round %d: record %+v", round, r)
		}
		if out[p] == nil {
			out[p] = map[uint64]int{}
		}
		out[p][seq]++
	})
	return out
}

// checkPrefix checks that got holds each seq of lo..top exactly once and
// nothing else, for some top with min(acked, hi) <= top <= hi, and returns top
// (lo-1 when got is empty).
func checkPrefix(got map[uint64]int, lo, hi, acked uint64) (uint64, error) {
	top := lo - 1
	for seq, n := range got {
		if n != 1 {
			return 0, fmt.Errorf("seq %d stored %d times", seq, n)
		}
		if seq < lo || seq > hi {
			return 0, fmt.Errorf("seq %d stored, outside the round's %d-%d", seq, lo, hi)
		}
		top = max(top, seq)
	}
	if uint64(len(got)) != top-(lo-1) {
		for seq := lo; seq <= top; seq++ {
			if got[seq] == 0 {
				return 0, fmt.Errorf("seq %d missing below stored seq %d", seq, top)
			}
		}
	}
	if want := min(acked, hi); want >= lo && top < want {
		return 0, fmt.Errorf("acked seqs %d-%d missing (stored up to %d)", top+1, want, top)
	}
	return top, nil
}

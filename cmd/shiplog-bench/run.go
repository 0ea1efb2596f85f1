package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shiplog/shiplog/internal/harness"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// ---- server process -------------------------------------------------------

type server struct {
	proc     *harness.Proc
	cmd      *exec.Cmd
	httpAddr string
	grpcAddr string
	logPath  string
	exited   <-chan struct{}
}

func newServer(p *harness.Proc, logPath string) *server {
	return &server{proc: p, cmd: p.Cmd, httpAddr: p.HTTPAddr, grpcAddr: p.GRPCAddr, logPath: logPath, exited: p.Done()}
}

// startServer runs `bin server` on loopback ports the kernel picks (reported
// by the server) and waits for /readyz.
func startServer(bin, dataDir, logPath string, readyTimeout time.Duration) (*server, time.Duration, error) {
	t0 := time.Now()
	p, err := harness.Start(harness.Config{Bin: bin, Args: []string{"--data", dataDir}, LogPath: logPath})
	if err != nil {
		return nil, 0, fmt.Errorf("%w; log %s:\n%s", err, logPath, logTail(logPath))
	}
	if err := p.WaitReady(readyTimeout); err != nil {
		p.Kill()
		return nil, 0, fmt.Errorf("%w; log %s:\n%s", err, logPath, logTail(logPath))
	}
	return newServer(p, logPath), time.Since(t0), nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) kill() { s.proc.Kill() }

// stop sends SIGTERM and waits. clean is false when the server did not exit 0 in
// time. cpu is the process's total user+system CPU time.
func (s *server) stop(timeout time.Duration) (clean bool, took, cpu time.Duration, err error) {
	t0 := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return false, 0, 0, err
	}
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.kill()
		return false, time.Since(t0), 0, fmt.Errorf("server ignored SIGTERM for %v, killed it", timeout)
	}
	took = time.Since(t0)
	ps := s.cmd.ProcessState
	cpu = ps.UserTime() + ps.SystemTime()
	if !ps.Success() {
		return false, took, cpu, fmt.Errorf("server did not exit cleanly on SIGTERM: %v; log %s:\n%s", s.proc.Err(), s.logPath, logTail(s.logPath))
	}
	return true, took, cpu, nil
}

func logTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "  | " + strings.ReplaceAll(strings.TrimRight(string(b), "\n"), "\n", "\n  | ")
}

var clkTck = func() float64 {
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}()

// procCPU is utime+stime of pid from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')') // comm may contain spaces
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	return time.Duration(float64(ut+st) / clkTck * float64(time.Second)), nil
}

// procHWM is VmHWM (peak RSS) of pid in bytes.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// diskUsage is `du -sb dir`, or a walk of the apparent file sizes if du fails.
func diskUsage(dir string) (int64, error) {
	if out, err := exec.Command("du", "-sb", dir).Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) > 0 {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				return n, nil
			}
		}
	}
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if info, err := d.Info(); err == nil {
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// diskBreakdown sizes each top-level entry of dir ("badger=10.8MB index=0.9MB").
func diskBreakdown(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, e := range ents {
		if n, err := diskUsage(filepath.Join(dir, e.Name())); err == nil {
			parts = append(parts, fmt.Sprintf("%s=%.1fMB", e.Name(), float64(n)/1e6))
		}
	}
	return strings.Join(parts, " ")
}

// ---- ingest ---------------------------------------------------------------

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// checkAck verifies one PushResponse against the batch it answers.
func checkAck(req *shiplogv1.PushRequest, resp *shiplogv1.PushResponse) error {
	n := len(req.Records)
	last := req.Records[n-1].Seq
	if int(resp.Accepted) != n || resp.Duplicates != 0 {
		return fmt.Errorf("agent %s batch seq %d..%d: accepted=%d duplicates=%d, want accepted=%d duplicates=0",
			req.AgentId, req.Records[0].Seq, last, resp.Accepted, resp.Duplicates, n)
	}
	if resp.AckedSeq < last {
		return fmt.Errorf("agent %s batch seq %d..%d: acked_seq=%d < %d", req.AgentId, req.Records[0].Seq, last, resp.AckedSeq, last)
	}
	return nil
}

// ingestGRPC sends perConn[c] on its own connection and Push stream (to
// addrs[c%len(addrs)]: several addresses spread the streams over a cluster's
// nodes), keeping up to inflight batches unacknowledged, and checks every answer.
// It returns the wall time from the first send to the last ack; start is called
// just before the first send.
func ingestGRPC(ctx context.Context, addrs []string, perConn [][]*shiplogv1.PushRequest, inflight int, start func()) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := make([]shiplogv1.IngestService_PushClient, len(perConn))
	for c := range perConn {
		cc, err := grpc.NewClient(addrs[c%len(addrs)], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return 0, err
		}
		defer cc.Close()
		st, err := shiplogv1.NewIngestServiceClient(cc).Push(ctx, grpc.WaitForReady(true))
		if err != nil {
			return 0, fmt.Errorf("open Push stream %d: %w", c, err)
		}
		streams[c] = st
	}
	errs := make([]error, len(perConn))
	lastAck := make([]time.Time, len(perConn))
	var wg sync.WaitGroup
	start()
	t0 := time.Now()
	for c := range perConn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, batches := streams[c], perConn[c]
			sem := make(chan struct{}, inflight)
			sendErr := make(chan error, 1)
			go func() {
				defer close(sendErr)
				for _, req := range batches {
					select {
					case sem <- struct{}{}:
					case <-ctx.Done():
						return
					}
					if err := st.Send(req); err != nil {
						if err != io.EOF { // io.EOF: the real error comes from Recv
							sendErr <- fmt.Errorf("stream %d send: %w", c, err)
							cancel()
						}
						return
					}
				}
				st.CloseSend()
			}()
			for i, req := range batches {
				resp, err := st.Recv()
				if err != nil {
					errs[c] = fmt.Errorf("stream %d: recv ack %d/%d: %w", c, i+1, len(batches), err)
					cancel()
					return
				}
				if err := checkAck(req, resp); err != nil {
					errs[c] = fmt.Errorf("stream %d: %w", c, err)
					cancel()
					return
				}
				<-sem
			}
			lastAck[c] = time.Now()
			if e := <-sendErr; e != nil {
				errs[c] = e
				return
			}
			eof := make(chan error, 1)
			go func() { _, err := st.Recv(); eof <- err }()
			select {
			case err := <-eof:
				if err != io.EOF {
					errs[c] = fmt.Errorf("stream %d: after the last ack want end of stream, got %v", c, err)
				}
			case <-time.After(30 * time.Second):
				errs[c] = fmt.Errorf("stream %d: server did not end the Push stream within 30s of CloseSend", c)
			}
		}()
	}
	wg.Wait()
	if err := firstErr(errs); err != nil {
		return 0, err
	}
	var end time.Time
	for _, t := range lastAck {
		if t.After(end) {
			end = t
		}
	}
	return end.Sub(t0), nil
}

// marshalHTTP pre-marshals every batch as protojson for POST /v1/logs:write.
func marshalHTTP(perConn [][]*shiplogv1.PushRequest) ([][][]byte, error) {
	out := make([][][]byte, len(perConn))
	for c, batches := range perConn {
		for _, req := range batches {
			b, err := protojson.Marshal(req)
			if err != nil {
				return nil, err
			}
			out[c] = append(out[c], b)
		}
	}
	return out, nil
}

// ingestHTTP posts bodies[c] from client c, one request at a time per client.
func ingestHTTP(ctx context.Context, httpAddr string, perConn [][]*shiplogv1.PushRequest, bodies [][][]byte, start func()) (time.Duration, error) {
	return postBodies(ctx, "http://"+httpAddr+"/v1/logs:write", "application/json", bodies, start, func(c, i int, rb []byte) error {
		var pr shiplogv1.PushResponse
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(rb, &pr); err != nil {
			return err
		}
		return checkAck(perConn[c][i], &pr)
	})
}

// postBodies POSTs bodies[c] one after another on each of len(bodies)
// connections at once, checking every 200 answer with check.
func postBodies(ctx context.Context, u, contentType string, bodies [][][]byte, start func(), check func(c, i int, answer []byte) error) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: len(bodies), MaxConnsPerHost: len(bodies), DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	errs := make([]error, len(bodies))
	var wg sync.WaitGroup
	start()
	t0 := time.Now()
	for c := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, body := range bodies[c] {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
				req.Header.Set("Content-Type", contentType)
				resp, err := hc.Do(req)
				if err == nil {
					var rb []byte
					rb, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %s: %.500s", resp.Status, rb)
					}
					if err == nil {
						err = check(c, i, rb)
					}
				}
				if err != nil {
					errs[c] = fmt.Errorf("client %d body %d: %w", c, i, err)
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(t0), firstErr(errs)
}

// ---- queries --------------------------------------------------------------

type queryClient struct {
	hc   *http.Client
	base string
}

func newQueryClient(httpAddr string) *queryClient {
	return &queryClient{hc: &http.Client{Timeout: 5 * time.Minute}, base: "http://" + httpAddr}
}

// get fetches path?params into msg. took is the round trip (request to last body
// byte); decoding is not counted.
func (q *queryClient) get(path string, params url.Values, msg proto.Message) (took time.Duration, err error) {
	u := q.base + path + "?" + params.Encode()
	t0 := time.Now()
	resp, err := q.hc.Get(u)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took = time.Since(t0)
	if err != nil {
		return took, err
	}
	if resp.StatusCode != http.StatusOK {
		return took, fmt.Errorf("GET %s: HTTP %s: %.500s", u, resp.Status, body)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, msg); err != nil {
		return took, fmt.Errorf("GET %s: decode: %w (body %.300s)", u, err, body)
	}
	// A cluster answer that lacks partitions says so; the bench wants whole answers.
	m := msg.ProtoReflect()
	if fd := m.Descriptor().Fields().ByName("partial"); fd != nil && m.Get(fd).Bool() {
		var missing []int64
		if md := m.Descriptor().Fields().ByName("missing_partitions"); md != nil && md.IsList() {
			l := m.Get(md).List()
			for i := 0; i < l.Len(); i++ {
				missing = append(missing, l.Get(i).Int())
			}
		}
		return took, fmt.Errorf("GET %s: partial answer (missing partitions %v)", u, missing)
	}
	return took, nil
}

// searchAll pages through a search with next_cursor and returns every record.
func (q *queryClient) searchAll(params url.Values) ([]*shiplogv1.Record, time.Duration, error) {
	var all []*shiplogv1.Record
	var total time.Duration
	p := url.Values{}
	for k, v := range params {
		p[k] = v
	}
	for page := 1; ; page++ {
		var resp shiplogv1.SearchResponse
		took, err := q.get("/v1/logs:search", p, &resp)
		total += took
		if err != nil {
			return nil, total, err
		}
		all = append(all, resp.Records...)
		if resp.NextCursor == "" {
			return all, total, nil
		}
		if len(resp.Records) == 0 && page > 1 {
			return nil, total, fmt.Errorf("page %d is empty but has next_cursor %q", page, resp.NextCursor)
		}
		if page > 100000 {
			return nil, total, errors.New("more than 100000 pages: cursor does not advance?")
		}
		p.Set("cursor", resp.NextCursor)
	}
}

type query struct {
	name string
	run  func() (time.Duration, error) // one run: latency and answer check
}

// queryEnv is what the bench's queries share: the client, the data set's
// expected answers and its time range.
type queryEnv struct {
	q          *queryClient
	exp        *expectation
	span       time.Duration
	start, end string
	lastTime   time.Time           // of the vanished host's last line
	hostRecs   []*shiplogv1.Record // the vanished host's lines, oldest first
}

// rng is the data set's time range with the given parameters (name, value, ...).
func (e *queryEnv) rng(kv ...string) url.Values {
	v := url.Values{"start": {e.start}, "end": {e.end}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// histo is the level:error histogram over the data set at step.
func (e *queryEnv) histo(step string) (*shiplogv1.HistogramResponse, time.Duration, error) {
	var h shiplogv1.HistogramResponse
	took, err := e.q.get("/v1/logs:histogram", e.rng("q", "level:error", "step", step), &h)
	return &h, took, err
}

// checkAll checks that recs holds want records, every record once (unique
// ids), each passing ok.
func checkAll(recs []*shiplogv1.Record, want int, ok func(*shiplogv1.Record) bool, what string) error {
	if len(recs) != want {
		return fmt.Errorf("got %d records, want %d", len(recs), want)
	}
	ids := make(map[string]struct{}, len(recs))
	for _, r := range recs {
		if r.Id != "" {
			if _, dup := ids[r.Id]; dup {
				return fmt.Errorf("record id %s returned twice across pages", r.Id)
			}
			ids[r.Id] = struct{}{}
		}
		if !ok(r) {
			return fmt.Errorf("record %s does not match %s: %v", r.Id, what, r)
		}
	}
	return nil
}

// sumBuckets is a histogram's bucket sum and number of non-empty buckets.
func sumBuckets(h *shiplogv1.HistogramResponse) (sum, nonZero int) {
	for _, b := range h.Buckets {
		sum += int(b.Count)
		if b.Count > 0 {
			nonZero++
		}
	}
	return
}

// buildQueries returns the eight checked queries (a..h) of expect.json.
func buildQueries(q *queryClient, exp *expectation) ([]query, error) {
	return buildQueriesOf(q, exp, true)
}

// buildQueriesOf returns a..h, or only a..e without withContext (h needs the
// vanished host's lines, read first).
func buildQueriesOf(q *queryClient, exp *expectation, withContext bool) ([]query, error) {
	first, err := time.Parse(time.RFC3339Nano, exp.FirstTime)
	if err != nil {
		return nil, fmt.Errorf("expect.json first_time: %w", err)
	}
	e := &queryEnv{q: q, exp: exp, span: time.Duration(exp.SpanHours * float64(time.Hour))}
	e.start, e.end = first.UTC().Format(time.RFC3339Nano), first.Add(e.span).UTC().Format(time.RFC3339Nano)
	if e.lastTime, err = time.Parse(time.RFC3339Nano, exp.EVanishedHost.LastTime); err != nil {
		return nil, fmt.Errorf("expect.json e_vanished_host.last_time: %w", err)
	}
	word := exp.BRareWord.Word
	// The record in the middle of the vanished host's lines, for context (not timed).
	if withContext {
		if e.hostRecs, _, err = q.searchAll(e.rng("q", "host:"+exp.EVanishedHost.Host, "order", "asc", "limit", "10000")); err != nil {
			return nil, fmt.Errorf("find the middle line of %s: %w", exp.EVanishedHost.Host, err)
		}
		if len(e.hostRecs) != exp.EVanishedHost.HostLines {
			return nil, fmt.Errorf("host %s has %d lines, want %d", exp.EVanishedHost.Host, len(e.hostRecs), exp.EVanishedHost.HostLines)
		}
	}
	qs := []query{
		{"a: all lines of " + exp.ABuild.BuildID, func() (time.Duration, error) {
			recs, took, err := q.searchAll(e.rng("q", "build_id:"+exp.ABuild.BuildID, "limit", "10000", "order", "asc"))
			if err == nil {
				err = checkAll(recs, exp.ABuild.Count, func(r *shiplogv1.Record) bool { return r.BuildId == exp.ABuild.BuildID }, "build_id")
			}
			return took, err
		}},
		{"b: rare word " + strconv.Quote(word), func() (time.Duration, error) {
			recs, took, err := q.searchAll(e.rng("q", word, "limit", "10000"))
			if err == nil {
				err = checkAll(recs, exp.BRareWord.Count, func(r *shiplogv1.Record) bool {
					return strings.Contains(strings.ToLower(r.Message), word)
				}, "word")
			}
			return took, err
		}},
		{"c: count of level:error", e.errorCount},
		{"d: errors per minute, 24h", e.errorsPerMinute},
		{"e: last 100 of " + exp.EVanishedHost.Host, e.vanishedHostLast},
		{"f: GET /v1/builds/" + exp.ABuild.BuildID, func() (time.Duration, error) {
			var b shiplogv1.Build
			took, err := q.get("/v1/builds/"+exp.ABuild.BuildID, nil, &b)
			if err == nil && int(b.Lines) != exp.ABuild.Count {
				err = fmt.Errorf("build has %d lines, want %d", b.Lines, exp.ABuild.Count)
			}
			return took, err
		}},
		{"g: GET /v1/hosts", func() (time.Duration, error) {
			var h shiplogv1.ListHostsResponse
			took, err := q.get("/v1/hosts", nil, &h)
			if err == nil && len(h.Hosts) != exp.DistinctHosts {
				err = fmt.Errorf("%d hosts, want %d", len(h.Hosts), exp.DistinctHosts)
			}
			return took, err
		}},
		{fmt.Sprintf("h: context of line %d of %d of %s", len(e.hostRecs)/2, len(e.hostRecs), exp.EVanishedHost.Host), e.context},
	}
	if !withContext {
		return qs[:5], nil
	}
	return qs, nil
}

// errorCount is query c: the count of level:error, one bucket over the data set.
func (e *queryEnv) errorCount() (time.Duration, error) {
	h, took, err := e.histo(formatStep(e.span))
	if err != nil {
		return took, err
	}
	sum, _ := sumBuckets(h)
	if int(h.Total) != e.exp.CLevelError.Count || sum != e.exp.CLevelError.Count {
		return took, fmt.Errorf("total=%d (bucket sum %d, %d buckets), want %d", h.Total, sum, len(h.Buckets), e.exp.CLevelError.Count)
	}
	return took, nil
}

// errorsPerMinute is query d: level:error per minute over the data set.
func (e *queryEnv) errorsPerMinute() (time.Duration, error) {
	h, took, err := e.histo("1m")
	if err != nil {
		return took, err
	}
	sum, nz := sumBuckets(h)
	if nz != e.exp.DErrorsPerMinute.Buckets || sum != e.exp.DErrorsPerMinute.Sum || int(h.Total) != sum {
		return took, fmt.Errorf("non-zero buckets=%d sum=%d total=%d, want buckets=%d sum=%d",
			nz, sum, h.Total, e.exp.DErrorsPerMinute.Buckets, e.exp.DErrorsPerMinute.Sum)
	}
	return took, nil
}

// vanishedHostLast is query e: the last 100 lines of the vanished host,
// newest first.
func (e *queryEnv) vanishedHostLast() (time.Duration, error) {
	vh := e.exp.EVanishedHost
	var resp shiplogv1.SearchResponse
	took, err := e.q.get("/v1/logs:search", e.rng("q", "host:"+vh.Host, "order", "desc", "limit", "100"), &resp)
	if err != nil {
		return took, err
	}
	recs := resp.Records
	if len(recs) != vh.ExpectedRows {
		return took, fmt.Errorf("got %d rows, want %d", len(recs), vh.ExpectedRows)
	}
	if len(recs) > 0 && !recs[0].GetTime().AsTime().Equal(e.lastTime) {
		return took, fmt.Errorf("first row time %s, want %s", recs[0].GetTime().AsTime().Format(time.RFC3339Nano), vh.LastTime)
	}
	for i, r := range recs {
		if r.Host != vh.Host {
			return took, fmt.Errorf("row %d has host %q", i, r.Host)
		}
		if i > 0 && r.GetTime().AsTime().After(recs[i-1].GetTime().AsTime()) {
			return took, fmt.Errorf("rows not newest first at row %d", i)
		}
	}
	return took, nil
}

// context is query h: 10 lines either side of the vanished host's middle line.
func (e *queryEnv) context() (time.Duration, error) {
	i := len(e.hostRecs) / 2
	var c shiplogv1.ContextResponse
	took, err := e.q.get("/v1/logs/"+e.hostRecs[i].Id+":context", url.Values{"before": {"10"}, "after": {"10"}}, &c)
	if err != nil {
		return took, err
	}
	if len(c.Before) != 10 || len(c.After) != 10 || c.Before[0].Id != e.hostRecs[i-10].Id || c.After[9].Id != e.hostRecs[i+10].Id {
		return took, fmt.Errorf("context: %d before, %d after, not the host's neighbouring lines", len(c.Before), len(c.After))
	}
	return took, nil
}

// formatStep writes a duration the way a user would ("24h", "1m", "90s").
func formatStep(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

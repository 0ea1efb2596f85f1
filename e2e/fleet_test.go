package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

type hostJSON struct {
	Host      string   `json:"host"`
	Service   string   `json:"service"`
	State     string   `json:"state"`
	Lines     int      `json:"lines"`
	DeployID  string   `json:"deploy_id"`
	BuildID   string   `json:"build_id"`
	DeployIDs []string `json:"deploy_ids"`
	FirstSeen time.Time
	Agents    []struct {
		AgentID    string `json:"agent_id"`
		AckedSeq   string `json:"acked_seq"`
		Received   string `json:"received"`
		Duplicates string `json:"duplicates"`
		Gaps       string `json:"gaps"`
		Dropped    string `json:"dropped"`
		Closed     bool   `json:"closed"`
	} `json:"agents"`
}

type buildJSON struct {
	BuildID  string   `json:"build_id"`
	Services []string `json:"services"`
	Hosts    []string `json:"hosts"`
	Lines    int      `json:"lines"`
	Status   string   `json:"status"`
	ExitCode int      `json:"exit_code"`
	Duration float64  `json:"duration_seconds"`
	Levels   struct {
		Error int `json:"error"`
	} `json:"levels"`
}

type deployJSON struct {
	DeployID          string     `json:"deploy_id"`
	Hosts             []string   `json:"hosts"`
	Lines             int        `json:"lines"`
	ErrorRate         float64    `json:"error_rate"`
	PreviousDeployID  string     `json:"previous_deploy_id"`
	PreviousErrorRate float64    `json:"previous_error_rate"`
	HostLives         []hostJSON `json:"host_lives"`
}

// TestFleet simulates an immutable fleet: two services, three deploys each,
// every deploy replacing every host; some agents say goodbye, some vanish.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	s := startServer(t, t.TempDir()+"/data", "--silent-after", "3s")
	cc := s.dial(t)
	client := shiplogv1.NewIngestServiceClient(cc)
	ctx := context.Background()
	t0 := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)

	type hostPlan struct {
		service, host, build, deploy string
		closes                       bool
		lines, errors                int
	}
	var plans []hostPlan
	for si, svc := range []string{"api", "worker"} {
		for d := 1; d <= 3; d++ {
			for h := 1; h <= 2; h++ {
				p := hostPlan{service: svc, host: fmt.Sprintf("%s-d%d-h%d", svc, d, h), build: fmt.Sprintf("build-%s-%d", svc, d),
					deploy: fmt.Sprintf("deploy-%s-%d", svc, d), closes: h == 1, lines: 100 + 10*h + si}
				// api's third deploy is bad: one line in four is an error.
				if svc == "api" && d == 3 {
					p.errors = p.lines / 4
				} else {
					p.errors = 2
				}
				plans = append(plans, p)
			}
		}
	}
	for i, p := range plans {
		d := int(p.deploy[len(p.deploy)-1] - '0')
		base := t0.Add(time.Duration(d-1) * 30 * time.Minute)
		req := &shiplogv1.PushRequest{AgentId: "agent-" + p.host, Closing: p.closes,
			Defaults: &shiplogv1.Record{Service: p.service, Host: p.host, BuildId: p.build, DeployId: p.deploy}}
		for j := 0; j < p.lines; j++ {
			lv := "info"
			if j < p.errors {
				lv = "error"
			}
			req.Records = append(req.Records, &shiplogv1.Record{Time: timestamppb.New(base.Add(time.Duration(j)*time.Second + time.Duration(i)*time.Millisecond)),
				Level: lv, Message: fmt.Sprintf("%s line %d", p.host, j), Seq: uint64(j + 1)})
		}
		if _, err := client.Write(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	// shiplog run reports: build 1 of api passed, build 2 failed with exit 3,
	// build 3 never ended and has been quiet for longer than --silent-after
	// (its run started hours ago): lost.
	for d, exit := range map[int]int{1: 0, 2: 3, 3: -1} {
		b := fmt.Sprintf("build-api-%d", d)
		start := t0.Add(time.Duration(d-1) * 30 * time.Minute)
		run := &shiplogv1.RunReport{BuildId: b, Service: "api", Host: "ci-1", Command: []string{"make", "test"}, Start: timestamppb.New(start)}
		if _, err := client.Write(ctx, &shiplogv1.PushRequest{AgentId: "ci-" + b, Run: run}); err != nil {
			t.Fatal(err)
		}
		if exit >= 0 {
			run.Finished, run.ExitCode, run.End = true, int32(exit), timestamppb.New(start.Add(90*time.Second))
			if _, err := client.Write(ctx, &shiplogv1.PushRequest{AgentId: "ci-" + b, Run: run}); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("builds", func(t *testing.T) {
		var r struct{ Builds []buildJSON }
		s.getJSON(t, "/v1/builds", nil, &r)
		if len(r.Builds) != 6 {
			t.Fatalf("%d builds", len(r.Builds))
		}
		if r.Builds[0].BuildID != "build-api-3" && r.Builds[0].BuildID != "build-worker-3" {
			t.Fatalf("newest build first: %s", r.Builds[0].BuildID)
		}
		want := map[string]struct {
			status string
			exit   int
		}{"build-api-1": {"passed", 0}, "build-api-2": {"failed", 3}, "build-api-3": {"lost", 0}, "build-worker-1": {"unknown", 0}}
		for _, b := range r.Builds {
			if w, ok := want[b.BuildID]; ok && (b.Status != w.status || b.ExitCode != w.exit) {
				t.Fatalf("%s: status %s exit %d, want %+v", b.BuildID, b.Status, b.ExitCode, w)
			}
		}
		var b buildJSON
		if code, body := s.getJSON(t, "/v1/builds/build-api-2", nil, &b); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		if b.Lines != 110+120 || b.Duration != 90 || len(b.Hosts) < 2 || b.Levels.Error != 4 {
			t.Fatalf("build-api-2: %+v", b)
		}
		var failed struct{ Builds []buildJSON }
		s.getJSON(t, "/v1/builds", url.Values{"status": {"failed"}}, &failed)
		if len(failed.Builds) != 1 || failed.Builds[0].BuildID != "build-api-2" {
			t.Fatalf("failed builds: %+v", failed.Builds)
		}
		var paged struct {
			Builds        []buildJSON
			NextPageToken string `json:"next_page_token"`
		}
		s.getJSON(t, "/v1/builds", url.Values{"page_size": {"4"}}, &paged)
		if len(paged.Builds) != 4 || paged.NextPageToken == "" {
			t.Fatalf("page 1: %d builds, token %q", len(paged.Builds), paged.NextPageToken)
		}
		s.getJSON(t, "/v1/builds", url.Values{"page_size": {"4"}, "page_token": {paged.NextPageToken}}, &paged)
		if len(paged.Builds) != 2 || paged.NextPageToken != "" {
			t.Fatalf("page 2: %d builds", len(paged.Builds))
		}
		if code, _ := s.getJSON(t, "/v1/builds/nope", nil, nil); code != 404 {
			t.Fatalf("unknown build: %d", code)
		}
	})
	t.Run("deploys", func(t *testing.T) {
		var d deployJSON
		s.getJSON(t, "/v1/deploys/deploy-api-3", nil, &d)
		if d.PreviousDeployID != "deploy-api-2" || len(d.Hosts) != 2 {
			t.Fatalf("deploy-api-3: %+v", d)
		}
		wantRate := float64(110/4+120/4) / float64(110+120)
		if d.ErrorRate != wantRate || d.PreviousErrorRate != 4.0/230 {
			t.Fatalf("error rates %v (want %v) and %v", d.ErrorRate, wantRate, d.PreviousErrorRate)
		}
		if len(d.HostLives) != 2 {
			t.Fatalf("host lives: %d", len(d.HostLives))
		}
		var first deployJSON
		s.getJSON(t, "/v1/deploys/deploy-worker-1", nil, &first)
		if first.PreviousDeployID != "" {
			t.Fatalf("first deploy has a previous one: %q", first.PreviousDeployID)
		}
	})
	hosts := func(params url.Values) []hostJSON {
		var r struct{ Hosts []hostJSON }
		if code, body := s.getJSON(t, "/v1/hosts", params, &r); code != 200 {
			t.Fatalf("hosts: %d %s", code, body)
		}
		return r.Hosts
	}
	t.Run("hosts", func(t *testing.T) {
		all := hosts(nil)
		if len(all) != 12 {
			t.Fatalf("%d hosts", len(all))
		}
		for _, h := range all {
			closes := strings.HasSuffix(h.Host, "-h1")
			switch {
			case closes && h.State != "closed", !closes && h.State != "live":
				t.Fatalf("host %s state %s right after its lines", h.Host, h.State)
			}
			if len(h.Agents) != 1 || h.Agents[0].AckedSeq != fmt.Sprint(h.Lines) || h.Agents[0].Gaps != "0" {
				t.Fatalf("host %s accounting %+v, lines %d", h.Host, h.Agents, h.Lines)
			}
		}
		if got := hosts(url.Values{"deploy_id": {"deploy-worker-2"}}); len(got) != 2 {
			t.Fatalf("deploy filter: %d", len(got))
		}
		if got := hosts(url.Values{"service": {"api"}, "state": {"closed"}}); len(got) != 3 {
			t.Fatalf("closed api hosts: %d", len(got))
		}
		alive := t0.Add(30*time.Minute + 10*time.Second).Format(time.RFC3339)
		if got := hosts(url.Values{"alive_at": {alive}}); len(got) != 4 {
			t.Fatalf("alive at %s: %d hosts", alive, len(got))
		}
		if code, _ := s.getJSON(t, "/v1/hosts", url.Values{"state": {"zombie"}}, nil); code != 400 {
			t.Fatalf("bad state: %d", code)
		}
		// Hosts that vanished without a goodbye turn silent after --silent-after.
		deadline := time.Now().Add(20 * time.Second)
		for {
			silent := hosts(url.Values{"state": {"silent"}})
			if len(silent) == 6 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d silent hosts after --silent-after", len(silent))
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	t.Run("context", func(t *testing.T) {
		var sr searchResp
		s.getJSON(t, "/v1/logs:search", url.Values{"q": {`"api-d2-h1 line 50"`}}, &sr)
		if len(sr.Records) != 1 {
			t.Fatalf("%d records", len(sr.Records))
		}
		var c struct {
			Record        struct{ Message string }
			Before, After []struct {
				Host    string
				Message string
			}
			Cross []struct{ Host string }
		}
		s.getJSON(t, "/v1/logs/"+sr.Records[0].ID+":context", url.Values{"before": {"3"}, "after": {"2"}}, &c)
		if len(c.Before) != 3 || len(c.After) != 2 || c.Before[0].Message != "api-d2-h1 line 47" || c.After[1].Message != "api-d2-h1 line 52" {
			t.Fatalf("context: %+v", c)
		}
		for _, r := range append(c.Before, c.After...) {
			if r.Host != "api-d2-h1" {
				t.Fatalf("context line from %s", r.Host)
			}
		}
		crossHosts := func(scope string) map[string]bool {
			p := url.Values{"before": {"1"}, "cross": {"1"}, "window": {"2s"}}
			if scope != "" {
				p.Set("scope", scope)
			}
			s.getJSON(t, "/v1/logs/"+sr.Records[0].ID+":context", p, &c)
			others := map[string]bool{}
			for _, r := range c.Cross {
				if r.Host == "api-d2-h1" {
					t.Fatal("cross includes the record's own host")
				}
				others[r.Host] = true
			}
			return others
		}
		// At that moment api-d2-h2, worker-d2-h1 and worker-d2-h2 were
		// logging; by default only the line's own deploy is shown.
		if others := crossHosts("all"); len(others) != 3 {
			t.Fatalf("cross hosts, scope all: %v", others)
		}
		if others := crossHosts(""); len(others) != 1 || !others["api-d2-h2"] {
			t.Fatalf("cross hosts, the deploy's: %v", others)
		}
		if code, _ := s.getJSON(t, "/v1/logs/"+strings.Repeat("0", 32)+":context", nil, nil); code != 404 {
			t.Fatalf("unknown id: %d", code)
		}
		if code, _ := s.getJSON(t, "/v1/logs/xyz:context", nil, nil); code != 400 {
			t.Fatalf("bad id: %d", code)
		}
	})
	t.Run("tail", func(t *testing.T) {
		resp, err := http.Get("http://" + s.httpAddr + "/v1/logs:tail?q=" + url.QueryEscape("service:tailtest AND level:error"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("tail: %d", resp.StatusCode)
		}
		got := make(chan string, 10)
		go func() {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var r struct{ Message string }
				if json.Unmarshal(sc.Bytes(), &r) == nil {
					got <- r.Message
				}
			}
			close(got)
		}()
		// The subscription is live once the response headers came back.
		_, err = client.Write(ctx, &shiplogv1.PushRequest{Defaults: &shiplogv1.Record{Service: "tailtest"}, Records: []*shiplogv1.Record{
			{Message: "not an error"}, {Message: "first error", Level: "error"}, {Message: "second error", Level: "error"}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"first error", "second error"} {
			select {
			case m := <-got:
				if m != want {
					t.Fatalf("tail got %q, want %q", m, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("tail did not deliver %q", want)
			}
		}
	})
	t.Run("cli", func(t *testing.T) {
		out, err := exec.Command(binary, "query", "--server", s.grpcAddr, "--output", "json", "--limit", "5", "host:api-d3-h2", "AND", "level:error").CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 5 {
			t.Fatalf("%d lines:\n%s", len(lines), out)
		}
		var prev time.Time
		for _, l := range lines {
			var r struct {
				Time  time.Time
				Level string
				Host  string
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil || r.Level != "error" || r.Host != "api-d3-h2" || r.Time.Before(prev) {
				t.Fatalf("line %s (err %v)", l, err)
			}
			prev = r.Time
		}
		out, _ = exec.Command(binary, "query", "--server", s.grpcAddr, "level:loud").CombinedOutput()
		if !strings.Contains(string(out), "unknown level") {
			t.Fatalf("bad query output: %s", out)
		}
		text, err := exec.Command(binary, "query", "--server", s.grpcAddr, "--limit", "1", "host:worker-d1-h2").Output()
		if err != nil || !strings.Contains(string(text), "worker-d1-h2 ") || !strings.Contains(string(text), "worker-d1-h2 line") {
			t.Fatalf("text output %q: %v", text, err)
		}
	})
}

// TestBigBuildPaging pages through a build of 50,000 lines across 10 hosts.
func TestBigBuildPaging(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	s := startServer(t, t.TempDir()+"/data")
	cc := s.dial(t)
	t0 := time.Now().Add(-time.Hour)
	var batches []*shiplogv1.PushRequest
	for h := 0; h < 10; h++ {
		for b := 0; b < 5; b++ {
			req := &shiplogv1.PushRequest{AgentId: fmt.Sprintf("agent-%d", h), Defaults: &shiplogv1.Record{Service: "ci", Host: fmt.Sprintf("runner-%d", h), BuildId: "build-big"}}
			for i := 0; i < 1000; i++ {
				n := b*1000 + i
				req.Records = append(req.Records, &shiplogv1.Record{Time: timestamppb.New(t0.Add(time.Duration(n*10+h) * time.Millisecond)),
					Message: fmt.Sprintf("step %d on %d", n, h), Seq: uint64(n + 1)})
			}
			batches = append(batches, req)
		}
	}
	pushAll(t, cc, batches)
	var prev time.Time
	seen := 0
	p := url.Values{"q": {"build_id:build-big"}, "order": {"asc"}, "limit": {"5000"}}
	for {
		var r searchResp
		if code, body := s.getJSON(t, "/v1/logs:search", p, &r); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		for _, rec := range r.Records {
			if rec.Time.Before(prev) {
				t.Fatalf("out of order at %d", seen)
			}
			prev = rec.Time
			seen++
		}
		if r.NextCursor == "" {
			break
		}
		p.Set("cursor", r.NextCursor)
	}
	if seen != 50000 {
		t.Fatalf("%d lines of the build", seen)
	}
}

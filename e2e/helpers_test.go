// Package e2e drives the built shiplog binary over its real gRPC and HTTP
// interfaces, as users and the acceptance checks do.
package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shiplog/shiplog/internal/harness"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shiplog-e2e-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "shiplog")
	out, err := exec.Command("go", "build", "-o", binary, "github.com/shiplog/shiplog/cmd/shiplog").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build shiplog: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running shiplog server process (internal/harness): it listens
// on ports the kernel picked, and a restart takes the same ones again.
type server struct {
	t          testing.TB
	proc       *harness.Proc
	cmd        *exec.Cmd
	dir        string
	httpAddr   string // "" until the first start reports it
	grpcAddr   string
	syslogAddr string // with --syslog 127.0.0.1:0
	exited     chan error
	started    chan error // the start under way (clusterNode.launch)
	extraFlags []string
	tls        *tls.Config // set when the HTTP listener speaks TLS
}

// startServer starts `shiplog server` on loopback ports the kernel picks over
// dir and waits until /readyz answers 200.
func startServer(t testing.TB, dir string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, dir: dir, extraFlags: extra}
	s.start()
	t.Cleanup(func() { s.kill() })
	return s
}

func (s *server) start() {
	t := s.t
	t.Helper()
	s.launch()
	s.waitStarted(30 * time.Second)
}

// launch starts the process without waiting: harness.Start returns once the
// server prints its addresses, which a cluster node does only once its peers
// are up.
func (s *server) launch() {
	cfg := harness.Config{Bin: binary, Args: append([]string{"--data", s.dir}, s.extraFlags...), LogPath: s.logPath()}
	if s.httpAddr != "" {
		cfg.Args = append(cfg.Args, "--http", s.httpAddr, "--grpc", s.grpcAddr)
	}
	if s.tls != nil {
		cfg.Client = &http.Client{Transport: &http.Transport{TLSClientConfig: s.tls}}
	}
	ch := make(chan error, 1)
	s.started = ch
	go func() {
		p, err := harness.Start(cfg)
		if err == nil {
			s.adopt(p)
		}
		ch <- err
	}()
}

// waitStarted waits for launch and then for /readyz.
func (s *server) waitStarted(d time.Duration) {
	t := s.t
	t.Helper()
	err := <-s.started
	s.started <- err // for kill
	if err == nil {
		err = s.proc.WaitReady(d)
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, s.logText())
	}
}

// adopt takes the started process's addresses and exit.
func (s *server) adopt(p *harness.Proc) {
	s.proc, s.cmd = p, p.Cmd
	s.httpAddr, s.grpcAddr, s.syslogAddr = p.HTTPAddr, p.GRPCAddr, p.SyslogAddr
	ch := make(chan error, 1)
	s.exited = ch
	go func() { ch <- p.Err() }()
}

func (s *server) logPath() string {
	return filepath.Join(s.dir, "..", filepath.Base(s.dir)+".log")
}

func (s *server) logText() string {
	b, _ := os.ReadFile(s.logPath())
	return string(b)
}

// kill sends SIGKILL and waits for the process to go.
func (s *server) kill() {
	if s.started != nil {
		err := <-s.started // a start under way ends first
		s.started <- err
	}
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.exited <- nil // later kills return at once
}

// stop sends SIGTERM and expects exit code 0.
func (s *server) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		s.exited <- err
		if err != nil {
			s.t.Fatalf("server exit after SIGTERM: %v\n%s", err, s.logText())
		}
	case <-time.After(60 * time.Second):
		s.t.Fatalf("server did not exit within 60s of SIGTERM\n%s", s.logText())
	}
}

func (s *server) restart() {
	s.start()
}

func (s *server) dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// searchResp is the HTTP search answer.
type searchResp struct {
	Records []struct {
		ID         string            `json:"id"`
		Time       time.Time         `json:"time"`
		Service    string            `json:"service"`
		Host       string            `json:"host"`
		BuildID    string            `json:"build_id"`
		DeployID   string            `json:"deploy_id"`
		Level      string            `json:"level"`
		Message    string            `json:"message"`
		Seq        string            `json:"seq"`
		Attributes map[string]string `json:"attributes"`
	} `json:"records"`
	NextCursor string `json:"next_cursor"`
}

// getJSON GETs path with params and decodes a 200 answer into v, returning the
// status code and raw body.
func (s *server) getJSON(t testing.TB, path string, params url.Values, v any) (int, string) {
	t.Helper()
	return s.getJSONAs(t, "", path, params, v)
}

// getJSONAs is getJSON with a bearer token (none when tok is empty).
func (s *server) getJSONAs(t testing.TB, tok, path string, params url.Values, v any) (int, string) {
	t.Helper()
	u := "http://" + s.httpAddr + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("decode %s: %v\n%s", u, err, body)
		}
	}
	return resp.StatusCode, string(body)
}

// metric is the value of the series name (unlabelled, as written) on the
// server's /metrics; -1 when there is none.
func (s *server) metric(t testing.TB, name string) float64 {
	t.Helper()
	code, body := s.getJSON(t, "/metrics", nil, nil)
	if code != 200 {
		t.Fatalf("/metrics: %d %.300s", code, body)
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", l, err)
			}
			return f
		}
	}
	return -1
}

// searchAll follows next_cursor to the end and returns every record.
func (s *server) searchAll(t testing.TB, params url.Values) []string {
	t.Helper()
	var ids []string
	p := url.Values{}
	for k, v := range params {
		p[k] = v
	}
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("paging does not end")
		}
		var r searchResp
		code, body := s.getJSON(t, "/v1/logs:search", p, &r)
		if code != 200 {
			t.Fatalf("search %v: %d %s", p, code, body)
		}
		for _, rec := range r.Records {
			ids = append(ids, rec.ID)
		}
		if r.NextCursor == "" {
			return ids
		}
		p.Set("cursor", r.NextCursor)
	}
}

func pushAll(t testing.TB, cc *grpc.ClientConn, batches []*shiplogv1.PushRequest) []*shiplogv1.PushResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stream, err := shiplogv1.NewIngestServiceClient(cc).Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*shiplogv1.PushResponse
	for _, b := range batches {
		if err := stream.Send(b); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resp)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("stream end: %v", err)
	}
	return out
}

// Package e2e drives the built shiplog binary over its real gRPC and HTTP
// interfaces, as users and the acceptance checks do.
package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// server is a running shiplog server process.
type server struct {
	t          testing.TB
	cmd        *exec.Cmd
	dir        string
	httpAddr   string
	grpcAddr   string
	logs       *os.File
	exited     chan error
	extraFlags []string
	tls        *tls.Config // set when the HTTP listener speaks TLS
}

// startServer starts `shiplog server` on fresh loopback ports over dir and
// waits until /readyz answers 200.
func startServer(t testing.TB, dir string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, dir: dir, httpAddr: freePort(t), grpcAddr: freePort(t), extraFlags: extra}
	s.start()
	t.Cleanup(func() { s.kill() })
	return s
}

func (s *server) start() {
	t := s.t
	t.Helper()
	logs, err := os.OpenFile(filepath.Join(s.dir, "..", filepath.Base(s.dir)+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	s.logs = logs
	args := append([]string{"server", "--data", s.dir, "--http", s.httpAddr, "--grpc", s.grpcAddr}, s.extraFlags...)
	s.cmd = exec.Command(binary, args...)
	s.cmd.Stdout, s.cmd.Stderr = logs, logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(s.cmd, s.exited)
	deadline := time.Now().Add(30 * time.Second)
	hc, scheme := http.DefaultClient, "http://"
	if s.tls != nil {
		hc, scheme = &http.Client{Transport: &http.Transport{TLSClientConfig: s.tls}}, "https://"
	}
	for {
		resp, err := hc.Get(scheme + s.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-s.exited:
			s.exited <- err // for kill
			t.Fatalf("server exited before ready: %v\n%s", err, s.logText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 30s\n%s", s.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) logText() string {
	b, _ := os.ReadFile(s.logs.Name())
	return string(b)
}

// kill sends SIGKILL and waits for the process to go.
func (s *server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.exited <- nil // later kills return at once
	s.logs.Close()
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
	s.logs.Close()
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

package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

func TestParseServers(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"127.0.0.1:7071", []string{"127.0.0.1:7071"}},
		{"a:1,b:2,c:3", []string{"a:1", "b:2", "c:3"}},
		{" a:1 , b:2 ", []string{"a:1", "b:2"}},
		{"[::1]:7071,logs.example.com:443", []string{"[::1]:7071", "logs.example.com:443"}},
	} {
		got, err := parseServers("agent", c.in)
		if err != nil || strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, names string }{
		{"", "must not be empty"},
		{" ", "must not be empty"},
		{"a:1,,b:2", "address 2 of 3 is empty"},
		{"a:1,", "address 2 of 2 is empty"},
		{",a:1", "address 1 of 2 is empty"},
		{"a:1,localhost", `"localhost" is not HOST:PORT`},
		{"a:1,:7071", `":7071" is not HOST:PORT`},
		{"a:1,b:http", `"b:http" is not HOST:PORT`},
		{"a:1,b:0", `"b:0" is not HOST:PORT`},
		{"a:1,b:65536", `"b:65536" is not HOST:PORT`},
		{"a:1,::1:7071", `"::1:7071" is not HOST:PORT`},
		{"a:1 b:2", `"a:1 b:2" is not HOST:PORT`},
	} {
		_, err := parseServers("agent", c.in)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(ue.msg, c.names) || strings.Contains(ue.msg, "\n") {
			t.Errorf("%q: %v, want a one-line usage error with %q", c.in, err, c.names)
		}
	}
}

// Bad --server lists (and SHIPLOG_SERVER) are usage errors of agent and run:
// exit code 2 with one line naming the address.
func TestClientServerListUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"agent", "--server", "127.0.0.1:7071,,127.0.0.1:7072"},
		{"agent", "--server", "127.0.0.1:7071,nohost"},
		{"run", "--server", "127.0.0.1:7071,", "--service", "s", "--build-id", "b", "--", "true"},
		{"run", "--server", "127.0.0.1:x", "--service", "s", "--build-id", "b", "--", "true"},
	} {
		err := Run(context.Background(), args, io.Discard, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(ue.msg, "--server") {
			t.Errorf("%q: %v, want a usage error about --server", args, err)
		}
	}

	cmd := shiplog(t, "agent", "--service", "x", "--spool", t.TempDir())
	cmd.Env = append(cmd.Env, "SHIPLOG_SERVER=127.0.0.1:7071,bad-address")
	cmd.Stdin = strings.NewReader("a\n")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 || strings.Count(string(out), "\n") != 1 || !strings.Contains(string(out), `"bad-address"`) {
		t.Fatalf("SHIPLOG_SERVER with a bad address: exit %d (%v), output %q", code, err, out)
	}
}

// dialServers, for query-side commands, connects to the first server that
// answers.
func TestDialServersSkipsDeadServer(t *testing.T) {
	s := startServer(t)
	cc, err := dialServers("query", freeAddr(t)+","+s.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := shiplogv1.NewQueryServiceClient(cc).Search(ctx, &shiplogv1.SearchRequest{Limit: 1}); err != nil {
		t.Fatalf("search through the second server: %v", err)
	}
	if _, err := dialServers("query", "a:1,,b:2"); err == nil {
		t.Fatal("a bad list dialed")
	}
}

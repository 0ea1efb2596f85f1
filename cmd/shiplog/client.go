package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// parseServers splits a --server value, "HOST:PORT[,HOST:PORT...]", into its
// addresses. An empty entry, or one that is not HOST:PORT with a port number,
// is a usage error naming it.
func parseServers(cmd, value string) ([]string, error) {
	if strings.TrimSpace(value) == "" {
		return nil, usagef("%s: --server must not be empty", cmd)
	}
	parts := strings.Split(value, ",")
	addrs := make([]string, 0, len(parts))
	for i, p := range parts {
		a := strings.TrimSpace(p)
		if a == "" {
			return nil, usagef("%s: --server %q: address %d of %d is empty", cmd, value, i+1, len(parts))
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return nil, usagef("%s: --server: %q is not HOST:PORT", cmd, a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, usagef("%s: --server: %q is not HOST:PORT (bad port %q)", cmd, a, port)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// serversScheme names the resolver dialServers gives each connection.
const serversScheme = "shiplog-servers"

// clientServiceConfig picks the first server that answers, in --server order,
// and retries a query call that fails as Unavailable (it is read-only), so it
// goes to the next server when the one in use goes away.
const clientServiceConfig = `{
  "loadBalancingConfig": [{"pick_first": {}}],
  "methodConfig": [{
    "name": [{"service": "shiplog.v1.QueryService"}],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.1s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// dialServers connects query-side commands to the --server list: gRPC tries
// the addresses in order until one connects, and again from the first when
// the connection in use is lost.
func dialServers(cmd, value string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	addrs, err := parseServers(cmd, value)
	if err != nil {
		return nil, err
	}
	var state resolver.State
	for _, a := range addrs {
		host, _, _ := net.SplitHostPort(a)
		// ServerName: TLS checks each server's certificate against its own host.
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a, ServerName: host})
	}
	r := manual.NewBuilderWithScheme(serversScheme)
	r.InitialState(state)
	opts = append([]grpc.DialOption{grpc.WithResolvers(r), grpc.WithDefaultServiceConfig(clientServiceConfig)}, opts...)
	cc, err := grpc.NewClient(serversScheme+":///servers", opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return cc, nil
}

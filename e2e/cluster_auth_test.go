package e2e

// The cluster port's trust boundary (issue 13, item 7): an outsider who
// reaches --cluster-listen, or any other port a node opens, cannot join the
// cluster as a NATS route nor connect as a NATS client without the cluster's
// secret (or, with mutual TLS, a certificate signed by its CA), so it can
// neither read the stored batches nor write forged ones.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// rogue is an outsider's NATS server that tries to join the cluster as a
// route (as anyone who reaches --cluster-listen can try), with a client on
// it through which it reads and writes.
type rogue struct {
	ns  *natsserver.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	mu  sync.Mutex
	log []string // errors nats-server logged
}

type rogueLogger struct{ r *rogue }

func (l rogueLogger) add(f string, v []any) {
	l.r.mu.Lock()
	l.r.log = append(l.r.log, fmt.Sprintf(f, v...))
	l.r.mu.Unlock()
}
func (l rogueLogger) Noticef(string, ...any)    {}
func (l rogueLogger) Debugf(string, ...any)     {}
func (l rogueLogger) Tracef(string, ...any)     {}
func (l rogueLogger) Warnf(string, ...any)      {}
func (l rogueLogger) Errorf(f string, v ...any) { l.add(f, v) }
func (l rogueLogger) Fatalf(f string, v ...any) { l.add(f, v) }

var rogueCount atomic.Int32

// startRogue starts a NATS server routed to every node's --cluster-listen,
// presenting user and password (none when empty) and speaking TLS with tc
// (plain when nil), and connects a client to it in process.
func startRogue(t *testing.T, nodes []*clusterNode, user, pass string, tc *tls.Config) *rogue {
	t.Helper()
	var routes []*url.URL
	for _, nd := range nodes {
		u := &url.URL{Scheme: "nats", Host: nd.listen}
		if user != "" {
			u.User = url.UserPassword(user, pass)
		}
		routes = append(routes, u)
	}
	opts := &natsserver.Options{
		ServerName: fmt.Sprintf("rogue-%d", rogueCount.Add(1)),
		Host:       "127.0.0.1", Port: natsserver.RANDOM_PORT, NoSigs: true,
		Cluster: natsserver.ClusterOpts{Name: "shiplog", Host: "127.0.0.1", Port: natsserver.RANDOM_PORT,
			Username: user, Password: pass, TLSConfig: tc, TLSTimeout: 5},
		Routes: routes,
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	r := &rogue{ns: ns}
	ns.SetLoggerV2(rogueLogger{r}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("rogue NATS server did not start")
	}
	t.Cleanup(ns.Shutdown)
	// NoEcho: what the rogue's own subscription sees came from elsewhere.
	if r.nc, err = nats.Connect("", nats.InProcessServer(ns), nats.NoEcho()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.nc.Close)
	if r.js, err = jetstream.New(r.nc); err != nil {
		t.Fatal(err)
	}
	return r
}

// waitLogged waits until the rogue's server logged n errors (a
// refused route logs one per attempt), or d passed.
func (r *rogue) waitLogged(n int, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		r.mu.Lock()
		l := append([]string(nil), r.log...)
		r.mu.Unlock()
		if len(l) >= n || time.Now().After(deadline) {
			return l
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkShutOut asserts that the rogue joined no node and can neither read
// (stream info, last messages, KV buckets, a subscription to every cluster
// subject) nor write (publish to the partitions' subjects) anything.
func (r *rogue) checkShutOut(t *testing.T, what string, nodes []*clusterNode) {
	t.Helper()
	// A refused route logs an error on the rogue's side (a route cut in
	// the TLS handshake may not): wait for one per node, or a few seconds,
	// far longer than a route takes to form on loopback.
	logged := r.waitLogged(len(nodes), 5*time.Second)
	if n := r.ns.NumRoutes(); n != 0 {
		t.Fatalf("%s: the rogue server has %d routes into the cluster, want 0", what, n)
	}
	if len(logged) > 0 {
		t.Logf("%s: the rogue logged: %.200s", what, logged[0])
	}
	// Each attempt has its own deadline: one that ran out must not make
	// the next fail for that reason alone.
	try := func(f func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return f(ctx)
	}
	for p := range 16 {
		name, subj := "LOGS_"+strconv.Itoa(p), "shiplog.logs."+strconv.Itoa(p)
		if err := try(func(ctx context.Context) error { _, err := r.js.Stream(ctx, name); return err }); err == nil {
			t.Fatalf("%s: the rogue reads stream %s", what, name)
		}
		if err := try(func(ctx context.Context) error {
			_, err := r.js.Publish(ctx, subj, []byte("forged by "+what), jetstream.WithRetryAttempts(0))
			return err
		}); err == nil {
			t.Fatalf("%s: the rogue's forged batch to partition %d was acked", what, p)
		}
		if err := r.nc.Publish(subj, []byte("forged by "+what)); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"shiplog-cluster", "shiplog-leases", "shiplog-nodes", "shiplog-alerts"} {
		if err := try(func(ctx context.Context) error { _, err := r.js.KeyValue(ctx, b); return err }); err == nil {
			t.Fatalf("%s: the rogue reads bucket %s", what, b)
		}
	}
	if err := try(func(ctx context.Context) error { _, err := r.js.AccountInfo(ctx); return err }); err == nil {
		t.Fatalf("%s: the rogue reaches the cluster's JetStream", what)
	}
	// Subscribed only now: an interest in everything would take the
	// requests above and make them wait instead of failing at once.
	sub, err := r.nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The nodes publish leases and node status every fraction of a second:
	// a rogue joined to the cluster would see them here.
	if m, err := sub.NextMsg(2 * time.Second); err == nil {
		t.Fatalf("%s: the rogue received %s from the cluster", what, m.Subject)
	}
	if n := r.ns.NumRoutes(); n != 0 {
		t.Fatalf("%s: the rogue server has %d routes into the cluster, want 0", what, n)
	}
}

// listeningPorts is every TCP port pid listens on, with the address.
func listeningPorts(t *testing.T, pid int) map[int]net.IP {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	out := map[int]net.IP{}
	for _, f := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] { // 0A: LISTEN
				continue
			}
			hexIP, hexPort, _ := strings.Cut(fields[1], ":")
			port, _ := strconv.ParseInt(hexPort, 16, 32)
			raw, _ := hex.DecodeString(hexIP)
			ip := make(net.IP, len(raw))
			for i := 0; i+4 <= len(raw); i += 4 { // each 32-bit word in host (little-endian) order
				ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
			}
			out[int(port)] = ip
		}
		fh.Close()
	}
	return out
}

// checkPortsRefuse dials every port each node listens on, besides --http and
// --grpc, as a NATS client with no credentials, a wrong token and a wrong
// user and password, and asserts each is refused; every such port is the
// node's --cluster-listen or on loopback.
func checkPortsRefuse(t *testing.T, nodes []*clusterNode) {
	t.Helper()
	for _, nd := range nodes {
		ports := listeningPorts(t, nd.cmd.Process.Pid)
		_, clusterPort, _ := net.SplitHostPort(nd.listen)
		var checked []string
		for port, ip := range ports {
			p := strconv.Itoa(port)
			if strings.HasSuffix(nd.httpAddr, ":"+p) || strings.HasSuffix(nd.grpcAddr, ":"+p) {
				continue
			}
			if p != clusterPort && !ip.IsLoopback() {
				t.Errorf("%s listens on %s:%d, beyond loopback and not --cluster-listen", nd.name, ip, port)
			}
			addr := "nats://127.0.0.1:" + p
			for _, o := range []struct {
				name string
				opt  nats.Option
			}{
				{"no credentials", func(*nats.Options) error { return nil }},
				{"a wrong token", nats.Token("not-the-token")},
				{"a wrong user and password", nats.UserInfo("shiplog", "not-the-secret")},
			} {
				nc, err := nats.Connect(addr, o.opt, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
				if err == nil {
					// Connected: it must not read anything either.
					_, jerr := nc.Request("$JS.API.INFO", nil, 2*time.Second)
					nc.Close()
					t.Errorf("%s: port %d accepted a NATS client with %s (JetStream info: %v)", nd.name, port, o.name, jerr)
					continue
				}
			}
			checked = append(checked, fmt.Sprintf("%s:%d", ip, port))
		}
		if len(checked) < 2 {
			t.Errorf("%s: checked %v, want at least the cluster port and the NATS client port", nd.name, checked)
		}
		t.Logf("%s: NATS ports %v refuse clients without credentials", nd.name, checked)
	}
}

// countMessage is how many records hold msg, through nd. A partial answer
// (a partition's owner slow to answer on a loaded machine) is asked again
// for up to 30 s: only a complete answer counts.
func countMessage(t *testing.T, nd *clusterNode, msg string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	msgs, partial, err := nd.searchMessages(`"` + msg + `"`)
	for err == nil && partial && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		msgs, partial, err = nd.searchMessages(`"` + msg + `"`)
	}
	if err != nil || partial {
		t.Fatalf("search %q: partial=%v %v", msg, partial, err)
	}
	n := 0
	for _, m := range msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// lastSeqs is the sum of every partition stream's last sequence, as nd
// sees it: any message published to a stream moves it.
func lastSeqs(t *testing.T, nd *clusterNode) uint64 {
	t.Helper()
	st, err := nd.status()
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for _, p := range st.Parts {
		sum += p.LastSeq
	}
	return sum
}

// TestClusterRoutesNeedTheSecret: three nodes sharing a secret form the
// cluster; an outsider joining as a route without the secret, or with a
// wrong one, or dialing any of the nodes' ports as a NATS client, is
// refused and can neither read the stored batch nor write a forged one.
// With the secret, the same outsider reads and forges (the attack the
// secret stops, and proof that the refusals above are not vacuous).
func TestClusterRoutesNeedTheSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	nodes := startCluster(t, 3)
	waitSettled(t, nodes, 60*time.Second, false, nil)
	const secretLine = "the payroll password is hunter2"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Unnumbered (no agent id, no seq): a copy published again is stored again.
	if resp, err := shiplogv1.NewIngestServiceClient(nodes[0].dial(t)).Write(ctx, &shiplogv1.PushRequest{Records: []*shiplogv1.Record{
		{Time: timestamppb.Now(), Service: "payroll", Host: "pay-1", Level: "info", Message: secretLine}}}); err != nil || resp.Accepted != 1 {
		t.Fatalf("write: %v %v", resp, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for countMessage(t, nodes[1], secretLine) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the written line is not found through n2")
		}
		time.Sleep(200 * time.Millisecond)
	}
	before := lastSeqs(t, nodes[0])

	checkPortsRefuse(t, nodes)
	startRogue(t, nodes, "", "", nil).checkShutOut(t, "no secret", nodes)
	startRogue(t, nodes, "shiplog", "wrong-secret-0123456789", nil).checkShutOut(t, "a wrong secret", nodes)
	if after := lastSeqs(t, nodes[0]); after != before {
		t.Fatalf("the partitions' streams moved from %d to %d messages while only outsiders wrote", before, after)
	}
	if n := countMessage(t, nodes[2], secretLine); n != 1 {
		t.Fatalf("the line is stored %d times after the outsiders, want 1", n)
	}

	// With the right credentials the same outsider gets in: it reads the
	// batch from the stream and stores a forged copy.
	sum := sha256.Sum256([]byte("shiplog cluster route\x00" + nodes[0].secret))
	r := startRogue(t, nodes, "shiplog", hex.EncodeToString(sum[:]), nil)
	deadline = time.Now().Add(30 * time.Second)
	var found *jetstream.RawStreamMsg
	for found == nil {
		if time.Now().After(deadline) {
			t.Fatalf("a route with the secret did not read the batch within 30s (routes %d, log %v)", r.ns.NumRoutes(), r.waitLogged(0, 0))
		}
		for p := range 16 {
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s, err := r.js.Stream(c, "LOGS_"+strconv.Itoa(p))
			if err == nil {
				if m, err := s.GetLastMsgForSubject(c, "shiplog.logs."+strconv.Itoa(p)); err == nil && strings.Contains(string(m.Data), secretLine) {
					found = m
				}
			}
			cancel()
			if found != nil {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := r.js.Publish(c, found.Subject, found.Data); err != nil {
		t.Fatalf("a route with the secret: publish: %v", err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for countMessage(t, nodes[1], secretLine) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the copy published with the secret is not stored")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// clusterCA is a throwaway CA for the nodes' route certificates.
type clusterCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newClusterCA(t *testing.T, dir, name string) *clusterCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := &clusterCA{key: key, file: filepath.Join(dir, name+"-ca.pem")}
	ca.cert, _ = x509.ParseCertificate(der)
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a certificate for 127.0.0.1 good for both ends of a route
// (server and client) and its key; it returns their paths.
func (ca *clusterCA) issue(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kd)
	return certFile, keyFile
}

// TestClusterRoutesMutualTLS: two nodes with --cluster-tls-* (no secret)
// form the cluster and answer each other's partitions; an outsider routing
// in plain text, with a certificate from another CA, or with none, is
// refused, and one with a certificate of the cluster's CA gets in.
func TestClusterRoutesMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two nodes")
	}
	start := time.Now()
	phase := func(name string) { t.Logf("%6.2fs %s", time.Since(start).Seconds(), name) }
	defer phase("done")
	dir := t.TempDir()
	ca := newClusterCA(t, dir, "cluster")
	cert, key := ca.issue(t, dir, "node")
	nodes := startCluster(t, 2, "--cluster-tls-cert", cert, "--cluster-tls-key", key, "--cluster-tls-ca", ca.file)
	if nodes[0].secret != "" {
		t.Fatal("startCluster added a secret beside TLS")
	}
	phase("started")
	waitSettled(t, nodes, 60*time.Second, false, nil)
	phase("settled")
	checkPortsRefuse(t, nodes)
	phase("ports checked")

	tlsWith := func(certFile, keyFile string) *tls.Config {
		// The outsider does not care whom it talks to: only the node's
		// check of its certificate stands in its way.
		tc := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
		if certFile != "" {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		return tc
	}
	other := newClusterCA(t, dir, "other")
	oc, ok := other.issue(t, dir, "intruder")
	startRogue(t, nodes, "", "", nil).checkShutOut(t, "plain text", nodes)
	startRogue(t, nodes, "", "", tlsWith("", "")).checkShutOut(t, "TLS without a certificate", nodes)
	startRogue(t, nodes, "", "", tlsWith(oc, ok)).checkShutOut(t, "TLS with another CA's certificate", nodes)
	phase("outsiders refused")

	// A certificate from the cluster's CA is what lets a node in.
	good, goodKey := ca.issue(t, dir, "insider")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	tc := tlsWith(good, goodKey)
	tc.InsecureSkipVerify, tc.RootCAs, tc.ClientCAs, tc.ClientAuth = false, pool, pool, tls.RequireAndVerifyClientCert
	r := startRogue(t, nodes, "", "", tc)
	deadline := time.Now().Add(30 * time.Second)
	for r.ns.NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a route with the cluster CA's certificate did not join within 30s: %v", r.waitLogged(0, 0))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

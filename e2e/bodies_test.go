package e2e

// Hostile request bodies (issue 13 items 2 and 6): decompression bombs on
// every compressed ingest route, and slow bodies that once held every ingest
// slot.

import (
	"bytes"
	"context"
	ebinary "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/prometheus/prompb"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// snappyZeros is a snappy block of n zero bytes as a hostile client writes
// it: one literal zero, then copies of 64 bytes at offset 1, each 3 bytes,
// the most any valid snappy input expands (~21x).
func snappyZeros(n int) []byte {
	b := ebinary.AppendUvarint(nil, uint64(n))
	b = append(b, 0x00, 0x00) // literal of length 1: a zero
	for left := n - 1; left > 0; {
		l := min(left, 64)
		b = append(b, byte(l-1)<<2|2, 1, 0) // copy, 2-byte offset 1
		left -= l
	}
	return b
}

func gzipZeros(t testing.TB, n int) []byte {
	t.Helper()
	var zb bytes.Buffer
	zw, err := gzip.NewWriterLevel(&zb, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for left := n; left > 0; left -= len(zeros) {
		if _, err := zw.Write(zeros[:min(left, len(zeros))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return zb.Bytes()
}

// bombCompressor "compresses" any gRPC message into the same gzip bomb.
type bombCompressor struct{ gz []byte }

func (b bombCompressor) Do(w io.Writer, _ []byte) error {
	_, err := w.Write(b.gz)
	return err
}

func (bombCompressor) Type() string { return "gzip" }

// postBody POSTs body to path with headers (name, value, ...) and returns
// the status and answer.
func postBody(c *http.Client, s *server, path string, body []byte, headers ...string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+s.httpAddr+path, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// 16 hostile clients on every compressed ingest route at once (snappy
// headers claiming 64-256MiB, real snappy and gzip bombs decoding to the
// limit): peak RSS stays under 1GiB (with --max-body-bytes-inflight at its
// default), the server stays up, and normal writes work afterwards. Before
// the fix, 8 snappy claims alone took RSS to 4.4GB.
func TestDecompressionBombs(t *testing.T) {
	s := startServer(t, t.TempDir())
	const maxBody = 64 << 20 // --max-request-bytes' default
	claim := func(n int) []byte { return append(ebinary.AppendUvarint(nil, uint64(n)), 0, 0, 0, 0, 0)[:9] }
	gz := gzipZeros(t, maxBody-1)
	proto := []string{"Content-Type", "application/x-protobuf"}
	attacks := []struct {
		name, path string
		body       []byte
		headers    []string
	}{
		{"remote write, 9-byte snappy claim of 256MiB", "/api/v1/write", claim(256 << 20), []string{"Content-Type", "application/x-protobuf", "Content-Encoding", "snappy"}},
		{"remote write, snappy bomb of 256MiB", "/api/v1/write", snappyZeros(256 << 20), []string{"Content-Type", "application/x-protobuf", "Content-Encoding", "snappy"}},
		{"loki protobuf, 9-byte snappy claim of 64MiB", "/loki/api/v1/push", claim(maxBody - 1), proto},
		{"loki protobuf, snappy bomb of 64MiB", "/loki/api/v1/push", snappyZeros(maxBody - 1), proto},
		{"loki json, gzip bomb", "/loki/api/v1/push", gz, []string{"Content-Type", "application/json", "Content-Encoding", "gzip"}},
		{"otlp logs, gzip bomb", "/v1/logs", gz, []string{"Content-Type", "application/x-protobuf", "Content-Encoding", "gzip"}},
		{"otlp metrics, gzip bomb", "/v1/metrics", gz, []string{"Content-Type", "application/x-protobuf", "Content-Encoding", "gzip"}},
		{"logs:write, gzip bomb", "/v1/logs:write", gz, []string{"Content-Type", "application/json", "Content-Encoding", "gzip"}},
		{"logs:jsonl, gzip bomb", "/v1/logs:jsonl", gz, []string{"Content-Type", "application/x-ndjson", "Content-Encoding", "gzip"}},
	}
	rss0 := procStatusKB(s.pid(), "VmRSS")
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 2 * time.Minute}
	const clients, rounds = 16, 2
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]*tally{}
	var failures []string
	for _, a := range attacks {
		answers[a.name] = &tally{}
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					code, body, err := postBody(c, s, a.path, a.body, a.headers...)
					if err != nil {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: %v", a.name, err))
						mu.Unlock()
						return
					}
					answers[a.name].add(fmt.Sprint(code))
					if code/100 == 2 || code >= 500 {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: answered %d %.200s", a.name, code, body))
						mu.Unlock()
					}
				}
			}()
		}
	}
	// And gzip-encoded gRPC messages (OTLP logs) of 64MiB once decompressed.
	gcodes := &tally{}
	cc, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithCompressor(bombCompressor{gz}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				_, err := collogspb.NewLogsServiceClient(cc).Export(context.Background(), &collogspb.ExportLogsServiceRequest{
					ResourceLogs: []*logspb.ResourceLogs{{}}}) // not empty: gRPC compresses only what has bytes
				gcodes.add(status.Code(err).String())
				if err == nil || status.Code(err) == codes.Unavailable {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("grpc otlp gzip bomb: %v", err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	hwm := procStatusKB(s.pid(), "VmHWM")
	t.Logf("%-45s %d-byte message: answers %s", "grpc otlp logs, gzip bomb", len(gz), gcodes)
	for _, a := range attacks {
		t.Logf("%-45s %d-byte body: answers %s", a.name, len(a.body), answers[a.name])
	}
	t.Logf("RSS before %d MiB; peak (VmHWM) under %d hostile clients: %d MiB", rss0>>10, clients*(len(attacks)+1), hwm>>10)
	select {
	case err := <-s.exited:
		s.exited <- err
		t.Fatalf("server died under the bombs: %v\n%s", err, s.logProblems(20))
	default:
	}
	if len(failures) > 0 {
		t.Errorf("%d unexpected outcomes, the first: %s", len(failures), strings.Join(failures[:min(5, len(failures))], "\n"))
	}
	if hwm < 0 || hwm > 1<<20 {
		t.Errorf("peak RSS %d MiB: over 1GiB", hwm>>10)
	}

	// Every body's bytes were given back.
	if _, m, err := httpGet(c, "http://"+s.httpAddr, "/metrics", nil); err != nil || !strings.Contains(string(m), "\nshiplog_request_body_bytes_inflight 0\n") {
		t.Errorf("body bytes in flight after the bombs: %v %s", err, grepLines(string(m), "shiplog_request_body_bytes_inflight"))
	}

	// Normal writes go through afterwards, on each route.
	now := time.Now()
	var lb bytes.Buffer
	zw := gzip.NewWriter(&lb)
	fmt.Fprintf(zw, `{"time":%q,"service":"after","message":"jsonl after the bombs"}`+"\n", now.Format(time.RFC3339Nano))
	_ = zw.Close()
	rw, _ := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "after_bombs"}},
		Samples: []prompb.Sample{{Value: 1, Timestamp: now.UnixMilli()}},
	}}}).Marshal()
	normal := []struct {
		name, path string
		body       []byte
		headers    []string
		want       int
	}{
		{"loki json", "/loki/api/v1/push", []byte(fmt.Sprintf(`{"streams":[{"stream":{"service_name":"after"},"values":[["%d","loki after the bombs"]]}]}`, now.UnixNano())),
			[]string{"Content-Type", "application/json"}, 204},
		{"remote write", "/api/v1/write", s2.EncodeSnappy(nil, rw), []string{"Content-Type", "application/x-protobuf", "Content-Encoding", "snappy"}, 204},
		{"otlp logs json", "/v1/logs", []byte(`{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"after"}}]},"scopeLogs":[{"logRecords":[{"body":{"stringValue":"otlp after the bombs"}}]}]}]}`),
			[]string{"Content-Type", "application/json"}, 200},
		{"logs:write", "/v1/logs:write", []byte(`{"defaults":{"service":"after"},"records":[{"message":"write after the bombs"}]}`), []string{"Content-Type", "application/json"}, 200},
		{"logs:jsonl gzip", "/v1/logs:jsonl", lb.Bytes(), []string{"Content-Encoding", "gzip"}, 200},
	}
	for _, n := range normal {
		code, body, err := postBody(c, s, n.path, n.body, n.headers...)
		if err != nil || code != n.want {
			t.Errorf("%s after the bombs: %d %s %v", n.name, code, body, err)
		}
	}
}

// 72 Loki pushes that send their headers and half their body hold no ingest
// slot (64 by default): a normal push still succeeds while they hang, and
// the server ends each of them once --http-read-timeout has passed; a client
// that never finishes its headers is cut after --http-read-header-timeout.
func TestSlowBodies(t *testing.T) {
	const readTimeout = 5 * time.Second
	s := startServer(t, t.TempDir(), "--http-read-timeout", readTimeout.String(), "--http-read-header-timeout", "2s")
	body := []byte(`{"streams":[{"stream":{"service_name":"slow"},"values":[["` + fmt.Sprint(time.Now().UnixNano()) + `","slow line"]]}]}`)
	type slow struct {
		conn  net.Conn
		ended chan time.Time // when the server answered or closed
	}
	open := func(head string) slow {
		conn, err := net.Dial("tcp", s.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		sl := slow{conn: conn, ended: make(chan time.Time, 1)}
		go func() {
			_, _ = conn.Read(make([]byte, 1))
			sl.ended <- time.Now()
		}()
		return sl
	}
	started := time.Now()
	var slows []slow
	for range 72 {
		slows = append(slows, open(fmt.Sprintf("POST /loki/api/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			len(body), body[:len(body)/2])))
	}
	noHeaders := open("POST /loki/api/v1/push HTTP/1.1\r\nHost: x\r\n")
	// Every slow push is in its handler, reading its body: each holds its
	// first segment (256 KiB, server/body.go bodySegment) of the body budget.
	waitFor(t, s, "72 slow bodies being read", func() bool {
		return s.metric(t, "shiplog_request_body_bytes_inflight") >= 72*64<<10
	})

	c := &http.Client{Timeout: 10 * time.Second}
	t0 := time.Now()
	code, answer, err := postBody(c, s, "/loki/api/v1/push", []byte(strings.Replace(string(body), "slow line", "normal line", 1)), "Content-Type", "application/json")
	took := time.Since(t0)
	if err != nil || code != 204 {
		t.Fatalf("a normal push while 72 slow ones hang: %d %s %v (after %s)", code, answer, err, took)
	}
	held := 0
	for _, sl := range slows {
		if len(sl.ended) == 0 {
			held++
		}
	}
	t.Logf("normal push beside 72 slow bodies: %s; %d of them still held", took.Round(time.Millisecond), held)
	if held < 64 && time.Since(started) < readTimeout {
		t.Errorf("only %d slow clients still held their connection", held)
	}

	// The server ends every slow body after the read timeout (a generous
	// bound: the timeout plus 20s).
	deadline := time.After(readTimeout + 20*time.Second)
	for i, sl := range append(slows, noHeaders) {
		select {
		case at := <-sl.ended:
			if i == len(slows) {
				t.Logf("headers never finished: cut after %s", at.Sub(started).Round(100*time.Millisecond))
			} else if i == 0 {
				t.Logf("a slow body: ended after %s", at.Sub(started).Round(100*time.Millisecond))
			}
		case <-deadline:
			t.Fatalf("slow client %d of %d still held after %s", i, len(slows)+1, time.Since(started))
		}
	}
}

// --syslog-max-conns idle TCP connections do not lock out a new sender: the
// longest idle is closed for it (before, the new one was closed, for as long
// as the idle ones stayed).
func TestSyslogIdleConnsFlag(t *testing.T) {
	s := startServer(t, t.TempDir(), "--syslog", "127.0.0.1:0", "--syslog-max-conns", "8", "--syslog-idle-timeout", "1h")
	addr := s.syslogAddr
	for range 8 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	// Time must pass: only a connection idle for a second (the server's
	// syslogEvictIdle, on its wall clock) is closed for a new one.
	time.Sleep(1500 * time.Millisecond)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "<14>1 - web-1 syslog-full - - - a new sender beside 8 idle connections\n")
	r := waitRecords(t, s, "service:syslog-full", 1)[0]
	if r.Message != "a new sender beside 8 idle connections" {
		t.Errorf("record: %+v", r)
	}
}

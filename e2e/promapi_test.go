package e2e

import (
	"bytes"
	"context"
	bin "encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	prommodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// TestRemoteWriteV2 sends remote write 2.0 with Prometheus' own client: a
// float series, a native histogram and metadata through the symbols table;
// the answer's *-Written headers count them, PromQL reads them back and
// /api/v1/metadata has the metadata. A series with a bad symbol reference
// is refused with a 400, the others stored.
func TestRemoteWriteV2(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := context.Background()
	u, _ := url.Parse("http://" + s.httpAddr + "/api/v1/write")
	c, err := remoteapi.NewAPI("http://"+s.httpAddr, remoteapi.WithAPIPath("/api/v1/write"), remoteapi.WithAPINoRetryOnRateLimit())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Minute).UnixMilli()
	st := writev2.NewSymbolTable()
	h := &histogram.Histogram{Schema: 0, Count: 3, Sum: 6, ZeroThreshold: 1e-128,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 1}}
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{{
		LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "jobs_done_total", "job", "rw2"), nil),
		Samples:    []writev2.Sample{{Timestamp: now - 1000, Value: 4}, {Timestamp: now, Value: 7}},
		Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("Jobs done."), UnitRef: st.Symbolize("")},
	}, {
		LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "req_seconds", "job", "rw2"), nil),
		Histograms: []writev2.Histogram{writev2.FromIntHistogram(0, now, h)},
		Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HelpRef: st.Symbolize("Request time."), UnitRef: st.Symbolize("seconds")},
	}}}
	req.Symbols = st.Symbols()
	stats, err := c.Write(ctx, remoteapi.WriteV2MessageType, req)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Samples != 2 || stats.Histograms != 1 || stats.Exemplars != 0 {
		t.Fatalf("stats %+v, want 2 samples and 1 histogram", stats)
	}
	p := promClient(t, s)
	v, _, _, err := p.Query(ctx, `jobs_done_total{job="rw2"}`, time.UnixMilli(now))
	if err != nil || v.String() != `jobs_done_total{job="rw2"} => 7 @[`+prommodel.TimeFromUnixNano(now*1e6).String()+`]` {
		t.Fatalf("query: %v %v", v, err)
	}
	v, _, _, err = p.Query(ctx, `histogram_count(req_seconds)`, time.UnixMilli(now))
	if err != nil || !strings.Contains(v.String(), "=> 3 @") {
		t.Fatalf("histogram_count: %v %v", v, err)
	}
	md, err := p.Metadata(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := md["jobs_done_total"]; len(got) != 1 || got[0].Type != v1.MetricTypeCounter || got[0].Help != "Jobs done." {
		t.Errorf("metadata of jobs_done_total: %+v", got)
	}
	if got := md["req_seconds"]; len(got) != 1 || got[0].Type != v1.MetricTypeHistogram || got[0].Unit != "seconds" {
		t.Errorf("metadata of req_seconds: %+v", got)
	}

	// One series refers past the symbols table: 400, the other stored and counted.
	bad := &writev2.Request{Symbols: []string{"", "__name__", "ok_metric"}, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2}, Samples: []writev2.Sample{{Timestamp: now, Value: 1}}},
		{LabelsRefs: []uint32{1, 9}, Samples: []writev2.Sample{{Timestamp: now, Value: 1}}},
	}}
	raw, _ := bad.Marshal()
	hreq, _ := http.NewRequest(http.MethodPost, u.String(), strings.NewReader(string(s2.EncodeSnappy(nil, raw))))
	hreq.Header.Set("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request")
	hreq.Header.Set("Content-Encoding", "snappy")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written") != "1" || !strings.Contains(string(body), "outside the symbols table") {
		t.Fatalf("bad reference: %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

// TestPromAPIExtras: buildinfo, exemplars, format_query, the health
// endpoints, remote read (both response types, with Prometheus' client),
// /federate, and the JSON 404 of an unknown /api/v1/ path.
func TestPromAPIExtras(t *testing.T) {
	s := startServer(t, t.TempDir(), "--promql-default-step", "30s")
	ctx := context.Background()
	now := time.Now().Add(-30 * time.Second)
	code, body := postRemoteWrite(t, s, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "temp_celsius"}, {Name: "room", Value: "lab"}},
		Samples: []prompb.Sample{{Timestamp: now.Add(-time.Second).UnixMilli(), Value: 20}, {Timestamp: now.UnixMilli(), Value: 21.5}},
	}}, Metadata: []prompb.MetricMetadata{{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "temp_celsius", Help: "Temperature."}}})
	if code != 204 {
		t.Fatalf("remote write: %d %s", code, body)
	}
	p := promClient(t, s)
	bi, err := p.Buildinfo(ctx)
	if err != nil || !strings.HasPrefix(bi.Version, "3.") || bi.GoVersion == "" {
		t.Errorf("buildinfo: %+v %v", bi, err)
	}
	ex, err := p.QueryExemplars(ctx, "temp_celsius", now.Add(-time.Hour), now)
	if err != nil || len(ex) != 0 {
		t.Errorf("exemplars: %v %v", ex, err)
	}
	md, err := p.Metadata(ctx, "temp_celsius", "")
	if err != nil || len(md) != 1 || md["temp_celsius"][0].Help != "Temperature." {
		t.Errorf("metadata: %v %v", md, err)
	}
	// A subquery without a step evaluates every --promql-default-step.
	v, _, _, err := p.Query(ctx, `count_over_time(vector(1)[5m:])`, now)
	if err != nil || !strings.Contains(v.String(), "=> 10 @") {
		t.Errorf("subquery at the default step of 30s: %v %v", v, err)
	}
	var fq struct{ Data string }
	if code, b := s.getJSON(t, "/api/v1/format_query", url.Values{"query": {"sum(rate(x{a='b'}[5m]))by(job)"}}, &fq); code != 200 || fq.Data != `sum by (job) (rate(x{a="b"}[5m]))` {
		t.Errorf("format_query: %d %s", code, b)
	}
	if code, b := s.getJSON(t, "/api/v1/no_such_thing", nil, nil); code != 404 || !strings.HasPrefix(b, `{"status":"error","errorType":"not_found",`) {
		t.Errorf("unknown path: %d %s", code, b)
	}
	for _, path := range []string{"/-/healthy", "/-/ready"} {
		resp, err := http.Get("http://" + s.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "Prometheus Server is") {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}

	for _, rt := range []prompb.ReadRequest_ResponseType{prompb.ReadRequest_SAMPLES, prompb.ReadRequest_STREAMED_XOR_CHUNKS} {
		got := remoteRead(t, s, rt, &prompb.Query{StartTimestampMs: now.Add(-time.Hour).UnixMilli(), EndTimestampMs: now.Add(time.Minute).UnixMilli(),
			Matchers: []*prompb.LabelMatcher{{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "temp_celsius"}}})
		if strings.Join(got, " ") != `{__name__="temp_celsius", room="lab"} 20 {__name__="temp_celsius", room="lab"} 21.5` {
			t.Errorf("remote read %s: %v", rt, got)
		}
	}

	resp, err := http.Get("http://" + s.httpAddr + "/federate?match[]=" + url.QueryEscape(`{__name__="temp_celsius"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf("temp_celsius{room=\"lab\"} 21.5 %d\n", now.UnixMilli())
	if resp.StatusCode != 200 || !strings.Contains(string(b), "# TYPE temp_celsius untyped\n") || !strings.Contains(string(b), want) {
		t.Errorf("federate: %d\n%s\nwant %s", resp.StatusCode, b, want)
	}
	if resp, err := http.Get("http://" + s.httpAddr + "/federate"); err != nil || resp.StatusCode != 400 {
		t.Errorf("federate without match[]: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// remoteRead asks /api/v1/read for q's samples in response type rt, and
// decodes the answer as Prometheus' client does (snappy ReadResponse, or
// CRC-checked frames of chunks).
func remoteRead(t *testing.T, s *server, rt prompb.ReadRequest_ResponseType, q *prompb.Query) []string {
	t.Helper()
	raw, _ := (&prompb.ReadRequest{Queries: []*prompb.Query{q}, AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{rt}}).Marshal()
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.httpAddr+"/api/v1/read", bytes.NewReader(s2.EncodeSnappy(nil, raw)))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Read-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("remote read: %d %s", resp.StatusCode, body)
	}
	var out []string
	add := func(ls []prompb.Label, t int64, v float64) {
		b := labels.NewScratchBuilder(len(ls))
		for _, l := range ls {
			b.Add(l.Name, l.Value)
		}
		out = append(out, b.Labels().String()+" "+strconv.FormatFloat(v, 'g', -1, 64))
	}
	if rt == prompb.ReadRequest_SAMPLES {
		dec, err := s2.Decode(nil, body)
		if err != nil {
			t.Fatal(err)
		}
		var rr prompb.ReadResponse
		if err := rr.Unmarshal(dec); err != nil {
			t.Fatal(err)
		}
		for _, ts := range rr.Results[0].Timeseries {
			for _, smp := range ts.Samples {
				add(ts.Labels, smp.Timestamp, smp.Value)
			}
		}
		return out
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse" {
		t.Fatalf("content type %q", ct)
	}
	for len(body) > 0 {
		n, k := bin.Uvarint(body)
		if k <= 0 || len(body) < k+4+int(n) {
			t.Fatalf("bad frame header")
		}
		data := body[k+4 : k+4+int(n)]
		if crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)) != bin.BigEndian.Uint32(body[k:]) {
			t.Fatal("frame checksum mismatch")
		}
		body = body[k+4+int(n):]
		var cr prompb.ChunkedReadResponse
		if err := cr.Unmarshal(data); err != nil {
			t.Fatal(err)
		}
		for _, cs := range cr.ChunkedSeries {
			for _, c := range cs.Chunks {
				chk, err := chunkenc.FromData(chunkenc.Encoding(c.Type), c.Data)
				if err != nil {
					t.Fatal(err)
				}
				it := chk.Iterator(nil)
				for it.Next() == chunkenc.ValFloat {
					ts, v := it.At()
					add(cs.Labels, ts, v)
				}
			}
		}
	}
	return out
}

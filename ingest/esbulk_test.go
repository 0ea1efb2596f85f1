package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/shiplog/shiplog/model"
)

func esRecString(r model.Record) string {
	var as []string
	for _, a := range r.Attrs {
		as = append(as, a.Key+"="+a.Value)
	}
	return fmt.Sprintf("t=%d svc=%s host=%s build=%s deploy=%s level=%s trace=%s span=%s msg=%q attrs=[%s]",
		r.Time, r.Service, r.Host, r.BuildID, r.DeployID, r.Level, r.TraceID, r.SpanID, r.Message, strings.Join(as, " "))
}

func TestDecodeESBulk(t *testing.T) {
	body := strings.Join([]string{
		`{"create":{"_index":"logs-api","_id":"a1"}}`,
		`{"@timestamp":"2026-01-01T12:00:00.123Z","message":"connection refused","log":{"level":"ERROR","logger":"db"},"service":{"name":"api","version":"1.2"},` +
			`"host":{"name":"web-1","ip":["10.0.0.1","10.0.0.2"]},"trace":{"id":"0af7651916cd43dd8448eb211c80319c"},"span.id":"b7ad6b7169203331",` +
			`"labels":{"env":"prod","build_id":"build-7"},"http.response.status_code":500,"ok":false,"gone":null}`,
		``,
		`{"index":{}}`,
		`{"@timestamp":1767268800000,"message":"hi","log.level":"chatty","host":{"hostname":"h-2"},"deploy_id":"d-1"}`,
		`{"delete":{"_index":"x","_id":"1"}}`,
		`{"update":{"_id":"1"}}`,
		`{"doc":{"a":1}}`,
		`{"create":{"_index":"other"}}`,
		`{"message": "broken"`,
		`{"index":{"_index":"n"}}`,
		`{"message":"nested","a":{"b":{"c":{"d":1}}},"arr":[{"x":1}]}`,
		`{"index":{"_index":"vector"}}`,
		`{"timestamp":"2026-01-01T12:00:01Z","message":"from vector","host":"v-1","source_type":"file"}`,
		`{"index":{"_index":"fluentbit"}}`,
		`{"@timestamp":"2026-01-01T12:00:02Z","log":"from fluent bit","hostname":"fb-1","stream":"stdout"}`,
		`{"create":{"_index":"logs-generic.otel-default"}}`,
		`{"@timestamp":"2026-01-01T12:00:03.000000001Z","body":{"text":"from the collector"},"severity_text":"WARN","trace_id":"0af7651916cd43dd8448eb211c80319c",` +
			`"resource":{"attributes":{"service.name":"otel-api","host.name":"o-1"}},"attributes":{"http.route":"/x"},"scope":{"name":"s"}}`,
	}, "\n") + "\n"
	b, err := DecodeESBulk([]byte(body), "default-idx", 100)
	if err != nil {
		t.Fatal(err)
	}
	var items []string
	for _, it := range b.Items {
		s := fmt.Sprintf("%s %s %s rec=%d", it.Action, it.Index, it.ID, it.Record)
		if it.Err != nil {
			s += " err"
			if !errors.Is(it.Err, ErrInvalid) {
				t.Errorf("item error %v does not wrap ErrInvalid", it.Err)
			}
		}
		items = append(items, s)
	}
	wantItems := "create logs-api a1 rec=0|index default-idx  rec=1|delete x 1 rec=-1 err|update default-idx 1 rec=-1 err|create other  rec=-1 err|index n  rec=2|index vector  rec=3|index fluentbit  rec=4|create logs-generic.otel-default  rec=5"
	if got := strings.Join(items, "|"); got != wantItems {
		t.Errorf("items\n got %s\nwant %s", got, wantItems)
	}
	want := []string{
		`t=1767268800123000000 svc=api host=web-1 build=build-7 deploy= level=error trace=0af7651916cd43dd8448eb211c80319c span=b7ad6b7169203331 msg="connection refused" ` +
			`attrs=[env=prod host.ip=["10.0.0.1","10.0.0.2"] http.response.status_code=500 index=logs-api log.logger=db ok=false service.version=1.2]`,
		`t=1767268800000000000 svc= host=h-2 build= deploy=d-1 level=info trace= span= msg="hi" attrs=[index=default-idx log.level=chatty]`,
		`t=0 svc= host= build= deploy= level=info trace= span= msg="nested" attrs=[a.b.c.d=1 arr=[{"x":1}] index=n]`,
		`t=1767268801000000000 svc= host=v-1 build= deploy= level=info trace= span= msg="from vector" attrs=[index=vector source_type=file]`,
		`t=1767268802000000000 svc= host=fb-1 build= deploy= level=info trace= span= msg="from fluent bit" attrs=[index=fluentbit stream=stdout]`,
		`t=1767268803000000001 svc=otel-api host=o-1 build= deploy= level=warn trace=0af7651916cd43dd8448eb211c80319c span= msg="from the collector" ` +
			`attrs=[http.route=/x index=logs-generic.otel-default scope.name=s]`,
	}
	if len(b.Records) != len(want) {
		t.Fatalf("%d records, want %d", len(b.Records), len(want))
	}
	for i, r := range b.Records {
		if got := esRecString(r); got != want[i] {
			t.Errorf("record %d\n got %s\nwant %s", i, got, want[i])
		}
	}

	for _, bad := range []string{
		`{"create":{}}` + "\n",              // no document
		`{"upsert":{}}` + "\n{}\n",          // unknown action
		`[1]` + "\n{}\n",                    // not an object
		`{"index":{},"create":{}}` + "\n{}", // two actions
	} {
		if _, err := DecodeESBulk([]byte(bad), "", 100); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := DecodeESBulk([]byte(strings.Repeat("{\"index\":{}}\n{}\n", 3)), "", 2); err == nil || !strings.Contains(err.Error(), "more than 2 actions") {
		t.Errorf("over the item limit: %v", err)
	}
}

// FuzzDecodeESBulk: any body decodes or is refused; what decodes has an
// item per action, records that are valid UTF-8 with sorted unique
// attribute keys, and record indexes in range.
func FuzzDecodeESBulk(f *testing.F) {
	f.Add([]byte("{\"create\":{\"_index\":\"i\"}}\n{\"@timestamp\":\"2026-01-01T00:00:00Z\",\"message\":\"m\",\"log\":{\"level\":\"warn\"},\"labels\":{\"a\":\"b\"}}\n"))
	f.Add([]byte("{\"index\":{}}\n{\"a\":{\"b\":[1,{\"c\":null}]},\"trace.id\":1}\n{\"delete\":{}}\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := DecodeESBulk(body, "idx", 1000)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		n := 0
		for _, it := range b.Items {
			if it.Record >= 0 {
				if it.Record != n || it.Err != nil {
					t.Fatalf("item %+v out of order", it)
				}
				n++
			}
		}
		if n != len(b.Records) {
			t.Fatalf("%d items with records, %d records", n, len(b.Records))
		}
		for _, r := range b.Records {
			for _, s := range []string{r.Service, r.Host, r.BuildID, r.DeployID, r.TraceID, r.SpanID, r.Message} {
				if !utf8.ValidString(s) {
					t.Fatalf("invalid UTF-8 %q", s)
				}
			}
			if !slices.IsSortedFunc(r.Attrs, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) }) {
				t.Fatalf("attributes not sorted: %v", r.Attrs)
			}
			for i, a := range r.Attrs {
				if a.Key == "" || i > 0 && r.Attrs[i-1].Key == a.Key {
					t.Fatalf("bad attribute key in %v", r.Attrs)
				}
			}
		}
	})
}

// esBenchBody is a bulk body of about size bytes of Filebeat-like
// documents, and the same documents as JSON lines.
func esBenchBody(size int) (bulk, jsonl []byte, n int) {
	var bb, jb bytes.Buffer
	for i := 0; bb.Len() < size; i++ {
		fmt.Fprintf(&bb, "{\"create\":{\"_index\":\"logs-app\"}}\n{\"@timestamp\":\"2026-01-01T12:00:%02d.%03dZ\",\"message\":\"GET /v1/users/%d 200 in %dms\",\"log\":{\"level\":\"info\"},\"service\":{\"name\":\"api\"},\"host\":{\"name\":\"web-%d\"},\"http\":{\"request\":{\"method\":\"GET\"},\"response\":{\"status_code\":200}},\"trace\":{\"id\":\"0af7651916cd43dd8448eb211c80319c\"}}\n",
			i%60, i%1000, i, i%300, i%8)
		fmt.Fprintf(&jb, "{\"time\":\"2026-01-01T12:00:%02d.%03dZ\",\"message\":\"GET /v1/users/%d 200 in %dms\",\"level\":\"info\",\"service\":\"api\",\"host\":\"web-%d\",\"attributes\":{\"http.request.method\":\"GET\",\"http.response.status_code\":\"200\"},\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\"}\n",
			i%60, i%1000, i, i%300, i%8)
		n++
	}
	return bb.Bytes(), jb.Bytes(), n
}

// BenchmarkESBulk decodes 1 MiB bulk bodies; BenchmarkESBulkJSONL the same
// documents as /v1/logs:jsonl's JSON lines. Both report lines/s.
func BenchmarkESBulk(b *testing.B) {
	body, _, n := esBenchBody(1 << 20)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := DecodeESBulk(body, "", 1<<20); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func BenchmarkESBulkJSONL(b *testing.B) {
	_, body, n := esBenchBody(1 << 20)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r := NewJSONLReader(bytes.NewReader(body), nil, 0)
		for {
			if _, _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

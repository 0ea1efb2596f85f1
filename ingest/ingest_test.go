package ingest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
)

// fakeSink is an ingest.Sink whose Append is its func field.
type fakeSink struct {
	AppendFunc func(ctx context.Context, b model.Batch) (model.AppendResult, error)
}

func (f *fakeSink) Append(ctx context.Context, b model.Batch) (model.AppendResult, error) {
	return f.AppendFunc(ctx, b)
}

// recordingSink accepts every batch and keeps a copy of it.
func recordingSink(got *[]model.Batch) *fakeSink {
	return &fakeSink{AppendFunc: func(_ context.Context, b model.Batch) (model.AppendResult, error) {
		c := model.Batch{AgentID: b.AgentID, Records: slices.Clone(b.Records)}
		for i := range c.Records {
			c.Records[i].Attrs = slices.Clone(c.Records[i].Attrs)
		}
		*got = append(*got, c)
		return model.AppendResult{Accepted: len(b.Records)}, nil
	}}
}

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// smallOptions are limits small enough to test at their edges.
func smallOptions() ingest.Options {
	return ingest.Options{
		MaxRecords:    5,
		MaxLineBytes:  16,
		MaxLabelBytes: 8,
		MaxAttrs:      3,
		MaxAttrBytes:  10,
		MaxFuture:     time.Hour,
		MaxPast:       24 * time.Hour,
		Now:           func() time.Time { return now },
	}
}

// validBatch is three records that pass smallOptions.
func validBatch() model.Batch {
	b := model.Batch{AgentID: "agent-1"}
	for i := 0; i < 3; i++ {
		b.Records = append(b.Records, model.Record{
			Time:    now.Add(-time.Duration(i) * time.Minute).UnixNano(),
			Labels:  model.Labels{Service: "api", Host: "web-1", BuildID: "b1", DeployID: "d1"},
			Level:   model.LevelInfo,
			Message: "hello",
			TraceID: "t1",
			SpanID:  "s1",
			Attrs:   []model.Attr{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}},
			Seq:     uint64(i + 1),
		})
	}
	return b
}

// counter returns the value of a counter registered in reg.
func counter(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestRefused(t *testing.T) {
	const bad = "\xff\xfe"
	long := strings.Repeat("x", 9) // one byte over MaxLabelBytes
	for _, tc := range []struct {
		name   string
		change func(b *model.Batch)
		want   string
	}{
		{"batch too large", func(b *model.Batch) { b.Records = append(b.Records, b.Records...) }, "batch has 6 records; the limit is 5"},
		{"agent_id not UTF-8", func(b *model.Batch) { b.AgentID = bad }, "agent_id must be valid UTF-8 of at most 8 bytes"},
		{"agent_id too long", func(b *model.Batch) { b.AgentID = long }, "agent_id must be valid UTF-8 of at most 8 bytes"},
		{"time too far ahead", func(b *model.Batch) { b.Records[1].Time = now.Add(time.Hour + 1).UnixNano() },
			"record 1: time 2026-03-01T13:00:00.000000001Z is outside the accepted window (1d before to 1h0m0s after the server's clock)"},
		{"time too far back", func(b *model.Batch) { b.Records[2].Time = now.Add(-24*time.Hour - 1).UnixNano() },
			"record 2: time 2026-02-28T11:59:59.999999999Z is outside the accepted window"},
		{"time at the epoch", func(b *model.Batch) { b.Records[0].Time = 1 }, "record 0: time 1970-01-01T00:00:00.000000001Z is outside"},
		{"service not UTF-8", func(b *model.Batch) { b.Records[1].Service = bad }, "record 1: service is not valid UTF-8"},
		{"host not UTF-8", func(b *model.Batch) { b.Records[1].Host = "web" + bad }, "record 1: host is not valid UTF-8"},
		{"build_id not UTF-8", func(b *model.Batch) { b.Records[2].BuildID = bad }, "record 2: build_id is not valid UTF-8"},
		{"deploy_id not UTF-8", func(b *model.Batch) { b.Records[0].DeployID = bad }, "record 0: deploy_id is not valid UTF-8"},
		{"trace_id not UTF-8", func(b *model.Batch) { b.Records[1].TraceID = bad }, "record 1: trace_id is not valid UTF-8"},
		{"span_id not UTF-8", func(b *model.Batch) { b.Records[1].SpanID = bad }, "record 1: span_id is not valid UTF-8"},
		{"message not UTF-8", func(b *model.Batch) { b.Records[2].Message = "ok " + bad }, "record 2: message is not valid UTF-8"},
		{"long message not UTF-8", func(b *model.Batch) { b.Records[2].Message = strings.Repeat("a", 30) + bad }, "record 2: message is not valid UTF-8"},
		{"attribute key not UTF-8", func(b *model.Batch) { b.Records[1].Attrs[0].Key = bad }, `record 1: attribute "\xff\xfe" is not valid UTF-8`},
		{"attribute value not UTF-8", func(b *model.Batch) { b.Records[1].Attrs[1].Value = bad }, `record 1: attribute "b" is not valid UTF-8`},
		{"service too long", func(b *model.Batch) { b.Records[0].Service = long }, "record 0: service is 9 bytes long; the limit is 8"},
		{"host too long", func(b *model.Batch) { b.Records[1].Host = long }, "record 1: host is 9 bytes long; the limit is 8"},
		{"build_id too long", func(b *model.Batch) { b.Records[1].BuildID = long }, "record 1: build_id is 9 bytes long"},
		{"deploy_id too long", func(b *model.Batch) { b.Records[1].DeployID = long }, "record 1: deploy_id is 9 bytes long"},
		{"trace_id too long", func(b *model.Batch) { b.Records[1].TraceID = long }, "record 1: trace_id is 9 bytes long"},
		{"span_id too long", func(b *model.Batch) { b.Records[1].SpanID = long }, "record 1: span_id is 9 bytes long"},
		{"too many attributes", func(b *model.Batch) {
			b.Records[2].Attrs = []model.Attr{{Key: "a"}, {Key: "b"}, {Key: "c"}, {Key: "d"}}
		}, "record 2: 4 attributes; the limit is 3"},
		{"too many attributes, duplicates included", func(b *model.Batch) {
			b.Records[2].Attrs = []model.Attr{{Key: "a"}, {Key: "a"}, {Key: "a"}, {Key: "a"}}
		}, "record 2: 4 attributes; the limit is 3"},
		{"empty attribute key", func(b *model.Batch) { b.Records[0].Attrs[1].Key = "" }, "record 0: an attribute has an empty key"},
		{"attribute key too long", func(b *model.Batch) { b.Records[0].Attrs[1].Key = strings.Repeat("k", 11) }, `record 0: attribute "kkkkkkkkkkk" is longer than 10 bytes`},
		{"attribute value too long", func(b *model.Batch) { b.Records[1].Attrs[0].Value = strings.Repeat("v", 11) }, `record 1: attribute "a" is longer than 10 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []model.Batch
			reg := prometheus.NewRegistry()
			in := ingest.New(recordingSink(&got), smallOptions(), nil, reg)
			b := validBatch()
			tc.change(&b)
			res, err := in.Ingest(context.Background(), &b)
			if !errors.Is(err, ingest.ErrInvalid) {
				t.Fatalf("Ingest: %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q; want it to hold %q", err, tc.want)
			}
			if res != (model.AppendResult{}) {
				t.Errorf("result %+v for a refused batch", res)
			}
			if len(got) != 0 {
				t.Errorf("a refused batch reached the sink")
			}
			if n := counter(t, reg, "shiplog_ingest_rejected_batches_total"); n != 1 {
				t.Errorf("rejected batches: %v", n)
			}
			if n := counter(t, reg, "shiplog_ingest_batches_total"); n != 0 {
				t.Errorf("accepted batches: %v", n)
			}
		})
	}
}

// TestAcceptedAtTheLimits: every limit is inclusive.
func TestAcceptedAtTheLimits(t *testing.T) {
	exact := strings.Repeat("x", 8)
	for _, tc := range []struct {
		name   string
		change func(b *model.Batch)
	}{
		{"as is", func(*model.Batch) {}},
		{"no agent", func(b *model.Batch) { b.AgentID = "" }},
		{"empty batch", func(b *model.Batch) { b.Records = nil }},
		{"max records", func(b *model.Batch) { b.Records = append(b.Records, b.Records[:2]...) }},
		{"latest time", func(b *model.Batch) { b.Records[0].Time = now.Add(time.Hour).UnixNano() }},
		{"earliest time", func(b *model.Batch) { b.Records[0].Time = now.Add(-24 * time.Hour).UnixNano() }},
		{"longest labels", func(b *model.Batch) {
			r := &b.Records[1]
			b.AgentID, r.Service, r.Host, r.BuildID, r.DeployID, r.TraceID, r.SpanID = exact, exact, exact, exact, exact, exact, exact
		}},
		{"multi-byte labels", func(b *model.Batch) { b.Records[1].Host = "hé✓ab" }}, // 8 bytes
		{"max attributes", func(b *model.Batch) { b.Records[2].Attrs = []model.Attr{{Key: "a"}, {Key: "b"}, {Key: "c"}} }},
		{"longest attribute", func(b *model.Batch) { b.Records[2].Attrs = []model.Attr{{Key: "kkkkkkkkkk", Value: "vvvvvvvvvv"}} }},
		{"empty attribute value", func(b *model.Batch) { b.Records[2].Attrs[0].Value = "" }},
		{"longest message", func(b *model.Batch) { b.Records[0].Message = strings.Repeat("m", 16) }},
		{"empty message", func(b *model.Batch) { b.Records[0].Message = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []model.Batch
			in := ingest.New(recordingSink(&got), smallOptions(), nil, nil)
			b := validBatch()
			tc.change(&b)
			want := model.Batch{AgentID: b.AgentID, Records: slices.Clone(b.Records)}
			res, err := in.Ingest(context.Background(), &b)
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != len(want.Records) || len(got) != 1 {
				t.Fatalf("result %+v, %d batches at the sink", res, len(got))
			}
			if got[0].AgentID != want.AgentID || len(got[0].Records) != len(want.Records) {
				t.Fatalf("sink got %+v", got[0])
			}
			for i, r := range got[0].Records {
				if w := want.Records[i]; r.Time != w.Time || r.Labels != w.Labels || r.Message != w.Message ||
					r.TraceID != w.TraceID || r.SpanID != w.SpanID || r.Seq != w.Seq || !slices.Equal(r.Attrs, w.Attrs) {
					t.Errorf("record %d changed: %+v, want %+v", i, r, w)
				}
			}
		})
	}
}

func TestZeroTimeIsNow(t *testing.T) {
	var got []model.Batch
	in := ingest.New(recordingSink(&got), smallOptions(), nil, nil)
	b := validBatch()
	b.Records[1].Time = 0
	if _, err := in.Ingest(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if r := got[0].Records[1]; r.Time != now.UnixNano() {
		t.Errorf("time %v, want now", time.Unix(0, r.Time).UTC())
	}
	if r := got[0].Records[0]; r.Time != now.UnixNano() {
		t.Errorf("record 0 time changed: %v", time.Unix(0, r.Time).UTC())
	}
}

func TestAttributesSortedAndDeduplicated(t *testing.T) {
	a := func(kv ...string) []model.Attr {
		var out []model.Attr
		for i := 0; i < len(kv); i += 2 {
			out = append(out, model.Attr{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		in, want []model.Attr
	}{
		{"none", nil, nil},
		{"sorted", a("a", "1", "b", "2"), a("a", "1", "b", "2")},
		{"unsorted", a("b", "2", "a", "1", "c", "3"), a("a", "1", "b", "2", "c", "3")},
		// The first of equal keys wins, in the order they were sent.
		{"duplicates, sorted", a("a", "1", "a", "2", "b", "3"), a("a", "1", "b", "3")},
		{"duplicates, unsorted", a("b", "1", "a", "1", "b", "2", "a", "2", "c", "1", "a", "3"), a("a", "1", "b", "1", "c", "1")},
		{"same key thrice", a("k", "x", "k", "y", "k", "z"), a("k", "x")},
		{"keys by bytes", a("b", "", "B", "", "é", "", "a", ""), a("B", "", "a", "", "b", "", "é", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []model.Batch
			o := smallOptions()
			o.MaxAttrs = 10
			in := ingest.New(recordingSink(&got), o, nil, nil)
			b := validBatch()
			b.Records[1].Attrs = slices.Clone(tc.in)
			if _, err := in.Ingest(context.Background(), &b); err != nil {
				t.Fatal(err)
			}
			if as := got[0].Records[1].Attrs; !slices.Equal(as, tc.want) {
				t.Errorf("attributes %v, want %v", as, tc.want)
			}
		})
	}
}

func TestLongMessageTruncated(t *testing.T) {
	for _, tc := range []struct {
		name      string
		msg, want string
		attrs     []model.Attr
		wantAttrs []model.Attr
	}{
		{"ascii", strings.Repeat("a", 17), strings.Repeat("a", 16), nil, []model.Attr{{Key: "truncated", Value: "true"}}},
		{"two-byte rune across the limit", "123456789012345é", "123456789012345",
			[]model.Attr{{Key: "a", Value: "1"}, {Key: "z", Value: "2"}},
			[]model.Attr{{Key: "a", Value: "1"}, {Key: "truncated", Value: "true"}, {Key: "z", Value: "2"}}},
		{"four-byte rune across the limit", "1234567890123😀xyz", "1234567890123", nil, []model.Attr{{Key: "truncated", Value: "true"}}},
		{"rune ending at the limit", "12345678901234é!", "12345678901234é", nil, []model.Attr{{Key: "truncated", Value: "true"}}},
		{"only multi-byte runes", strings.Repeat("✓", 6), strings.Repeat("✓", 5), nil, []model.Attr{{Key: "truncated", Value: "true"}}},
		{"truncated attribute already there", strings.Repeat("a", 40), strings.Repeat("a", 16),
			[]model.Attr{{Key: "truncated", Value: "false"}},
			[]model.Attr{{Key: "truncated", Value: "true"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []model.Batch
			reg := prometheus.NewRegistry()
			in := ingest.New(recordingSink(&got), smallOptions(), nil, reg)
			b := validBatch()
			b.Records[2].Message = tc.msg
			b.Records[2].Attrs = slices.Clone(tc.attrs)
			if _, err := in.Ingest(context.Background(), &b); err != nil {
				t.Fatal(err)
			}
			r := got[0].Records[2]
			if r.Message != tc.want || !utf8.ValidString(r.Message) || len(r.Message) > 16 {
				t.Errorf("message %q, want %q", r.Message, tc.want)
			}
			if !slices.Equal(r.Attrs, tc.wantAttrs) {
				t.Errorf("attributes %v, want %v", r.Attrs, tc.wantAttrs)
			}
			if r := got[0].Records[1]; r.Message != "hello" || len(r.Attrs) != 2 {
				t.Errorf("another record changed: %+v", r)
			}
			if n := counter(t, reg, "shiplog_ingest_truncated_lines_total"); n != 1 {
				t.Errorf("truncated lines: %v", n)
			}
		})
	}
}

func TestSinkResultAndError(t *testing.T) {
	reg := prometheus.NewRegistry()
	want := model.AppendResult{Accepted: 2, Duplicates: 1, AckedSeq: 3}
	sinkErr := errors.New("disk on fire")
	var fail bool
	var calls int
	sink := &fakeSink{AppendFunc: func(ctx context.Context, b model.Batch) (model.AppendResult, error) {
		calls++
		if ctx.Value(ctxKey{}) != "v" {
			t.Error("the context did not reach the sink")
		}
		if fail {
			return model.AppendResult{}, sinkErr
		}
		return want, nil
	}}
	in := ingest.New(sink, smallOptions(), nil, reg)
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")
	b := validBatch()
	res, err := in.Ingest(ctx, &b)
	if err != nil || res != want {
		t.Fatalf("Ingest = %+v, %v; want %+v", res, err, want)
	}
	fail = true
	b = validBatch()
	if _, err := in.Ingest(ctx, &b); !errors.Is(err, sinkErr) || errors.Is(err, ingest.ErrInvalid) {
		t.Fatalf("sink error came back as %v", err)
	}
	if calls != 2 {
		t.Errorf("%d calls to the sink", calls)
	}
	if n := counter(t, reg, "shiplog_ingest_batches_total"); n != 1 {
		t.Errorf("accepted batches %v, want 1 (the failed one is not)", n)
	}
	if n := counter(t, reg, "shiplog_ingest_records_total"); n != 3 {
		t.Errorf("records %v, want 3", n)
	}
	if n := counter(t, reg, "shiplog_ingest_rejected_batches_total"); n != 0 {
		t.Errorf("rejected batches %v", n)
	}
}

type ctxKey struct{}

// TestLevelOutOfRange: a level beyond fatal is no level at all.
func TestLevelOutOfRange(t *testing.T) {
	var got []model.Batch
	in := ingest.New(recordingSink(&got), smallOptions(), nil, nil)
	b := validBatch()
	b.Records[1].Level = model.NumLevels
	if _, err := in.Ingest(context.Background(), &b); !errors.Is(err, ingest.ErrInvalid) || len(got) != 0 {
		t.Fatalf("Ingest: %v, %d batches at the sink; want ErrInvalid and none", err, len(got))
	}
}

func TestDefaultOptions(t *testing.T) {
	o := ingest.DefaultOptions()
	if o.MaxRecords <= 0 || o.MaxLineBytes <= 0 || o.MaxLabelBytes <= 0 || o.MaxAttrs <= 0 || o.MaxAttrBytes <= 0 ||
		o.MaxFuture <= 0 || o.MaxPast <= 0 || o.Now == nil {
		t.Fatalf("DefaultOptions() = %+v", o)
	}
	// Zero options mean the defaults.
	var got []model.Batch
	in := ingest.New(recordingSink(&got), ingest.Options{}, nil, nil)
	b := model.Batch{Records: []model.Record{{Message: strings.Repeat("x", 1000)}}}
	if _, err := in.Ingest(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if r := got[0].Records[0]; len(r.Message) != 1000 || r.Time == 0 || len(r.Attrs) != 0 {
		t.Errorf("record %+v", r)
	}
}

// The sender (the auth token's name, set by the server's authentication)
// reaches the sink with the batch; a sender the client wrote is not trusted.
func TestIngestStampsSender(t *testing.T) {
	var got []string
	sink := &fakeSink{AppendFunc: func(_ context.Context, b model.Batch) (model.AppendResult, error) {
		got = append(got, b.Sender)
		return model.AppendResult{}, nil
	}}
	in := ingest.New(sink, ingest.DefaultOptions(), nil, nil)
	for _, ctx := range []context.Context{context.Background(), ingest.WithSender(context.Background(), "ci")} {
		b := model.Batch{AgentID: "a1", Sender: "forged", Records: []model.Record{{Message: "x"}}}
		if _, err := in.Ingest(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || got[0] != "" || got[1] != "ci" {
		t.Fatalf("senders %q, want \"\" and \"ci\"", got)
	}
}

package server

import (
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
	"time"
	"unsafe"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, a...))
}

// nanosOf is a valid ts in Unix nanoseconds; false when it is not valid or
// int64 nanoseconds cannot hold it (before 1678 or after 2262), where
// Time.UnixNano would wrap around (a time ~584 years ahead would come out as
// today).
func nanosOf(ts *timestamppb.Timestamp) (int64, bool) {
	const lo, hi = math.MinInt64/1_000_000_000 + 1, math.MaxInt64/1_000_000_000 - 1
	if ts == nil || ts.CheckValid() != nil || ts.GetSeconds() < lo || ts.GetSeconds() > hi {
		return 0, false
	}
	return ts.GetSeconds()*1e9 + int64(ts.GetNanos()), true
}

// toBatch converts a PushRequest, filling each record's empty fields from the
// defaults and normalising levels.
func toBatch(req *shiplogv1.PushRequest) (model.Batch, error) {
	b := model.Batch{AgentID: req.GetAgentId(), Records: make([]model.Record, len(req.GetRecords())),
		Closing: req.GetClosing(), Dropped: req.GetDropped()}
	if run := req.GetRun(); run != nil {
		b.Run = &model.Run{
			BuildID: run.GetBuildId(), DeployID: run.GetDeployId(), Service: run.GetService(), Host: run.GetHost(),
			Command: run.GetCommand(), Finished: run.GetFinished(), ExitCode: int(run.GetExitCode()),
		}
		if run.GetBuildId() == "" {
			return b, invalid("run: build_id is required")
		}
		if ns, ok := nanosOf(run.GetStart()); ok {
			b.Run.Start = ns
		}
		if ns, ok := nanosOf(run.GetEnd()); ok {
			b.Run.End = ns
		}
	}
	d := req.GetDefaults()
	for i, r := range req.GetRecords() {
		if r == nil {
			return b, invalid("record %d is null", i)
		}
		rec := &b.Records[i]
		if ts := r.GetTime(); ts != nil {
			if err := ts.CheckValid(); err != nil {
				return b, invalid("record %d: time: %v", i, err)
			}
			ns, ok := nanosOf(ts)
			if !ok {
				return b, invalid("record %d: time %s is out of range (years 1678 to 2262)", i, ts.AsTime().Format(time.RFC3339Nano))
			}
			rec.Time = ns
			if rec.Time == 0 {
				rec.Time = 1 // the epoch itself, not "missing"; ingest rejects it as too old
			}
		} else if dt := d.GetTime(); dt != nil && dt.CheckValid() == nil {
			ns, ok := nanosOf(dt)
			if !ok {
				return b, invalid("defaults: time %s is out of range (years 1678 to 2262)", dt.AsTime().Format(time.RFC3339Nano))
			}
			rec.Time = ns
		}
		rec.Service = or(r.GetService(), d.GetService())
		rec.Host = or(r.GetHost(), d.GetHost())
		rec.BuildID = or(r.GetBuildId(), d.GetBuildId())
		rec.DeployID = or(r.GetDeployId(), d.GetDeployId())
		lvs := or(r.GetLevel(), d.GetLevel())
		lv, ok := model.ParseLevel(lvs)
		if !ok {
			return b, invalid("record %d: unknown level %q (want trace, debug, info, warn, error or fatal)", i, lvs)
		}
		rec.Level = lv
		rec.Message = r.GetMessage()
		rec.TraceID = or(r.GetTraceId(), d.GetTraceId())
		rec.SpanID = or(r.GetSpanId(), d.GetSpanId())
		rec.Seq = r.GetSeq()
		rec.Attrs = mergeAttrs(d.GetAttributes(), r.GetAttributes())
	}
	return b, nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func mergeAttrs(def, own map[string]string) []model.Attr {
	if len(def)+len(own) == 0 {
		return nil
	}
	out := make([]model.Attr, 0, len(def)+len(own))
	for k, v := range own {
		out = append(out, model.Attr{Key: k, Value: v})
	}
	for k, v := range def {
		if _, ok := own[k]; !ok {
			out = append(out, model.Attr{Key: k, Value: v})
		}
	}
	if len(out) > 1 {
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	}
	return out
}

// toProto converts a stored record for the API.
func toProto(r *model.Record) *shiplogv1.Record {
	p := &shiplogv1.Record{Id: r.ID.String()}
	fillProto(p, &timestamppb.Timestamp{}, r)
	return p
}

// fillProto sets p (and its time, ts) from r, its id aside.
func fillProto(p *shiplogv1.Record, ts *timestamppb.Timestamp, r *model.Record) {
	ts.Seconds, ts.Nanos = r.Time/1e9, int32(r.Time%1e9)
	if ts.Nanos < 0 { // before 1970: the nanoseconds of a Timestamp count forward
		ts.Seconds, ts.Nanos = ts.Seconds-1, ts.Nanos+1e9
	}
	p.Time = ts
	p.Service, p.Host, p.BuildId, p.DeployId = r.Service, r.Host, r.BuildID, r.DeployID
	p.Level, p.Message, p.TraceId, p.SpanId, p.Seq = r.Level.String(), r.Message, r.TraceID, r.SpanID, r.Seq
	if len(r.Attrs) > 0 {
		p.Attributes = make(map[string]string, len(r.Attrs))
		for _, a := range r.Attrs {
			p.Attributes[a.Key] = a.Value
		}
	}
}

// parallelRecords is the page size from which a page's records are
// converted (and written as JSON, searchjson.go) by several goroutines,
// each a share of at least this many: one build's few thousand lines are
// a page, and its conversion and encoding took as long as the search.
const parallelRecords = 512

// shares cuts n items into the parts that goroutines take (one when n is
// small or there is one CPU): part i is [bounds[i], bounds[i+1]).
func shares(n int) []int {
	k := min(runtime.GOMAXPROCS(0), n/parallelRecords, 8)
	k = max(k, 1)
	bounds := make([]int, k+1)
	for i := range bounds {
		bounds[i] = n * i / k
	}
	return bounds
}

// eachShare calls fn on the shares of n items, concurrently when there
// is more than one; the first runs on the caller's goroutine.
func eachShare(n int, fn func(part, lo, hi int)) {
	b := shares(n)
	var wg sync.WaitGroup
	for i := 1; i < len(b)-1; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, b[i], b[i+1])
		}()
	}
	fn(0, b[0], b[1])
	wg.Wait()
}

// recordsToProto converts a page of stored records for the API: their
// messages, timestamps and ids are allocated together, not one by one.
func recordsToProto(recs []model.Record) []*shiplogv1.Record {
	out := make([]*shiplogv1.Record, len(recs))
	ps := make([]shiplogv1.Record, len(recs))
	ts := make([]timestamppb.Timestamp, len(recs))
	ids := make([]byte, 0, 32*len(recs))
	eachShare(len(recs), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			fillProto(&ps[i], &ts[i], &recs[i])
			id := recs[i].ID.AppendText(ids[32*i : 32*i : 32*(i+1)])
			ps[i].Id = unsafe.String(unsafe.SliceData(id), len(id))
			out[i] = &ps[i]
		}
	})
	return out
}

// Package ingest validates and normalises incoming batches and hands them to a
// Sink. It knows nothing of protobuf or of the store behind the Sink: today
// the store itself, later perhaps a replicated log in front of it.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/model"
)

// Sink stores batches durably: when Append returns without error, the
// accepted records survive a crash of the process.
type Sink interface {
	Append(ctx context.Context, b model.Batch) (model.AppendResult, error)
}

// ErrInvalid wraps every error about input a client sent.
var ErrInvalid = errors.New("invalid input")

// Options are the limits of one batch and record.
type Options struct {
	MaxRecords    int           // records in one batch
	MaxLineBytes  int           // longer messages are cut, marked truncated=true
	MaxLabelBytes int           // service, host, build_id, deploy_id, trace/span id
	MaxAttrs      int           // attributes per record
	MaxAttrBytes  int           // bytes of one attribute key or value
	MaxFuture     time.Duration // how far ahead of the server's clock a time may be
	MaxPast       time.Duration // how far back
	Now           func() time.Time
}

// DefaultOptions returns the limits shiplog runs with.
func DefaultOptions() Options {
	return Options{
		MaxRecords:    100000,
		MaxLineBytes:  256 << 10,
		MaxLabelBytes: 256,
		MaxAttrs:      128,
		MaxAttrBytes:  16 << 10,
		MaxFuture:     24 * time.Hour,
		MaxPast:       2 * 365 * 24 * time.Hour,
		Now:           time.Now,
	}
}

// TruncatedAttr marks a record whose message was cut to MaxLineBytes.
const TruncatedAttr = "truncated"

// Ingester validates batches and writes them to its Sink.
type Ingester struct {
	sink Sink
	opts Options
	log  *slog.Logger

	batches, records, truncated prometheus.Counter
	rejected                    prometheus.Counter
}

// New returns an Ingester writing to sink.
func New(sink Sink, opts Options, log *slog.Logger, reg prometheus.Registerer) *Ingester {
	d := DefaultOptions()
	if opts.MaxRecords <= 0 {
		opts.MaxRecords = d.MaxRecords
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = d.MaxLineBytes
	}
	if opts.MaxLabelBytes <= 0 {
		opts.MaxLabelBytes = d.MaxLabelBytes
	}
	if opts.MaxAttrs <= 0 {
		opts.MaxAttrs = d.MaxAttrs
	}
	if opts.MaxAttrBytes <= 0 {
		opts.MaxAttrBytes = d.MaxAttrBytes
	}
	if opts.MaxFuture <= 0 {
		opts.MaxFuture = d.MaxFuture
	}
	if opts.MaxPast <= 0 {
		opts.MaxPast = d.MaxPast
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in := &Ingester{
		sink:      sink,
		opts:      opts,
		log:       log,
		batches:   prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_ingest_batches_total", Help: "Batches accepted for storage."}),
		records:   prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_ingest_records_total", Help: "Records received in valid batches."}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_ingest_truncated_lines_total", Help: "Messages cut to the maximum line length."}),
		rejected:  prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_ingest_rejected_batches_total", Help: "Batches refused as invalid."}),
	}
	if reg != nil {
		reg.MustRegister(in.batches, in.records, in.truncated, in.rejected)
	}
	return in
}

type senderKey struct{}

// WithSender returns ctx carrying the name of the token a request came with.
// Ingest stamps it on batches (model.Batch.Sender): the store keeps an agent
// id with the sender that first used it.
func WithSender(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, senderKey{}, name)
}

// Ingest validates and normalises b in place, then appends it. A batch with
// any invalid record is refused whole, with an error naming the record.
func (in *Ingester) Ingest(ctx context.Context, b *model.Batch) (model.AppendResult, error) {
	if err := in.validate(b); err != nil {
		in.rejected.Inc()
		return model.AppendResult{}, err
	}
	b.Sender, _ = ctx.Value(senderKey{}).(string)
	res, err := in.sink.Append(ctx, *b)
	if err != nil {
		return res, err
	}
	in.batches.Inc()
	in.records.Add(float64(len(b.Records)))
	return res, nil
}

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

func (in *Ingester) validate(b *model.Batch) error {
	o := &in.opts
	if len(b.Records) > o.MaxRecords {
		return invalidf("batch has %d records; the limit is %d", len(b.Records), o.MaxRecords)
	}
	if !utf8.ValidString(b.AgentID) || len(b.AgentID) > o.MaxLabelBytes {
		return invalidf("agent_id must be valid UTF-8 of at most %d bytes", o.MaxLabelBytes)
	}
	check := !b.TextChecked // else the decoder checked every string's UTF-8
	now := in.opts.Now()
	minT, maxT := now.Add(-o.MaxPast).UnixNano(), now.Add(o.MaxFuture).UnixNano()
	for i := range b.Records {
		r := &b.Records[i]
		if r.Level >= model.NumLevels {
			return invalidf("record %d: level %d is not a level", i, r.Level)
		}
		if r.Time == 0 {
			r.Time = now.UnixNano()
		} else if r.Time < minT || r.Time > maxT {
			return invalidf("record %d: time %s is outside the accepted window (%s before to %s after the server's clock)",
				i, time.Unix(0, r.Time).UTC().Format(time.RFC3339Nano), human(o.MaxPast), human(o.MaxFuture))
		}
		if m := o.MaxLabelBytes; check || len(r.Service) > m || len(r.Host) > m || len(r.BuildID) > m || len(r.DeployID) > m || len(r.TraceID) > m || len(r.SpanID) > m {
			if err := in.validateText(r, i, check); err != nil {
				return err
			}
		}
		if len(r.Attrs) > 0 {
			if err := in.validateAttrs(r, i, check); err != nil {
				return err
			}
		}
		if len(r.Message) > o.MaxLineBytes {
			r.Message = cutUTF8(r.Message, o.MaxLineBytes)
			r.Attrs = setAttr(r.Attrs, TruncatedAttr, "true")
			in.truncated.Inc()
		}
	}
	return nil
}

// validateText checks the lengths of r's labels, trace and span ids and,
// with check, that they and its message are valid UTF-8.
func (in *Ingester) validateText(r *model.Record, i int, check bool) error {
	o := &in.opts
	for _, f := range []struct {
		name string
		v    string
	}{{"service", r.Service}, {"host", r.Host}, {"build_id", r.BuildID}, {"deploy_id", r.DeployID}, {"trace_id", r.TraceID}, {"span_id", r.SpanID}} {
		if len(f.v) > o.MaxLabelBytes {
			return invalidf("record %d: %s is %d bytes long; the limit is %d", i, f.name, len(f.v), o.MaxLabelBytes)
		}
		if check && !utf8.ValidString(f.v) {
			return invalidf("record %d: %s is not valid UTF-8", i, f.name)
		}
	}
	if check && !utf8.ValidString(r.Message) {
		return invalidf("record %d: message is not valid UTF-8", i)
	}
	return nil
}

// validateAttrs checks r's attributes (count, keys, lengths and, with
// check, UTF-8), sorts them by key and keeps the last of equal keys.
func (in *Ingester) validateAttrs(r *model.Record, i int, check bool) error {
	o := &in.opts
	if len(r.Attrs) > o.MaxAttrs {
		return invalidf("record %d: %d attributes; the limit is %d", i, len(r.Attrs), o.MaxAttrs)
	}
	for _, a := range r.Attrs {
		if a.Key == "" {
			return invalidf("record %d: an attribute has an empty key", i)
		}
		if len(a.Key) > o.MaxAttrBytes || len(a.Value) > o.MaxAttrBytes {
			return invalidf("record %d: attribute %.40q is longer than %d bytes", i, a.Key, o.MaxAttrBytes)
		}
		if check && (!utf8.ValidString(a.Key) || !utf8.ValidString(a.Value)) {
			return invalidf("record %d: attribute %.40q is not valid UTF-8", i, a.Key)
		}
	}
	if !slices.IsSortedFunc(r.Attrs, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) }) {
		slices.SortStableFunc(r.Attrs, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) })
	}
	r.Attrs = slices.CompactFunc(r.Attrs, func(a, b model.Attr) bool { return a.Key == b.Key })
	return nil
}

// cutUTF8 cuts s to at most n bytes without splitting a rune.
func cutUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// setAttr sets key in a sorted attribute list.
func setAttr(as []model.Attr, key, value string) []model.Attr {
	i, found := slices.BinarySearchFunc(as, key, func(a model.Attr, k string) int { return strings.Compare(a.Key, k) })
	if found {
		as[i].Value = value
		return as
	}
	return slices.Insert(as, i, model.Attr{Key: key, Value: value})
}

// aheadBy renders ms milliseconds (positive) for a refusal: in whole days
// from two days on (a time.Duration overflows past ~292 years and would
// print a negative number), else as a duration.
func aheadBy(ms int64) string {
	if ms >= 2*24*3600*1000 {
		return fmt.Sprintf("%dd", ms/(24*3600*1000))
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

// human renders a duration in days when it is a whole number of them.
func human(d time.Duration) string {
	if day := 24 * time.Hour; d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

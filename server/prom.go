package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	prommodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/metrics"
	"github.com/shiplog/shiplog/store"
)

// errNoMetrics: the server runs without a metric store.
var errNoMetrics = errors.New("metrics are not enabled on this server")

// promAPI serves the Prometheus HTTP API (query, query_range, labels, label
// values, series) and remote write over the metric store, with Prometheus'
// parameters, JSON shapes and error format (see prometheus/web/api/v1).
type promAPI struct {
	core     Core
	log      *slog.Logger
	ins      *instruments
	parser   parser.Parser
	maxBytes int   // largest remote-write body once decompressed
	maxBody  int64 // largest remote-write body as sent
	meta     *metaStore
	// defaultStep is the subquery step when none is given (as Prometheus'
	// evaluation interval; --promql-default-step).
	defaultStep time.Duration
}

// Prometheus' bounds for optional start and end (web/api/v1 MinTime, MaxTime).
var (
	promMinTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	promMaxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()
)

func (a *promAPI) register(rt *router) {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		rt.handleFunc(m+" /api/v1/query", ScopeQuery, a.handle(a.query))
		rt.handleFunc(m+" /api/v1/query_range", ScopeQuery, a.handle(a.queryRange))
		rt.handleFunc(m+" /api/v1/labels", ScopeQuery, a.handle(a.labelNames))
		rt.handleFunc(m+" /api/v1/label/{name}/values", ScopeQuery, a.handle(a.labelValues))
		rt.handleFunc(m+" /api/v1/series", ScopeQuery, a.handle(a.series))
	}
	rt.handleFunc("POST /api/v1/write", ScopeIngest, a.remoteWrite)
}

// handle parses the form, admits the request as a query (timeout and
// concurrency limit) and writes the answer or the error.
func (a *promAPI) handle(fn func(ctx context.Context, r *http.Request) ([]byte, []string, []string, *promError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.core.Metrics == nil {
			writePromError(w, &promError{typ: "unavailable", code: http.StatusServiceUnavailable, err: errNoMetrics})
			return
		}
		if err := r.ParseForm(); err != nil {
			writePromError(w, promBadData(fmt.Errorf("error parsing form values: %w", err)))
			return
		}
		ctx, release, err := a.core.Limits.query(r.Context())
		if err != nil {
			writePromError(w, &promError{typ: "unavailable", code: http.StatusTooManyRequests, err: errors.New(status.Convert(err).Message())})
			return
		}
		defer release()
		data, warnings, infos, perr := fn(ctx, r)
		if perr != nil {
			writePromError(w, perr)
			return
		}
		writePromData(w, data, warnings, infos)
	}
}

func invalidParam(name string, err error) *promError {
	return promBadData(fmt.Errorf("invalid parameter %q: %w", name, err))
}

// parsePromTime accepts Unix seconds (with a fraction) or RFC 3339.
func parsePromTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		sec, frac := math.Modf(t)
		frac = math.Round(frac*1000) / 1000
		return time.Unix(int64(sec), int64(frac*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case promMinTime.Format(time.RFC3339Nano):
		return promMinTime, nil
	case promMaxTime.Format(time.RFC3339Nano):
		return promMaxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

func timeParam(r *http.Request, name string, def time.Time) (time.Time, *promError) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	t, err := parsePromTime(v)
	if err != nil {
		return time.Time{}, invalidParam(name, fmt.Errorf("invalid time value for '%s': %w", name, err))
	}
	return t, nil
}

// parsePromDuration accepts seconds (with a fraction) or a Prometheus duration (5m, 1h30m).
func parsePromDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if math.IsNaN(ts) || ts >= float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := prommodel.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

func limitParam(r *http.Request) (int, *promError) {
	v := r.FormValue("limit")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, invalidParam("limit", err)
	}
	if n < 0 {
		return 0, invalidParam("limit", errors.New("limit must be non-negative"))
	}
	return n, nil
}

// queryOpts reads lookback_delta, and applies timeout to ctx.
func queryOpts(ctx context.Context, r *http.Request) (context.Context, context.CancelFunc, promql.QueryOpts, *promError) {
	var lookback time.Duration
	if v := r.FormValue("lookback_delta"); v != "" {
		d, err := parsePromDuration(v)
		if err != nil {
			return nil, nil, nil, promBadData(fmt.Errorf("error parsing lookback delta duration: %w", err))
		}
		lookback = d
	}
	cancel := context.CancelFunc(func() {})
	if v := r.FormValue("timeout"); v != "" {
		d, err := parsePromDuration(v)
		if err != nil {
			return nil, nil, nil, invalidParam("timeout", err)
		}
		if d <= 0 {
			return nil, nil, nil, invalidParam("timeout", fmt.Errorf("timeout must be positive, got %s", d))
		}
		ctx, cancel = context.WithTimeout(ctx, d)
	}
	return ctx, cancel, promql.NewPrometheusQueryOpts(r.FormValue("stats") == "all", lookback, nil), nil
}

func (a *promAPI) query(ctx context.Context, r *http.Request) ([]byte, []string, []string, *promError) {
	if _, perr := limitParam(r); perr != nil {
		return nil, nil, nil, perr
	}
	ts, perr := timeParam(r, "time", time.Now())
	if perr != nil {
		return nil, nil, nil, perr
	}
	ctx, cancel, opts, perr := queryOpts(ctx, r)
	if perr != nil {
		return nil, nil, nil, perr
	}
	defer cancel()
	m := a.core.Metrics
	qry, err := m.Engine.NewInstantQuery(ctx, m.Queryable, opts, r.FormValue("query"), ts)
	if err != nil {
		return nil, nil, nil, newQueryError(ctx, err)
	}
	return a.exec(ctx, qry, r)
}

func (a *promAPI) queryRange(ctx context.Context, r *http.Request) ([]byte, []string, []string, *promError) {
	if _, perr := limitParam(r); perr != nil {
		return nil, nil, nil, perr
	}
	start, err := parsePromTime(r.FormValue("start"))
	if err != nil {
		return nil, nil, nil, invalidParam("start", err)
	}
	end, err := parsePromTime(r.FormValue("end"))
	if err != nil {
		return nil, nil, nil, invalidParam("end", err)
	}
	if end.Before(start) {
		return nil, nil, nil, invalidParam("end", errors.New("end timestamp must not be before start time"))
	}
	step, err := parsePromDuration(r.FormValue("step"))
	if err != nil {
		return nil, nil, nil, invalidParam("step", err)
	}
	if step <= 0 {
		return nil, nil, nil, invalidParam("step", errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"))
	}
	m := a.core.Metrics
	if maxPoints := m.Queryable.Options().MaxPoints; end.Sub(start)/step > time.Duration(maxPoints) {
		return nil, nil, nil, promBadData(fmt.Errorf("exceeded maximum resolution of %d points per timeseries. Try decreasing the query resolution (?step=XX)", maxPoints))
	}
	ctx, cancel, opts, perr := queryOpts(ctx, r)
	if perr != nil {
		return nil, nil, nil, perr
	}
	defer cancel()
	qry, err := m.Engine.NewRangeQuery(ctx, m.Queryable, opts, r.FormValue("query"), start, end, step)
	if err != nil {
		return nil, nil, nil, newQueryError(ctx, err)
	}
	return a.exec(ctx, qry, r)
}

func (a *promAPI) exec(ctx context.Context, qry promql.Query, r *http.Request) ([]byte, []string, []string, *promError) {
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, nil, nil, execError(ctx, res.Err)
	}
	limit, _ := limitParam(r)
	v := res.Value
	var extra []string
	if limit > 0 {
		switch x := v.(type) {
		case promql.Vector:
			if len(x) > limit {
				v = x[:limit]
				extra = append(extra, "results truncated due to limit")
			}
		case promql.Matrix:
			if len(x) > limit {
				v = x[:limit]
				extra = append(extra, "results truncated due to limit")
			}
		}
	}
	warnings, infos := res.Warnings.AsStrings(r.FormValue("query"), 10, 10)
	return appendQueryData(nil, v), append(warnings, extra...), infos, nil
}

// newQueryError maps an error of creating a query: over a limit (the
// points guard of metrics.Engine) is 422, as for a running query; anything
// else is a bad query.
func newQueryError(ctx context.Context, err error) *promError {
	if errors.Is(err, metrics.ErrLimit) {
		return execError(ctx, err)
	}
	return invalidParam("query", err)
}

// execError maps an error of a running query to the Prometheus API's.
func execError(ctx context.Context, err error) *promError {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
		storErr  promql.ErrStorage
	)
	switch {
	case errors.As(err, &timeout), errors.Is(err, context.DeadlineExceeded):
		return &promError{typ: "timeout", code: http.StatusServiceUnavailable, err: fmt.Errorf("%w: the query took longer than its time limit; narrow it down (time range, labels, step)", err)}
	case errors.As(err, &canceled), errors.Is(err, context.Canceled):
		if ctx.Err() == context.DeadlineExceeded {
			return &promError{typ: "timeout", code: http.StatusServiceUnavailable, err: err}
		}
		return &promError{typ: "canceled", code: 499, err: err}
	case errors.Is(err, store.ErrClosed):
		return &promError{typ: "unavailable", code: http.StatusServiceUnavailable, err: err}
	case errors.As(err, &storErr):
		return &promError{typ: "internal", code: http.StatusInternalServerError, err: err}
	}
	// Limits (metrics.ErrLimit, promql.ErrTooManySamples) and evaluation errors.
	return &promError{typ: "execution", code: http.StatusUnprocessableEntity, err: err}
}

// matcherSets parses match[]; each set needs one matcher that does not match "".
func (a *promAPI) matcherSets(r *http.Request) ([][]*labels.Matcher, *promError) {
	sets, err := a.parser.ParseMetricSelectors(r.Form["match[]"])
	if err != nil {
		return nil, invalidParam("match[]", err)
	}
outer:
	for _, ms := range sets {
		for _, m := range ms {
			if m != nil && !m.Matches("") {
				continue outer
			}
		}
		return nil, promBadData(errors.New("match[] must contain at least one non-empty matcher"))
	}
	return sets, nil
}

func rangeParams(r *http.Request) (int64, int64, *promError) {
	start, perr := timeParam(r, "start", promMinTime)
	if perr != nil {
		return 0, 0, perr
	}
	end, perr := timeParam(r, "end", promMaxTime)
	if perr != nil {
		return 0, 0, perr
	}
	return start.UnixMilli(), end.UnixMilli(), nil
}

func (a *promAPI) labelNames(ctx context.Context, r *http.Request) ([]byte, []string, []string, *promError) {
	return a.labelsOf(ctx, r, "")
}

func (a *promAPI) labelValues(ctx context.Context, r *http.Request) ([]byte, []string, []string, *promError) {
	name := r.PathValue("name")
	if strings.HasPrefix(name, "U__") {
		name = prommodel.UnescapeName(name, prommodel.ValueEncodingEscaping)
	}
	if !ingest.ValidLabelName(name) {
		return nil, nil, nil, promBadData(fmt.Errorf("invalid label name: %q", name))
	}
	return a.labelsOf(ctx, r, name)
}

// labelsOf answers /labels (name "") and /label/{name}/values.
func (a *promAPI) labelsOf(ctx context.Context, r *http.Request, name string) ([]byte, []string, []string, *promError) {
	limit, perr := limitParam(r)
	if perr != nil {
		return nil, nil, nil, perr
	}
	mint, maxt, perr := rangeParams(r)
	if perr != nil {
		return nil, nil, nil, perr
	}
	sets, perr := a.matcherSets(r)
	if perr != nil {
		return nil, nil, nil, perr
	}
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	q, err := a.core.Metrics.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, nil, nil, execError(ctx, err)
	}
	defer q.Close()
	seen := map[string]struct{}{}
	out := []string{}
	for _, ms := range sets {
		var vals []string
		if name == "" {
			vals, _, err = q.LabelNames(ctx, nil, ms...)
		} else {
			vals, _, err = q.LabelValues(ctx, name, nil, ms...)
		}
		if err != nil {
			return nil, nil, nil, execError(ctx, err)
		}
		for _, v := range vals {
			if _, ok := seen[v]; !ok {
				seen[v] = struct{}{}
				out = append(out, v)
			}
		}
	}
	slices.Sort(out)
	var warnings []string
	if limit > 0 && len(out) > limit {
		out = out[:limit]
		warnings = append(warnings, "results truncated due to limit")
	}
	return appendJSON(nil, out), warnings, nil, nil
}

func (a *promAPI) series(ctx context.Context, r *http.Request) ([]byte, []string, []string, *promError) {
	if len(r.Form["match[]"]) == 0 {
		return nil, nil, nil, promBadData(errors.New("no match[] parameter provided"))
	}
	limit, perr := limitParam(r)
	if perr != nil {
		return nil, nil, nil, perr
	}
	mint, maxt, perr := rangeParams(r)
	if perr != nil {
		return nil, nil, nil, perr
	}
	sets, perr := a.matcherSets(r)
	if perr != nil {
		return nil, nil, nil, perr
	}
	q, err := a.core.Metrics.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, nil, nil, execError(ctx, err)
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt, Func: "series"}
	var found []labels.Labels
	seen := map[uint64]struct{}{}
	for _, ms := range sets {
		set := q.Select(ctx, true, hints, ms...)
		for set.Next() {
			ls := set.At().Labels()
			h := ls.Hash()
			if _, ok := seen[h]; ok {
				continue
			}
			seen[h] = struct{}{}
			found = append(found, ls)
		}
		if err := set.Err(); err != nil {
			return nil, nil, nil, execError(ctx, err)
		}
	}
	if len(sets) > 1 {
		slices.SortFunc(found, labels.Compare)
	}
	var warnings []string
	if limit > 0 && len(found) > limit {
		found = found[:limit]
		warnings = append(warnings, "results truncated due to limit")
	}
	b := []byte{'['}
	for i, ls := range found {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendLabels(b, ls)
	}
	return append(b, ']'), warnings, nil, nil
}

// promWriteError maps an error of remote write to the Prometheus API's.
func promWriteError(err error) *promError {
	switch {
	case errors.Is(err, ingest.ErrInvalid), errors.Is(err, errInvalid):
		return promBadData(err)
	case errors.Is(err, store.ErrClosed):
		return &promError{typ: "unavailable", code: http.StatusServiceUnavailable, err: err}
	case errors.Is(err, metrics.ErrLimit):
		return &promError{typ: "execution", code: http.StatusUnprocessableEntity, err: err}
	case errors.Is(err, errSeriesLimit):
		// Not 429: Prometheus would resend the batch forever, stalling
		// every series behind it; what could be stored is.
		return promBadData(err)
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.ResourceExhausted:
			return &promError{typ: "unavailable", code: http.StatusTooManyRequests, err: errors.New(st.Message())}
		case codes.InvalidArgument:
			return promBadData(errors.New(st.Message()))
		case codes.Canceled, codes.DeadlineExceeded:
			return &promError{typ: "canceled", code: http.StatusServiceUnavailable, err: errors.New(st.Message())}
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &promError{typ: "canceled", code: http.StatusServiceUnavailable, err: err}
	}
	return &promError{typ: "internal", code: http.StatusInternalServerError, err: err}
}

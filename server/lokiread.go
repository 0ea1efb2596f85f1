package server

// Loki's HTTP read API (query_range, query, labels, label values, series,
// index stats and volume, detected fields, tail, buildinfo, ready) over
// shiplog's store, for a LogQL subset parsed by package logql, with the JSON
// shapes of Loki's API documentation, so that Grafana's Loki data source and
// logcli work unchanged. X-Scope-OrgID is accepted and ignored.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shiplog/shiplog/logql"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// Bounds of the Loki API.
const (
	lokiDefaultLimit = 100
	lokiMaxLimit     = 5000    // lines of a log query (Loki's max_entries_limit_per_query)
	lokiMaxScan      = 5000000 // lines a query may read past shiplog's own query (parsers, label filters)
	lokiPage         = 5000    // lines read at once
	lokiMaxSteps     = 11000   // points of a series (Loki's and Prometheus' limit)
	lokiMaxSeries    = 2000
	lokiMaxSamples   = 5000000
	lokiMaxFastHist  = 24 // histograms one metric query may run instead of reading lines
	lokiMaxBuckets   = 11000
	lokiMaxMatches   = 16 // match[] selectors of /series
)

type lokiAPI struct {
	core Core
	log  *slog.Logger
}

func registerLokiRead(rt *router, core Core, log *slog.Logger) {
	a := &lokiAPI{core: core, log: log}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		rt.handleFunc(m+" /loki/api/v1/query_range", ScopeQuery, a.handle(a.queryRange))
		rt.handleFunc(m+" /loki/api/v1/query", ScopeQuery, a.handle(a.instant))
		rt.handleFunc(m+" /loki/api/v1/labels", ScopeQuery, a.handle(a.labels))
		rt.handleFunc(m+" /loki/api/v1/label/{name}/values", ScopeQuery, a.handle(a.labelValues))
		rt.handleFunc(m+" /loki/api/v1/series", ScopeQuery, a.handle(a.series))
		rt.handleFunc(m+" /loki/api/v1/index/stats", ScopeQuery, a.handle(a.indexStats))
		rt.handleFunc(m+" /loki/api/v1/index/volume", ScopeQuery, a.handle(a.volume))
		rt.handleFunc(m+" /loki/api/v1/detected_fields", ScopeQuery, a.handle(a.detectedFields))
	}
	rt.handleFunc("GET /loki/api/v1/status/buildinfo", ScopeQuery, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, lokiBuildInfo())
	})
	rt.handleFunc("GET /loki/api/v1/tail", ScopeQuery, a.tail)
	rt.handleFunc("GET /ready", scopeOpen, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ready\n"))
	})
}

// lokiBuildInfo answers like Loki's buildinfo; the version is the Loki API
// level shiplog serves (Grafana enables features by it).
func lokiBuildInfo() map[string]string {
	goVersion, rev := "", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	return map[string]string{"version": "3.4.0", "revision": "shiplog-" + rev, "branch": "shiplog",
		"buildUser": "shiplog", "buildDate": "", "goVersion": goVersion}
}

type lokiHandler func(ctx context.Context, r *http.Request) (any, error)

// handle parses the form, admits the request as a query (timeout and
// concurrency limit) and writes the answer, or the error in shiplog's error
// shape ({"code","message"}, which Grafana shows).
func (a *lokiAPI) handle(fn lokiHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			writeHTTPError(w, invalid("error parsing form values: %v", err))
			return
		}
		ctx, release, err := a.core.Limits.query(r.Context())
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		defer release()
		lc := &lokiCoverage{}
		out, err := fn(context.WithValue(ctx, lokiCoverageKey{}, lc), r)
		if err != nil {
			writeHTTPError(w, a.core.Limits.queryError(ctx, lokiError(err)))
			return
		}
		writeJSON(w, http.StatusOK, lc.withWarnings(out))
	}
}

// lokiError makes the errors of the LogQL parser and evaluator bad input.
func lokiError(err error) error {
	if errors.Is(err, logql.ErrSyntax) || errors.Is(err, logql.ErrUnsupported) {
		return invalid("%v", err)
	}
	return err
}

// lokiTime reads a time as Loki takes it: Unix nanoseconds (or seconds when
// ten digits or fewer), fractional seconds, or RFC 3339.
func lokiTime(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, ".eE") && !strings.ContainsAny(s, "T:") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > 9e9 || math.IsNaN(f) {
			return 0, invalid("time %q: want Unix seconds, nanoseconds or RFC 3339", s)
		}
		return int64(math.Round(f * 1e9)), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, invalid("time %q is before 1970", s)
		}
		if len(s) <= 10 {
			return n * 1e9, nil
		}
		return n, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, invalid("time %q: want Unix seconds, nanoseconds or RFC 3339", s)
	}
	return t.UnixNano(), nil
}

// lokiRange reads start and end (defaults: the last hour; since= as Loki).
func lokiRange(r *http.Request, now time.Time) (model.TimeRange, error) {
	tr := model.TimeRange{End: now.UnixNano()}
	var err error
	if v := r.FormValue("end"); v != "" {
		if tr.End, err = lokiTime(v); err != nil {
			return tr, err
		}
	}
	tr.Start = tr.End - int64(time.Hour)
	if v := r.FormValue("since"); v != "" {
		d, err := model.ParseDuration(v)
		if err != nil || d <= 0 {
			return tr, invalid("since %q: want a duration such as 1h", v)
		}
		tr.Start = tr.End - int64(d)
	}
	if v := r.FormValue("start"); v != "" {
		if tr.Start, err = lokiTime(v); err != nil {
			return tr, err
		}
	}
	if tr.End < tr.Start {
		return tr, invalid("end timestamp must not be before start time")
	}
	return tr, nil
}

// lokiStep reads step: a duration (5m) or seconds (15, 0.5); by default
// about 250 points over the range, at least a second, as Loki does.
func lokiStep(r *http.Request, tr model.TimeRange) (time.Duration, error) {
	v := r.FormValue("step")
	if v == "" {
		d := time.Duration(tr.End-tr.Start) / 250
		return max(d.Truncate(time.Second), time.Second), nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f <= 0 || f > 365*86400 || math.IsNaN(f) {
			return 0, invalid("step %q: want a positive duration", v)
		}
		return time.Duration(f * 1e9), nil
	}
	d, err := model.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, invalid("step %q: want a positive duration such as 1m or a number of seconds", v)
	}
	return d, nil
}

func lokiLimit(r *http.Request) (int, error) {
	v := r.FormValue("limit")
	if v == "" {
		return lokiDefaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, invalid("limit %q: want a whole number", v)
	}
	if n > lokiMaxLimit {
		return 0, invalid("max entries limit per query exceeded, limit > max_entries_limit (%d > %d)", n, lokiMaxLimit)
	}
	if n == 0 {
		n = lokiDefaultLimit
	}
	return n, nil
}

func lokiForward(r *http.Request) (bool, error) {
	switch strings.ToLower(r.FormValue("direction")) {
	case "", "backward":
		return false, nil
	case "forward":
		return true, nil
	}
	return false, invalid("direction %q: want forward or backward", r.FormValue("direction"))
}

// lokiData is Loki's {"status":"success","data":{...}}, with its
// "warnings" (as Loki 3 and Prometheus give them, and Grafana shows) when a
// cluster's answer lacked partitions.
type lokiData struct {
	Status   string   `json:"status"`
	Data     any      `json:"data"`
	Warnings []string `json:"warnings,omitempty"`
}

func lokiOK(data any) lokiData { return lokiData{Status: "success", Data: data} }

// lokiCoverage gathers, over one request, what the Backend's answers lacked.
type lokiCoverage struct {
	mu  sync.Mutex
	cov query.Coverage
}

type lokiCoverageKey struct{}

// noteCoverage records what an answer to ctx's request lacked.
func noteCoverage(ctx context.Context, c query.Coverage) {
	lc, _ := ctx.Value(lokiCoverageKey{}).(*lokiCoverage)
	if lc == nil || !c.Partial() {
		return
	}
	lc.mu.Lock()
	lc.cov.Add(c.Missing...)
	lc.mu.Unlock()
}

// withWarnings adds to out (a lokiData) the warning that the answer is
// partial, when it is.
func (lc *lokiCoverage) withWarnings(out any) any {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	d, ok := out.(lokiData)
	if !ok || !lc.cov.Partial() {
		return out
	}
	d.Warnings = append(d.Warnings, fmt.Sprintf("partial answer: partitions %v have no live owner, or an owner behind what was acked; their lines are missing", lc.cov.Missing))
	return d
}

type lokiResult struct {
	ResultType string    `json:"resultType"`
	Result     any       `json:"result"`
	Stats      lokiStats `json:"stats"`
}

func (a *lokiAPI) queryRange(ctx context.Context, r *http.Request) (any, error) {
	began := time.Now()
	e, err := logql.Parse(r.FormValue("query"))
	if err != nil {
		return nil, err
	}
	tr, err := lokiRange(r, began)
	if err != nil {
		return nil, err
	}
	if le, ok := e.(*logql.LogExpr); ok {
		return a.logResult(ctx, r, le, tr, began)
	}
	step, err := lokiStep(r, tr)
	if err != nil {
		return nil, err
	}
	return a.metricResult(ctx, e, tr.Start, tr.End, step, false, began)
}

// instant serves /loki/api/v1/query: a metric query at time (a vector), or a
// log query over the hour before time.
func (a *lokiAPI) instant(ctx context.Context, r *http.Request) (any, error) {
	began := time.Now()
	e, err := logql.Parse(r.FormValue("query"))
	if err != nil {
		return nil, err
	}
	t := began.UnixNano()
	if v := r.FormValue("time"); v != "" {
		if t, err = lokiTime(v); err != nil {
			return nil, err
		}
	}
	if le, ok := e.(*logql.LogExpr); ok {
		return a.logResult(ctx, r, le, model.TimeRange{Start: t - int64(time.Hour), End: t}, began)
	}
	// One step: its length only sets the buckets the counts are read in.
	return a.metricResult(ctx, e, t, t, max(logql.Range(e), time.Second), true, began)
}

func (a *lokiAPI) logResult(ctx context.Context, r *http.Request, le *logql.LogExpr, tr model.TimeRange, began time.Time) (any, error) {
	limit, err := lokiLimit(r)
	if err != nil {
		return nil, err
	}
	fwd, err := lokiForward(r)
	if err != nil {
		return nil, err
	}
	streams, st, err := a.logQuery(ctx, le, tr, limit, fwd)
	if err != nil {
		return nil, err
	}
	st.finish(began, streamEntries(streams))
	return lokiOK(lokiResult{ResultType: "streams", Result: streams, Stats: st}), nil
}

// lokiStats is Loki's stats object: the summary filled in, the rest present.
type lokiStats struct {
	Summary  lokiSummary    `json:"summary"`
	Querier  map[string]any `json:"querier"`
	Ingester map[string]any `json:"ingester"`
	Cache    map[string]any `json:"cache"`
}

type lokiSummary struct {
	BytesProcessedPerSecond int64   `json:"bytesProcessedPerSecond"`
	LinesProcessedPerSecond int64   `json:"linesProcessedPerSecond"`
	TotalBytesProcessed     int64   `json:"totalBytesProcessed"`
	TotalLinesProcessed     int64   `json:"totalLinesProcessed"`
	ExecTime                float64 `json:"execTime"`
	QueueTime               float64 `json:"queueTime"`
	Subqueries              int64   `json:"subqueries"`
	TotalEntriesReturned    int64   `json:"totalEntriesReturned"`
	Splits                  int64   `json:"splits"`
	Shards                  int64   `json:"shards"`
	TotalPostFilterLines    int64   `json:"totalPostFilterLines"`
}

func (s *lokiStats) finish(began time.Time, returned int) {
	el := time.Since(began).Seconds()
	s.Summary.ExecTime = el
	s.Summary.TotalEntriesReturned = int64(returned)
	if el > 0 {
		s.Summary.LinesProcessedPerSecond = int64(float64(s.Summary.TotalLinesProcessed) / el)
		s.Summary.BytesProcessedPerSecond = int64(float64(s.Summary.TotalBytesProcessed) / el)
	}
	s.Querier = map[string]any{"store": map[string]any{}}
	s.Ingester = map[string]any{}
	s.Cache = map[string]any{}
}

func (s *lokiStats) read(rec *model.Record) {
	s.Summary.TotalLinesProcessed++
	s.Summary.TotalBytesProcessed += int64(len(rec.Message))
}

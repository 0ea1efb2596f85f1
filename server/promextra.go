package server

// The rest of the Prometheus HTTP API that Grafana, promtool and other
// clients call: build information, metric metadata, exemplars (none are
// kept), query formatting, /-/healthy and /-/ready, /federate and remote
// read (promread.go). An unknown /api/v1/ path is a 404 in the API's JSON
// error format, never the web UI's page.

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/protobuf/proto"
)

const (
	// promMaxMetadataLimit bounds /api/v1/metadata's limit parameters.
	promMaxMetadataLimit = 1 << 20
	// federateMaxMatch bounds /federate's match[] selectors.
	federateMaxMatch = 64
)

// registerExtra adds the endpoints of this file; ready reports readiness.
func (a *promAPI) registerExtra(rt *router, ready func() bool) {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		rt.handleFunc(m+" /api/v1/query_exemplars", ScopeQuery, a.handle(a.queryExemplars))
		rt.handleFunc(m+" /api/v1/format_query", ScopeQuery, a.handle(a.formatQuery))
		rt.handleFunc(m+" /federate", ScopeQuery, a.federate)
	}
	rt.handleFunc("GET /api/v1/metadata", ScopeQuery, a.metadata)
	rt.handleFunc("GET /api/v1/status/buildinfo", ScopeQuery, a.buildInfo)
	rt.handleFunc("POST /api/v1/read", ScopeQuery, a.remoteRead)
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		rt.handleFunc(m+" /-/healthy", scopeOpen, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = fmt.Fprintln(w, "Prometheus Server is Healthy.")
		})
		rt.handleFunc(m+" /-/ready", scopeOpen, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if !ready() {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintln(w, "Service Unavailable")
				return
			}
			_, _ = fmt.Fprintln(w, "Prometheus Server is Ready.")
		})
	}
	rt.handleFunc("/api/v1/", ScopeQuery, func(w http.ResponseWriter, r *http.Request) {
		writePromError(w, &promError{typ: "not_found", code: http.StatusNotFound,
			err: fmt.Errorf("%s %s is not an endpoint of the Prometheus API this server offers", r.Method, r.URL.Path)})
	})
}

// promVersion is the Prometheus release whose engine shiplog runs (from the
// module version v0.3MM.P: 3.MM.P), for clients that read features off it.
var promVersion = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path != "github.com/prometheus/prometheus" {
				continue
			}
			if v, ok := strings.CutPrefix(d.Version, "v0."); ok {
				parts := strings.SplitN(v, ".", 2)
				if n, err := strconv.Atoi(parts[0]); err == nil && n >= 300 && len(parts) == 2 {
					return fmt.Sprintf("%d.%d.%s", n/100, n%100, parts[1])
				}
			}
		}
	}
	return "3.0.0"
}()

func (a *promAPI) buildInfo(w http.ResponseWriter, _ *http.Request) {
	revision, date := "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				date = s.Value
			}
		}
	}
	writePromData(w, appendJSON(nil, map[string]string{
		"version": promVersion, "revision": revision, "branch": "", "buildUser": "shiplog",
		"buildDate": date, "goVersion": runtime.Version(),
	}), nil, nil)
}

// intParam reads a non-negative integer parameter, at most most.
func intParam(r *http.Request, name string, most int) (int, *promError) {
	v := r.FormValue(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n > most {
		return 0, invalidParam(name, fmt.Errorf("want a number up to %d, got %q", most, v))
	}
	return max(n, 0), nil
}

func (a *promAPI) metadata(w http.ResponseWriter, r *http.Request) {
	limit, perr := intParam(r, "limit", promMaxMetadataLimit)
	if perr != nil {
		writePromError(w, perr)
		return
	}
	per, perr := intParam(r, "limit_per_metric", promMaxMetadataLimit)
	if perr != nil {
		writePromError(w, perr)
		return
	}
	writePromData(w, appendJSON(nil, a.meta.get(r.FormValue("metric"), limit, per)), nil, nil)
}

// queryExemplars answers with no exemplars: none are kept. The query is
// still checked.
func (a *promAPI) queryExemplars(_ context.Context, r *http.Request) ([]byte, []string, []string, *promError) {
	if _, err := a.parser.ParseExpr(r.FormValue("query")); err != nil {
		return nil, nil, nil, invalidParam("query", err)
	}
	return []byte("[]"), nil, nil, nil
}

func (a *promAPI) formatQuery(_ context.Context, r *http.Request) ([]byte, []string, []string, *promError) {
	expr, err := a.parser.ParseExpr(r.FormValue("query"))
	if err != nil {
		return nil, nil, nil, invalidParam("query", err)
	}
	return appendJSON(nil, expr.Pretty(0)), nil, nil, nil
}

// federate answers /federate as Prometheus does: the newest float sample,
// within the lookback delta, of every series match[] selects, in the text
// exposition format, untyped, with its timestamp. Native histograms are
// left out (the text format cannot carry them).
func (a *promAPI) federate(w http.ResponseWriter, r *http.Request) {
	if a.core.Metrics == nil {
		http.Error(w, errNoMetrics.Error(), http.StatusServiceUnavailable)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "error parsing form values: "+err.Error(), http.StatusBadRequest)
		return
	}
	if n := len(r.Form["match[]"]); n == 0 || n > federateMaxMatch {
		http.Error(w, fmt.Sprintf("/federate takes 1 to %d match[] selectors, got %d", federateMaxMatch, n), http.StatusBadRequest)
		return
	}
	sets, perr := a.matcherSets(r)
	if perr != nil {
		http.Error(w, perr.Error(), http.StatusBadRequest)
		return
	}
	ctx, release, ok := a.plainQuerySlot(w, r)
	if !ok {
		return
	}
	defer release()
	fams, err := a.federated(ctx, sets, time.Now())
	if err != nil {
		http.Error(w, err.Error(), readErrorCode(err))
		return
	}
	w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	for _, mf := range fams {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return
		}
	}
}

// federated gathers the newest samples of the series sets select at now.
func (a *promAPI) federated(ctx context.Context, sets [][]*labels.Matcher, now time.Time) ([]*dto.MetricFamily, error) {
	maxt := now.UnixMilli()
	mint := maxt - a.core.Metrics.Queryable.Options().LookbackDelta.Milliseconds()
	q, err := a.core.Metrics.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt}
	byName := map[string]*dto.MetricFamily{}
	seen := map[uint64]bool{}
	var it chunkenc.Iterator
	for _, ms := range sets {
		set := q.Select(ctx, false, hints, ms...)
		for set.Next() {
			s := set.At()
			ls := s.Labels()
			if h := ls.Hash(); seen[h] {
				continue
			} else {
				seen[h] = true
			}
			it = s.Iterator(it)
			var t int64
			var v float64
			found := false
			for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
				if vt == chunkenc.ValFloat {
					t, v = it.At()
					found = true
				} else {
					found = false // a newer histogram hides older floats
				}
			}
			if err := it.Err(); err != nil {
				return nil, err
			}
			if !found || value.IsStaleNaN(v) || t < mint {
				continue
			}
			addFederated(byName, ls, t, v)
		}
		if err := set.Err(); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	out := make([]*dto.MetricFamily, 0, len(names))
	for _, n := range names {
		out = append(out, byName[n])
	}
	return out, nil
}

func addFederated(byName map[string]*dto.MetricFamily, ls labels.Labels, t int64, v float64) {
	name := ls.Get(labels.MetricName)
	mf := byName[name]
	if mf == nil {
		mf = &dto.MetricFamily{Name: proto.String(name), Type: dto.MetricType_UNTYPED.Enum()}
		byName[name] = mf
	}
	m := &dto.Metric{Untyped: &dto.Untyped{Value: proto.Float64(v)}, TimestampMs: proto.Int64(t)}
	ls.Range(func(l labels.Label) {
		if l.Name != labels.MetricName {
			m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(l.Name), Value: proto.String(l.Value)})
		}
	})
	mf.Metric = append(mf.Metric, m)
}

package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// Alerting is what the alert endpoints need (an *alert.Manager).
type Alerting interface {
	Alerts() []alert.Alert
	Rules() alert.RulesStatus
	History(cursor string, limit int) ([]alert.Transition, string, error)
	Reload() error
}

// errNoAlerting answers the alert endpoints of a server without --rules.
var errNoAlerting = errors.New("alerting is not configured: start shiplog server with --rules FILE")

// maxHistoryPage bounds one page of /v1/alerts/history.
const maxHistoryPage = 1000

// alertHandlers registers /v1/alerts, /v1/alerts/rules, /v1/alerts/history
// and POST /-/reload on mux.
func alertHandlers(mux *http.ServeMux, core Core) {
	al := core.Alerts
	need := func(h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if al == nil {
				writeHTTPError(w, errNoAlerting)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /v1/alerts", need(func(w http.ResponseWriter, _ *http.Request) {
		list := al.Alerts()
		if list == nil {
			list = []alert.Alert{}
		}
		writeJSON(w, http.StatusOK, struct {
			Alerts []alert.Alert `json:"alerts"`
		}{list})
	}))
	mux.HandleFunc("GET /v1/alerts/rules", need(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, al.Rules())
	}))
	mux.HandleFunc("GET /v1/alerts/history", need(func(w http.ResponseWriter, r *http.Request) {
		limit := 100
		if s := r.URL.Query().Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxHistoryPage {
				writeHTTPError(w, invalid("limit %q: want 1 to %d", s, maxHistoryPage))
				return
			}
			limit = n
		}
		list, next, err := al.History(r.URL.Query().Get("cursor"), limit)
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Transitions []alert.Transition `json:"transitions"`
			NextCursor  string             `json:"next_cursor"`
		}{list, next})
	}))
	reload := need(func(w http.ResponseWriter, _ *http.Request) {
		if err := al.Reload(); err != nil {
			writeHTTPError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
	})
	mux.HandleFunc("POST /-/reload", reload)
	mux.HandleFunc("PUT /-/reload", reload) // as Prometheus takes it too
}

// alertSampleLines is how many matching lines a logs rule reads, where the
// query path has no stats engine (StatsQuerier), to group
// them by: fields and find a shared build or deploy; beyond it, each group
// found is counted exactly and its shared build or deploy checked by counts.
const alertSampleLines = 5000

// AlertLogsQuery counts log lines for alert rules with the query engine: the
// total with a one-bucket histogram, the by: groups and their shared build
// and deploy from the matching lines themselves.
func AlertLogsQuery(e Querier) alert.LogsQueryFunc {
	return func(ctx context.Context, lq alert.LogsQuery) ([]alert.LogsGroup, error) {
		q, err := query.Parse(lq.Query)
		if err != nil {
			return nil, err
		}
		tr := model.TimeRange{Start: lq.Start.UnixNano(), End: lq.End.UnixNano()}
		if sq, ok := e.(StatsQuerier); ok {
			if tr.Start >= tr.End {
				return []alert.LogsGroup{{Labels: map[string]string{}, Query: lq.Query, Value: math.NaN()}}, nil
			}
			return statsGroups(ctx, sq, q, tr, lq)
		}
		if lq.Agg != "" {
			return nil, fmt.Errorf("agg: %s needs the stats engine, which this server's query path does not offer", lq.Agg)
		}
		return sampleGroups(ctx, e, q, tr, lq)
	}
}

// sampleGroups finds a logs rule's groups from a sample of the newest
// matching lines, where the query path has no stats engine (a cluster's).
func sampleGroups(ctx context.Context, e Querier, q *query.Query, tr model.TimeRange, lq alert.LogsQuery) ([]alert.LogsGroup, error) {
	// Without the stats engine (a cluster's query path): a sample.
	// A partial answer (cluster mode, a partition moving) is an error, not
	// a smaller count: the rule keeps its state instead of resolving.
	var cov query.Coverage
	ctx = query.WithCoverage(ctx, &cov)
	total, err := countLines(ctx, e, q, tr)
	if err != nil {
		return nil, err
	}
	if err := coverageErr(&cov); err != nil {
		return nil, err
	}
	if total == 0 {
		if len(lq.By) == 0 {
			return []alert.LogsGroup{{Labels: map[string]string{}, Query: lq.Query}}, nil
		}
		return nil, nil
	}
	res, err := e.Search(ctx, query.SearchParams{Query: q, Range: tr, Limit: alertSampleLines})
	if err != nil {
		return nil, err
	}
	if err := coverageErr(&cov); err != nil {
		return nil, err
	}
	exact := res.NextCursor == ""
	type acc struct {
		g               alert.LogsGroup
		builds, deploys map[string]bool
	}
	var order []string
	accs := map[string]*acc{}
	for i := range res.Records {
		rec := &res.Records[i]
		lbls := map[string]string{}
		for _, f := range lq.By {
			lbls[f] = recordField(rec, f)
		}
		k := alert.Fingerprint(lbls)
		a := accs[k]
		if a == nil {
			a = &acc{g: alert.LogsGroup{Labels: lbls}, builds: map[string]bool{}, deploys: map[string]bool{}}
			accs[k] = a
			order = append(order, k)
		}
		a.g.Count++
		a.builds[rec.BuildID] = true
		a.deploys[rec.DeployID] = true
	}
	if len(lq.By) == 0 && len(order) == 0 {
		return []alert.LogsGroup{{Labels: map[string]string{}, Count: float64(total), Query: lq.Query}}, nil
	}
	out := make([]alert.LogsGroup, 0, len(order))
	for _, k := range order {
		a := accs[k]
		g := a.g
		var nq *query.Query
		g.Query, nq = narrow(lq.Query, lq.By, g.Labels)
		switch {
		case len(lq.By) == 0:
			g.Count = float64(total)
		case !exact && nq != nil:
			n, err := countLines(ctx, e, nq, tr)
			if err != nil {
				return nil, err
			}
			g.Count = float64(n)
		}
		if g.BuildID, err = sampleShared(ctx, e, &g, tr, exact, a.builds, "build_id"); err != nil {
			return nil, err
		}
		if g.DeployID, err = sampleShared(ctx, e, &g, tr, exact, a.deploys, "deploy_id"); err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// sampleShared returns the value of field every line of group g has, from
// the set of values its sampled lines have ("" when they differ); when only
// a sample was read, a count confirms it.
func sampleShared(ctx context.Context, e Querier, g *alert.LogsGroup, tr model.TimeRange, exact bool, set map[string]bool, field string) (string, error) {
	if len(set) != 1 {
		return "", nil
	}
	var id string
	for id = range set {
	}
	if id == "" || exact {
		return id, nil
	}
	term, ok := alert.LabelTerm(field, id)
	if !ok {
		return "", nil
	}
	cq, err := query.Parse("(" + g.Query + ") AND " + term)
	if err != nil {
		return "", nil
	}
	n, err := countLines(ctx, e, cq, tr)
	if err != nil || float64(n) != g.Count {
		return "", err
	}
	return id, nil
}

// coverageErr is a partial answer's error (cluster mode, a partition
// moving): the rule keeps its state instead of resolving.
func coverageErr(cov *query.Coverage) error {
	if m := cov.Missing(); len(m) > 0 {
		return fmt.Errorf("%w: partitions %v have no live owner, or an owner behind what was acked, right now; not evaluated", model.ErrUnavailable, m)
	}
	return nil
}

// countLines counts matches over tr with a histogram of one step (two
// buckets at most, as buckets are aligned to the epoch).
func countLines(ctx context.Context, e Querier, q *query.Query, tr model.TimeRange) (int, error) {
	if tr.Start >= tr.End {
		return 0, nil
	}
	buckets, err := e.Histogram(ctx, q, tr, time.Duration(tr.End-tr.Start))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range buckets {
		n += b.Count
	}
	return n, nil
}

func recordField(r *model.Record, f string) string {
	switch f {
	case "service":
		return r.Service
	case "host":
		return r.Host
	case "build_id":
		return r.BuildID
	case "deploy_id":
		return r.DeployID
	case "level":
		return r.Level.String()
	}
	for _, a := range r.Attrs {
		if a.Key == f {
			return a.Value
		}
	}
	return ""
}

// narrow returns q restricted to one by: group, as a string for links and
// parsed for counting (nil when a value cannot be written in the language).
func narrow(q string, by []string, lbls map[string]string) (string, *query.Query) {
	if len(by) == 0 {
		parsed, _ := query.Parse(q)
		return q, parsed
	}
	terms := []string{"(" + q + ")"}
	ok := true
	for _, f := range by {
		t, good := alert.LabelTerm(f, lbls[f])
		if f == "level" {
			t, good = "level:"+lbls[f], true
		}
		if !good {
			ok = false
			continue
		}
		terms = append(terms, t)
	}
	s := strings.Join(terms, " AND ")
	if !ok {
		return s, nil
	}
	parsed, err := query.Parse(s)
	if err != nil {
		return s, nil
	}
	return s, parsed
}

// AlertPromQuery runs the PromQL of alert rules as instant queries with the
// metrics engine; nil (PromQL rules then report the engine missing) when m
// has none. A scalar result is one sample without labels, as in Prometheus.
func AlertPromQuery(m *Metrics) alert.QueryFunc {
	if m == nil || m.Engine == nil || m.Queryable == nil {
		return nil
	}
	return func(ctx context.Context, expr string, ts time.Time) ([]alert.Sample, error) {
		qry, err := m.Engine.NewInstantQuery(ctx, m.Queryable, nil, expr, ts)
		if err != nil {
			return nil, err
		}
		defer qry.Close()
		res := qry.Exec(ctx)
		if res.Err != nil {
			return nil, res.Err
		}
		switch v := res.Value.(type) {
		case promql.Vector:
			out := make([]alert.Sample, 0, len(v))
			for _, smp := range v {
				lbls := make(map[string]string, smp.Metric.Len())
				smp.Metric.Range(func(l labels.Label) { lbls[l.Name] = l.Value })
				out = append(out, alert.Sample{Labels: lbls, Value: smp.F, H: smp.H})
			}
			return out, nil
		case promql.Scalar:
			return []alert.Sample{{Labels: map[string]string{}, Value: v.V}}, nil
		}
		return nil, fmt.Errorf("the expression gives a %s, not an instant vector or scalar", res.Value.Type())
	}
}

// AlertAppend writes recording rules' series into the metric store, through
// the path remote write takes; nil when the server has no metric store.
func AlertAppend(m *Metrics) alert.AppendFunc {
	if m == nil || m.Ingest == nil {
		return nil
	}
	return func(ctx context.Context, series []model.Series) error {
		res, err := m.Ingest.Ingest(ctx, series)
		switch {
		case err != nil:
			return err
		case res.OverSeriesLimit > 0:
			return seriesLimitError(res)
		case res.OutOfWindow > 0:
			return fmt.Errorf("%d samples were older than their series' newest by more than the out-of-order window and were dropped", res.OutOfWindow)
		}
		return nil
	}
}

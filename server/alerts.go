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
// and POST /-/reload.
func alertHandlers(rt *router, core Core) {
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
	rt.handleFunc("GET /v1/alerts", ScopeQuery, need(func(w http.ResponseWriter, _ *http.Request) {
		list := al.Alerts()
		if list == nil {
			list = []alert.Alert{}
		}
		writeJSON(w, http.StatusOK, struct {
			Alerts []alert.Alert `json:"alerts"`
		}{list})
	}))
	rt.handleFunc("GET /v1/alerts/rules", ScopeQuery, need(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, al.Rules())
	}))
	rt.handleFunc("GET /v1/alerts/history", ScopeQuery, need(func(w http.ResponseWriter, r *http.Request) {
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
	rt.handleFunc("POST /-/reload", ScopeAdmin, reload)
	rt.handleFunc("PUT /-/reload", ScopeAdmin, reload) // as Prometheus takes it too
}

// AlertLogsQuery counts log lines for alert rules with the stats engine: the
// by: groups exactly (a quiet group beside a flood too), the rule's agg: as
// each group's value, and the build and deploy each group's lines share.
func AlertLogsQuery(e query.Backend) alert.LogsQueryFunc {
	return func(ctx context.Context, lq alert.LogsQuery) ([]alert.LogsGroup, error) {
		q, err := query.Parse(lq.Query)
		if err != nil {
			return nil, err
		}
		tr := model.TimeRange{Start: lq.Start.UnixNano(), End: lq.End.UnixNano()}
		if tr.Start >= tr.End {
			return []alert.LogsGroup{{Labels: map[string]string{}, Query: lq.Query, Value: math.NaN()}}, nil
		}
		return statsGroups(ctx, e, q, tr, lq)
	}
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

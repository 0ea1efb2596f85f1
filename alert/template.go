package alert

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	prommodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/template"
)

// Templates in labels and annotations are Prometheus' own: they run with
// github.com/prometheus/prometheus/template, so every function Prometheus
// offers is there (humanize, humanize1024, humanizeDuration,
// humanizePercentage, humanizeTimestamp, toTime, parseDuration, safeHtml,
// stripPort, stripDomain, pathPrefix, externalURL, args, query with
// first/value/label/sortByLabel, reReplaceAll, match, title, toUpper...),
// with the variables $labels, $value, $externalURL and $externalLabels.
const templateDefs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"

// templateEnv is what templates see besides the alert: the evaluation time,
// the PromQL engine for query, the external URL and labels.
type templateEnv struct {
	ctx            context.Context
	ts             time.Time
	query          QueryFunc // nil: query fails
	externalURL    *url.URL
	externalLabels map[string]string
}

// checkTemplate reports a template that does not parse (as promtool does).
func checkTemplate(name, text string) error {
	if !strings.Contains(text, "{{") {
		return nil
	}
	data := template.AlertTemplateData(map[string]string{}, map[string]string{}, "", promql.Sample{})
	te := template.NewTemplateExpander(context.Background(), templateDefs+text, name, data, 0, nil, &url.URL{}, nil)
	if err := te.ParseTest(); err != nil {
		return fmt.Errorf("bad template: %s", strings.TrimPrefix(err.Error(), "template: "))
	}
	return nil
}

// expand runs one template; an error is rendered in place, as Prometheus does.
func (env *templateEnv) expand(name, text string, lbls map[string]string, value float64) string {
	if !strings.Contains(text, "{{") {
		return text
	}
	ext := env.externalLabels
	if ext == nil {
		ext = map[string]string{}
	}
	u := env.externalURL
	if u == nil {
		u = &url.URL{}
	}
	data := template.AlertTemplateData(lbls, ext, u.String(), promql.Sample{F: value})
	te := template.NewTemplateExpander(env.ctx, templateDefs+text, name, data,
		prommodel.TimeFromUnixNano(env.ts.UnixNano()), env.promQuery, u, nil)
	out, err := te.Expand()
	if err != nil {
		return fmt.Sprintf("<error expanding template: %v>", err)
	}
	return out
}

// promQuery is the query function of templates.
func (env *templateEnv) promQuery(ctx context.Context, q string, ts time.Time) (promql.Vector, error) {
	if env.query == nil {
		return nil, errNoPromQL
	}
	samples, err := env.query(ctx, q, ts)
	if err != nil {
		return nil, err
	}
	out := make(promql.Vector, 0, len(samples))
	for _, s := range samples {
		out = append(out, promql.Sample{Metric: labels.FromMap(s.Labels), F: s.Value, H: s.H, T: ts.UnixMilli()})
	}
	return out, nil
}

func humanizeDur(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var parts []string
	for _, u := range []struct {
		n string
		d time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}} {
		if k := d / u.d; k > 0 {
			parts = append(parts, strconv.FormatInt(int64(k), 10)+u.n)
			d -= k * u.d
		}
	}
	if len(parts) == 0 {
		return "0s"
	}
	s := strings.Join(parts, " ")
	if neg {
		s = "-" + s
	}
	return s
}

// formatValue renders a value for people: integers without a fraction.
func formatValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

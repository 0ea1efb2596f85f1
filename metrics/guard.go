package metrics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	prommodel "github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
)

// assumedSampleInterval is the sample interval a range selector is costed
// with before evaluation (the usual scrape interval): x[1d] counts 5,760
// points per evaluation. The samples a selector really reads are bounded at
// run time by MaxSamplesRead and MaxSamples.
const assumedSampleInterval = 15 * time.Second

// subqueryDefaultStep is the step of a subquery written without one
// (x[1h:]) that EstimatePoints assumes; Engine uses Options.DefaultStep.
const subqueryDefaultStep = time.Minute

// Engine is Prometheus' PromQL engine behind shiplog's guard: before a query
// is evaluated its points are estimated from the expression alone, and a
// query over MaxSamples (or a range query over MaxPoints steps) is refused
// with ErrLimit. Prometheus' engine sizes its per-step arrays from the
// expression, so max_over_time(vector(1)[10000d:1ms]) would otherwise
// allocate until the process dies.
type Engine struct {
	*promql.Engine
	opts   Options
	parser parser.Parser
}

// NewInstantQuery is promql.Engine's, refused with ErrLimit when over the
// points budget.
func (e *Engine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	if err := e.check(qs, 0, 0); err != nil {
		return nil, err
	}
	return e.Engine.NewInstantQuery(ctx, q, opts, qs, ts)
}

// NewRangeQuery is promql.Engine's, refused with ErrLimit when it has more
// than MaxPoints steps or is over the points budget.
func (e *Engine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, step time.Duration) (promql.Query, error) {
	if step <= 0 {
		return nil, errors.New("a range query needs a positive step")
	}
	// As Prometheus' API: (end-start)/step over MaxPoints is refused.
	n := max(end.Sub(start)/step, 0)
	if n > time.Duration(e.opts.MaxPoints) {
		return nil, fmt.Errorf("%w: %d steps (from start to end by step %s) are over the limit of %d points per series; use a larger step or a shorter range",
			ErrLimit, n, step, e.opts.MaxPoints)
	}
	if err := e.check(qs, max(end.Sub(start), 0), step); err != nil {
		return nil, err
	}
	return e.Engine.NewRangeQuery(ctx, q, opts, qs, start, end, step)
}

// check refuses qs when its estimated points exceed MaxSamples. A query that
// does not parse is left to the engine, which says why.
func (e *Engine) check(qs string, span, step time.Duration) error {
	expr, err := e.parser.ParseExpr(qs)
	if err != nil {
		return nil
	}
	c := estimatePoints(expr, span, step, e.opts.DefaultStep)
	if c.Points <= float64(e.opts.MaxSamples) {
		return nil
	}
	where := ""
	if c.Worst != "" {
		where = fmt.Sprintf(" (%s of them in %s)", human(c.WorstPoints), c.Worst)
	}
	return fmt.Errorf("%w: the query would evaluate about %s points%s, over the limit of %d (--query-max-samples); use a larger subquery step, a shorter range or fewer steps",
		ErrLimit, human(c.Points), where, e.opts.MaxSamples)
}

// Cost is a query's estimated points.
type Cost struct {
	Points      float64 // every evaluation step and every point a function reads, summed
	Worst       string  // the subquery or range selector with the most points
	WorstPoints float64
	defStep     time.Duration
}

// EstimatePoints estimates, from the expression alone, the points the
// engine evaluates for expr from start to end by step (an instant query:
// span 0, steps 1), as the engine works: the result has span/step+1 steps;
// a range selector x[r] reads r/15s points at each step of the evaluation
// around it; a subquery [r:s] evaluates its expression once over the span
// widened by r at step s ((span+r)/s+1 points, and everything inside it is
// costed against that evaluation), and its function reads r/s of those
// points at each outer step. Nested subqueries thus multiply. The estimate
// is per series (it cannot know how many a selector matches); the engine's
// MaxSamples bounds the rest while evaluating.
func EstimatePoints(expr parser.Expr, span, step time.Duration) Cost {
	return estimatePoints(expr, span, step, subqueryDefaultStep)
}

// estimatePoints is EstimatePoints with defStep the step of subqueries
// written without one.
func estimatePoints(expr parser.Expr, span, step, defStep time.Duration) Cost {
	if step <= 0 {
		step = time.Second // any: an instant query has one step
	}
	c := Cost{defStep: defStep}
	sp, st := float64(span), float64(step)
	c.Points = sp/st + 1
	c.walk(expr, sp, st)
	return c
}

// walk adds node's points evaluated over span (ns) by step (ns).
func (c *Cost) walk(node parser.Node, span, step float64) {
	steps := span/step + 1
	switch n := node.(type) {
	case *parser.MatrixSelector:
		c.add(steps*float64(n.Range)/float64(assumedSampleInterval), "["+promDuration(n.Range)+"]")
		return
	case *parser.SubqueryExpr:
		sstep := float64(c.subqueryStep(n))
		inner := span + float64(n.Range)
		c.add(steps*float64(n.Range)/sstep+inner/sstep+1, "["+promDuration(n.Range)+":"+promDuration(c.subqueryStep(n))+"]")
		c.walk(n.Expr, inner, sstep)
		return
	}
	for _, ch := range parser.Children(node) {
		c.walk(ch, span, step)
	}
}

func (c *Cost) add(pts float64, what string) {
	c.Points += pts
	if pts > c.WorstPoints {
		c.WorstPoints, c.Worst = pts, what
	}
}

func (c *Cost) subqueryStep(sq *parser.SubqueryExpr) time.Duration {
	if sq.Step > 0 {
		return sq.Step
	}
	return c.defStep
}

func promDuration(d time.Duration) string { return prommodel.Duration(d).String() }

// human writes a large number shortly: 8.6e+11 rather than 864000000000.
func human(f float64) string {
	if f < 1e6 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 2, 64)
}

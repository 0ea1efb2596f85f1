package logql

import (
	"regexp"
	"time"
)

// Expr is a parsed query: a *LogExpr (a log query) or a metric query
// (*RangeAgg or *VectorAgg).
type Expr interface{ expr() }

// Matcher is one label matcher of a stream selector.
type Matcher struct {
	Name  string // shiplog's label name (service_name is read as service)
	Op    string // = != =~ !~
	Value string
	rx    *regexp.Regexp // for =~ and !~, anchored
}

// Matches reports whether the label value v satisfies the matcher.
func (m *Matcher) Matches(v string) bool {
	switch m.Op {
	case "=":
		return v == m.Value
	case "!=":
		return v != m.Value
	case "=~":
		return m.rx.MatchString(v)
	}
	return !m.rx.MatchString(v)
}

// LineFilter is one of |= != |~ !~.
type LineFilter struct {
	Op    string
	Value string
	rx    *regexp.Regexp // for |~ and !~
}

// Stage kinds of a pipeline after the line filters.
const (
	StageJSON        = "json"
	StageLogfmt      = "logfmt"
	StageLabelFilter = "label_filter"
	StageLineFilter  = "line_filter" // a line filter after a parser or label filter
	StageDrop        = "drop"
	StageLineFormat  = "line_format"
)

// Stage is one step of a pipeline evaluated record by record.
type Stage struct {
	Kind    string
	Filters []LabelFilter // StageLabelFilter: all must hold
	Line    LineFilter    // StageLineFilter
	Drop    []string      // StageDrop: label names
	format  *lineFormat   // StageLineFormat
}

// LabelFilter compares a label (a stream label, an attribute, or a field
// extracted by a parser) with a value.
type LabelFilter struct {
	Name    string
	Op      string // = != =~ !~ for strings; == != > >= < <= for numbers
	Value   string
	Num     float64
	Numeric bool
	rx      *regexp.Regexp
}

// LogExpr is a stream selector and its pipeline.
type LogExpr struct {
	Matchers []Matcher
	// Filters are the leading line filters (before any other stage): they go
	// into shiplog's query.
	Filters []LineFilter
	Stages  []Stage
	// Parsed is set when a stage extracts labels from the line (json, logfmt).
	Parsed bool
}

func (*LogExpr) expr() {}

// RangeAgg is a range aggregation: fn(log-range) such as
// count_over_time({...}[5m]).
type RangeAgg struct {
	Func   string // count_over_time rate bytes_over_time bytes_rate sum_over_time avg_over_time min_over_time max_over_time quantile_over_time
	Param  float64
	Log    *LogExpr
	Range  time.Duration
	Unwrap string // the unwrapped label, for the *_over_time functions of values
	// By/Without group a range aggregation of values (quantile_over_time(...) by (x)).
	Grouping *Grouping
}

func (*RangeAgg) expr() {}

// Grouping is a by (...) or without (...) clause.
type Grouping struct {
	Without bool
	Labels  []string
}

// VectorAgg is sum/avg/min/max/count/topk/bottomk over a metric expression.
type VectorAgg struct {
	Op       string
	Param    int // topk, bottomk
	Grouping *Grouping
	Inner    Expr // *RangeAgg or *VectorAgg
}

func (*VectorAgg) expr() {}

// Log returns the log expression under a metric or log query.
func Log(e Expr) *LogExpr {
	switch x := e.(type) {
	case *LogExpr:
		return x
	case *RangeAgg:
		return x.Log
	case *VectorAgg:
		return Log(x.Inner)
	}
	return nil
}

// Range returns the range of the range aggregation under e (0 for a log query).
func Range(e Expr) time.Duration {
	switch x := e.(type) {
	case *RangeAgg:
		return x.Range
	case *VectorAgg:
		return Range(x.Inner)
	}
	return 0
}

// RangeOf returns the range aggregation under e.
func RangeOf(e Expr) *RangeAgg {
	switch x := e.(type) {
	case *RangeAgg:
		return x
	case *VectorAgg:
		return RangeOf(x.Inner)
	}
	return nil
}

// ConstVector is vector(n): one series with no labels and the value n.
type ConstVector struct{ V float64 }

func (*ConstVector) expr() {}

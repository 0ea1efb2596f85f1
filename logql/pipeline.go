package logql

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/shiplog/shiplog/model"
)

// Label is one label of a stream or series.
type Label struct{ Name, Value string }

// LabelSet is a sorted list of labels.
type LabelSet []Label

// Get returns the value of name ("" when absent).
func (ls LabelSet) Get(name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// Key is a string identifying the set.
func (ls LabelSet) Key() string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.Name)
		b.WriteByte(0)
		b.WriteString(l.Value)
		b.WriteByte(0)
	}
	return b.String()
}

// Map renders the set as a map.
func (ls LabelSet) Map() map[string]string {
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}

// StreamLabels are a record's labels as a stream's: shiplog's labels and the
// level, the empty ones left out.
func StreamLabels(r *model.Record) LabelSet {
	ls := make(LabelSet, 0, 5)
	add := func(n, v string) {
		if v != "" {
			ls = append(ls, Label{n, v})
		}
	}
	add("build_id", r.BuildID)
	add("deploy_id", r.DeployID)
	add("host", r.Host)
	add("level", r.Level.String())
	add("service", r.Service)
	return ls
}

// Row is a record as a pipeline sees it.
type Row struct {
	Rec       *model.Record
	Line      string            // the line: the message, or what line_format made of it
	Stream    LabelSet          // labels of the stream
	Extracted map[string]string // by json/logfmt
	dropped   map[string]bool
}

// Get looks a label up: extracted fields, then stream labels, then attributes.
func (r *Row) Get(name string) (string, bool) {
	if r.dropped[name] {
		return "", false
	}
	if v, ok := r.Extracted[name]; ok {
		return v, true
	}
	for _, l := range r.Stream {
		if l.Name == name {
			return l.Value, true
		}
	}
	for _, a := range r.Rec.Attrs {
		if a.Key == name {
			return a.Value, true
		}
	}
	return "", false
}

// Labels are the row's labels as a result stream's: the stream's and the
// extracted ones, less the dropped ones.
func (r *Row) Labels() LabelSet {
	if len(r.Extracted) == 0 && len(r.dropped) == 0 {
		return r.Stream
	}
	out := make(LabelSet, 0, len(r.Stream)+len(r.Extracted))
	for _, l := range r.Stream {
		if !r.dropped[l.Name] {
			out = append(out, l)
		}
	}
	for k, v := range r.Extracted {
		if !r.dropped[k] {
			out = append(out, Label{k, v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Pipeline evaluates a log expression's matchers and stages on records.
type Pipeline struct {
	e *LogExpr
}

// NewPipeline returns the pipeline of e.
func NewPipeline(e *LogExpr) *Pipeline { return &Pipeline{e: e} }

// Process runs the pipeline on one record; false when the record is dropped.
func (p *Pipeline) Process(rec *model.Record) (*Row, bool) {
	row := &Row{Rec: rec, Line: rec.Message, Stream: StreamLabels(rec)}
	for i := range p.e.Matchers {
		m := &p.e.Matchers[i]
		if !m.Matches(row.Stream.Get(m.Name)) {
			return nil, false
		}
	}
	for i := range p.e.Filters {
		if !p.e.Filters[i].match(rec.Message) {
			return nil, false
		}
	}
	for i := range p.e.Stages {
		st := &p.e.Stages[i]
		switch st.Kind {
		case StageJSON:
			parseJSON(row)
		case StageLogfmt:
			parseLogfmt(row)
		case StageLineFilter:
			if !st.Line.match(row.Line) {
				return nil, false
			}
		case StageLineFormat:
			row.Line = st.format.apply(row)
		case StageDrop:
			if row.dropped == nil {
				row.dropped = map[string]bool{}
			}
			for _, n := range st.Drop {
				row.dropped[n] = true
			}
		case StageLabelFilter:
			for j := range st.Filters {
				if !st.Filters[j].match(row) {
					return nil, false
				}
			}
		}
	}
	return row, true
}

func (f *LineFilter) match(line string) bool {
	switch f.Op {
	case "|=":
		return strings.Contains(line, f.Value)
	case "!=":
		return !strings.Contains(line, f.Value)
	case "|~":
		return f.rx.MatchString(line)
	}
	return !f.rx.MatchString(line)
}

func (f *LabelFilter) match(r *Row) bool {
	v, _ := r.Get(f.Name)
	if !f.Numeric {
		m := Matcher{Op: f.Op, Value: f.Value, rx: f.rx}
		return m.Matches(v)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || math.IsNaN(n) {
		return false // missing or not a number: the line does not pass
	}
	switch f.Op {
	case "==":
		return n == f.Num
	case "!=":
		return n != f.Num
	case ">":
		return n > f.Num
	case ">=":
		return n >= f.Num
	case "<":
		return n < f.Num
	}
	return n <= f.Num
}

// maxExtracted bounds the fields a parser takes from one line.
const maxExtracted = 256

// setExtracted adds an extracted field; a name that is a stream label gets
// the suffix _extracted, as in Loki.
func setExtracted(r *Row, k, v string) {
	if r.Extracted == nil {
		r.Extracted = map[string]string{}
	}
	if len(r.Extracted) >= maxExtracted {
		return
	}
	k = sanitizeLabel(k)
	if k == "" {
		return
	}
	if r.Stream.Get(k) != "" {
		k += "_extracted"
	}
	r.Extracted[k] = v
}

// sanitizeLabel makes k a valid label name: characters other than letters,
// digits and _ become _.
func sanitizeLabel(k string) string {
	b := []byte(k)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= '0' && c <= '9' && i > 0) {
			b[i] = '_'
		}
	}
	return string(b)
}

func parseJSON(r *Row) {
	var v map[string]any
	if err := json.Unmarshal([]byte(r.Line), &v); err != nil {
		setExtracted(r, "__error__", "JSONParserErr")
		return
	}
	flattenJSON(r, "", v)
}

func flattenJSON(r *Row, prefix string, m map[string]any) {
	for k, v := range m {
		name := k
		if prefix != "" {
			name = prefix + "_" + k
		}
		switch x := v.(type) {
		case map[string]any:
			flattenJSON(r, name, x)
		case string:
			setExtracted(r, name, x)
		case float64:
			setExtracted(r, name, strconv.FormatFloat(x, 'f', -1, 64))
		case bool:
			setExtracted(r, name, strconv.FormatBool(x))
		case nil:
			setExtracted(r, name, "")
		}
		// Arrays are skipped, as Loki does.
	}
}

// parseLogfmt reads key=value pairs (values may be "quoted"); bare keys
// get the empty value.
func parseLogfmt(r *Row) {
	s := r.Line
	for i := 0; i < len(s); {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		key := s[start:i]
		if i >= len(s) || s[i] != '=' {
			if key != "" {
				setExtracted(r, key, "")
			}
			continue
		}
		i++ // =
		var val string
		if i < len(s) && s[i] == '"' {
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				setExtracted(r, "__error__", "LogfmtParserErr")
				return
			}
			if u, err := strconv.Unquote(s[i : j+1]); err == nil {
				val = u
			} else {
				val = s[i+1 : j]
			}
			i = j + 1
		} else {
			j := i
			for j < len(s) && s[j] != ' ' && s[j] != '\t' {
				j++
			}
			val = s[i:j]
			i = j
		}
		if key != "" {
			setExtracted(r, key, val)
		}
	}
}

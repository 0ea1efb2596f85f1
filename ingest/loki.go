package ingest

// The Loki push API's label strings and JSON body, decoded to records. The
// protobuf body (snappy-compressed logproto.PushRequest) is decoded in server
// and handed here stream by stream.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shiplog/shiplog/model"
)

// Loki label names that become record fields, in order of preference.
var (
	lokiServiceLabels = []string{"service_name", "job"}
	lokiHostLabels    = []string{"host", "instance"}
	lokiDeployLabels  = []string{"deployment_id", "deploy_id"}
	lokiBuildLabels   = []string{"build_id"}
	lokiLevelLabels   = []string{"level", "detected_level"}
)

// ParseLokiLabels parses a Prometheus-style label set as the Loki push API
// carries it: {name="value", other="value"}. Values are quoted with " ' or `
// and take Go's escapes; names are Prometheus label names or quoted strings.
// Labels with an empty value are left out, as Prometheus does. The result is
// sorted by name.
func ParseLokiLabels(s string) ([]model.Attr, error) {
	p := lokiLabelParser{s: s}
	p.space()
	if !p.eat('{') {
		return nil, p.errorf("want '{'")
	}
	var out []model.Attr
	for {
		p.space()
		if p.eat('}') {
			break
		}
		name, err := p.name()
		if err != nil {
			return nil, err
		}
		p.space()
		if !p.eat('=') {
			return nil, p.errorf("want '=' after label %q", name)
		}
		p.space()
		value, err := p.quoted()
		if err != nil {
			return nil, err
		}
		if value != "" {
			out = append(out, model.Attr{Key: name, Value: value})
		}
		p.space()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			break
		}
		return nil, p.errorf("want ',' or '}' after the value of %q", name)
	}
	p.space()
	if p.i != len(s) {
		return nil, p.errorf("unexpected text after '}'")
	}
	slices.SortFunc(out, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) })
	for i := 1; i < len(out); i++ {
		if out[i].Key == out[i-1].Key {
			return nil, invalidf("labels %.80q: label %q twice", s, out[i].Key)
		}
	}
	return out, nil
}

type lokiLabelParser struct {
	s string
	i int
}

func (p *lokiLabelParser) errorf(format string, a ...any) error {
	return invalidf("labels %.80q: at byte %d: %s", p.s, p.i, fmt.Sprintf(format, a...))
}

func (p *lokiLabelParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *lokiLabelParser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *lokiLabelParser) name() (string, error) {
	if p.i < len(p.s) && (p.s[p.i] == '"' || p.s[p.i] == '\'' || p.s[p.i] == '`') {
		n, err := p.quoted()
		if err == nil && n == "" {
			return "", p.errorf("empty label name")
		}
		return n, err
	}
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (c >= '0' && c <= '9' && p.i > start) {
			p.i++
			continue
		}
		break
	}
	if p.i == start {
		return "", p.errorf("want a label name")
	}
	return p.s[start:p.i], nil
}

// quoted reads a "...", '...' or `...` string.
func (p *lokiLabelParser) quoted() (string, error) {
	if p.i >= len(p.s) {
		return "", p.errorf("want a quoted value")
	}
	q := p.s[p.i]
	start := p.i
	switch q {
	case '`':
		end := strings.IndexByte(p.s[p.i+1:], '`')
		if end < 0 {
			return "", p.errorf("unterminated `string")
		}
		p.i += end + 2
		v := p.s[start+1 : p.i-1]
		if !utf8.ValidString(v) {
			return "", p.errorf("value is not valid UTF-8")
		}
		return v, nil
	case '"', '\'':
	default:
		return "", p.errorf("want a quoted value")
	}
	p.i++
	escaped := false
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.i >= len(p.s) {
				return "", p.errorf("unterminated string")
			}
			p.i++
			escaped = true
		case c == q:
			body := p.s[start+1 : p.i-1]
			if !escaped {
				if !utf8.ValidString(body) {
					return "", p.errorf("value is not valid UTF-8")
				}
				return body, nil
			}
			return p.unescape(body, q)
		case c == '\n':
			return "", p.errorf("newline in string")
		}
	}
	return "", p.errorf("unterminated string")
}

// unescape decodes Go escapes in the body of a quoted string.
func (p *lokiLabelParser) unescape(body string, q byte) (string, error) {
	var b strings.Builder
	for len(body) > 0 {
		r, multibyte, tail, err := strconv.UnquoteChar(body, q)
		if err != nil {
			return "", p.errorf("bad escape in string")
		}
		if r < utf8.RuneSelf || !multibyte {
			b.WriteByte(byte(r)) // \xNN and octal escapes are bytes
		} else {
			b.WriteRune(r)
		}
		body = tail
	}
	v := b.String()
	if !utf8.ValidString(v) {
		return "", p.errorf("value is not valid UTF-8")
	}
	return v, nil
}

// LokiStream turns a stream's labels and entries into records.
type LokiStream struct {
	labels model.Labels
	level  model.Level
	attrs  []model.Attr // sorted, no spare capacity (records share it)
}

// NewLokiStream maps a stream's labels (sorted by name, as ParseLokiLabels
// returns them): service_name (else job) to service, host (else instance) to
// host, deployment_id (else deploy_id) to deploy_id, build_id to build_id,
// level (else detected_level) to the level; the others are attributes. A
// level label of an unknown spelling stays an attribute.
func NewLokiStream(labels []model.Attr) *LokiStream {
	st := &LokiStream{}
	used := make([]string, 0, 5)
	pick := func(names []string) string {
		for _, n := range names {
			if v, ok := lokiLookup(labels, n); ok {
				used = append(used, n)
				return v
			}
		}
		return ""
	}
	st.labels.Service = pick(lokiServiceLabels)
	st.labels.Host = pick(lokiHostLabels)
	st.labels.DeployID = pick(lokiDeployLabels)
	st.labels.BuildID = pick(lokiBuildLabels)
	if lv := pick(lokiLevelLabels); lv != "" {
		if l, ok := model.ParseLevel(lv); ok {
			st.level = l
		} else {
			used = used[:len(used)-1]
		}
	}
	for _, a := range labels {
		if !slices.Contains(used, a.Key) {
			st.attrs = append(st.attrs, a)
		}
	}
	st.attrs = slices.Clip(st.attrs)
	return st
}

func lokiLookup(as []model.Attr, key string) (string, bool) {
	for _, a := range as {
		if a.Key == key {
			return a.Value, true
		}
	}
	return "", false
}

// Record is one entry of the stream: t in Unix nanoseconds (0: when it
// arrives), its line and its structured metadata, which become attributes
// (over the stream's labels of the same name) except trace_id and span_id,
// which fill the record's fields.
func (st *LokiStream) Record(t int64, line string, metadata []model.Attr) model.Record {
	r := model.Record{Time: t, Labels: st.labels, Level: st.level, Message: line, Attrs: st.attrs}
	if len(metadata) == 0 {
		return r
	}
	own := make([]model.Attr, 0, len(metadata))
	for _, m := range metadata {
		switch m.Key {
		case "trace_id":
			r.TraceID = m.Value
		case "span_id":
			r.SpanID = m.Value
		default:
			own = append(own, m)
		}
	}
	if len(own) > 0 {
		slices.SortStableFunc(own, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) })
		r.Attrs = mergeLokiAttrs(st.attrs, own)
	}
	return r
}

// mergeLokiAttrs merges two lists sorted by key; b wins on equal keys (and, within
// b, the first of equal keys). The result is a new slice.
func mergeLokiAttrs(a, b []model.Attr) []model.Attr {
	out := make([]model.Attr, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Key < b[j].Key):
			out = append(out, a[i])
			i++
		default:
			if len(out) > 0 && out[len(out)-1].Key == b[j].Key {
				j++
				continue
			}
			out = append(out, b[j])
			if i < len(a) && a[i].Key == b[j].Key {
				i++
			}
			j++
		}
	}
	return out
}

// lokiJSONPush is the Loki push API's JSON body, in its current form
// (stream, values) and its older one (labels, entries).
type lokiJSONPush struct {
	Streams []struct {
		Stream  map[string]string `json:"stream"`
		Values  []json.RawMessage `json:"values"`
		Labels  string            `json:"labels"`
		Entries []struct {
			Ts                 time.Time         `json:"ts"`
			Line               string            `json:"line"`
			StructuredMetadata map[string]string `json:"structuredMetadata"`
		} `json:"entries"`
	} `json:"streams"`
}

// DecodeLokiJSON decodes a Loki push API JSON body:
//
//	{"streams": [{"stream": {"job": "api"}, "values": [["<unix ns>", "line", {"trace_id": "..."}]]}]}
func DecodeLokiJSON(body []byte) ([]model.Record, error) {
	var p lokiJSONPush
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&p); err != nil {
		return nil, invalidf("malformed Loki push JSON: %v", err)
	}
	var recs []model.Record
	for si, s := range p.Streams {
		var labels []model.Attr
		if s.Labels != "" {
			var err error
			if labels, err = ParseLokiLabels(s.Labels); err != nil {
				return nil, fmt.Errorf("stream %d: %w", si, err)
			}
		} else {
			for k, v := range s.Stream {
				if k == "" {
					return nil, invalidf("stream %d: a label has an empty name", si)
				}
				if v != "" {
					labels = append(labels, model.Attr{Key: k, Value: v})
				}
			}
			slices.SortFunc(labels, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) })
		}
		st := NewLokiStream(labels)
		for ei, raw := range s.Values {
			t, line, meta, err := decodeLokiValue(raw)
			if err != nil {
				return nil, invalidf("stream %d, value %d: %v", si, ei, err)
			}
			recs = append(recs, st.Record(t, line, meta))
		}
		for _, e := range s.Entries {
			var meta []model.Attr
			for k, v := range e.StructuredMetadata {
				meta = append(meta, model.Attr{Key: k, Value: v})
			}
			recs = append(recs, st.Record(e.Ts.UnixNano(), e.Line, meta))
		}
	}
	return recs, nil
}

// decodeLokiValue decodes ["<unix ns>", "line"] or ["<unix ns>", "line", {metadata}].
func decodeLokiValue(raw json.RawMessage) (int64, string, []model.Attr, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil {
		return 0, "", nil, fmt.Errorf("want [\"<unix ns>\", \"line\"]: %v", err)
	}
	if len(parts) < 2 || len(parts) > 3 {
		return 0, "", nil, fmt.Errorf("want [\"<unix ns>\", \"line\"] with optional structured metadata, got %d elements", len(parts))
	}
	var ts json.Number
	if err := json.Unmarshal(parts[0], &ts); err != nil {
		return 0, "", nil, fmt.Errorf("timestamp: want a string of Unix nanoseconds")
	}
	t, err := strconv.ParseInt(ts.String(), 10, 64)
	if err != nil || t < 0 {
		return 0, "", nil, fmt.Errorf("timestamp %.40q: want Unix nanoseconds", ts.String())
	}
	var line string
	if err := json.Unmarshal(parts[1], &line); err != nil {
		return 0, "", nil, fmt.Errorf("line: want a string")
	}
	var meta []model.Attr
	if len(parts) == 3 {
		var m map[string]string
		if err := json.Unmarshal(parts[2], &m); err != nil {
			return 0, "", nil, fmt.Errorf("structured metadata: want an object of strings")
		}
		for k, v := range m {
			meta = append(meta, model.Attr{Key: k, Value: v})
		}
	}
	return t, line, meta, nil
}

package server

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/shiplog/shiplog/logql"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// detectedField is one entry of /detected_fields.
type detectedField struct {
	Label       string   `json:"label"`
	Type        string   `json:"type"`
	Cardinality int      `json:"cardinality"`
	Parsers     []string `json:"parsers"`
}

const (
	lokiMaxFieldLines = 5000
	lokiMaxFieldVals  = 10000 // distinct values tracked per field
	lokiMaxFields     = 1000  // fields tracked
)

type fieldSeen struct {
	vals    map[string]bool
	parsers []string
	types   map[string]bool
}

// detectedFields lists the fields of the latest line_limit matching lines:
// their attributes, and what | json or | logfmt would extract from them.
func (a *lokiAPI) detectedFields(ctx context.Context, r *http.Request) (any, error) {
	tr, err := lokiRange(r, time.Now())
	if err != nil {
		return nil, err
	}
	e, err := logql.Parse(r.FormValue("query"))
	if err != nil {
		return nil, err
	}
	le := logql.Log(e)
	lines, limit := 1000, 1000
	for _, p := range []struct {
		name string
		v    *int
	}{{"line_limit", &lines}, {"limit", &limit}} {
		if s := r.FormValue(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > lokiMaxFieldLines {
				return nil, invalid("%s %q: want 1 to %d", p.name, s, lokiMaxFieldLines)
			}
			*p.v = n
		}
	}
	seen := map[string]*fieldSeen{}
	note := func(name, val, parser string) {
		f := seen[name]
		if f == nil {
			if len(seen) >= lokiMaxFields {
				return
			}
			f = &fieldSeen{vals: map[string]bool{}, types: map[string]bool{}}
			seen[name] = f
		}
		if len(f.vals) < lokiMaxFieldVals {
			f.vals[val] = true
		}
		f.types[valueType(val)] = true
		if parser != "" && !slices.Contains(f.parsers, parser) {
			f.parsers = append(f.parsers, parser)
		}
	}
	err = a.latestRows(ctx, le, tr, lines, func(row *logql.Row) {
		for _, at := range row.Rec.Attrs { // structured metadata: no parser
			note(at.Key, at.Value, "")
		}
		a.fieldsOf(row.Line, note)
	})
	if err != nil {
		return nil, err
	}
	out := make([]detectedField, 0, len(seen))
	for name, f := range seen {
		out = append(out, detectedField{Label: name, Type: fieldType(f.types), Cardinality: len(f.vals), Parsers: f.parsers})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	if len(out) > limit {
		out = out[:limit]
	}
	return map[string]any{"fields": out, "limit": limit}, nil
}

// latestRows hands fn the newest limit records of le's query over tr that
// pass its pipeline.
func (a *lokiAPI) latestRows(ctx context.Context, le *logql.LogExpr, tr model.TimeRange, limit int, fn func(*logql.Row)) error {
	tl := logql.Translate(le)
	if tl.None || tr.Start >= tr.End {
		return nil
	}
	q, err := query.Parse(tl.Query)
	if err != nil {
		return err
	}
	pl := logql.NewPipeline(le)
	kept := 0
	return a.scan(ctx, q, tr, false, lokiPage, func(rec *model.Record) (bool, error) {
		row, ok := pl.Process(rec)
		if ok {
			fn(row)
			kept++
		}
		return kept < limit, nil
	})
}

// fieldsOf notes the fields json (for a line that is a JSON object) or
// logfmt (for a line with key=value pairs) extracts.
func (a *lokiAPI) fieldsOf(line string, note func(name, val, parser string)) {
	rec := &model.Record{Message: line}
	parser := ""
	switch {
	case strings.HasPrefix(strings.TrimSpace(line), "{"):
		parser = logql.StageJSON
	case strings.Contains(line, "="):
		parser = logql.StageLogfmt
	default:
		return
	}
	pl := logql.NewPipeline(&logql.LogExpr{Stages: []logql.Stage{{Kind: parser}}})
	row, ok := pl.Process(rec)
	if !ok {
		return
	}
	for k, v := range row.Extracted {
		if k != "__error__" {
			note(k, v, parser)
		}
	}
}

func valueType(v string) string {
	if _, err := strconv.ParseInt(v, 10, 64); err == nil {
		return "int"
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return "float"
	}
	if v == "true" || v == "false" {
		return "boolean"
	}
	if _, err := time.ParseDuration(v); err == nil {
		return "duration"
	}
	return "string"
}

// fieldType is the one type all of a field's values have, int widening to
// float; else string.
func fieldType(ts map[string]bool) string {
	if len(ts) == 1 {
		for t := range ts {
			return t
		}
	}
	if len(ts) == 2 && ts["int"] && ts["float"] {
		return "float"
	}
	return "string"
}

var lokiUpgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 16 << 10,
	// Grafana's server and logcli connect from other origins; the request
	// passed the same auth as every other.
	CheckOrigin: func(*http.Request) bool { return true },
}

// lokiTailMsg is one websocket message of a tail.
type lokiTailMsg struct {
	Streams        []lokiStream  `json:"streams"`
	DroppedEntries []lokiDropped `json:"dropped_entries"`
}

type lokiDropped struct {
	Labels    map[string]string `json:"labels"`
	Timestamp string            `json:"timestamp"`
}

// tail serves /loki/api/v1/tail over a websocket: the last lines since start
// (at most limit), then new lines as they are stored.
func (a *lokiAPI) tail(w http.ResponseWriter, r *http.Request) {
	e, err := logql.Parse(r.FormValue("query"))
	if err != nil {
		writeHTTPError(w, lokiError(err))
		return
	}
	le, ok := e.(*logql.LogExpr)
	if !ok {
		writeHTTPError(w, invalid("tail needs a log query, not a metric query"))
		return
	}
	limit, err := lokiLimit(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	now := time.Now()
	start := now.Add(-time.Hour).UnixNano()
	if v := r.FormValue("start"); v != "" {
		if start, err = lokiTime(v); err != nil {
			writeHTTPError(w, err)
			return
		}
	}
	tl := logql.Translate(le)
	q, err := query.Parse(tl.Query)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	release, err := a.core.Limits.tail()
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	defer release()
	sub := a.core.Hub.subscribe(q)
	defer a.core.Hub.unsubscribe(sub)
	conn, err := lokiUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	defer conn.Close()
	a.runLokiTail(r.Context(), conn, le, sub, start, now.UnixNano(), limit)
}

func (a *lokiAPI) runLokiTail(ctx context.Context, conn *websocket.Conn, le *logql.LogExpr, sub *subscriber, start, now int64, limit int) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // reads control frames; a close or error ends the tail
		defer cancel()
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	send := func(m lokiTailMsg) error {
		_ = conn.SetWriteDeadline(time.Now().Add(tailWriteTimeout))
		return conn.WriteJSON(m)
	}
	// The recent lines first, oldest first; then the live ones.
	if start < now {
		qctx, release, err := a.core.Limits.query(ctx)
		if err == nil {
			streams, _, err := a.logQuery(qctx, le, model.TimeRange{Start: start, End: now + 1}, limit, false)
			release()
			if err == nil && len(streams) > 0 {
				for i := range streams {
					reverse(streams[i].Values)
				}
				if send(lokiTailMsg{Streams: streams}) != nil {
					return
				}
			}
		}
	}
	pl := logql.NewPipeline(le)
	_ = runTail(ctx.Done(), a.core.Hub, sub, func(recs []model.Record, dropped int) error {
		var msg lokiTailMsg
		idx := map[string]int{}
		for i := range recs {
			row, ok := pl.Process(&recs[i])
			if !ok {
				continue
			}
			ls := row.Labels()
			k := ls.Key()
			j, seen := idx[k]
			if !seen {
				j = len(msg.Streams)
				idx[k] = j
				msg.Streams = append(msg.Streams, lokiStream{Stream: ls.Map()})
			}
			msg.Streams[j].Values = append(msg.Streams[j].Values, [2]string{strconv.FormatInt(recs[i].Time, 10), row.Line})
		}
		if dropped > 0 {
			msg.DroppedEntries = append(msg.DroppedEntries, lokiDropped{Labels: map[string]string{}, Timestamp: strconv.FormatInt(time.Now().UnixNano(), 10)})
		}
		if len(msg.Streams) == 0 && len(msg.DroppedEntries) == 0 {
			return nil
		}
		if msg.Streams == nil {
			msg.Streams = []lokiStream{}
		}
		return send(msg)
	})
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

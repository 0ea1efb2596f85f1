package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/shiplog/shiplog/ingest"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// Format is how lines become records.
type Format int

const (
	// FormatText: one line (or a joined stack trace) is one record; the
	// level is read from the line.
	FormatText Format = iota
	// FormatJSON: each line is one record in the contract's JSON form.
	FormatJSON
)

// ParseFormat parses "text" or "json".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "text":
		return FormatText, nil
	case "json":
		return FormatJSON, nil
	}
	return 0, fmt.Errorf("unknown format %q: want text or json", s)
}

// HandlerOptions configure how one source's lines become records.
type HandlerOptions struct {
	Format Format
	// Multiline joins continuation lines (indented, "at ...", "Caused by:",
	// "...") to the record before them (text format only).
	Multiline         bool
	MultilineMaxLines int           // a joined record has at most this many lines
	MultilineMaxBytes int           // and at most this many bytes
	MultilineTimeout  time.Duration // a record waits at most this long for more lines
	MaxLineBytes      int           // longer lines are cut and marked truncated=true
	Attrs             map[string]string
	Name              string // the source, for messages: "stdin", a path
}

// DefaultHandlerOptions returns the agent's defaults.
func DefaultHandlerOptions() HandlerOptions {
	return HandlerOptions{
		Format:            FormatText,
		Multiline:         true,
		MultilineMaxLines: 500,
		MultilineMaxBytes: 256 << 10,
		MultilineTimeout:  time.Second,
		MaxLineBytes:      256 << 10,
	}
}

// maxLoggedBadLines: bad lines past this many per source are only counted.
const maxLoggedBadLines = 10

// Handler turns the lines of one source into records for a Shipper. It is
// safe for concurrent use; Tick may come from a timer goroutine.
type Handler struct {
	opts    HandlerOptions
	sink    func(r *shiplogv1.Record, pos *Position) // nil: records are dropped
	dropped func(n int)
	log     *slog.Logger
	now     func() time.Time

	mu        sync.Mutex
	line      int64 // lines seen
	bad       int
	pending   []byte // a text record waiting for continuation lines
	pendLines int
	pendTrunc bool
	pendTime  time.Time // when its first line was read
	pendLast  time.Time // when its last line was read
	pendPos   *Position
	hasPend   bool
	truncAttr map[string]string
}

// NewHandler returns a Handler feeding sh (which may be nil: lines are then
// parsed and dropped, as shiplog run does when it has no spool).
func NewHandler(sh *Shipper, opts HandlerOptions, log *slog.Logger) *Handler {
	d := DefaultHandlerOptions()
	if opts.MultilineMaxLines <= 0 {
		opts.MultilineMaxLines = d.MultilineMaxLines
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = d.MaxLineBytes
	}
	if opts.MultilineMaxBytes <= 0 {
		opts.MultilineMaxBytes = max(d.MultilineMaxBytes, opts.MaxLineBytes)
	}
	if opts.MultilineTimeout <= 0 {
		opts.MultilineTimeout = d.MultilineTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{opts: opts, log: log, now: time.Now}
	if sh != nil {
		h.sink, h.dropped = sh.Add, sh.AddDropped
	}
	h.truncAttr = map[string]string{"truncated": "true"}
	for k, v := range opts.Attrs {
		h.truncAttr[k] = v
	}
	return h
}

// Line takes one line (without its newline; the bytes are not kept). pos is
// where the source stands after it (nil for unpositioned sources).
func (h *Handler) Line(line []byte, truncated bool, pos *Position) {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.line++
	if h.opts.Format == FormatJSON {
		h.flushLocked()
		h.jsonLine(line, truncated, pos, now)
		return
	}
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if h.opts.Multiline && h.hasPend && isContinuation(line) &&
		h.pendLines < h.opts.MultilineMaxLines && len(h.pending)+1+len(line) <= h.opts.MultilineMaxBytes {
		h.pending = append(h.pending, '\n')
		h.pending = append(h.pending, line...)
		h.pendLines++
		h.pendTrunc = h.pendTrunc || truncated
		h.pendLast = now
		h.pendPos = pos
		return
	}
	h.flushLocked()
	if !h.opts.Multiline {
		h.emitText(line, truncated, pos, now)
		return
	}
	h.pending = append(h.pending[:0], line...)
	h.hasPend, h.pendLines, h.pendTrunc, h.pendTime, h.pendLast, h.pendPos = true, 1, truncated, now, now, pos
}

// isContinuation reports whether a line continues the record before it: a
// stack frame or the rest of a trace.
func isContinuation(line []byte) bool {
	if len(line) == 0 {
		return false
	}
	return line[0] == ' ' || line[0] == '\t' ||
		bytes.HasPrefix(line, []byte("at ")) || bytes.HasPrefix(line, []byte("Caused by:")) || bytes.HasPrefix(line, []byte("..."))
}

// Tick sends a waiting record whose last line is older than the multiline
// timeout.
func (h *Handler) Tick() {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hasPend && now.Sub(h.pendLast) >= h.opts.MultilineTimeout {
		h.flushLocked()
	}
}

// Flush sends a waiting record now (end of input, a rotated file).
func (h *Handler) Flush() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.flushLocked()
}

func (h *Handler) flushLocked() {
	if !h.hasPend {
		return
	}
	h.hasPend = false
	h.emitText(h.pending, h.pendTrunc, h.pendPos, h.pendTime)
	if cap(h.pending) > 64<<10 {
		h.pending = nil // do not hold on to one huge trace's buffer
	}
}

func (h *Handler) emitText(line []byte, truncated bool, pos *Position, t time.Time) {
	msg := validString(line)
	r := &shiplogv1.Record{Time: Timestamp(t), Level: DetectLevel(msg).String(), Message: msg, Attributes: h.opts.Attrs}
	if truncated {
		r.Attributes = h.truncAttr
	}
	h.add(r, pos)
}

func (h *Handler) add(r *shiplogv1.Record, pos *Position) {
	if h.sink != nil {
		h.sink(r, pos)
	}
}

// validString returns b as a string, with invalid UTF-8 replaced.
func validString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// jsonRecord is a record in the contract's JSON form.
type jsonRecord struct {
	Time       string                     `json:"time"`
	Service    string                     `json:"service"`
	Host       string                     `json:"host"`
	BuildID    string                     `json:"build_id"`
	DeployID   string                     `json:"deploy_id"`
	Level      string                     `json:"level"`
	Message    string                     `json:"message"`
	TraceID    string                     `json:"trace_id"`
	SpanID     string                     `json:"span_id"`
	Attributes map[string]json.RawMessage `json:"attributes"`
}

func (h *Handler) jsonLine(line []byte, truncated bool, pos *Position, now time.Time) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	r, err := ParseJSONRecord(line, now)
	if err == nil && truncated {
		err = fmt.Errorf("line longer than %d bytes", h.opts.MaxLineBytes)
	}
	if err != nil {
		h.bad++
		if h.bad <= maxLoggedBadLines {
			h.log.Warn("bad JSON line dropped", "source", h.opts.Name, "line", h.line, "err", err)
			if h.bad == maxLoggedBadLines {
				h.log.Warn("further bad lines are counted as dropped but not logged", "source", h.opts.Name)
			}
		}
		if h.dropped != nil {
			h.dropped(1)
		}
		return
	}
	if len(h.opts.Attrs) > 0 {
		if r.Attributes == nil {
			r.Attributes = h.opts.Attrs
		} else {
			for k, v := range h.opts.Attrs {
				if _, ok := r.Attributes[k]; !ok {
					r.Attributes[k] = v
				}
			}
		}
	}
	h.add(r, pos)
}

// ParseJSONRecord decodes one line in the contract's JSON form. A missing
// time is now; a level is normalised (an unknown one is info); attribute
// values that are not strings keep their JSON text.
func ParseJSONRecord(line []byte, now time.Time) (*shiplogv1.Record, error) {
	// The fast decoder takes almost every line; what it refuses (an unknown
	// level, say) goes the lenient way below.
	if m, err := ingest.DecodeRecordJSON(line, nil); err == nil {
		t := now
		if m.Time != 0 {
			t = time.Unix(0, m.Time)
		}
		r := &shiplogv1.Record{Time: Timestamp(t), Service: m.Service, Host: m.Host, BuildId: m.BuildID, DeployId: m.DeployID,
			Level: m.Level.String(), Message: m.Message, TraceId: m.TraceID, SpanId: m.SpanID}
		if len(m.Attrs) > 0 {
			r.Attributes = make(map[string]string, len(m.Attrs))
			for _, a := range m.Attrs {
				r.Attributes[a.Key] = a.Value
			}
		}
		return r, nil
	}
	var j jsonRecord
	if err := json.Unmarshal(line, &j); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("not JSON: %v (at byte %d)", se, se.Offset)
		}
		return nil, err
	}
	t := now
	if j.Time != "" {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, j.Time); err != nil {
			return nil, fmt.Errorf("time %q: want RFC 3339", j.Time)
		}
	}
	lv, ok := model.ParseLevel(j.Level)
	if !ok {
		lv = model.LevelInfo
	}
	r := &shiplogv1.Record{Time: Timestamp(t), Service: j.Service, Host: j.Host, BuildId: j.BuildID, DeployId: j.DeployID,
		Level: lv.String(), Message: j.Message, TraceId: j.TraceID, SpanId: j.SpanID}
	if len(j.Attributes) > 0 {
		r.Attributes = make(map[string]string, len(j.Attributes))
		for k, raw := range j.Attributes {
			var s string
			if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
				r.Attributes[k] = s
			} else if string(raw) != "null" {
				r.Attributes[k] = string(raw)
			}
		}
	}
	return r, nil
}

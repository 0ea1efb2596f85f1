package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// lineParser turns one flat JSON object per line (as written by gen_logs.py) into a
// Record. It is hand-written for speed: string values are sliced out of the line and
// only unescaped when they contain a backslash; the low-cardinality fields (service,
// host, level, build_id, deploy_id) are interned so 2M records share a few hundred
// strings. Keys it does not know become attributes (non-string values keep their raw
// JSON text).
type lineParser struct {
	intern  map[string]string
	scratch []byte
}

func newLineParser() *lineParser {
	return &lineParser{intern: make(map[string]string)}
}

func (p *lineParser) internStr(b []byte) string {
	if s, ok := p.intern[string(b)]; ok { // no allocation for the lookup
		return s
	}
	s := string(b)
	p.intern[s] = s
	return s
}

var errSyntax = errors.New("malformed JSON object")

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// parseLine parses one JSON object line into a Record.
func (p *lineParser) parseLine(b []byte) (*shiplogv1.Record, error) {
	rec := &shiplogv1.Record{}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, fmt.Errorf("%w: want '{'", errSyntax)
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return rec, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, fmt.Errorf("%w: want key at offset %d", errSyntax, i)
		}
		kb, next, err := p.readString(b, i)
		if err != nil {
			return nil, err
		}
		key := string(kb) // short; the switch below does not keep it except for attributes
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return nil, fmt.Errorf("%w: want ':' after key %q", errSyntax, key)
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return nil, fmt.Errorf("%w: missing value for %q", errSyntax, key)
		}
		var val []byte
		isStr := b[i] == '"'
		if isStr {
			val, next, err = p.readString(b, i)
		} else {
			val, next, err = skipValue(b, i)
		}
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", key, err)
		}
		i = next
		if err := p.setField(rec, key, val, isStr); err != nil {
			return nil, err
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return nil, fmt.Errorf("%w: unterminated object", errSyntax)
		}
		if b[i] == '}' {
			if j := skipSpace(b, i+1); j != len(b) {
				return nil, fmt.Errorf("%w: trailing data after object", errSyntax)
			}
			return rec, nil
		}
		if b[i] != ',' {
			return nil, fmt.Errorf("%w: want ',' or '}' at offset %d", errSyntax, i)
		}
		i = skipSpace(b, i+1)
	}
}

func (p *lineParser) setField(rec *shiplogv1.Record, key string, val []byte, isStr bool) error {
	if !isStr && string(val) == "null" {
		return nil
	}
	switch key {
	case "time", "_time", "timestamp", "ts":
		t, err := parseTime(val, isStr)
		if err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
		rec.Time = timestamppb.New(t)
	case "message", "_msg", "msg":
		rec.Message = string(val)
	case "service":
		rec.Service = p.internStr(val)
	case "host":
		rec.Host = p.internStr(val)
	case "level":
		rec.Level = p.internStr(val)
	case "build_id":
		rec.BuildId = p.internStr(val)
	case "deploy_id":
		rec.DeployId = p.internStr(val)
	case "trace_id":
		rec.TraceId = string(val)
	case "span_id":
		rec.SpanId = string(val)
	default:
		if rec.Attributes == nil {
			rec.Attributes = make(map[string]string)
		}
		rec.Attributes[key] = string(val)
	}
	return nil
}

// readString reads the JSON string starting at b[i] == '"'. The result aliases b
// (no escapes) or p.scratch (escapes): callers must copy it before the next call.
func (p *lineParser) readString(b []byte, i int) ([]byte, int, error) {
	i++
	start := i
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			return b[start:i], i + 1, nil
		case c == '\\':
			return p.readEscaped(b, start, i)
		case c < 0x20:
			return nil, 0, fmt.Errorf("%w: control character in string", errSyntax)
		}
		i++
	}
	return nil, 0, fmt.Errorf("%w: unterminated string", errSyntax)
}

// readEscaped continues readString from the first backslash at b[i].
func (p *lineParser) readEscaped(b []byte, start, i int) ([]byte, int, error) {
	out := append(p.scratch[:0], b[start:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			p.scratch = out
			return out, i + 1, nil
		case c < 0x20:
			return nil, 0, fmt.Errorf("%w: control character in string", errSyntax)
		case c != '\\':
			out = append(out, c)
			i++
			continue
		}
		if i+1 >= len(b) {
			break
		}
		switch e := b[i+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b, i+2)
			if !ok {
				return nil, 0, fmt.Errorf("%w: bad \\u escape", errSyntax)
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(-1), false
				if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
					r2, ok2 = hex4(b, i+2)
				}
				if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return nil, 0, fmt.Errorf("%w: bad escape \\%c", errSyntax, e)
		}
		i += 2
	}
	return nil, 0, fmt.Errorf("%w: unterminated string", errSyntax)
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// skipValue returns the raw text of a non-string JSON value (number, literal, object
// or array) starting at b[i].
func skipValue(b []byte, i int) ([]byte, int, error) {
	start, depth := i, 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			if depth == 0 {
				return nil, 0, fmt.Errorf("%w: unexpected string", errSyntax)
			}
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(b) {
				return nil, 0, fmt.Errorf("%w: unterminated string", errSyntax)
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return trimmedValue(b, start, i)
			}
			depth--
			if depth == 0 {
				return b[start : i+1], i + 1, nil
			}
		case ',':
			if depth == 0 {
				return trimmedValue(b, start, i)
			}
		}
		i++
	}
	if depth != 0 {
		return nil, 0, fmt.Errorf("%w: unterminated value", errSyntax)
	}
	return trimmedValue(b, start, i)
}

func trimmedValue(b []byte, start, end int) ([]byte, int, error) {
	e := end
	for e > start && isSpace(b[e-1]) {
		e--
	}
	if e == start {
		return nil, 0, fmt.Errorf("%w: empty value", errSyntax)
	}
	return b[start:e], end, nil
}

// parseTime accepts an RFC 3339 string or a Unix number (seconds, possibly
// fractional; integers that are too large for seconds are read as ms, µs or ns).
func parseTime(val []byte, isStr bool) (time.Time, error) {
	if isStr {
		t, err := time.Parse(time.RFC3339Nano, string(val))
		if err != nil {
			return time.Time{}, fmt.Errorf("bad time %q: %w", val, err)
		}
		return t, nil
	}
	s := string(val)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		a := n
		if a < 0 {
			a = -a
		}
		switch {
		case a < 1e11:
			return time.Unix(n, 0).UTC(), nil
		case a < 1e14:
			return time.UnixMilli(n).UTC(), nil
		case a < 1e17:
			return time.UnixMicro(n).UTC(), nil
		}
		return time.Unix(0, n).UTC(), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, fmt.Errorf("bad time %s", s)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
}

// readJSONL parses every non-blank line of r. Errors name the line number.
func readJSONL(r io.Reader) ([]*shiplogv1.Record, error) {
	p := newLineParser()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	recs := make([]*shiplogv1.Record, 0, 1<<16)
	ln := 0
	for sc.Scan() {
		ln++
		b := sc.Bytes()
		if skipSpace(b, 0) == len(b) {
			continue
		}
		rec, err := p.parseLine(b)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		recs = append(recs, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("after line %d: %w", ln, err)
	}
	return recs, nil
}

// buildBatches deals records out in batches of size batch, round-robin over conns
// senders. Sender c uses agent_id agentPrefix-c and numbers its records 1, 2, 3 ...
// in the order it sends them, so every record has a distinct (agent_id, seq).
func buildBatches(recs []*shiplogv1.Record, batch, conns int, agentPrefix string) [][]*shiplogv1.PushRequest {
	out := make([][]*shiplogv1.PushRequest, conns)
	seq := make([]uint64, conns)
	for i, b := 0, 0; i < len(recs); i, b = i+batch, b+1 {
		end := min(i+batch, len(recs))
		c := b % conns
		part := recs[i:end:end]
		for _, r := range part {
			seq[c]++
			r.Seq = seq[c]
		}
		out[c] = append(out[c], &shiplogv1.PushRequest{
			AgentId: fmt.Sprintf("%s-%d", agentPrefix, c),
			Records: part,
		})
	}
	return out
}

// expectation is FILE.expect.json written by gen_logs.py.
type expectation struct {
	N         int     `json:"n"`
	RawBytes  int64   `json:"raw_bytes"`
	FirstTime string  `json:"first_time"`
	SpanHours float64 `json:"span_hours"`
	ABuild    struct {
		BuildID string `json:"build_id"`
		Count   int    `json:"count"`
	} `json:"a_build"`
	DistinctHosts int `json:"distinct_hosts"`
	BRareWord     struct {
		Word  string `json:"word"`
		Count int    `json:"count"`
	} `json:"b_rare_word"`
	CLevelError struct {
		Count int `json:"count"`
	} `json:"c_level_error"`
	DErrorsPerMinute struct {
		Buckets int `json:"buckets"`
		Sum     int `json:"sum"`
	} `json:"d_errors_per_minute"`
	EVanishedHost struct {
		Host         string `json:"host"`
		HostLines    int    `json:"host_lines"`
		ExpectedRows int    `json:"expected_rows"`
		LastTime     string `json:"last_time"`
	} `json:"e_vanished_host"`
}

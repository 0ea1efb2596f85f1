// Package logql parses the subset of Grafana Loki's query language (LogQL)
// that shiplog answers on its Loki read API, translates its stream selectors
// and line filters into shiplog's own query string (so the store's indexes
// are used), and evaluates the rest (parsers, label filters, unwrap and the
// metric functions) over the records that query returns.
//
// It is written from Loki's public LogQL documentation; nothing of Loki's
// (AGPL) code is used. Anything outside the subset is refused with an error
// naming what is not supported.
package logql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnsupported wraps errors about valid LogQL outside shiplog's subset;
// ErrSyntax errors about text that is not LogQL.
var (
	ErrSyntax      = errors.New("parse error")
	ErrUnsupported = errors.New("not supported")
)

func syntaxf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, a...))
}

func unsupportedf(format string, a ...any) error {
	return fmt.Errorf("%w by shiplog's LogQL subset: %s", ErrUnsupported, fmt.Sprintf(format, a...))
}

// MaxQueryLen bounds a query's length.
const MaxQueryLen = 16 << 10

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tDuration // inside [ ]
	tOp       // punctuation and operators
)

type token struct {
	kind tokKind
	text string // identifier, operator, number text; a string's decoded value
	pos  int
}

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of query"
	case tString:
		return strconv.Quote(t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

// operators, longest first.
var operators = []string{"|=", "|~", "!=", "!~", "=~", "==", ">=", "<=", "{", "}", "(", ")", "[", "]", ",", "|", "=", ">", "<", "+", "-", "*", "/", "%", "^"}

func lex(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
			continue
		case c == '"' || c == '`':
			v, n, err := lexString(s[i:])
			if err != nil {
				return nil, syntaxf("at %d: %v", i, err)
			}
			out = append(out, token{tString, v, i})
			i += n
			continue
		case c == '[' && len(out) > 0:
			// A range: [5m].
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return nil, syntaxf("at %d: unclosed [", i)
			}
			out = append(out, token{tDuration, strings.TrimSpace(s[i+1 : i+j]), i})
			i += j + 1
			continue
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && (isIdentStart(s[j]) || s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			out = append(out, token{tIdent, s[i:j], i})
			i = j
			continue
		case c >= '0' && c <= '9' || c == '.':
			j := i + 1
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				isIdentStart(s[j])) {
				j++
			}
			out = append(out, token{tNumber, s[i:j], i})
			i = j
			continue
		}
		matched := false
		for _, op := range operators {
			if strings.HasPrefix(s[i:], op) {
				out = append(out, token{tOp, op, i})
				i += len(op)
				matched = true
				break
			}
		}
		if !matched {
			return nil, syntaxf("at %d: unexpected character %q", i, c)
		}
	}
	return append(out, token{tEOF, "", len(s)}), nil
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

// lexString reads a "Go-escaped" or `raw` string at the start of s.
func lexString(s string) (string, int, error) {
	q := s[0]
	if q == '`' {
		j := strings.IndexByte(s[1:], '`')
		if j < 0 {
			return "", 0, errors.New("unterminated string")
		}
		return s[1 : 1+j], j + 2, nil
	}
	for j := 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			v, err := strconv.Unquote(s[:j+1])
			if err != nil {
				return "", 0, fmt.Errorf("bad string %s: %v", s[:j+1], err)
			}
			return v, j + 1, nil
		}
	}
	return "", 0, errors.New("unterminated string")
}

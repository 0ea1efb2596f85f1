package ingest

// A hand-written decoder for the contract's JSON forms of a record and of a
// Push batch, and a reader of JSON lines. It is strict JSON (RFC 8259) and
// lenient about the record's shape, as log shippers need:
//
//   - time: an RFC 3339 string ("2026-01-01T12:00:00Z", an optional fraction
//     of 1 to 9 digits, "Z" or a ±hh:mm offset; "t" and "z" also), or a number
//     of Unix time whose unit follows from its size: seconds below 1e11 (a
//     fraction allowed), milliseconds below 1e14, microseconds below 1e17,
//     nanoseconds from there. An empty string is no time. A time of exactly
//     the epoch is kept as 1 ns after it, so that it is not mistaken for none.
//   - service, host, build_id, deploy_id, trace_id, span_id, message: strings;
//     "msg" stands in for a missing "message"; lowerCamel spellings (buildId,
//     deployId, traceId, spanId, agentId) are accepted as protojson does.
//   - level: a string or a number (bunyan's 30), normalised by model.ParseLevel.
//   - attributes: an object; string values as they are, other scalars as
//     their JSON text (1.50 stays "1.50", true is "true"), objects and arrays
//     as their compact JSON text, null values left out.
//   - seq: a non-negative integer, as a number or a decimal string. id: ignored.
//   - any other key with a scalar value becomes an attribute, as Fluent Bit
//     and Vector send them; other keys with object or array values are
//     ignored. An explicit "attributes" entry wins over such a key.
//
// Everywhere: null is the same as a missing key, a repeated key's last value
// wins, invalid UTF-8 in a string is an error (\u escapes of lone surrogates
// become U+FFFD, as encoding/json does), and so is anything after the value.
// Errors are *JSONError, wrapping ErrInvalid, with the byte offset.
//
// Strings are copied out of the input, so its buffer may be reused: one
// allocation per record holds all of its message, trace and span ids and
// attribute values, while labels, levels and attribute keys are interned.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/shiplog/shiplog/model"
)

// BatchExtras are the parts of a Push batch that are not records. The
// Batch DecodeBatchJSON returns carries them too, as toBatch fills them.
type BatchExtras struct {
	Closing bool       // the agent is shutting down cleanly after this batch
	Dropped uint64     // records the agent has dropped so far
	Run     *model.Run // the command run reported (start or end); nil when none
}

// JSONError is a problem in JSON input, with where it was found. It wraps ErrInvalid.
type JSONError struct {
	Line   int // 1-based line of JSON-lines input; 0 for a single document
	Offset int // byte offset into the document (or the line)
	Msg    string
}

func (e *JSONError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%v: line %d, byte %d: %s", ErrInvalid, e.Line, e.Offset, e.Msg)
	}
	return fmt.Sprintf("%v: byte %d: %s", ErrInvalid, e.Offset, e.Msg)
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *JSONError) Unwrap() error { return ErrInvalid }

// DecodeBatchJSON decodes a Push batch, {"agent_id", "defaults", "records",
// "closing", "dropped", "run"}, with the semantics of the gRPC Push: defaults
// fill the fields a record leaves empty (service, host, build_id, deploy_id,
// level, trace_id, span_id, time), attributes are merged with the record's
// winning, and an unknown level is an error naming the record. Any other
// top-level key is an error, as is a run without a build_id.
func DecodeBatchJSON(data []byte) (model.Batch, BatchExtras, error) {
	d := getJSONDecoder(data)
	defer putJSONDecoder(d)
	b, x, err := d.batch()
	if err != nil {
		return model.Batch{}, BatchExtras{}, err
	}
	return b, x, nil
}

// DecodeRecordJSON decodes one record, filling what it leaves empty from
// defaults (which may be nil; its Attrs sorted by key) as DecodeBatchJSON does.
func DecodeRecordJSON(data []byte, defaults *model.Record) (model.Record, error) {
	d := getJSONDecoder(data)
	defer putJSONDecoder(d)
	return d.document(defaults)
}

// DefaultMaxJSONLine is the longest line a JSONLReader takes by default.
const DefaultMaxJSONLine = 1 << 20

// JSONLReader reads records from JSON lines: one record a line, in the form
// DecodeRecordJSON takes. Blank lines are skipped.
type JSONLReader struct {
	br       *bufio.Reader
	d        *jsonDecoder
	defaults *model.Record
	max      int
	line     int
	acc      []byte
	err      error // sticky: the reader's error after the last line
}

// NewJSONLReader reads lines of at most maxLine bytes (DefaultMaxJSONLine
// when <= 0) from r, filling records from defaults (which may be nil).
func NewJSONLReader(r io.Reader, defaults *model.Record, maxLine int) *JSONLReader {
	if maxLine <= 0 {
		maxLine = DefaultMaxJSONLine
	}
	return &JSONLReader{br: bufio.NewReaderSize(r, min(maxLine+2, 64<<10)), d: newJSONDecoder(), defaults: defaults, max: maxLine}
}

// Next returns the next record and its 1-based line number. An error wrapping
// ErrInvalid (a *JSONError) is about that line alone: call Next again for the
// lines after it. At the end Next returns io.EOF; any other error comes from
// the underlying reader and ends the stream.
func (j *JSONLReader) Next() (model.Record, int, error) {
	for {
		if j.err != nil {
			return model.Record{}, j.line, j.err
		}
		line, tooLong := j.readLine()
		if line == nil && !tooLong {
			continue // j.err is set
		}
		j.line++
		if tooLong {
			return model.Record{}, j.line, &JSONError{Line: j.line, Offset: j.max, Msg: fmt.Sprintf("line is longer than %d bytes", j.max)}
		}
		if j.line == 1 {
			line = trimBOM(line)
		}
		if blankLine(line) {
			continue
		}
		j.d.data, j.d.pos = line, 0
		rec, err := j.d.document(j.defaults)
		if err != nil {
			var je *JSONError
			if errors.As(err, &je) {
				je.Line = j.line
			}
			return model.Record{}, j.line, err
		}
		return rec, j.line, nil
	}
}

// readLine returns the next line without its line end; nil (with j.err set)
// at the end of input. A line over the limit is read to its end and dropped.
func (j *JSONLReader) readLine() (line []byte, tooLong bool) {
	j.acc = j.acc[:0]
	n := 0
	for {
		frag, err := j.br.ReadSlice('\n')
		n += len(frag)
		if err == bufio.ErrBufferFull {
			if n > j.max+2 {
				tooLong, j.acc = true, j.acc[:0]
			} else {
				j.acc = append(j.acc, frag...)
			}
			continue
		}
		if err != nil {
			j.err = err
			if err != io.EOF || n == 0 {
				return nil, false
			}
		}
		if tooLong {
			return nil, true
		}
		if len(j.acc) > 0 {
			line = append(j.acc, frag...)
		} else {
			line = frag
		}
		line = trimEOL(line)
		if len(line) > j.max {
			return nil, true
		}
		return line, false
	}
}

func trimEOL(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

func trimBOM(b []byte) []byte {
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		return b[3:]
	}
	return b
}

func blankLine(b []byte) bool {
	for _, c := range b {
		if !jsonSpace(c) {
			return false
		}
	}
	return true
}

// The decoder.

const (
	jsonMaxDepth     = 1000 // nesting of objects and arrays
	jsonMaxInterned  = 4096 // distinct interned strings a decoder keeps
	jsonMaxInternLen = 256  // longer strings are not interned
)

// Where the decoder is, for error messages.
const (
	inJSONDocument = -1
	inJSONDefaults = -2
)

type jsonDecoder struct {
	data   []byte
	pos    int
	rec    int               // the record's index in a batch, or inDocument / inDefaults
	buf    []byte            // the current record's string content: its arena
	tmp    []byte            // unescaped keys and label values
	attrs  []jsonAttr        // the current record's attributes
	gen    uint32            // the record's "attributes" seen so far; the last one counts
	names  map[string]string // interned labels, levels and attribute keys
	recent [509]string       // a cache of names
}

// attrEnt is an attribute whose value is buf[a:b].
type jsonAttr struct {
	key  string
	a, b int
	prio uint8  // a higher one wins: prioExtra < prioAttr
	gen  uint32 // of prioAttr: which "attributes" of the record it came from
}

const (
	prioExtra = iota // an unknown top-level key
	prioAttr         // an entry of "attributes"
)

var jsonDecoderPool = sync.Pool{New: func() any { return newJSONDecoder() }}

func newJSONDecoder() *jsonDecoder {
	return &jsonDecoder{names: make(map[string]string, 64)}
}

func getJSONDecoder(data []byte) *jsonDecoder {
	d := jsonDecoderPool.Get().(*jsonDecoder)
	d.data, d.pos, d.rec = data, 0, inJSONDocument
	return d
}

func putJSONDecoder(d *jsonDecoder) {
	d.data = nil
	if cap(d.buf) > 1<<20 || cap(d.tmp) > 1<<20 || cap(d.attrs) > 4096 {
		return // do not pin a huge one
	}
	jsonDecoderPool.Put(d)
}

// intern returns b as a string, shared with earlier equal ones. A small
// direct-mapped cache in front of the map saves most of its hashing.
func (d *jsonDecoder) intern(b []byte) string {
	n := len(b)
	if n == 0 {
		return ""
	}
	slot := &d.recent[(uint(n)*0x9E3779B1^uint(b[0])<<3^uint(b[n-1])<<7^uint(b[n/2])<<11)%uint(len(d.recent))]
	if *slot == string(b) {
		return *slot
	}
	s, ok := d.names[string(b)]
	if !ok {
		s = string(b)
		if n <= jsonMaxInternLen && len(d.names) < jsonMaxInterned {
			d.names[s] = s
		}
	}
	*slot = s
	return s
}

func (d *jsonDecoder) errAt(off int, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	switch {
	case d.rec >= 0:
		msg = fmt.Sprintf("record %d: %s", d.rec, msg)
	case d.rec == inJSONDefaults:
		msg = "defaults: " + msg
	}
	return &JSONError{Offset: off, Msg: msg}
}

// errHere reports what was found at d.pos instead of what was wanted.
func (d *jsonDecoder) errHere(want string) error {
	if d.pos >= len(d.data) {
		return d.errAt(d.pos, "unexpected end of input, want %s", want)
	}
	c := d.data[d.pos]
	if c < 0x20 || c >= 0x7f {
		return d.errAt(d.pos, "unexpected byte 0x%02x, want %s", c, want)
	}
	return d.errAt(d.pos, "unexpected %q, want %s", c, want)
}

func jsonSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *jsonDecoder) ws() {
	for d.pos < len(d.data) && jsonSpace(d.data[d.pos]) {
		d.pos++
	}
}

// peek skips white space and returns the next byte (0 at the end).
func (d *jsonDecoder) peek() byte {
	d.ws()
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// end checks that only white space is left.
func (d *jsonDecoder) end() error {
	d.ws()
	if d.pos < len(d.data) {
		return d.errAt(d.pos, "unexpected data after the JSON value")
	}
	return nil
}

// literal consumes one of true, false and null.
func (d *jsonDecoder) literal(lit string) error {
	end := d.pos + len(lit)
	if end > len(d.data) || string(d.data[d.pos:end]) != lit {
		return d.errHere("a JSON value")
	}
	d.pos += len(lit)
	return nil
}

// null consumes a null if one is next.
func (d *jsonDecoder) null() (bool, error) {
	if d.peek() != 'n' {
		return false, nil
	}
	return true, d.literal("null")
}

// Objects: a loop of
//
//	for more, err := d.objStart(); more; more, err = d.objNext() { key, err := d.key() ... }
//
// with err checked after the loop.

// objStart consumes '{' and reports whether a key follows.
func (d *jsonDecoder) objStart(depth int) (bool, error) {
	if d.peek() != '{' {
		return false, d.errHere("an object")
	}
	if depth > jsonMaxDepth {
		return false, d.errAt(d.pos, "nested more than %d deep", jsonMaxDepth)
	}
	d.pos++
	if d.peek() == '}' {
		d.pos++
		return false, nil
	}
	return true, nil
}

// objNext consumes ',' or '}' after a member and reports whether a key follows.
func (d *jsonDecoder) objNext() (bool, error) {
	switch d.peek() {
	case ',':
		d.pos++
		return true, nil
	case '}':
		d.pos++
		return false, nil
	}
	return false, d.errHere("',' or '}'")
}

// key reads a member's key and its ':'. The bytes are valid until the next
// string is read.
func (d *jsonDecoder) key() ([]byte, int, error) {
	if d.peek() != '"' {
		return nil, d.pos, d.errHere("a string key")
	}
	off := d.pos
	k, err := d.rawStr()
	if err != nil {
		return nil, off, err
	}
	if d.peek() != ':' {
		return nil, off, d.errHere("':'")
	}
	d.pos++
	d.ws()
	return k, off, nil
}

// arrStart consumes '[' and reports whether a value follows.
func (d *jsonDecoder) arrStart(depth int) (bool, error) {
	if d.peek() != '[' {
		return false, d.errHere("an array")
	}
	if depth > jsonMaxDepth {
		return false, d.errAt(d.pos, "nested more than %d deep", jsonMaxDepth)
	}
	d.pos++
	if d.peek() == ']' {
		d.pos++
		return false, nil
	}
	return true, nil
}

func (d *jsonDecoder) arrNext() (bool, error) {
	switch d.peek() {
	case ',':
		d.pos++
		return true, nil
	case ']':
		d.pos++
		return false, nil
	}
	return false, d.errHere("',' or ']'")
}

// Strings.

// plain marks the bytes a string holds as they are.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// lsb has the lowest bit of every byte set. For a word w, the high bit of a
// byte of w-lsb*c (0 < c < 0x80) is set where that byte is below c (and
// maybe elsewhere, after a borrow from such a byte, or where it is >= 0x80):
// so the test never misses a special byte, and at worst sends plain ones
// to the byte loop.
const swarLSB = 0x0101010101010101

// scanStr scans the string at d.pos (its opening quote): its content is
// data[start:end], esc tells whether it holds escapes (not yet checked), and
// d.pos moves past the closing quote. UTF-8 is checked here.
func (d *jsonDecoder) scanStr() (start, end int, esc bool, err error) {
	data := d.data
	i := d.pos + 1
	start = i
	for {
		// Eight bytes at a time while none is special, then one at a time.
		for i+8 <= len(data) {
			w := binary.LittleEndian.Uint64(data[i:])
			if ((w-swarLSB*0x20)|((w^(swarLSB*'"'))-swarLSB)|((w^(swarLSB*'\\'))-swarLSB)|w)&(swarLSB*0x80) != 0 {
				break
			}
			i += 8
		}
		for i < len(data) && jsonPlain[data[i]] {
			i++
		}
		if i >= len(data) {
			return 0, 0, false, d.errAt(d.pos, "unterminated string")
		}
		switch c := data[i]; {
		case c == '"':
			d.pos = i + 1
			return start, i, esc, nil
		case c == '\\':
			esc = true
			i += 2
		case c < 0x20:
			return 0, 0, false, d.errAt(i, "control character 0x%02x in a string (escape it)", c)
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				return 0, 0, false, d.errAt(i, "string is not valid UTF-8")
			}
			i += size
		}
	}
}

// str appends the string at d.pos, unescaped, to dst.
func (d *jsonDecoder) str(dst []byte) ([]byte, error) {
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return dst, d.errHere("a string")
	}
	start, end, esc, err := d.scanStr()
	if err != nil {
		return dst, err
	}
	if !esc {
		return append(dst, d.data[start:end]...), nil
	}
	return d.unescape(dst, start, end)
}

// rawStr returns the string at d.pos, unescaped: a slice of the input, or of
// d.tmp when it has escapes.
func (d *jsonDecoder) rawStr() ([]byte, error) {
	start, end, esc, err := d.scanStr()
	if err != nil {
		return nil, err
	}
	if !esc {
		return d.data[start:end], nil
	}
	d.tmp, err = d.unescape(d.tmp[:0], start, end)
	return d.tmp, err
}

func (d *jsonDecoder) unescape(dst []byte, i, end int) ([]byte, error) {
	data := d.data
	for i < end {
		j := i
		for j < end && data[j] != '\\' {
			j++
		}
		dst = append(dst, data[i:j]...)
		if j == end {
			break
		}
		i = j
		switch data[i+1] {
		case '"', '\\', '/':
			dst = append(dst, data[i+1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := jsonHex4(data[i+2 : end])
			if !ok {
				return dst, d.errAt(i, "invalid \\u escape in a string")
			}
			i += 6
			if utf16.IsSurrogate(r) {
				// A pair makes one rune; anything else is U+FFFD, as in encoding/json.
				if r2, ok := jsonHex4(data[min(i+2, end):end]); ok && data[i] == '\\' && data[i+1] == 'u' {
					if c := utf16.DecodeRune(r, r2); c != utf8.RuneError {
						r, i = c, i+6
					} else {
						r = utf8.RuneError
					}
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default:
			return dst, d.errAt(i, "invalid escape \\%c in a string", data[i+1])
		}
		i += 2
	}
	return dst, nil
}

func jsonHex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// Numbers and other values.

// number scans a JSON number at d.pos and returns its text.
func (d *jsonDecoder) number() ([]byte, error) {
	data, i := d.data, d.pos
	start := i
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && '1' <= data[i] && data[i] <= '9':
		for i < len(data) && jsonDigit(data[i]) {
			i++
		}
	default:
		d.pos = i
		return nil, d.errHere("a digit")
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || !jsonDigit(data[i]) {
			d.pos = i
			return nil, d.errHere("a digit after '.'")
		}
		for i < len(data) && jsonDigit(data[i]) {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !jsonDigit(data[i]) {
			d.pos = i
			return nil, d.errHere("a digit in the exponent")
		}
		for i < len(data) && jsonDigit(data[i]) {
			i++
		}
	}
	d.pos = i
	return data[start:i], nil
}

func jsonDigit(c byte) bool { return '0' <= c && c <= '9' }

// value checks the JSON value at d.pos and, with keep, appends its compact
// text to dst (strings keep their escapes as written).
func (d *jsonDecoder) value(dst []byte, keep bool, depth int) ([]byte, error) {
	switch d.peek() {
	case '"':
		start, end, esc, err := d.scanStr()
		if err != nil {
			return dst, err
		}
		if esc { // check the escapes
			if d.tmp, err = d.unescape(d.tmp[:0], start, end); err != nil {
				return dst, err
			}
		}
		if keep {
			dst = append(dst, d.data[start-1:end+1]...)
		}
		return dst, nil
	case '{':
		more, err := d.objStart(depth)
		if keep {
			dst = append(dst, '{')
		}
		for n := 0; more; more, err = d.objNext() {
			if keep && n > 0 {
				dst = append(dst, ',')
			}
			n++
			if d.peek() != '"' {
				return dst, d.errHere("a string key")
			}
			if dst, err = d.value(dst, keep, depth+1); err != nil {
				return dst, err
			}
			if d.peek() != ':' {
				return dst, d.errHere("':'")
			}
			d.pos++
			if keep {
				dst = append(dst, ':')
			}
			if dst, err = d.value(dst, keep, depth+1); err != nil {
				return dst, err
			}
		}
		if keep && err == nil {
			dst = append(dst, '}')
		}
		return dst, err
	case '[':
		more, err := d.arrStart(depth)
		if keep {
			dst = append(dst, '[')
		}
		for n := 0; more; more, err = d.arrNext() {
			if keep && n > 0 {
				dst = append(dst, ',')
			}
			n++
			if dst, err = d.value(dst, keep, depth+1); err != nil {
				return dst, err
			}
		}
		if keep && err == nil {
			dst = append(dst, ']')
		}
		return dst, err
	case 't', 'f', 'n':
		start := d.pos
		var lit string
		switch d.data[d.pos] {
		case 't':
			lit = "true"
		case 'f':
			lit = "false"
		default:
			lit = "null"
		}
		if err := d.literal(lit); err != nil {
			return dst, err
		}
		if keep {
			dst = append(dst, d.data[start:d.pos]...)
		}
		return dst, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		num, err := d.number()
		if err != nil {
			return dst, err
		}
		if keep {
			dst = append(dst, num...)
		}
		return dst, nil
	}
	return dst, d.errHere("a JSON value")
}

// The record.

type strSpan struct{ a, b int } // buf[a:b]; a < 0 when absent

var noSpan = strSpan{-1, -1}

// rawRecord is a record being decoded: strings in the arena are spans of it.
type rawJSONRecord struct {
	time                         int64
	service, host, build, deploy string
	level                        string
	levelOff                     int
	msg, alias, trace, spanID    strSpan
	seq                          uint64
}

// document decodes a whole input holding one record.
func (d *jsonDecoder) document(defaults *model.Record) (model.Record, error) {
	d.rec = inJSONDocument
	var lv defaultLevel
	if defaults != nil {
		lv = defaultLevel{level: defaults.Level, ok: true}
	}
	rec, err := d.record(defaults, lv)
	if err != nil {
		return rec, err
	}
	return rec, d.end()
}

// levelDefault is the defaults' level: ok false for an unknown spelling,
// which is an error only for a record that needs it.
type defaultLevel struct {
	level model.Level
	ok    bool
	raw   string
	off   int
}

// record decodes the object at d.pos.
func (d *jsonDecoder) record(def *model.Record, deflv defaultLevel) (model.Record, error) {
	var rr rawJSONRecord
	rr.msg, rr.alias, rr.trace, rr.spanID = noSpan, noSpan, noSpan, noSpan
	d.buf = d.buf[:0]
	d.attrs = d.attrs[:0]
	d.gen = 0
	more, err := d.objStart(1)
	for ; more; more, err = d.objNext() {
		if err = d.member(&rr); err != nil {
			return model.Record{}, err
		}
	}
	if err != nil {
		return model.Record{}, err
	}
	return d.finish(&rr, def, deflv)
}

// member decodes one key and value of a record.
func (d *jsonDecoder) member(rr *rawJSONRecord) error {
	k, _, err := d.key()
	if err != nil {
		return err
	}
	switch string(k) {
	case "message":
		return d.spanField(&rr.msg, "message")
	case "msg":
		return d.spanField(&rr.alias, "msg")
	case "service":
		return d.label(&rr.service, "service")
	case "host":
		return d.label(&rr.host, "host")
	case "build_id", "buildId":
		return d.label(&rr.build, "build_id")
	case "deploy_id", "deployId":
		return d.label(&rr.deploy, "deploy_id")
	case "trace_id", "traceId":
		return d.spanField(&rr.trace, "trace_id")
	case "span_id", "spanId":
		return d.spanField(&rr.spanID, "span_id")
	case "level":
		return d.levelField(rr)
	case "time":
		return d.timeField(rr, "time")
	case "attributes":
		return d.attributes()
	case "seq":
		if null, err := d.null(); null || err != nil {
			rr.seq = 0
			return err
		}
		rr.seq, err = d.uint("seq")
		return err
	case "id":
		_, err := d.value(nil, false, 2)
		return err
	}
	// Any other key: a scalar becomes an attribute.
	switch c := d.peek(); c {
	case '{', '[':
		_, err := d.value(nil, false, 2)
		return err
	case 'n':
		return d.literal("null")
	default:
		key := d.intern(k)
		a := len(d.buf)
		if c == '"' {
			d.buf, err = d.str(d.buf)
		} else {
			d.buf, err = d.value(d.buf, true, 2)
		}
		if err != nil {
			return err
		}
		d.attrs = append(d.attrs, jsonAttr{key: key, a: a, b: len(d.buf), prio: prioExtra})
		return nil
	}
}

// spanField reads a string (or null) into the arena.
func (d *jsonDecoder) spanField(s *strSpan, name string) error {
	switch d.peek() {
	case '"':
		a := len(d.buf)
		var err error
		d.buf, err = d.str(d.buf)
		*s = strSpan{a, len(d.buf)}
		return err
	case 'n':
		*s = noSpan
		return d.literal("null")
	}
	return d.wantString(name)
}

func (d *jsonDecoder) wantString(name string) error {
	if d.pos < len(d.data) && strings.IndexByte("{[tf-0123456789", d.data[d.pos]) >= 0 {
		return d.errAt(d.pos, "%s: want a string", name)
	}
	return d.errHere("a JSON value")
}

// label reads an interned string (or null).
func (d *jsonDecoder) label(s *string, name string) error {
	switch d.peek() {
	case '"':
		b, err := d.rawStr()
		if err == nil {
			*s = d.intern(b)
		}
		return err
	case 'n':
		*s = ""
		return d.literal("null")
	}
	return d.wantString(name)
}

func (d *jsonDecoder) levelField(rr *rawJSONRecord) error {
	rr.levelOff = d.pos
	c := d.peek()
	if c == '-' || jsonDigit(c) {
		n, err := d.number()
		if err == nil {
			rr.level = d.intern(n)
		}
		return err
	}
	return d.label(&rr.level, "level")
}

func (d *jsonDecoder) timeField(rr *rawJSONRecord, name string) error {
	off := d.pos
	var err error
	switch c := d.peek(); {
	case c == '"':
		var b []byte
		if b, err = d.rawStr(); err != nil {
			return err
		}
		if len(b) == 0 {
			rr.time = 0
			return nil
		}
		var msg string
		if rr.time, msg = parseRFC3339(b); msg != "" {
			return d.errAt(off, "%s %.40q: %s", name, b, msg)
		}
	case c == '-' || jsonDigit(c):
		var b []byte
		if b, err = d.number(); err != nil {
			return err
		}
		var msg string
		if rr.time, msg = parseUnixTime(b); msg != "" {
			return d.errAt(off, "%s %s: %s", name, b, msg)
		}
	case c == 'n':
		rr.time = 0
		return d.literal("null")
	default:
		if c == '{' || c == '[' || c == 't' || c == 'f' {
			return d.errAt(off, "%s: want an RFC 3339 string or a number", name)
		}
		return d.errHere("a JSON value")
	}
	if rr.time == 0 {
		rr.time = 1 // the epoch itself, not "missing"; ingest rejects it as too old
	}
	return nil
}

// attributes reads the "attributes" object, replacing an earlier one.
func (d *jsonDecoder) attributes() error {
	d.gen++ // a repeated "attributes" replaces the earlier ones
	if null, err := d.null(); null || err != nil {
		return err
	}
	more, err := d.objStart(2)
	for ; more; more, err = d.objNext() {
		k, _, err := d.key()
		if err != nil {
			return err
		}
		key := d.intern(k)
		a := len(d.buf)
		switch d.peek() {
		case 'n':
			if err := d.literal("null"); err != nil {
				return err
			}
			continue
		case '"':
			d.buf, err = d.str(d.buf)
		default:
			d.buf, err = d.value(d.buf, true, 3)
		}
		if err != nil {
			return err
		}
		d.attrs = append(d.attrs, jsonAttr{key: key, a: a, b: len(d.buf), prio: prioAttr, gen: d.gen})
	}
	return err
}

// uint reads a non-negative integer, as a number or a decimal string.
func (d *jsonDecoder) uint(name string) (uint64, error) {
	off := d.pos
	var b []byte
	var err error
	switch c := d.peek(); {
	case c == '"':
		b, err = d.rawStr()
	case c == '-' || jsonDigit(c):
		b, err = d.number()
	default:
		return 0, d.errAt(off, "%s: want a non-negative integer", name)
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range b {
		if !jsonDigit(c) || v > math.MaxUint64/10 || v*10 > math.MaxUint64-uint64(c-'0') {
			return 0, d.errAt(off, "%s %.40q: want a non-negative integer below 2^64", name, b)
		}
		v = v*10 + uint64(c-'0')
	}
	if len(b) == 0 {
		return 0, d.errAt(off, "%s: want a non-negative integer, not an empty string", name)
	}
	return v, nil
}

// finish turns the raw record into a model.Record: one string for the
// arena, levels parsed, attributes sorted and merged, defaults applied.
func (d *jsonDecoder) finish(rr *rawJSONRecord, def *model.Record, deflv defaultLevel) (model.Record, error) {
	arena := string(d.buf)
	at := func(s strSpan) string {
		if s.a < 0 {
			return ""
		}
		return arena[s.a:s.b]
	}
	r := model.Record{
		Time:    rr.time,
		Labels:  model.Labels{Service: rr.service, Host: rr.host, BuildID: rr.build, DeployID: rr.deploy},
		TraceID: at(rr.trace),
		SpanID:  at(rr.spanID),
		Seq:     rr.seq,
	}
	if rr.msg.a >= 0 {
		r.Message = at(rr.msg)
	} else {
		r.Message = at(rr.alias)
	}
	if rr.level != "" {
		lv, ok := model.ParseLevel(rr.level)
		if !ok {
			return r, d.errAt(rr.levelOff, "unknown level %q (want trace, debug, info, warn, error or fatal)", rr.level)
		}
		r.Level = lv
	}
	if d.gen > 1 { // forget the entries of an earlier "attributes"
		d.attrs = slices.DeleteFunc(d.attrs, func(e jsonAttr) bool { return e.prio == prioAttr && e.gen != d.gen })
	}
	if n := len(d.attrs); n > 0 {
		ents := d.attrs
		if n > 1 {
			slices.SortStableFunc(ents, func(x, y jsonAttr) int {
				if c := strings.Compare(x.key, y.key); c != 0 {
					return c
				}
				return int(x.prio) - int(y.prio)
			})
		}
		out := make([]model.Attr, 0, n)
		for i, e := range ents {
			if i+1 < n && ents[i+1].key == e.key {
				continue // the last of equal keys wins
			}
			out = append(out, model.Attr{Key: e.key, Value: arena[e.a:e.b]})
		}
		r.Attrs = slices.Clip(out)
	}
	if def != nil {
		if err := applyJSONDefaults(&r, def, deflv); err != nil {
			return r, d.errAt(deflv.off, "%s", err)
		}
	}
	return r, nil
}

// applyDefaults fills what r leaves empty from def.
func applyJSONDefaults(r, def *model.Record, deflv defaultLevel) error {
	if r.Time == 0 {
		r.Time = def.Time
	}
	r.Service = orDefault(r.Service, def.Service)
	r.Host = orDefault(r.Host, def.Host)
	r.BuildID = orDefault(r.BuildID, def.BuildID)
	r.DeployID = orDefault(r.DeployID, def.DeployID)
	r.TraceID = orDefault(r.TraceID, def.TraceID)
	r.SpanID = orDefault(r.SpanID, def.SpanID)
	if r.Level == model.LevelUnset {
		if !deflv.ok {
			return fmt.Errorf("unknown level %q (want trace, debug, info, warn, error or fatal)", deflv.raw)
		}
		r.Level = deflv.level
	}
	if len(def.Attrs) > 0 {
		r.Attrs = mergeDefaultAttrs(r.Attrs, def.Attrs)
	}
	return nil
}

func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// mergeAttrs merges two sorted lists into a new one; own wins.
func mergeDefaultAttrs(own, def []model.Attr) []model.Attr {
	out := make([]model.Attr, 0, len(own)+len(def))
	i, j := 0, 0
	for i < len(own) && j < len(def) {
		switch c := strings.Compare(own[i].Key, def[j].Key); {
		case c < 0:
			out = append(out, own[i])
			i++
		case c > 0:
			out = append(out, def[j])
			j++
		default:
			out = append(out, own[i])
			i, j = i+1, j+1
		}
	}
	out = append(out, own[i:]...)
	out = append(out, def[j:]...)
	return slices.Clip(out)
}

// The batch.

func (d *jsonDecoder) batch() (model.Batch, BatchExtras, error) {
	var (
		b     model.Batch
		x     BatchExtras
		def   *model.Record
		deflv = defaultLevel{ok: true}
	)
	more, err := d.objStart(0)
	for ; more; more, err = d.objNext() {
		k, koff, err := d.key()
		if err != nil {
			return b, x, err
		}
		switch string(k) {
		case "agent_id", "agentId":
			err = d.label(&b.AgentID, "agent_id")
		case "defaults":
			def, deflv, err = d.defaults()
		case "records":
			b.Records, err = d.records(b.Records[:0])
		case "closing":
			x.Closing, err = d.boolean("closing")
		case "dropped":
			var null bool
			if null, err = d.null(); !null && err == nil {
				x.Dropped, err = d.uint("dropped")
			} else if null {
				x.Dropped = 0
			}
		case "run":
			x.Run, err = d.run()
		default:
			err = d.errAt(koff, "unknown field %.40q (want agent_id, defaults, records, closing, dropped or run)", k)
		}
		if err != nil {
			return b, x, err
		}
	}
	if err != nil {
		return b, x, err
	}
	if err := d.end(); err != nil {
		return b, x, err
	}
	b.Closing, b.Dropped, b.Run = x.Closing, x.Dropped, x.Run
	if def != nil {
		for i := range b.Records {
			if err := applyJSONDefaults(&b.Records[i], def, deflv); err != nil {
				d.rec = i
				return b, x, d.errAt(deflv.off, "%s", err)
			}
		}
	}
	return b, x, nil
}

// run decodes a RunReport (nil for null).
func (d *jsonDecoder) run() (*model.Run, error) {
	if null, err := d.null(); null || err != nil {
		return nil, err
	}
	off := d.pos
	if d.peek() != '{' {
		return nil, d.errAt(off, "run: want an object")
	}
	var r model.Run
	more, err := d.objStart(1)
	for ; more; more, err = d.objNext() {
		k, koff, err := d.key()
		if err != nil {
			return nil, err
		}
		switch string(k) {
		case "build_id", "buildId":
			err = d.label(&r.BuildID, "run: build_id")
		case "deploy_id", "deployId":
			err = d.label(&r.DeployID, "run: deploy_id")
		case "service":
			err = d.label(&r.Service, "run: service")
		case "host":
			err = d.label(&r.Host, "run: host")
		case "command":
			r.Command, err = d.strings("run: command")
		case "start", "end":
			t := &r.Start
			if k[0] == 'e' {
				t = &r.End
			}
			var rr rawJSONRecord
			if err = d.timeField(&rr, "run: "+string(k)); err == nil {
				*t = rr.time
			}
		case "finished":
			r.Finished, err = d.boolean("run: finished")
		case "exit_code", "exitCode":
			voff := d.pos
			var b []byte
			if null, nerr := d.null(); null || nerr != nil {
				r.ExitCode, err = 0, nerr
				break
			}
			if c := d.peek(); c == '"' {
				b, err = d.rawStr()
			} else if c == '-' || jsonDigit(c) {
				b, err = d.number()
			} else {
				err = d.errAt(voff, "run: exit_code: want an integer")
			}
			if err == nil {
				n, perr := strconv.ParseInt(string(b), 10, 32)
				if perr != nil {
					err = d.errAt(voff, "run: exit_code %.20q: want a 32-bit integer", b)
				}
				r.ExitCode = int(n)
			}
		default:
			err = d.errAt(koff, "run: unknown field %.40q", k)
		}
		if err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	if r.BuildID == "" {
		return nil, d.errAt(off, "run: build_id is required")
	}
	return &r, nil
}

// boolean reads true, false or null (false).
func (d *jsonDecoder) boolean(name string) (bool, error) {
	switch d.peek() {
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return false, d.literal("null")
	}
	return false, d.errAt(d.pos, "%s: want true or false", name)
}

// strings reads an array of strings (nil for null).
func (d *jsonDecoder) strings(name string) ([]string, error) {
	if null, err := d.null(); null || err != nil {
		return nil, err
	}
	var out []string
	more, err := d.arrStart(2)
	for ; more; more, err = d.arrNext() {
		if d.peek() != '"' {
			return nil, d.wantString(name)
		}
		b, err := d.rawStr()
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	return out, err
}

// defaults decodes the batch's defaults record (nil for null), keeping an
// unknown level for the records that need it to report.
func (d *jsonDecoder) defaults() (*model.Record, defaultLevel, error) {
	lv := defaultLevel{ok: true}
	if null, err := d.null(); null || err != nil {
		return nil, lv, err
	}
	d.rec = inJSONDefaults
	defer func() { d.rec = inJSONDocument }()
	var rr rawJSONRecord
	rr.msg, rr.alias, rr.trace, rr.spanID = noSpan, noSpan, noSpan, noSpan
	d.buf = d.buf[:0]
	d.attrs = d.attrs[:0]
	d.gen = 0
	more, err := d.objStart(1)
	for ; more; more, err = d.objNext() {
		if err = d.member(&rr); err != nil {
			return nil, lv, err
		}
	}
	if err != nil {
		return nil, lv, err
	}
	raw, off := rr.level, rr.levelOff
	rr.level = "" // parsed here, not by finish
	rec, err := d.finish(&rr, nil, lv)
	if err != nil {
		return nil, lv, err
	}
	lv.raw, lv.off = raw, off
	rec.Level, lv.ok = model.ParseLevel(raw)
	lv.level = rec.Level
	return &rec, lv, nil
}

func (d *jsonDecoder) records(out []model.Record) ([]model.Record, error) {
	if null, err := d.null(); null || err != nil {
		return nil, err
	}
	defer func() { d.rec = inJSONDocument }()
	more, err := d.arrStart(1)
	for ; more; more, err = d.arrNext() {
		d.rec = len(out)
		if d.peek() == 'n' {
			return out, d.errAt(d.pos, "null instead of a record")
		}
		if out == nil {
			out = make([]model.Record, 0, min(len(d.data)/256+1, 1024))
		}
		rec, err := d.record(nil, defaultLevel{ok: true})
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
	return out, err
}

// Times.

// parseRFC3339 parses an RFC 3339 time into Unix nanoseconds; msg says what
// is wrong when it does not parse.
func parseRFC3339(b []byte) (ns int64, msg string) {
	const want = "want an RFC 3339 time such as 2026-01-01T12:00:00.123Z"
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't') || b[13] != ':' || b[16] != ':' {
		return 0, want
	}
	year, ok1 := atoiDigits(b[0:4])
	month, ok2 := atoiDigits(b[5:7])
	day, ok3 := atoiDigits(b[8:10])
	hour, ok4 := atoiDigits(b[11:13])
	minute, ok5 := atoiDigits(b[14:16])
	sec, ok6 := atoiDigits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return 0, want
	}
	i := 19
	var frac int64
	if b[i] == '.' {
		i++
		n := 0
		for i < len(b) && jsonDigit(b[i]) {
			if n == 9 {
				return 0, "more than 9 digits of fraction"
			}
			frac = frac*10 + int64(b[i]-'0')
			i, n = i+1, n+1
		}
		if n == 0 {
			return 0, want
		}
		for ; n < 9; n++ {
			frac *= 10
		}
	}
	var off int64
	switch {
	case i < len(b) && (b[i] == 'Z' || b[i] == 'z'):
		i++
	case i < len(b) && (b[i] == '+' || b[i] == '-'):
		if len(b)-i != 6 || b[i+3] != ':' {
			return 0, want
		}
		oh, ok1 := atoiDigits(b[i+1 : i+3])
		om, ok2 := atoiDigits(b[i+4 : i+6])
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return 0, "offset out of range"
		}
		off = int64(oh*3600 + om*60)
		if b[i] == '-' {
			off = -off
		}
		i += 6
	default:
		return 0, want + " (with Z or an offset)"
	}
	if i != len(b) {
		return 0, want
	}
	switch {
	case month < 1 || month > 12:
		return 0, "month out of range"
	case day < 1 || day > monthDays(month, year):
		return 0, "day out of range"
	case hour > 23:
		return 0, "hour out of range"
	case minute > 59:
		return 0, "minute out of range"
	case sec > 59:
		return 0, "second out of range"
	}
	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec) - off
	return unixNanoOf(secs, frac)
}

// unixNano is secs and ns as Unix nanoseconds, if they fit.
func unixNanoOf(secs, ns int64) (int64, string) {
	const lo, hi = math.MinInt64 / 1_000_000_000, math.MaxInt64 / 1_000_000_000
	if secs < lo || secs > hi || secs == hi && ns > math.MaxInt64%1_000_000_000 {
		return 0, "out of range (years 1678 to 2262)"
	}
	return secs*1e9 + ns, ""
}

func atoiDigits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if !jsonDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func monthDays(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is the number of days from 1970-01-01 to the date (proleptic
// Gregorian, year >= 0), after Howard Hinnant's algorithm.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// parseUnixTime reads a number of seconds, milliseconds, microseconds or
// nanoseconds since the epoch, telling them apart by size.
func parseUnixTime(b []byte) (int64, string) {
	if b[0] == '-' {
		return 0, "a Unix time must not be negative"
	}
	if slices.ContainsFunc(b, func(c byte) bool { return c == 'e' || c == 'E' }) {
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil || f >= 1e19 {
			return 0, "out of range"
		}
		var ns float64
		switch {
		case f < 1e11:
			ns = f * 1e9
		case f < 1e14:
			ns = f * 1e6
		case f < 1e17:
			ns = f * 1e3
		default:
			ns = f
		}
		if ns >= math.MaxInt64 {
			return 0, "out of range (years 1678 to 2262)"
		}
		return int64(ns), ""
	}
	var whole uint64
	i := 0
	for ; i < len(b) && jsonDigit(b[i]); i++ {
		if whole > (math.MaxUint64-9)/10 {
			return 0, "out of range"
		}
		whole = whole*10 + uint64(b[i]-'0')
	}
	var unit, fracDigits uint64
	switch {
	case whole < 1e11:
		unit, fracDigits = 1e9, 9
	case whole < 1e14:
		unit, fracDigits = 1e6, 6
	case whole < 1e17:
		unit, fracDigits = 1e3, 3
	default:
		unit, fracDigits = 1, 0
	}
	var frac, n uint64
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && n < fracDigits; i, n = i+1, n+1 {
			frac = frac*10 + uint64(b[i]-'0')
		}
	}
	for ; n < fracDigits; n++ {
		frac *= 10
	}
	if whole > (math.MaxInt64-frac)/unit {
		return 0, "out of range (years 1678 to 2262)"
	}
	return int64(whole*unit + frac), ""
}

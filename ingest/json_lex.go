package ingest

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/shiplog/shiplog/model"
)

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
	rec    int                          // the record's index in a batch, or inJSONDocument / inJSONDefaults
	buf    []byte                       // the current record's string content: its arena
	tmp    []byte                       // unescaped keys and label values
	attrs  []jsonAttr                   // the current record's attributes
	gen    uint32                       // the record's "attributes" seen so far; the last one counts
	names  map[string]string            // interned labels, levels and attribute keys
	recent [1 << internBits]internEntry // a cache of names (intern)
	times  timeCache                    // the date and hour of the last time parsed
	levels [8]levelSpelling             // levels read, by their length
	// The records' strings and attribute lists are carved from blocks
	// shared by the records decoded one after another (keep, keepAttrs):
	// a block is only appended to, never reused.
	block     []byte
	attrBlock []model.Attr
}

// levelSpelling is a level's spelling and what it means.
type levelSpelling struct {
	s  string
	lv model.Level
}

// Block sizes: records are a few hundred bytes; a longer one, or a longer
// list, gets an allocation of its own.
const (
	jsonBlockBytes = 16 << 10
	jsonBlockAttrs = 256
)

// keep returns a copy of b that stays valid for good (from the block).
func (d *jsonDecoder) keep(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > cap(d.block)-len(d.block) {
		if len(b) > jsonBlockBytes/4 {
			return string(b)
		}
		d.block = make([]byte, 0, jsonBlockBytes)
	}
	start := len(d.block)
	d.block = append(d.block, b...)
	return unsafe.String(&d.block[start], len(b)) // never written again
}

// keepAttrs returns an empty list with room for n attributes, from the
// block: its capacity is n, so an append past n moves it elsewhere.
func (d *jsonDecoder) keepAttrs(n int) []model.Attr {
	if n > cap(d.attrBlock)-len(d.attrBlock) {
		if n > jsonBlockAttrs/4 {
			return make([]model.Attr, 0, n)
		}
		d.attrBlock = make([]model.Attr, 0, jsonBlockAttrs)
	}
	start := len(d.attrBlock)
	d.attrBlock = d.attrBlock[:start+n]
	return d.attrBlock[start : start : start+n]
}

// jsonAttr is an attribute whose value is buf[a:b].
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
	if len(d.names) >= jsonMaxInterned {
		// Full: start afresh, so that the names of today's senders are
		// interned rather than those the decoder met first.
		clear(d.names)
		d.recent = [len(d.recent)]internEntry{}
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
	k0, k1 := internKey(b)
	e := &d.recent[(k0^bits.RotateLeft64(k1, 29)^uint64(n))*0x9E3779B97F4A7C15>>(64-internBits)]
	if len(e.s) == n && e.k0 == k0 && e.k1 == k1 && (n <= 16 || e.s == string(b)) {
		return e.s
	}
	s, ok := d.names[string(b)]
	if !ok {
		s = string(b)
		if n <= jsonMaxInternLen && len(d.names) < jsonMaxInterned {
			d.names[s] = s
		}
	}
	*e = internEntry{k0, k1, s}
	return s
}

// internBits is log2 of the size of the cache of interned names.
const internBits = 10

// internEntry is a cached name and its key (internKey).
type internEntry struct {
	k0, k1 uint64
	s      string
}

// internKey is b's first and last eight bytes (b's bytes, zero-padded,
// when shorter): for a name of up to 16 bytes, the key and the length are
// the name, so a hit in the cache reads no string. (The cache's slot was
// a hash of three bytes and the length before, which put gen_logs.py's
// "build-000123" and "deploy-ec24a3c5" in a few dozen slots: most lookups
// went to the map.)
func internKey(b []byte) (k0, k1 uint64) {
	if n := len(b); n >= 8 {
		return binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[n-8:])
	}
	for i := len(b) - 1; i >= 0; i-- {
		k0 = k0<<8 | uint64(b[i])
	}
	return k0, 0
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

// jsonSpace reports whether c is JSON white space: one test for most bytes.
func jsonSpace(c byte) bool {
	return c <= ' ' && (c == ' ' || c == '\t' || c == '\n' || c == '\r')
}

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
	if i := off + 1; i+17 <= len(d.data) {
		// shortStr inlined: the usual key and ':' right after it.
		base := unsafe.Pointer(unsafe.SliceData(d.data))
		m, j := swarSpecial(binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(base, i))[:])), i
		if m == 0 {
			m, j = swarSpecial(binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(base, i+8))[:])), i+8
		}
		if j += bits.TrailingZeros64(m) >> 3; m != 0 && d.data[j] == '"' && d.data[j+1] == ':' {
			d.pos = j + 2
			d.ws()
			return d.data[i:j], off, nil
		}
	}
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

// The first eight bytes of the usual keys with their quotes, and what
// follows them up to the ':', as little-endian words (TestKnownKeyWords).
const (
	kwLevel      = 0x3a226c6576656c22 // "level":
	kwMessage    = 0x6567617373656d22 // "message
	kwService    = 0x6563697672657322 // "service
	kwBuildI     = 0x695f646c69756222 // "build_i
	kwDeploy     = 0x5f796f6c70656422 // "deploy_
	kwTraceI     = 0x695f656361727422 // "trace_i
	kwSpanID     = 0x64695f6e61707322 // "span_id
	kwAttribu    = 0x7562697274746122 // "attribu
	kwTime       = 0x3a22656d697422   // "time":
	kwHost       = 0x3a2274736f6822   // "host":
	kwMsg        = 0x3a2267736d22     // "msg":
	kwQuoteColon = 0x3a22             // ":
	kwDColon     = 0x3a2264           // d":
	kwIDColon    = 0x3a226469         // id":
	kwTesColon   = 0x3a22736574       // tes":
)

// knownKey reads, in two word loads, a key of a record's own field spelled
// the usual way (no escapes, ':' right after it) and the white space after
// its ':'. Otherwise it reports false and reads nothing.
func (d *jsonDecoder) knownKey() (recField, bool) {
	i := d.pos
	if i+16 > len(d.data) {
		return fieldOther, false
	}
	base := unsafe.Pointer(unsafe.SliceData(d.data))
	w := binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(base, i))[:])
	w2 := binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(base, i+8))[:])
	// The field, the key's length with its quotes and ':', and the end of
	// the key in the second word (its mask), when the first word says which.
	var f recField
	var n int
	var tail, mask uint64
	switch w {
	case kwLevel:
		f, n = fieldLevel, 8
	case kwMessage:
		f, n, tail, mask = fieldMessage, 10, kwQuoteColon, 0xffff
	case kwService:
		f, n, tail, mask = fieldService, 10, kwQuoteColon, 0xffff
	case kwSpanID:
		f, n, tail, mask = fieldSpan, 10, kwQuoteColon, 0xffff
	case kwBuildI:
		f, n, tail, mask = fieldBuild, 11, kwDColon, 0xffffff
	case kwTraceI:
		f, n, tail, mask = fieldTrace, 11, kwDColon, 0xffffff
	case kwDeploy:
		f, n, tail, mask = fieldDeploy, 12, kwIDColon, 0xffffffff
	case kwAttribu:
		f, n, tail, mask = fieldAttributes, 13, kwTesColon, 0xffffffffff
	default:
		switch {
		case w&0xffffffffffffff == kwTime:
			f, n = fieldTime, 7
		case w&0xffffffffffffff == kwHost:
			f, n = fieldHost, 7
		case w&0xffffffffffff == kwMsg:
			f, n = fieldMsg, 6
		default:
			return fieldOther, false
		}
	}
	if w2&mask != tail {
		return fieldOther, false
	}
	d.pos = i + n
	d.ws()
	return f, true
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
// byte of w-lsb*c (0 < c < 0x80) is set where that byte is below c, or is
// >= 0x80, or anywhere above such a byte (after a borrow from it): the
// lowest byte so marked is the first one that is below c or >= 0x80.
const swarLSB = 0x0101010101010101

// swarSpecial marks (with its high bit) the first byte of w, in little-endian
// order, that a string cannot hold as it is: a quote, a backslash, a control
// character, or a byte >= 0x80 (UTF-8 to check). Bytes above it may be marked
// too; zero when there is none.
func swarSpecial(w uint64) uint64 {
	return ((w - swarLSB*0x20) | ((w ^ (swarLSB * '"')) - swarLSB) | ((w ^ (swarLSB * '\\')) - swarLSB) | w) & (swarLSB * 0x80)
}

// scanStr scans the string at d.pos (its opening quote): its content is
// data[start:end], esc tells whether it holds escapes (not yet checked), and
// d.pos moves past the closing quote. UTF-8 is checked here.
func (d *jsonDecoder) scanStr() (start, end int, esc bool, err error) {
	data := d.data
	base := unsafe.Pointer(unsafe.SliceData(data))
	i := d.pos + 1
	start = i
	for {
		// Eight bytes at a time, straight to the first special byte of a
		// word; one at a time in the last few bytes.
		for i+8 <= len(data) {
			// data[i:i+8] without the bounds checks (the loop's test is one).
			if m := swarSpecial(binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(base, i))[:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto special
			}
			i += 8
		}
		for i < len(data) && jsonPlain[data[i]] {
			i++
		}
		if i >= len(data) {
			return 0, 0, false, d.errAt(d.pos, "unterminated string")
		}
	special:
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

// shortStr reads the usual key or label at d.pos (its opening quote): up to
// 15 plain bytes (no escape, control or non-ASCII byte) and the closing
// quote, with at least one more byte of input after it, as the word loads
// need. When the string is not such, it reports false and d.pos is where it was.
func (d *jsonDecoder) shortStr() ([]byte, bool) {
	i := d.pos + 1
	if i+17 > len(d.data) {
		return nil, false
	}
	base := unsafe.Pointer(unsafe.SliceData(d.data))
	m, j := swarSpecial(binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(base, i))[:])), i
	if m == 0 {
		m, j = swarSpecial(binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(base, i+8))[:])), i+8
	}
	if j += bits.TrailingZeros64(m) >> 3; m == 0 || d.data[j] != '"' {
		return nil, false
	}
	d.pos = j + 1
	return d.data[i:j], true
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

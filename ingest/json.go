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
// Strings are copied out of the input, so its buffer may be reused: a
// record's message, trace and span ids and attribute values lie together in
// a block shared with the records decoded before and after it (never
// written again), as do attribute lists, while labels, levels and attribute
// keys are interned.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
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
	checked  bool  // the defaults' strings are valid UTF-8 (TextChecked)
}

// jsonlBufSize is the read buffer of a JSONLReader: a longer line is
// gathered from several reads.
const jsonlBufSize = 64 << 10

// jsonlBufs holds read buffers of jsonlBufSize for reuse (Close).
var jsonlBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, jsonlBufSize) }}

// NewJSONLReader reads lines of at most maxLine bytes (DefaultMaxJSONLine
// when <= 0) from r, filling records from defaults (which may be nil).
// Close lends its buffers to the next reader.
func NewJSONLReader(r io.Reader, defaults *model.Record, maxLine int) *JSONLReader {
	if maxLine <= 0 {
		maxLine = DefaultMaxJSONLine
	}
	var br *bufio.Reader
	if size := min(maxLine+2, jsonlBufSize); size == jsonlBufSize {
		br = jsonlBufs.Get().(*bufio.Reader)
		br.Reset(r)
	} else {
		br = bufio.NewReaderSize(r, size)
	}
	return &JSONLReader{br: br, d: getJSONDecoder(nil), defaults: defaults, max: maxLine,
		checked: defaults == nil || validText(defaults)}
}

// Close returns the reader's buffers for reuse; the records it returned stay
// valid (their strings were copied out of them). The reader must not be used
// after.
func (j *JSONLReader) Close() {
	if j.d == nil {
		return
	}
	if j.br.Size() == jsonlBufSize {
		j.br.Reset(nil)
		jsonlBufs.Put(j.br)
	}
	putJSONDecoder(j.d)
	j.br, j.d, j.acc = nil, nil, nil
	j.err = errors.New("ingest: JSONLReader used after Close")
}

// TextChecked reports whether every string of the records Next returns is
// valid UTF-8 (model.Batch.TextChecked): the decoder checks the lines' strings,
// and this the defaults' once.
func (j *JSONLReader) TextChecked() bool { return j.checked }

// validText reports whether every string of r is valid UTF-8.
func validText(r *model.Record) bool {
	for _, s := range []string{r.Service, r.Host, r.BuildID, r.DeployID, r.TraceID, r.SpanID, r.Message} {
		if !utf8.ValidString(s) {
			return false
		}
	}
	for _, a := range r.Attrs {
		if !utf8.ValidString(a.Key) || !utf8.ValidString(a.Value) {
			return false
		}
	}
	return true
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

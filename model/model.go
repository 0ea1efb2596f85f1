// Package model holds the few types that shiplog's packages share: a log record,
// its labels, an append batch and a time range. It imports nothing of shiplog's.
package model

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Level is a record's severity. The zero value is Unset, which stores as Info.
type Level uint8

// Levels, in increasing severity.
const (
	LevelUnset Level = iota
	LevelTrace
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
	LevelFatal
	NumLevels
)

var levelNames = [NumLevels]string{"", "trace", "debug", "info", "warn", "error", "fatal"}

// String returns the canonical lower-case name ("info" for LevelUnset).
func (l Level) String() string {
	if l == LevelUnset || l >= NumLevels {
		return "info"
	}
	return levelNames[l]
}

// ParseLevel normalises the level spellings found in the wild (WARNING, ERR, E,
// Critical, panic, 30 for bunyan's info ...), read without terminal escape
// sequences (a coloured "\x1b[31mERROR\x1b[0m" is error). ok is false for an
// unknown spelling.
func ParseLevel(s string) (Level, bool) {
	s = StripANSI(s)
	if s == "" {
		return LevelUnset, true
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "trace", "trc", "t", "finest", "10":
		return LevelTrace, true
	case "debug", "dbg", "d", "fine", "verbose", "v", "20":
		return LevelDebug, true
	case "info", "inf", "i", "information", "informational", "notice", "n", "30":
		return LevelInfo, true
	case "warn", "warning", "wrn", "w", "40":
		return LevelWarn, true
	case "error", "err", "e", "eror", "severe", "50":
		return LevelError, true
	case "fatal", "ftl", "f", "critical", "crit", "c", "alert", "emerg", "emergency", "panic", "60":
		return LevelFatal, true
	}
	return LevelUnset, false
}

// Labels identify a stream: every record with the same labels belongs to one stream.
type Labels struct {
	Service  string
	Host     string
	BuildID  string
	DeployID string
}

// Attr is one attribute of a record.
type Attr struct {
	Key   string
	Value string
}

// Record is one log line.
type Record struct {
	ID   ID    // assigned by the store
	Time int64 // Unix nanoseconds
	Labels
	Level   Level
	Message string
	TraceID string
	SpanID  string
	Attrs   []Attr // sorted by key, keys unique
	Seq     uint64 // per-agent sequence number; 0 when unnumbered
}

// Attr returns the value of attribute key and whether it is present.
func (r *Record) Attr(key string) (string, bool) {
	for _, a := range r.Attrs {
		if a.Key == key {
			return a.Value, true
		}
	}
	return "", false
}

// ErrUnavailable marks a failure the client should retry, at this or another
// server (in cluster mode: the replicated log could not ack in time).
var ErrUnavailable = errors.New("unavailable")

// Batch is what one Push or Write delivers.
type Batch struct {
	AgentID string
	// Sender is the name of the token the batch came with ("" without
	// authentication). An agent id stays with the sender that first used it.
	Sender  string
	Records []Record
	Closing bool   // the agent is shutting down cleanly after this batch
	Dropped uint64 // total records the agent has dropped so far (it reports it)
	Run     *Run   // a command's start or end, from shiplog run
	// TextChecked: every string of Records is known to be valid UTF-8 (the
	// decoder that made them checked it), so the Ingester does not check
	// it again.
	TextChecked bool
}

// Run is one run of a command under shiplog run, for a build (and maybe a deploy).
type Run struct {
	BuildID  string
	DeployID string
	Service  string
	Host     string
	Command  []string
	Start    int64 // Unix ns
	End      int64 // Unix ns; 0 while running
	Finished bool
	ExitCode int
}

// AppendResult answers one Batch.
type AppendResult struct {
	Accepted   int
	Duplicates int
	Expired    int    // older than the store keeps (retention): not stored
	AckedSeq   uint64 // highest seq of the agent held durably
}

// TimeRange is the half-open interval [Start, End) in Unix nanoseconds.
type TimeRange struct {
	Start, End int64
}

// Contains reports whether t lies in the range.
func (r TimeRange) Contains(t int64) bool { return t >= r.Start && t < r.End }

// Overlaps reports whether [min, max] meets the range.
func (r TimeRange) Overlaps(min, max int64) bool { return max >= r.Start && min < r.End }

// Day returns the day partition (days since the Unix epoch, UTC) of t.
func Day(t int64) uint32 {
	if t < 0 {
		return 0
	}
	return uint32(t / int64(24*time.Hour))
}

// DayStart returns the first nanosecond of day d.
func DayStart(d uint32) int64 { return int64(d) * int64(24*time.Hour) }

// ID is a record's stable identity: its stream, day partition and line number
// within that stream and day.
type ID struct {
	Stream uint64
	Day    uint32
	Line   uint32
}

// ErrBadID is returned for an id string that does not parse.
var ErrBadID = errors.New("bad record id")

// String renders the id as 32 lower-case hex digits.
func (id ID) String() string { return string(id.AppendText(make([]byte, 0, 32))) }

// AppendText appends the id as String renders it.
func (id ID) AppendText(dst []byte) []byte {
	var b [16]byte
	putU64(b[0:8], id.Stream)
	putU32(b[8:12], id.Day)
	putU32(b[12:16], id.Line)
	return hex.AppendEncode(dst, b[:])
}

// IsZero reports whether the id is unset.
func (id ID) IsZero() bool { return id == ID{} }

// Compare orders ids by stream, day and line.
func (id ID) Compare(o ID) int {
	switch {
	case id.Stream != o.Stream:
		return cmpU64(id.Stream, o.Stream)
	case id.Day != o.Day:
		return cmpU64(uint64(id.Day), uint64(o.Day))
	default:
		return cmpU64(uint64(id.Line), uint64(o.Line))
	}
}

// ParseID parses the form String produces.
func ParseID(s string) (ID, error) {
	if len(s) != 32 {
		return ID{}, fmt.Errorf("%w %q: want 32 hex digits", ErrBadID, s)
	}
	var b [16]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("%w %q: %v", ErrBadID, s, err)
	}
	return ID{Stream: getU64(b[0:8]), Day: getU32(b[8:12]), Line: getU32(b[12:16])}, nil
}

func cmpU64(a, b uint64) int {
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}

func putU64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func putU32(b []byte, v uint32) {
	for i := 3; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func getU64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

func getU32(b []byte) uint32 {
	var v uint32
	for _, c := range b[:4] {
		v = v<<8 | uint32(c)
	}
	return v
}

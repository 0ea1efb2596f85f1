package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/shiplog/shiplog/model"
)

// codecBatches are batches that exercise every field of the codec.
func codecBatches() map[string]model.Batch {
	rec := func(i int) model.Record {
		return model.Record{
			ID:      model.ID{Stream: 0xdeadbeef00000000 + uint64(i), Day: 20500 + uint32(i), Line: uint32(i) * 7},
			Time:    1_770_000_000_000_000_000 + int64(i)*1_000_003,
			Labels:  model.Labels{Service: "api", Host: "web-1", BuildID: "b-42", DeployID: "d-7"},
			Level:   model.Level(i % int(model.NumLevels)),
			Message: "GET /v1/things/" + string(rune('a'+i%26)) + " 200 é 世界",
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			SpanID:  "00f067aa0ba902b7",
			Attrs:   []model.Attr{{Key: "env", Value: "prod"}, {Key: "status", Value: "200"}, {Key: "z", Value: ""}},
			Seq:     uint64(i) + 1,
		}
	}
	many := make([]model.Record, 300)
	for i := range many {
		many[i] = rec(i)
	}
	return map[string]model.Batch{
		"empty":           {Records: []model.Record{}},
		"agent only":      {AgentID: "agent-1", Records: []model.Record{}},
		"one record":      {AgentID: "agent-1", Records: []model.Record{rec(1)}},
		"zero record":     {Records: []model.Record{{}}},
		"many records":    {AgentID: "agent-ü", Records: many, Dropped: 12345},
		"closing":         {AgentID: "a", Closing: true, Dropped: math.MaxUint64, Records: []model.Record{rec(2), rec(3)}},
		"negative times":  {AgentID: "a", Records: []model.Record{{Time: -1, Seq: math.MaxUint64, ID: model.ID{Stream: math.MaxUint64, Day: math.MaxUint32, Line: math.MaxUint32}}}},
		"max level":       {Records: []model.Record{{Level: model.NumLevels - 1, Time: math.MaxInt64}, {Level: model.LevelUnset, Time: math.MinInt64}}},
		"run started":     {AgentID: "run-1", Run: &model.Run{BuildID: "b-1", Service: "ci", Host: "runner", Command: []string{"make", "test", ""}, Start: 1_770_000_000_000_000_000}, Records: []model.Record{}},
		"run finished":    {AgentID: "run-1", Closing: true, Run: &model.Run{BuildID: "b-1", DeployID: "d-1", Service: "ci", Host: "runner", Command: []string{"sh", "-c", "exit 3"}, Start: 1, End: 2, Finished: true, ExitCode: -3}, Records: []model.Record{rec(4)}},
		"run exit limits": {AgentID: "run-2", Run: &model.Run{BuildID: "b", ExitCode: math.MinInt32, End: -5}, Records: []model.Record{}},
		"run max exit":    {AgentID: "run-2", Run: &model.Run{BuildID: "b", ExitCode: math.MaxInt32, Finished: true}, Records: []model.Record{rec(5)}},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for name, b := range codecBatches() {
		t.Run(name, func(t *testing.T) {
			enc := encodeBatch(nil, &b)
			got, err := decodeBatch(enc)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, b) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
			}
			// encodeBatch appends: a prefix in dst is kept as it is.
			prefix := []byte("prefix")
			enc2 := encodeBatch(append([]byte(nil), prefix...), &b)
			if !bytes.Equal(enc2[:len(prefix)], prefix) || !bytes.Equal(enc2[len(prefix):], enc) {
				t.Fatalf("encodeBatch with a prefix in dst: %q", enc2)
			}
		})
	}
}

// TestCodecRejects checks that every truncation of a valid message, trailing
// bytes, another version and out-of-range values are errors, never panics or
// partly decoded batches.
func TestCodecRejects(t *testing.T) {
	for name, b := range codecBatches() {
		enc := encodeBatch(nil, &b)
		step := 1
		if len(enc) > 4096 {
			step = 97 // every cut of a large message is slow and adds little
		}
		for n := 0; n < len(enc); n += step {
			if _, err := decodeBatch(enc[:n]); !errors.Is(err, errCorrupt) {
				t.Fatalf("%s: %d of %d bytes: err %v, want errCorrupt", name, n, len(enc), err)
			}
		}
		if _, err := decodeBatch(append(enc, 0)); !errors.Is(err, errCorrupt) {
			t.Fatalf("%s: a trailing byte: err %v, want errCorrupt", name, err)
		}
		bad := append([]byte(nil), enc...)
		bad[0] = codecVersion + 1
		if _, err := decodeBatch(bad); !errors.Is(err, errCorrupt) {
			t.Fatalf("%s: version %d: err %v, want errCorrupt", name, bad[0], err)
		}
	}
	for name, b := range map[string]model.Batch{
		"level": {Records: []model.Record{{Level: model.NumLevels}}},
	} {
		if _, err := decodeBatch(encodeBatch(nil, &b)); !errors.Is(err, errCorrupt) {
			t.Errorf("%s out of range: err %v, want errCorrupt", name, err)
		}
	}
	// An exit code beyond int32, a day or line beyond uint32, and a record
	// count far beyond the bytes left: written by hand.
	e := encoder{}
	e.b = append(e.b, codecVersion)
	e.s("a")
	e.b = append(e.b, 2) // has run
	e.uv(0)
	for range 4 {
		e.s("")
	}
	e.uv(0)
	e.sv(0)
	e.sv(0)
	e.b = append(e.b, 1)
	e.sv(math.MaxInt32 + 1)
	e.uv(0)
	if _, err := decodeBatch(e.b); !errors.Is(err, errCorrupt) {
		t.Errorf("exit code beyond int32: err %v, want errCorrupt", err)
	}
	e = encoder{}
	e.b = append(e.b, codecVersion)
	e.s("")
	e.b = append(e.b, 0)
	e.uv(0)
	e.uv(1 << 40) // records
	if _, err := decodeBatch(e.b); !errors.Is(err, errCorrupt) {
		t.Errorf("a huge record count: err %v, want errCorrupt", err)
	}
	e = encoder{}
	e.b = append(e.b, codecVersion)
	e.s("")
	e.b = append(e.b, 0)
	e.uv(0)
	e.uv(1)
	e.sv(1)
	e.b = append(e.b, 0, 0, 0, 0, 0, 0, 0, 0)
	e.uv(math.MaxUint32 + 1) // day
	e.uv(0)
	for range 4 {
		e.s("")
	}
	e.b = append(e.b, 0)
	for range 3 {
		e.s("")
	}
	e.uv(0)
	e.uv(0)
	if _, err := decodeBatch(e.b); !errors.Is(err, errCorrupt) {
		t.Errorf("a day beyond uint32: err %v, want errCorrupt", err)
	}
}

// FuzzDecodeBatch: decoding never panics, and whatever decodes is a fixed
// point of encode/decode. (Byte-for-byte equality with the input holds only
// for canonical input: see the comment in the body.)
func FuzzDecodeBatch(f *testing.F) {
	for _, b := range codecBatches() {
		if len(b.Records) > 5 {
			b.Records = b.Records[:5] // keep each exec fast
		}
		f.Add(encodeBatch(nil, &b))
	}
	f.Add([]byte{})
	f.Add([]byte{codecVersion})
	f.Add([]byte{codecVersion, 0, 0, 0, 0})
	f.Add([]byte{codecVersion, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBatch(data)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			return
		}
		enc := encodeBatch(nil, &b)
		// The decoder accepts some non-canonical forms (overlong varints,
		// unknown flag bits, a finished byte other than 0 or 1), which
		// re-encode differently; everything else must come back as it was.
		if canonical(data) && !bytes.Equal(enc, data) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", data, enc)
		}
		b2, err := decodeBatch(enc)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if !reflect.DeepEqual(b2, b) {
			t.Fatalf("decode(encode(b)) != b:\n got %+v\nwant %+v", b2, b)
		}
		if enc2 := encodeBatch(nil, &b2); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding is not stable:\n%x\n%x", enc, enc2)
		}
	})
}

// canonical reports whether data, which decodes, is in the one form
// encodeBatch writes: every varint minimal, the flags byte only 0-3, the
// finished byte 0 or 1. It walks the layout as decodeBatch does.
func canonical(data []byte) bool {
	c := canonWalker{b: data, ok: true}
	c.b = c.b[1:] // version
	c.s()
	flags := c.byte1()
	if flags > 3 {
		return false
	}
	c.uv()
	if flags&2 != 0 {
		for range 4 {
			c.s()
		}
		for n := c.uv(); n > 0 && c.ok; n-- {
			c.s()
		}
		c.sv()
		c.sv()
		if fin := c.byte1(); fin > 1 {
			return false
		}
		c.sv()
	}
	for n := c.uv(); n > 0 && c.ok; n-- {
		c.sv()
		c.b = c.b[8:]
		c.uv()
		c.uv()
		for range 4 {
			c.s()
		}
		c.byte1()
		for range 3 {
			c.s()
		}
		c.uv()
		for na := c.uv(); na > 0 && c.ok; na-- {
			c.s()
			c.s()
		}
	}
	return c.ok
}

// canonWalker reads a message that is known to decode and notes any
// overlong varint.
type canonWalker struct {
	b  []byte
	ok bool
}

func (c *canonWalker) uv() uint64 {
	v, n := binary.Uvarint(c.b)
	if n != len(binary.AppendUvarint(nil, v)) {
		c.ok = false
	}
	c.b = c.b[n:]
	return v
}

// sv is uv: a zigzag varint is minimal when its unsigned form is.
func (c *canonWalker) sv() { c.uv() }

func (c *canonWalker) byte1() byte {
	v := c.b[0]
	c.b = c.b[1:]
	return v
}

func (c *canonWalker) s() {
	n := c.uv()
	c.b = c.b[n:]
}

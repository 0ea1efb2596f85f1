package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var b []byte
	b = AppendUvarint(b, math.MaxUint64)
	b = AppendVarint(b, math.MinInt64)
	b = append(b, 7)
	b = binary.BigEndian.AppendUint32(b, 0xdeadbeef)
	b = binary.BigEndian.AppendUint64(b, 1<<63+5)
	b = binary.LittleEndian.AppendUint64(b, 1<<62+9)
	b = AppendString(b, "héllo")
	b = AppendBytes(b, []byte{0, 1})
	b = AppendString(b, "")
	b = AppendUvarint(b, 3)
	b = append(b, "abc"...)
	r := NewReader(b, nil)
	if v := r.Uvarint(); v != math.MaxUint64 {
		t.Fatalf("uvarint %d", v)
	}
	if v := r.Varint(); v != math.MinInt64 {
		t.Fatalf("varint %d", v)
	}
	if v := r.Byte(); v != 7 {
		t.Fatalf("byte %d", v)
	}
	if v := r.Uint32BE(); v != 0xdeadbeef {
		t.Fatalf("u32 %x", v)
	}
	if v := r.Uint64BE(); v != 1<<63+5 {
		t.Fatalf("u64be %x", v)
	}
	if v := r.Uint64LE(); v != 1<<62+9 {
		t.Fatalf("u64le %x", v)
	}
	if v := r.Str(); v != "héllo" {
		t.Fatalf("str %q", v)
	}
	if v := r.Bytes(); string(v) != "\x00\x01" {
		t.Fatalf("bytes %q", v)
	}
	if v := r.StrAlias(); v != "" {
		t.Fatalf("empty %q", v)
	}
	if n := r.Count(1); n != 3 {
		t.Fatalf("count %d", n)
	}
	if v := r.Next(3); string(v) != "abc" {
		t.Fatalf("next %q", v)
	}
	if r.Err() != nil || r.Len() != 0 {
		t.Fatalf("err %v, %d left", r.Err(), r.Len())
	}
}

// TestSticky: the first bad read sets the Reader's own error, and every read
// after it returns zero values.
func TestSticky(t *testing.T) {
	errMine := errors.New("mine")
	cases := map[string]func(r *Reader){
		"uvarint":  func(r *Reader) { r.Uvarint() },
		"byte":     func(r *Reader) { r.Byte() },
		"u32":      func(r *Reader) { r.Uint32BE() },
		"u64be":    func(r *Reader) { r.Uint64BE() },
		"u64le":    func(r *Reader) { r.Uint64LE() },
		"string":   func(r *Reader) { r.Str() },
		"next":     func(r *Reader) { r.Next(1) },
		"count":    func(r *Reader) { r.Count(1) },
		"overflow": func(r *Reader) { *r = NewReader(append(bytes.Repeat([]byte{0xff}, 11), 1, 2, 3), errMine); r.Uvarint() },
		"varint":   func(r *Reader) { *r = NewReader([]byte{0x80}, errMine); r.Varint() },
	}
	for name, read := range cases {
		t.Run(name, func(t *testing.T) {
			r := NewReader(nil, errMine)
			read(&r)
			if r.Err() != errMine {
				t.Fatalf("err %v", r.Err())
			}
			if r.Len() != 0 || r.Uvarint() != 0 || r.Byte() != 0 || r.Str() != "" || r.Err() != errMine {
				t.Fatal("not sticky")
			}
		})
	}
	// A string longer than what is left, and a count too big for it.
	r := NewReader(AppendUvarint(nil, 5), nil)
	if r.Str() != "" || !errors.Is(r.Err(), ErrCorrupt) {
		t.Fatalf("long string: %v", r.Err())
	}
	r = NewReader(append(AppendUvarint(nil, 3), 1, 2, 3, 4, 5), nil)
	if r.Count(2) != 0 || r.Err() == nil {
		t.Fatal("count of 3 two-byte items in 5 bytes")
	}
}

// Uvarint reads what binary.Uvarint reads, on its one- and two-byte fast
// paths and past them, and fails on a value cut short.
func TestUvarintPaths(t *testing.T) {
	vals := []uint64{0, 1, 127, 128, 300, 16383, 16384, 1 << 20, 1<<35 + 7, math.MaxUint64}
	var b []byte
	for _, v := range vals {
		b = AppendUvarint(b, v)
	}
	b = append(b, 0x80, 0x00) // a two-byte zero, as binary.Uvarint reads it
	r := NewReader(b, nil)
	for _, v := range vals {
		if got := r.Uvarint(); got != v || r.Err() != nil {
			t.Fatalf("uvarint %d, want %d (%v)", got, v, r.Err())
		}
	}
	if got := r.Uvarint(); got != 0 || r.Len() != 0 {
		t.Fatalf("two-byte zero: %d, %d bytes left", got, r.Len())
	}
	for _, cut := range [][]byte{{0x80}, {0xff, 0xff}} {
		r := NewReader(cut, nil)
		if r.Uvarint(); r.Err() == nil {
			t.Fatalf("%x read as a whole uvarint", cut)
		}
	}
}

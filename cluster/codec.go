package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/shiplog/shiplog/model"
)

// The batch codec: how one model.Batch travels in a JetStream message. It is
// the replicated log's format, so it is versioned and decoding checks every
// length. Layout (uvarint unless said otherwise):
//
//	version byte (1)
//	agent_id string, flags byte (1: closing, 2: has run), dropped
//	[run: build, deploy, service, host, n, n*command, start, end (zigzag), finished byte, exit code (zigzag)]
//	n records, each: time (zigzag), id (stream u64 LE, day, line), service,
//	  host, build, deploy, level byte, message, trace, span, seq, n attrs,
//	  n*(key, value)
//
// A string is its length then its bytes. Record ids travel too, so that the
// owner can publish stored records (ids set) to live tails on other nodes.
const codecVersion = 1

var errCorrupt = errors.New("cluster: corrupt batch message")

type encoder struct{ b []byte }

func (e *encoder) uv(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) sv(v int64)  { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) s(v string)  { e.uv(uint64(len(v))); e.b = append(e.b, v...) }

// encodeBatch appends b's encoding to dst.
func encodeBatch(dst []byte, b *model.Batch) []byte {
	e := encoder{b: dst}
	e.b = append(e.b, codecVersion)
	e.s(b.AgentID)
	var flags byte
	if b.Closing {
		flags |= 1
	}
	if b.Run != nil {
		flags |= 2
	}
	e.b = append(e.b, flags)
	e.uv(b.Dropped)
	if r := b.Run; r != nil {
		e.s(r.BuildID)
		e.s(r.DeployID)
		e.s(r.Service)
		e.s(r.Host)
		e.uv(uint64(len(r.Command)))
		for _, c := range r.Command {
			e.s(c)
		}
		e.sv(r.Start)
		e.sv(r.End)
		if r.Finished {
			e.b = append(e.b, 1)
		} else {
			e.b = append(e.b, 0)
		}
		e.sv(int64(r.ExitCode))
	}
	e.uv(uint64(len(b.Records)))
	for i := range b.Records {
		encodeRecord(&e, &b.Records[i])
	}
	return e.b
}

func encodeRecord(e *encoder, r *model.Record) {
	e.sv(r.Time)
	e.b = binary.LittleEndian.AppendUint64(e.b, r.ID.Stream)
	e.uv(uint64(r.ID.Day))
	e.uv(uint64(r.ID.Line))
	e.s(r.Service)
	e.s(r.Host)
	e.s(r.BuildID)
	e.s(r.DeployID)
	e.b = append(e.b, byte(r.Level))
	e.s(r.Message)
	e.s(r.TraceID)
	e.s(r.SpanID)
	e.uv(r.Seq)
	e.uv(uint64(len(r.Attrs)))
	for _, a := range r.Attrs {
		e.s(a.Key)
		e.s(a.Value)
	}
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) uv() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) sv() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) s() string {
	n := d.uv()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
}

// count reads a length that must be plausible for the bytes left (each item
// takes at least min bytes), so a corrupt length cannot allocate gigabytes.
func (d *decoder) count(min int) int {
	n := d.uv()
	if n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

// decodeBatch decodes what encodeBatch wrote.
func decodeBatch(buf []byte) (model.Batch, error) {
	var b model.Batch
	d := decoder{b: buf}
	if v := d.byte1(); d.err == nil && v != codecVersion {
		return b, fmt.Errorf("%w: version %d, want %d", errCorrupt, v, codecVersion)
	}
	b.AgentID = d.s()
	flags := d.byte1()
	if flags&^3 != 0 {
		d.fail()
	}
	b.Closing = flags&1 != 0
	b.Dropped = d.uv()
	if flags&2 != 0 {
		r := &model.Run{BuildID: d.s(), DeployID: d.s(), Service: d.s(), Host: d.s()}
		if n := d.count(1); n > 0 {
			r.Command = make([]string, n)
			for i := range r.Command {
				r.Command[i] = d.s()
			}
		}
		r.Start, r.End = d.sv(), d.sv()
		switch d.byte1() {
		case 0:
		case 1:
			r.Finished = true
		default:
			d.fail()
		}
		ec := d.sv()
		if ec < math.MinInt32 || ec > math.MaxInt32 {
			d.fail()
		}
		r.ExitCode = int(ec)
		b.Run = r
	}
	n := d.count(20)
	if d.err != nil {
		return b, d.err
	}
	b.Records = make([]model.Record, n)
	for i := range b.Records {
		r := &b.Records[i]
		r.Time = d.sv()
		if len(d.b) < 8 {
			d.fail()
			break
		}
		r.ID.Stream = binary.LittleEndian.Uint64(d.b)
		d.b = d.b[8:]
		day, line := d.uv(), d.uv()
		if day > math.MaxUint32 || line > math.MaxUint32 {
			d.fail()
		}
		r.ID.Day, r.ID.Line = uint32(day), uint32(line)
		r.Service, r.Host, r.BuildID, r.DeployID = d.s(), d.s(), d.s(), d.s()
		lv := model.Level(d.byte1())
		if lv >= model.NumLevels {
			d.fail()
		}
		r.Level = lv
		r.Message, r.TraceID, r.SpanID = d.s(), d.s(), d.s()
		r.Seq = d.uv()
		if na := d.count(2); na > 0 {
			r.Attrs = make([]model.Attr, na)
			for j := range r.Attrs {
				r.Attrs[j] = model.Attr{Key: d.s(), Value: d.s()}
			}
		}
		if d.err != nil {
			break
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return model.Batch{}, d.err
	}
	return b, nil
}

package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/shiplog/shiplog/internal/wire"
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

func (e *encoder) uv(v uint64) { e.b = wire.AppendUvarint(e.b, v) }
func (e *encoder) sv(v int64)  { e.b = wire.AppendVarint(e.b, v) }
func (e *encoder) s(v string)  { e.b = wire.AppendString(e.b, v) }

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

// decodeBatch decodes what encodeBatch wrote.
func decodeBatch(buf []byte) (model.Batch, error) {
	var b model.Batch
	rd := wire.NewReader(buf, errCorrupt)
	d := &rd
	if v := d.Byte(); d.Err() == nil && v != codecVersion {
		return b, fmt.Errorf("%w: version %d, want %d", errCorrupt, v, codecVersion)
	}
	b.AgentID = d.Str()
	flags := d.Byte()
	if flags&^3 != 0 {
		d.Fail()
	}
	b.Closing = flags&1 != 0
	b.Dropped = d.Uvarint()
	if flags&2 != 0 {
		r := &model.Run{BuildID: d.Str(), DeployID: d.Str(), Service: d.Str(), Host: d.Str()}
		if n := d.Count(1); n > 0 {
			r.Command = make([]string, n)
			for i := range r.Command {
				r.Command[i] = d.Str()
			}
		}
		r.Start, r.End = d.Varint(), d.Varint()
		switch d.Byte() {
		case 0:
		case 1:
			r.Finished = true
		default:
			d.Fail()
		}
		ec := d.Varint()
		if ec < math.MinInt32 || ec > math.MaxInt32 {
			d.Fail()
		}
		r.ExitCode = int(ec)
		b.Run = r
	}
	n := d.Count(20)
	if d.Err() != nil {
		return b, d.Err()
	}
	b.Records = make([]model.Record, n)
	for i := range b.Records {
		r := &b.Records[i]
		r.Time = d.Varint()
		r.ID.Stream = d.Uint64LE()
		day, line := d.Uvarint(), d.Uvarint()
		if day > math.MaxUint32 || line > math.MaxUint32 {
			d.Fail()
		}
		r.ID.Day, r.ID.Line = uint32(day), uint32(line)
		r.Service, r.Host, r.BuildID, r.DeployID = d.Str(), d.Str(), d.Str(), d.Str()
		lv := model.Level(d.Byte())
		if lv >= model.NumLevels {
			d.Fail()
		}
		r.Level = lv
		r.Message, r.TraceID, r.SpanID = d.Str(), d.Str(), d.Str()
		r.Seq = d.Uvarint()
		if na := d.Count(2); na > 0 {
			r.Attrs = make([]model.Attr, na)
			for j := range r.Attrs {
				r.Attrs[j] = model.Attr{Key: d.Str(), Value: d.Str()}
			}
		}
		if d.Err() != nil {
			break
		}
	}
	if d.Err() == nil && d.Len() != 0 {
		d.Fail()
	}
	if d.Err() != nil {
		return model.Batch{}, d.Err()
	}
	return b, nil
}

package ingest

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/shiplog/shiplog/model"
)

type strSpan struct{ a, b int } // buf[a:b]; a < 0 when absent

var noSpan = strSpan{-1, -1}

// rawJSONRecord is a record being decoded: strings in the arena are spans of it.
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

// defaultLevel is the defaults' level: ok false for an unknown spelling,
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

// recField is a record's field that has a key of its own (fieldOther: an
// attribute).
type recField uint8

const (
	fieldOther recField = iota
	fieldMessage
	fieldMsg
	fieldService
	fieldHost
	fieldBuild
	fieldDeploy
	fieldTrace
	fieldSpan
	fieldLevel
	fieldTime
	fieldAttributes
	fieldSeq
	fieldID
)

// fieldOf is the field a key names.
func fieldOf(k []byte) recField {
	switch string(k) {
	case "message":
		return fieldMessage
	case "msg":
		return fieldMsg
	case "service":
		return fieldService
	case "host":
		return fieldHost
	case "build_id", "buildId":
		return fieldBuild
	case "deploy_id", "deployId":
		return fieldDeploy
	case "trace_id", "traceId":
		return fieldTrace
	case "span_id", "spanId":
		return fieldSpan
	case "level":
		return fieldLevel
	case "time":
		return fieldTime
	case "attributes":
		return fieldAttributes
	case "seq":
		return fieldSeq
	case "id":
		return fieldID
	}
	return fieldOther
}

// member decodes one key and value of a record.
func (d *jsonDecoder) member(rr *rawJSONRecord) error {
	f, ok := d.knownKey()
	var k []byte
	if !ok {
		var err error
		if k, _, err = d.key(); err != nil {
			return err
		}
		f = fieldOf(k)
	}
	switch f {
	case fieldMessage:
		return d.spanField(&rr.msg, "message")
	case fieldMsg:
		return d.spanField(&rr.alias, "msg")
	case fieldService:
		return d.label(&rr.service, "service")
	case fieldHost:
		return d.label(&rr.host, "host")
	case fieldBuild:
		return d.label(&rr.build, "build_id")
	case fieldDeploy:
		return d.label(&rr.deploy, "deploy_id")
	case fieldTrace:
		return d.spanField(&rr.trace, "trace_id")
	case fieldSpan:
		return d.spanField(&rr.spanID, "span_id")
	case fieldLevel:
		return d.levelField(rr)
	case fieldTime:
		return d.timeField(rr, "time")
	case fieldAttributes:
		return d.attributes()
	case fieldSeq:
		if null, err := d.null(); null || err != nil {
			rr.seq = 0
			return err
		}
		var err error
		rr.seq, err = d.uint("seq")
		return err
	case fieldID:
		_, err := d.value(nil, false, 2)
		return err
	}
	var err error
	// Any other key becomes an attribute: a string as it is, an object's
	// members as dotted keys (kubernetes.pod), a list, number or boolean as
	// its JSON text.
	switch c := d.peek(); c {
	case '{':
		return d.flatten(k, 2)
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

// flatten reads an object under the key prefix into attributes named
// prefix.member, nested objects further dotted (the arena holds the joined
// keys while they are interned).
func (d *jsonDecoder) flatten(prefix []byte, depth int) error {
	pre := make([]byte, 0, len(prefix)+16)
	pre = append(append(pre, prefix...), '.')
	more, err := d.objStart(depth)
	for ; more; more, err = d.objNext() {
		k, _, err := d.key()
		if err != nil {
			return err
		}
		full := append(pre[:len(pre):len(pre)], k...)
		switch c := d.peek(); c {
		case '{':
			if err := d.flatten(full, depth+1); err != nil {
				return err
			}
			continue
		case 'n':
			if err := d.literal("null"); err != nil {
				return err
			}
			continue
		case '"':
			a := len(d.buf)
			if d.buf, err = d.str(d.buf); err != nil {
				return err
			}
			d.attrs = append(d.attrs, jsonAttr{key: d.intern(full), a: a, b: len(d.buf), prio: prioExtra})
		default:
			a := len(d.buf)
			if d.buf, err = d.value(d.buf, true, depth+1); err != nil {
				return err
			}
			d.attrs = append(d.attrs, jsonAttr{key: d.intern(full), a: a, b: len(d.buf), prio: prioExtra})
		}
	}
	return err
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
		b, ok := d.shortStr()
		var err error
		if !ok {
			b, err = d.rawStr()
		}
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
		if rr.time, msg = d.times.parseRFC3339(b); msg != "" {
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
	arena := d.keep(d.buf)
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
		lv, ok := d.parseLevel(rr.level)
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
		out := d.keepAttrs(n)
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

// parseLevel is model.ParseLevel, remembering the spellings it has read:
// the levels of a batch are a few interned strings.
func (d *jsonDecoder) parseLevel(s string) (model.Level, bool) {
	slot := &d.levels[len(s)%len(d.levels)]
	if slot.s == s && s != "" {
		return slot.lv, true
	}
	lv, ok := model.ParseLevel(s)
	if ok {
		*slot = levelSpelling{s, lv}
	}
	return lv, ok
}

// applyJSONDefaults fills what r leaves empty from def.
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
		if len(r.Attrs) == 0 {
			// A copy of its own: attributes are sorted in place later.
			r.Attrs = slices.Clone(def.Attrs)
		} else {
			r.Attrs = model.MergeAttrs(def.Attrs, r.Attrs)
		}
	}
	return nil
}

func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
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

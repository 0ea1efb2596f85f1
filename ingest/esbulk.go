package ingest

// The Elasticsearch bulk API's body (NDJSON): an action line, then, for
// create and index, the document on the next line. Documents are mapped from
// the Elastic Common Schema (ECS), nested or dotted:
//
//	@timestamp, timestamp     time (RFC 3339, or Unix time as a number)
//	message, log, msg         message (the first present; log as a string,
//	                          as Fluent Bit's tail input sends it)
//	log.level                 level (an unknown spelling stays an attribute)
//	service.name              service
//	host.name, host.hostname, host, hostname   host (the first present;
//	                          host as a string, as Vector sends it)
//	trace.id, span.id         trace_id, span_id
//	build_id, labels.build_id, deploy_id, labels.deploy_id   build_id, deploy_id
//	labels.K                  attribute K
//	anything else             an attribute under its dotted path (arrays as JSON text)
//
// Documents of the OpenTelemetry Collector's elasticsearch exporter in its
// otel mapping mode map too: resource.attributes.K and attributes.K are read
// as K (so resource.attributes.service.name is the service), body.text is
// the message, severity_text the level, trace_id and span_id the ids.
//
// The index (the action's _index, else the one of the URL) is the
// attribute "index". delete and update actions are answered as refused,
// each on its own; a malformed action line refuses the whole request, as
// Elasticsearch does.

import (
	"bytes"
	"fmt"

	"github.com/shiplog/shiplog/model"
)

// ESIndexAttr is the attribute a document's index goes to.
const ESIndexAttr = "index"

// esMaxFieldDepth is the nesting of a document's objects that is flattened;
// deeper objects are kept as JSON text.
const esMaxFieldDepth = 16

// ESItem is one action of a bulk request.
type ESItem struct {
	Action string // create, index, delete or update
	Index  string
	ID     string
	Record int   // the record's index in ESBulk.Records; -1 when none
	Err    error // why the action was refused (nil: taken); wraps ErrInvalid
}

// ESBulk is a decoded bulk request.
type ESBulk struct {
	Items   []ESItem
	Records []model.Record
}

// DecodeESBulk decodes a bulk body of at most maxItems actions; index is the
// URL's index ("" for /_bulk). An error (wrapping ErrInvalid) is about the
// request as a whole; a document that cannot be taken is refused in its
// item alone.
func DecodeESBulk(body []byte, index string, maxItems int) (*ESBulk, error) {
	d := getJSONDecoder(nil)
	defer putJSONDecoder(d)
	n := min(bytes.Count(body, []byte{'\n'})/2+1, maxItems)
	out := &ESBulk{Items: make([]ESItem, 0, n), Records: make([]model.Record, 0, n)}
	e := esDecoder{d: d}
	line := 0
	for len(body) > 0 {
		act, rest := nextLine(body)
		body = rest
		line++
		if len(bytes.TrimSpace(act)) == 0 {
			continue
		}
		if len(out.Items) >= maxItems {
			return nil, fmt.Errorf("%w: more than %d actions in one bulk request", ErrInvalid, maxItems)
		}
		it, err := e.action(act)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: malformed action/metadata line: %v", ErrInvalid, line, err)
		}
		if it.Index == "" {
			it.Index = index
		}
		if it.Action == "delete" {
			it.Err = fmt.Errorf("%w: delete is not supported: logs are kept until retention drops them", ErrInvalid)
			out.Items = append(out.Items, it)
			continue
		}
		doc, rest := nextLine(body)
		body = rest
		line++
		if len(bytes.TrimSpace(doc)) == 0 {
			return nil, fmt.Errorf("%w: line %d: the %s action on line %d has no document after it", ErrInvalid, line, it.Action, line-1)
		}
		if it.Action == "update" {
			it.Err = fmt.Errorf("%w: update is not supported: send create or index", ErrInvalid)
			out.Items = append(out.Items, it)
			continue
		}
		rec, err := e.document(doc, it.Index)
		if err != nil {
			it.Err = fmt.Errorf("line %d: %w", line, err)
		} else {
			it.Record = len(out.Records)
			out.Records = append(out.Records, rec)
		}
		out.Items = append(out.Items, it)
	}
	return out, nil
}

// nextLine splits b at its first newline.
func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

type esDecoder struct {
	d       *jsonDecoder
	path    []byte // the dotted path of the member being read
	rr      rawJSONRecord
	hosts   [3]strSpan // host.hostname, host, hostname: for when host.name is missing
	msgs    [2]strSpan // log, msg: for when message is missing
	lv      strSpan    // log.level as written
	altTime int64      // timestamp, for when @timestamp is missing
}

// action reads {"create"|"index"|"delete"|"update": {"_index": .., "_id": ..}}.
func (e *esDecoder) action(line []byte) (ESItem, error) {
	d := e.d
	d.data, d.pos, d.rec = line, 0, inJSONDocument
	it := ESItem{Record: -1}
	more, err := d.objStart(1)
	if err != nil {
		return it, err
	}
	if !more {
		return it, fmt.Errorf("no action")
	}
	k, _, err := d.key()
	if err != nil {
		return it, err
	}
	switch string(k) {
	case "create", "index", "delete", "update":
		it.Action = d.intern(k)
	default:
		return it, fmt.Errorf("unknown action %.40q (want create, index, delete or update)", k)
	}
	more, err = d.objStart(2)
	for ; more; more, err = d.objNext() {
		k, _, err := d.key()
		if err != nil {
			return it, err
		}
		switch string(k) {
		case "_index":
			err = d.label(&it.Index, "_index")
		case "_id":
			var id strSpan
			d.buf = d.buf[:0]
			if err = d.spanField(&id, "_id"); err == nil && id.a >= 0 {
				it.ID = string(d.buf[id.a:id.b])
			}
		default:
			_, err = d.value(nil, false, 3)
		}
		if err != nil {
			return it, err
		}
	}
	if err != nil {
		return it, err
	}
	if more, err = d.objNext(); err != nil || more {
		if err == nil {
			err = fmt.Errorf("more than one action in a line")
		}
		return it, err
	}
	return it, d.end()
}

// document reads one document into a record.
func (e *esDecoder) document(line []byte, index string) (model.Record, error) {
	d := e.d
	d.data, d.pos, d.rec = line, 0, inJSONDocument
	e.rr = rawJSONRecord{msg: noSpan, alias: noSpan, trace: noSpan, spanID: noSpan}
	e.hosts = [3]strSpan{noSpan, noSpan, noSpan}
	e.msgs = [2]strSpan{noSpan, noSpan}
	e.lv, e.altTime = noSpan, 0
	d.buf, d.attrs, d.gen = d.buf[:0], d.attrs[:0], 0
	e.path = e.path[:0]
	if err := e.object(1); err != nil {
		return model.Record{}, err
	}
	if err := d.end(); err != nil {
		return model.Record{}, err
	}
	for _, h := range e.hosts {
		if e.rr.host == "" && h.a >= 0 {
			e.rr.host = d.intern(d.buf[h.a:h.b])
		}
	}
	for _, m := range e.msgs {
		if e.rr.alias.a < 0 && m.a >= 0 {
			e.rr.alias = m
		}
	}
	if e.rr.time == 0 {
		e.rr.time = e.altTime
	}
	if e.lv.a >= 0 {
		raw := d.buf[e.lv.a:e.lv.b]
		if _, ok := model.ParseLevel(string(raw)); ok {
			e.rr.level = d.intern(raw)
		} else {
			d.attrs = append(d.attrs, jsonAttr{key: "log.level", a: e.lv.a, b: e.lv.b})
		}
	}
	if index != "" {
		a := len(d.buf)
		d.buf = append(d.buf, index...)
		d.attrs = append(d.attrs, jsonAttr{key: ESIndexAttr, a: a, b: len(d.buf), prio: prioAttr})
	}
	return d.finish(&e.rr, nil, defaultLevel{})
}

// object reads the members of the object at d.pos, under e.path.
func (e *esDecoder) object(depth int) error {
	d := e.d
	more, err := d.objStart(depth)
	for ; more; more, err = d.objNext() {
		k, _, err := d.key()
		if err != nil {
			return err
		}
		n := len(e.path)
		if n > 0 {
			e.path = append(e.path, '.')
		}
		e.path = append(e.path, k...)
		err = e.member(depth)
		e.path = e.path[:n]
		if err != nil {
			return err
		}
	}
	return err
}

// member reads the value of the member at e.path.
func (e *esDecoder) member(depth int) error {
	d := e.d
	switch c := d.peek(); {
	case c == '{' && depth < esMaxFieldDepth:
		return e.object(depth + 1)
	case c == 'n':
		return d.literal("null")
	}
	rr := &e.rr
	path := e.path
	// The OpenTelemetry Collector's elasticsearch exporter, in its otel
	// mapping mode, nests attributes under these.
	for _, pre := range [...]string{"resource.attributes.", "attributes."} {
		if p, ok := bytes.CutPrefix(path, []byte(pre)); ok && len(p) > 0 {
			path = p
			break
		}
	}
	switch string(path) {
	case "@timestamp":
		return d.timeField(rr, "@timestamp")
	case "message":
		return e.scalar(&rr.msg)
	case "log.level", "severity_text":
		return e.scalar(&e.lv)
	case "service.name":
		return e.labelField(&rr.service)
	case "host.name":
		return e.labelField(&rr.host)
	case "host.hostname":
		return e.scalar(&e.hosts[0])
	case "host":
		return e.scalar(&e.hosts[1])
	case "hostname":
		return e.scalar(&e.hosts[2])
	case "log":
		return e.scalar(&e.msgs[0])
	case "msg", "body.text":
		return e.scalar(&e.msgs[1])
	case "timestamp":
		var tmp rawJSONRecord
		err := d.timeField(&tmp, "timestamp")
		e.altTime = tmp.time
		return err
	case "trace.id", "trace_id":
		return e.scalar(&rr.trace)
	case "span.id", "span_id":
		return e.scalar(&rr.spanID)
	case "build_id", "labels.build_id":
		return e.labelField(&rr.build)
	case "deploy_id", "labels.deploy_id":
		return e.labelField(&rr.deploy)
	}
	key := path
	if k, ok := bytes.CutPrefix(key, []byte("labels.")); ok && len(k) > 0 {
		key = k
	}
	if len(key) == 0 {
		_, err := d.value(nil, false, esMaxFieldDepth+1)
		return err
	}
	var s strSpan
	if err := e.scalar(&s); err != nil {
		return err
	}
	d.attrs = append(d.attrs, jsonAttr{key: d.intern(key), a: s.a, b: s.b, prio: prioExtra})
	return nil
}

// scalar reads any value into the arena: a string unescaped, anything else
// as its compact JSON text.
func (e *esDecoder) scalar(s *strSpan) error {
	d := e.d
	a := len(d.buf)
	var err error
	if d.peek() == '"' {
		d.buf, err = d.str(d.buf)
	} else {
		d.buf, err = d.value(d.buf, true, esMaxFieldDepth+1)
	}
	*s = strSpan{a, len(d.buf)}
	return err
}

// labelField reads a string (any scalar as its text) as an interned label.
func (e *esDecoder) labelField(dst *string) error {
	var s strSpan
	if err := e.scalar(&s); err != nil {
		return err
	}
	*dst = e.d.intern(e.d.buf[s.a:s.b])
	e.d.buf = e.d.buf[:s.a]
	return nil
}

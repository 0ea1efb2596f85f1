package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/shiplog/shiplog/model"
)

func kvAttrs(kv ...string) []model.Attr {
	var as []model.Attr
	for i := 0; i < len(kv); i += 2 {
		as = append(as, model.Attr{Key: kv[i], Value: kv[i+1]})
	}
	return as
}

func tsNS(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixNano()
}

func TestDecodeRecordJSON(t *testing.T) {
	t0 := tsNS("2026-01-01T12:00:00.123456789Z")
	tests := []struct {
		name string
		in   string
		def  *model.Record
		want model.Record
		err  string // substring of the error; "" for none
	}{
		{name: "contract example",
			in: `{"time":"2026-01-01T12:00:00.123456789Z","service":"api","host":"web-7f3a",
			 "build_id":"build-000123","deploy_id":"deploy-0042","level":"error",
			 "message":"connection refused to db-1:5432","trace_id":"",
			 "attributes":{"path":"/v1/users","status":"500"}}`,
			want: model.Record{Time: t0, Labels: model.Labels{Service: "api", Host: "web-7f3a", BuildID: "build-000123", DeployID: "deploy-0042"},
				Level: model.LevelError, Message: "connection refused to db-1:5432",
				Attrs: kvAttrs("path", "/v1/users", "status", "500")}},
		{name: "empty", in: ` {} `, want: model.Record{}},
		{name: "msg alias", in: `{"msg":"a"}`, want: model.Record{Message: "a"}},
		{name: "message wins over msg", in: `{"message":"m","msg":"a"}`, want: model.Record{Message: "m"}},
		{name: "message wins over msg, either order", in: `{"msg":"a","message":"m"}`, want: model.Record{Message: "m"}},
		{name: "null message leaves msg", in: `{"msg":"a","message":null}`, want: model.Record{Message: "a"}},
		{name: "duplicate keys: last wins", in: `{"host":"a","host":"b","message":"x","message":"y"}`, want: model.Record{Labels: model.Labels{Host: "b"}, Message: "y"}},
		{name: "null resets", in: `{"host":"a","host":null,"level":"warn","level":null}`, want: model.Record{}},
		{name: "camelCase", in: `{"buildId":"b","deployId":"d","traceId":"t","spanId":"s"}`,
			want: model.Record{Labels: model.Labels{BuildID: "b", DeployID: "d"}, TraceID: "t", SpanID: "s"}},
		{name: "escapes", in: `{"message":"a\"b\\c\/d\b\f\n\r\t\u00e9\u4e2d\ud83d\ude00 \u0000"}`, want: model.Record{Message: "a\"b\\c/d\b\f\n\r\t\u00e9\u4e2d\U0001F600 \x00"}},
		{name: "lone surrogates become U+FFFD", in: `{"message":"\ud800x\udc00\ud800\u0041\ud83d\ud83d\ude00"}`, want: model.Record{Message: "\uFFFDx\uFFFD\uFFFDA\uFFFD\U0001F600"}},
		{name: "raw UTF-8", in: "{\"message\":\"\u00e9\u4e2d\U0001F600\"}", want: model.Record{Message: "\u00e9\u4e2d\U0001F600"}},
		{name: "level normalised", in: `{"level":"WARNING"}`, want: model.Record{Level: model.LevelWarn}},
		{name: "numeric level", in: `{"level":50}`, want: model.Record{Level: model.LevelError}},
		{name: "seq number", in: `{"seq":18446744073709551615}`, want: model.Record{Seq: 1<<64 - 1}},
		{name: "seq string", in: `{"seq":"42"}`, want: model.Record{Seq: 42}},
		{name: "id ignored", in: `{"id":"0123","message":"m"}`, want: model.Record{Message: "m"}},
		{name: "id of any type ignored", in: `{"id":{"a":[1,2]}}`, want: model.Record{}},
		{name: "attribute values", in: `{"attributes":{"s":"x","n":1.50,"i":-3,"e":1e3,"t":true,"f":false,"z":null,"o":{"a": [1, "b\n", {}] , "c":null},"a":[ ]}}`,
			want: model.Record{Attrs: kvAttrs("a", "[]", "e", "1e3", "f", "false", "i", "-3", "n", "1.50", "o", `{"a":[1,"b\n",{}],"c":null}`, "s", "x", "t", "true")}},
		{name: "duplicate attribute: last wins", in: `{"attributes":{"k":"1","k":"2"}}`, want: model.Record{Attrs: kvAttrs("k", "2")}},
		{name: "repeated attributes object replaces", in: `{"attributes":{"a":"1"},"attributes":{"b":"2"}}`, want: model.Record{Attrs: kvAttrs("b", "2")}},
		{name: "unknown keys become attributes, objects dotted, lists as JSON", in: `{"log":"raw line","stream":"stdout","pid":42,"ok":true,"nothing":null,"kubernetes":{"pod":"p"},"tags":["a"]}`,
			want: model.Record{Attrs: kvAttrs("kubernetes.pod", "p", "log", "raw line", "ok", "true", "pid", "42", "stream", "stdout", "tags", `["a"]`)}},
		{name: "nested objects flatten all the way", in: `{"k8s":{"pod":{"name":"p","uid":7},"ns":"n","labels":{},"x":null,"l":[1,{"a":2}]},"k8s.ns":"top"}`,
			want: model.Record{Attrs: kvAttrs("k8s.l", `[1,{"a":2}]`, "k8s.ns", "top", "k8s.pod.name", "p", "k8s.pod.uid", "7")}},
		{name: "repeated attributes among unknown keys", in: `{"x":1,"attributes":{"a":"1","x":"attr"},"y":2,"attributes":{"b":"2"},"attributes":null,"z":3,"attributes":{"c":"3"}}`,
			want: model.Record{Attrs: kvAttrs("c", "3", "x", "1", "y", "2", "z", "3")}},
		{name: "attributes win over unknown keys", in: `{"attributes":{"k":"attr"},"k":"top"}`, want: model.Record{Attrs: kvAttrs("k", "attr")}},
		{name: "escaped keys", in: `{"mess\u0061ge":"m","\u006bey":"v"}`, want: model.Record{Message: "m", Attrs: kvAttrs("key", "v")}},
		{name: "time with offset", in: `{"time":"2026-01-01T13:30:00.5+01:30"}`, want: model.Record{Time: tsNS("2026-01-01T12:00:00.5Z")}},
		{name: "time seconds", in: `{"time":1767268800.123456789}`, want: model.Record{Time: tsNS("2026-01-01T12:00:00.123456789Z")}},
		{name: "time millis", in: `{"time":1767268800123}`, want: model.Record{Time: tsNS("2026-01-01T12:00:00.123Z")}},
		{name: "time micros", in: `{"time":1767268800123456}`, want: model.Record{Time: tsNS("2026-01-01T12:00:00.123456Z")}},
		{name: "time nanos", in: `{"time":1767268800123456789}`, want: model.Record{Time: tsNS("2026-01-01T12:00:00.123456789Z")}},
		{name: "time exponent", in: `{"time":1.7672688e9}`, want: model.Record{Time: tsNS("2026-01-01T12:00:00Z")}},
		{name: "time epoch is not missing", in: `{"time":"1970-01-01T00:00:00Z"}`, want: model.Record{Time: 1}},
		{name: "empty time is none", in: `{"time":""}`, want: model.Record{}},
		{name: "defaults", in: `{"message":"m","host":"own","attributes":{"a":"own","c":"3"}}`,
			def: &model.Record{Time: 7, Labels: model.Labels{Service: "s", Host: "h", BuildID: "b", DeployID: "d"}, Level: model.LevelWarn, TraceID: "t",
				Attrs: kvAttrs("a", "def", "b", "2")},
			want: model.Record{Time: 7, Labels: model.Labels{Service: "s", Host: "own", BuildID: "b", DeployID: "d"}, Level: model.LevelWarn, Message: "m", TraceID: "t",
				Attrs: kvAttrs("a", "own", "b", "2", "c", "3")}},

		{name: "not an object", in: `[]`, err: "byte 0: unexpected '[', want an object"},
		{name: "trailing garbage", in: `{} x`, err: "byte 3: unexpected data after the JSON value"},
		{name: "two values", in: `{}{}`, err: "unexpected data after"},
		{name: "truncated", in: `{"message":"abc`, err: "byte 11: unterminated string"},
		{name: "truncated after key", in: `{"message"`, err: "unexpected end of input, want ':'"},
		{name: "trailing comma", in: `{"a":"b",}`, err: "want a string key"},
		{name: "invalid UTF-8", in: "{\"message\":\"a\xffb\"}", err: "byte 13: string is not valid UTF-8"},
		{name: "invalid UTF-8 in a key", in: "{\"a\xc3\":1}", err: "not valid UTF-8"},
		{name: "encoded surrogate", in: "{\"message\":\"\xed\xa0\x80\"}", err: "not valid UTF-8"},
		{name: "control character", in: "{\"message\":\"a\nb\"}", err: "control character 0x0a"},
		{name: "bad escape", in: `{"message":"\x"}`, err: `invalid escape \x`},
		{name: "bad unicode escape", in: `{"message":"\u12G4"}`, err: `invalid \u escape`},
		{name: "short unicode escape", in: `{"message":"\u12"}`, err: `invalid \u escape`},
		{name: "message not a string", in: `{"message":5}`, err: "message: want a string"},
		{name: "service not a string", in: `{"service":{}}`, err: "service: want a string"},
		{name: "unknown level", in: `{"level":"loud"}`, err: `byte 9: unknown level "loud"`},
		{name: "bad time", in: `{"time":"yesterday"}`, err: `time "yesterday": want an RFC 3339 time`},
		{name: "bad month", in: `{"time":"2026-13-01T00:00:00Z"}`, err: "month out of range"},
		{name: "bad day", in: `{"time":"2025-02-29T00:00:00Z"}`, err: "day out of range"},
		{name: "no zone", in: `{"time":"2026-01-01T00:00:00"}`, err: "want an RFC 3339 time"},
		{name: "too many fraction digits", in: `{"time":"2026-01-01T00:00:00.1234567890Z"}`, err: "more than 9 digits"},
		{name: "time out of range", in: `{"time":"2263-01-01T00:00:00Z"}`, err: "out of range"},
		{name: "negative time", in: `{"time":-1}`, err: "must not be negative"},
		{name: "time bool", in: `{"time":true}`, err: "time: want an RFC 3339 string or a number"},
		{name: "seq negative", in: `{"seq":-1}`, err: "seq \"-1\": want a non-negative integer"},
		{name: "seq fraction", in: `{"seq":1.5}`, err: "want a non-negative integer"},
		{name: "seq overflow", in: `{"seq":18446744073709551616}`, err: "below 2^64"},
		{name: "bad number", in: `{"n":01}`, err: "unexpected '1', want ',' or '}'"},
		{name: "bad number 2", in: `{"n":1.}`, err: "want a digit after '.'"},
		{name: "bad literal", in: `{"n":tru}`, err: "want a JSON value"},
		{name: "single quotes", in: `{'a':1}`, err: "want a string key"},
		{name: "deep nesting", in: `{"a":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`, err: "nested more than 1000 deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRecordJSON([]byte(tt.in), tt.def)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("error %v does not wrap ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeBatchJSON(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  model.Batch
		extra BatchExtras
		err   string
	}{
		{name: "empty", in: `{}`},
		{name: "nulls", in: `{"agent_id":null,"defaults":null,"records":null,"closing":null,"dropped":null,"run":null}`},
		{name: "records with defaults after them",
			in: `{"records":[{"message":"a"},{"message":"b","service":"own","level":"E","attributes":{"k":"own"}}],
				"agent_id":"ag","defaults":{"service":"s","host":"h","level":"debug","message":"not used","time":"2026-01-01T00:00:00Z","attributes":{"k":"d","j":"d"}},
				"closing":true,"dropped":"12","run":{"build_id": "b", "command": ["a", "b"]}}`,
			want: model.Batch{AgentID: "ag", Records: []model.Record{
				{Time: tsNS("2026-01-01T00:00:00Z"), Labels: model.Labels{Service: "s", Host: "h"}, Level: model.LevelDebug, Message: "a", Attrs: kvAttrs("j", "d", "k", "d")},
				{Time: tsNS("2026-01-01T00:00:00Z"), Labels: model.Labels{Service: "own", Host: "h"}, Level: model.LevelError, Message: "b", Attrs: kvAttrs("j", "d", "k", "own")},
			}},
			extra: BatchExtras{Closing: true, Dropped: 12, Run: &model.Run{BuildID: "b", Command: []string{"a", "b"}}}},
		{name: "run", in: `{"run":{"buildId":"b","deploy_id":"d","service":"s","host":"h","command":[],"start":"2026-01-01T00:00:00Z","end":1767225601,"finished":true,"exit_code":-2}}`,
			extra: BatchExtras{Run: &model.Run{BuildID: "b", DeployID: "d", Service: "s", Host: "h", Start: tsNS("2026-01-01T00:00:00Z"), End: tsNS("2026-01-01T00:00:01Z"), Finished: true, ExitCode: -2}}},
		{name: "run exit code as a string", in: `{"run":{"build_id":"b","exitCode":"3","command":null,"start":null}}`, extra: BatchExtras{Run: &model.Run{BuildID: "b", ExitCode: 3}}},
		{name: "seq and agentId", in: `{"agentId":"a","records":[{"seq":1},{"seq":"2"}]}`,
			want: model.Batch{AgentID: "a", Records: []model.Record{{Seq: 1}, {Seq: 2}}}},
		{name: "unknown default level is fine when unused", in: `{"defaults":{"level":"loud"},"records":[{"level":"info"}]}`,
			want: model.Batch{Records: []model.Record{{Level: model.LevelInfo}}}},

		{name: "unknown default level names the record", in: `{"defaults":{"level":"loud"},"records":[{"level":"info"},{}]}`, err: `record 1: unknown level "loud"`},
		{name: "unknown level names the record", in: `{"records":[{},{},{"level":"loud"}]}`, err: `byte 27: record 2: unknown level "loud"`},
		{name: "bad time names the record", in: `{"records":[{"message":"x","time":"yesterday"}]}`, err: `record 0: time "yesterday"`},
		{name: "bad time in defaults", in: `{"defaults":{"time":"yesterday"}}`, err: `defaults: time`},
		{name: "null record", in: `{"records":[{},null]}`, err: "record 1: null instead of a record"},
		{name: "unknown field", in: `{"recordz":[]}`, err: `byte 1: unknown field "recordz"`},
		{name: "records not an array", in: `{"records":{}}`, err: "want an array"},
		{name: "closing not a bool", in: `{"closing":"yes"}`, err: "closing: want true or false"},
		{name: "run not an object", in: `{"run":[]}`, err: "run: want an object"},
		{name: "run without build_id", in: `{"run":{"host":"h"}}`, err: "byte 7: run: build_id is required"},
		{name: "run with a bad time", in: `{"run":{"build_id":"b","end":"soon"}}`, err: `run: end "soon": want an RFC 3339 time`},
		{name: "run with a bad exit code", in: `{"run":{"build_id":"b","exit_code":1.5}}`, err: `run: exit_code "1.5": want a 32-bit integer`},
		{name: "run with a bad command", in: `{"run":{"build_id":"b","command":["a",1]}}`, err: `run: command: want a string`},
		{name: "run with an unknown field", in: `{"run":{"build_id":"b","pid":1}}`, err: `run: unknown field "pid"`},
		{name: "cut short", in: `{"records":[{"mess`, err: "unterminated string"},
		{name: "invalid UTF-8", in: "{\"records\":[{\"message\":\"\xff\"}]}", err: "not valid UTF-8"},
		{name: "garbage after", in: `{"records":[]}]`, err: "unexpected data after"},
		{name: "missing comma", in: `{"records":[{} {}]}`, err: "want ',' or ']'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, x, err := DecodeBatchJSON([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Records) == 0 {
				got.Records = nil
			}
			tt.want.Closing, tt.want.Dropped, tt.want.Run = tt.extra.Closing, tt.extra.Dropped, tt.extra.Run
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
			if !reflect.DeepEqual(x, tt.extra) {
				t.Fatalf("extras %+v (run %+v), want %+v (run %+v)", x, x.Run, tt.extra, tt.extra.Run)
			}
		})
	}
}

// TestDecodeBatchJSONDefaultsShareNothing checks that records filled from the
// same defaults do not share attribute arrays (ingest edits them in place).
func TestDecodeBatchJSONDefaultsShareNothing(t *testing.T) {
	b, _, err := DecodeBatchJSON([]byte(`{"defaults":{"attributes":{"a":"1"}},"records":[{},{}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b.Records[0].Attrs[0].Value = "changed"
	if b.Records[1].Attrs[0].Value != "1" {
		t.Fatal("records share their attributes")
	}
}

func TestParseRFC3339(t *testing.T) {
	for _, s := range []string{
		"2026-01-01T12:00:00Z", "2026-01-01t12:00:00z", "2024-02-29T23:59:59.999999999Z", "1970-01-01T00:00:00.000000001Z",
		"2000-03-01T00:00:00+14:00", "1999-12-31T23:59:59.5-08:00", "1678-01-01T00:00:00Z", "2262-04-11T23:47:16Z", "2026-06-15T08:09:10.1+00:00",
	} {
		want, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
		if err != nil {
			t.Fatal(err)
		}
		got, msg := parseRFC3339([]byte(s))
		if msg != "" || got != want.UnixNano() {
			t.Errorf("%s: %d %q, want %d", s, got, msg, want.UnixNano())
		}
	}
	for _, s := range []string{
		"2026-01-01T12:00:00", "2026-01-01 12:00:00Z", "2026-1-01T12:00:00Z", "2026-01-01T12:00:00.Z", "2026-01-01T24:00:00Z",
		"2026-01-01T12:60:00Z", "2026-01-01T12:00:60Z", "2026-01-00T12:00:00Z", "2026-00-01T12:00:00Z", "2026-01-01T12:00:00+1:00",
		"2026-01-01T12:00:00+24:00", "2026-01-01T12:00:00Zjunk", "+2026-01-01T12:00:00Z", "1600-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
	} {
		if got, msg := parseRFC3339([]byte(s)); msg == "" {
			t.Errorf("%s: accepted as %d", s, got)
		}
	}
}

// TestJSONStringSpecialAtEveryOffset puts each kind of byte a string cannot
// hold as it is at every offset of the words the scanner reads eight at a
// time, and checks the message read (or the error) against encoding/json.
func TestJSONStringSpecialAtEveryOffset(t *testing.T) {
	for _, special := range []string{`\n`, `\"`, `\u00e9`, "é", "\U0001F600", "\x01", "\x7f", "\xff", "\xc3", `"`} {
		for n := range 26 {
			for tail := range 10 {
				raw := strings.Repeat("a", n) + special + strings.Repeat("b", tail)
				line := `{"message":"` + raw + `","service":"s"}`
				got, err := DecodeRecordJSON([]byte(line), nil)
				var want struct {
					Message string `json:"message"`
					Service string `json:"service"`
				}
				werr := json.Unmarshal([]byte(line), &want)
				if !utf8.ValidString(line) && werr == nil {
					werr = errors.New("invalid UTF-8") // encoding/json replaces it; we refuse it
				}
				if (err != nil) != (werr != nil) || err == nil && (got.Message != want.Message || got.Service != "s") {
					t.Fatalf("%q: got %q, %v; encoding/json %q, %v", line, got.Message, err, want.Message, werr)
				}
			}
		}
	}
}

// TestJSONKeysAndLabelsEveryLength reads keys and label values of every
// length around the 16 bytes read at once, plain, escaped, non-ASCII and with
// white space, near the end of the input and far from it.
func TestJSONKeysAndLabelsEveryLength(t *testing.T) {
	for n := range 20 {
		for _, v := range []string{strings.Repeat("h", n), strings.Repeat("h", n) + `\u0041`, strings.Repeat("é", n/2)} {
			for _, key := range []string{`"host"`, `"ho\u0073t"`, `"host" `, ` "host"`} {
				for _, pad := range []string{"", `,"message":"` + strings.Repeat("m", 40) + `"`} {
					line := `{` + key + `:"` + v + `"` + pad + `}`
					got, err := DecodeRecordJSON([]byte(line), nil)
					var want struct {
						Host string `json:"host"`
					}
					if werr := json.Unmarshal([]byte(line), &want); err != nil || werr != nil || got.Host != want.Host {
						t.Fatalf("%s: got %q, %v; encoding/json %q, %v", line, got.Host, err, want.Host, werr)
					}
				}
			}
		}
	}
}

// TestKnownKeyWords checks the words knownKey compares against, and that it
// reads exactly the keys fieldOf names, spelled the usual way, and nothing
// else.
func TestKnownKeyWords(t *testing.T) {
	le := func(s string) uint64 {
		var w uint64
		for i := len(s) - 1; i >= 0; i-- {
			w = w<<8 | uint64(s[i])
		}
		return w
	}
	for w, s := range map[uint64]string{kwLevel: `"level":`, kwMessage: `"message`, kwService: `"service`, kwBuildI: `"build_i`,
		kwDeploy: `"deploy_`, kwTraceI: `"trace_i`, kwSpanID: `"span_id`, kwAttribu: `"attribu`, kwTime: `"time":`, kwHost: `"host":`,
		kwMsg: `"msg":`, kwQuoteColon: `":`, kwDColon: `d":`, kwIDColon: `id":`, kwTesColon: `tes":`} {
		if le(s) != w {
			t.Errorf("%s: %#x, want %#x", s, w, le(s))
		}
	}
	pad := strings.Repeat(" ", 16)
	for _, k := range []string{"message", "msg", "service", "host", "build_id", "deploy_id", "trace_id", "span_id", "level", "time",
		"attributes", "buildId", "seq", "id", "times", "hos", "mess", "message_", "levels", "attributesx", "deploy_ix", "build_x", "span_i"} {
		for _, in := range []string{`"` + k + `":` + pad, `"` + k + `": ` + pad, `"` + k + `" :` + pad, `"` + k + `":`, `"` + k + `\u0041":` + pad} {
			d := &jsonDecoder{data: []byte(in)}
			f, ok := d.knownKey()
			usual := strings.HasPrefix(in, `"`+k+`":`) && len(in) >= 16 && !strings.Contains(in, `\`)
			want := fieldOf([]byte(k))
			if usual && (k == "buildId" || k == "seq" || k == "id") {
				want = fieldOther // read by key and fieldOf instead
			}
			switch {
			case ok && (!usual || f != want):
				t.Errorf("%q: read as %d, want %d (usual %v)", in, f, want, usual)
			case ok && d.data[d.pos-1] != ':' && d.data[d.pos-1] != ' ' || ok && d.pos < len(in) && d.data[d.pos] == ' ':
				t.Errorf("%q: stopped at %d", in, d.pos)
			case !ok && (d.pos != 0 || usual && want != fieldOther):
				t.Errorf("%q: not read (pos %d), want %d", in, d.pos, want)
			}
		}
	}
}

func FuzzParseRFC3339(f *testing.F) {
	for _, s := range []string{"2026-01-01T12:00:00Z", "2026-01-01T12:00:00.123+05:30", "2024-02-29T00:00:00-00:00"} {
		f.Add(s)
	}
	f.Add("2026-01-01T12:61:00Z")
	f.Add("2026-01-01T12:00:00.Z")
	f.Fuzz(func(t *testing.T, s string) {
		got, msg := parseRFC3339([]byte(s))
		// The decoder's cache of the last date and hour answers the same,
		// primed with s's own date and hour or with another's.
		for _, prime := range []string{"", "2026-01-01T12:00:00Z", "2024-02-29T23:59:59Z", s[:min(len(s), 19)] + "Z"} {
			var c timeCache
			c.parseRFC3339([]byte(prime))
			if got2, msg2 := c.parseRFC3339([]byte(s)); got2 != got || msg2 != msg {
				t.Fatalf("%q after %q: %d %q, uncached %d %q", s, prime, got2, msg2, got, msg)
			}
		}
		if msg != "" {
			return
		}
		want, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s))
		if err != nil {
			t.Fatalf("%q: we accept %d, time.Parse says %v", s, got, err)
		}
		if want.UnixNano() != got {
			t.Fatalf("%q: %d, time.Parse says %d", s, got, want.UnixNano())
		}
	})
}

// The differential test: records made of awkward strings, written out by
// encoding/json and by a hand-rolled encoder that escapes differently, read
// back by encoding/json and by DecodeBatchJSON.

type stdJSONRecord struct {
	Service    string            `json:"service,omitempty"`
	Host       string            `json:"host,omitempty"`
	BuildID    string            `json:"build_id,omitempty"`
	DeployID   string            `json:"deploy_id,omitempty"`
	Level      string            `json:"level,omitempty"`
	Message    string            `json:"message,omitempty"`
	TraceID    string            `json:"trace_id,omitempty"`
	SpanID     string            `json:"span_id,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Seq        uint64            `json:"seq,omitempty"`
}

type stdJSONBatch struct {
	AgentID string          `json:"agent_id,omitempty"`
	Records []stdJSONRecord `json:"records"`
}

var awkwardStrings = []string{"a", "Z", " ", "\"", "\\", "/", "\x00", "\x01", "\x1f", "\n", "\t", "\x7f", "<", ">", "&", "\u00e9", "\u4e2d",
	"\U0001F600", "\u2028", "\u2029", "\uFFFD", "\uFEFF", "\U0001D11E", "\U0010FFFF", "abc", "{}", "[", "\\u0041", "\U0001F469\u200d\U0001F4BB"}

func randJSONString(r *rand.Rand) string {
	var sb strings.Builder
	for n := r.IntN(12); n > 0; n-- {
		sb.WriteString(awkwardStrings[r.IntN(len(awkwardStrings))])
	}
	return sb.String()
}

func randJSONRecord(r *rand.Rand) stdJSONRecord {
	rec := stdJSONRecord{Service: randJSONString(r), Host: randJSONString(r), BuildID: randJSONString(r), DeployID: randJSONString(r),
		Message: randJSONString(r), TraceID: randJSONString(r), SpanID: randJSONString(r)}
	if r.IntN(2) == 0 {
		rec.Level = []string{"info", "WARN", "e", "debug", "30"}[r.IntN(5)]
	}
	if r.IntN(3) == 0 {
		rec.Seq = r.Uint64()
	}
	if n := r.IntN(4); n > 0 {
		rec.Attributes = map[string]string{}
		for ; n > 0; n-- {
			rec.Attributes[randJSONString(r)] = randJSONString(r)
		}
	}
	return rec
}

// writeJSONString escapes s differently from encoding/json: every non-ASCII rune
// as \u (surrogate pairs above U+FFFF), or as raw bytes, at random; '/' as \/.
func writeJSONString(buf *bytes.Buffer, r *rand.Rand, s string) {
	buf.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			buf.WriteByte('\\')
			buf.WriteRune(c)
		case c == '/' && r.IntN(2) == 0:
			buf.WriteString(`\/`)
		case c < 0x20 || (c >= 0x80 && r.IntN(2) == 0) || r.IntN(8) == 0:
			if c > 0xFFFF {
				a, b := utf16.EncodeRune(c)
				fmt.Fprintf(buf, `\u%04x\u%04X`, a, b)
			} else {
				fmt.Fprintf(buf, `\u%04x`, c)
			}
		default:
			buf.WriteRune(c)
		}
	}
	buf.WriteByte('"')
}

func writeWS(buf *bytes.Buffer, r *rand.Rand) {
	buf.WriteString([]string{"", "", " ", "\n", "\t ", "\r\n  "}[r.IntN(6)])
}

func writeJSONBatch(buf *bytes.Buffer, r *rand.Rand, b stdJSONBatch) {
	field := func(first bool, k, v string) {
		if !first {
			buf.WriteByte(',')
		}
		writeWS(buf, r)
		writeJSONString(buf, r, k)
		writeWS(buf, r)
		buf.WriteByte(':')
		writeWS(buf, r)
		writeJSONString(buf, r, v)
		writeWS(buf, r)
	}
	buf.WriteByte('{')
	field(true, "agent_id", b.AgentID)
	buf.WriteString(`,"records":[`)
	for i, rec := range b.Records {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeWS(buf, r)
		buf.WriteByte('{')
		field(true, "service", rec.Service)
		field(false, "host", rec.Host)
		field(false, "build_id", rec.BuildID)
		field(false, "deploy_id", rec.DeployID)
		field(false, "level", rec.Level)
		field(false, "message", rec.Message)
		field(false, "trace_id", rec.TraceID)
		field(false, "span_id", rec.SpanID)
		fmt.Fprintf(buf, `,"seq":%d,"attributes":{`, rec.Seq)
		first := true
		for k, v := range rec.Attributes {
			field(first, k, v)
			first = false
		}
		buf.WriteString("}}")
	}
	buf.WriteString("]}")
}

// batchFromStd is the batch b describes, as DecodeBatchJSON should return it.
func batchFromStd(t testing.TB, b stdJSONBatch) model.Batch {
	out := model.Batch{AgentID: b.AgentID}
	for _, r := range b.Records {
		lv, ok := model.ParseLevel(r.Level)
		if !ok {
			t.Fatalf("bad level %q", r.Level)
		}
		m := model.Record{Labels: model.Labels{Service: r.Service, Host: r.Host, BuildID: r.BuildID, DeployID: r.DeployID},
			Level: lv, Message: r.Message, TraceID: r.TraceID, SpanID: r.SpanID, Seq: r.Seq}
		for k, v := range r.Attributes {
			m.Attrs = append(m.Attrs, model.Attr{Key: k, Value: v})
		}
		sortTestAttrs(m.Attrs)
		out.Records = append(out.Records, m)
	}
	return out
}

func sortTestAttrs(as []model.Attr) {
	for i := 1; i < len(as); i++ {
		for j := i; j > 0 && as[j].Key < as[j-1].Key; j-- {
			as[j], as[j-1] = as[j-1], as[j]
		}
	}
}

func TestDecodeBatchJSONDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		src := stdJSONBatch{AgentID: randJSONString(r)}
		for n := r.IntN(4); n > 0; n-- {
			src.Records = append(src.Records, randJSONRecord(r))
		}
		var hand bytes.Buffer
		writeJSONBatch(&hand, r, src)
		std, err := json.Marshal(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range [][]byte{std, hand.Bytes()} {
			var viaStd stdJSONBatch
			if err := json.Unmarshal(in, &viaStd); err != nil {
				t.Fatalf("case %d: encoding/json: %v\n%s", i, err, in)
			}
			want := batchFromStd(t, viaStd)
			got, _, err := DecodeBatchJSON(in)
			if err != nil {
				t.Fatalf("case %d: %v\n%s", i, err, in)
			}
			if len(got.Records) == 0 {
				got.Records = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("case %d: input\n%s\ngot  %+v\nwant %+v", i, in, got, want)
			}
		}
	}
}

// FuzzDecodeBatchJSON checks that decoding never panics, and that where
// encoding/json reads the input as a batch of plain string fields, we read the
// same records out of it.
func FuzzDecodeBatchJSON(f *testing.F) {
	for _, s := range []string{
		`{"agent_id":"a","defaults":{"service":"s","attributes":{"k":"v"}},"records":[{"message":"m\u00e9\ud83d\ude00","level":"warn","attributes":{"a":"b"}},{"msg":"x"}]}`,
		`{"records":[{"time":"2026-01-01T00:00:00.5Z","seq":"3","pid":3,"nested":{"a":[1,2]}}],"closing":true,"dropped":4}`,
		`{"records":[{"message":"\ud800\u0041","attributes":{"k":null,"k":"2"},"attributes":{"j":"1"}}]}`,
		`{"records":[{"time":1767268800.5,"level":30}]}`,
		`{"records":[{}]} x`, `{"records":[{"message":"a\xffb"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, _, err := DecodeBatchJSON(data)
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
		want, ok := plainJSONBatch(data)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("encoding/json reads %q as %+v, we fail: %v", data, want, err)
		}
		if len(got.Records) == 0 {
			got.Records = nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %q\ngot  %+v\nwant %+v", data, got, want)
		}
	})
}

// plainJSONBatch reads data with encoding/json; ok is false unless it is valid
// UTF-8 and a batch with only agent_id, defaults and records, whose records
// hold only strings (or nulls) in the label, level and text fields and an
// object of strings as attributes.
func plainJSONBatch(data []byte) (model.Batch, bool) {
	var top map[string]any
	if !utf8.Valid(data) || json.Unmarshal(data, &top) != nil || top == nil {
		return model.Batch{}, false
	}
	var b model.Batch
	var def *model.Record
	var defLevel string
	for k, v := range top {
		switch k {
		case "agent_id":
			s, ok := v.(string)
			if !ok && v != nil {
				return b, false
			}
			b.AgentID = s
		case "defaults":
			if v == nil {
				continue
			}
			m, ok := v.(map[string]any)
			if !ok {
				return b, false
			}
			r, lv, ok := plainJSONRecord(m)
			if !ok {
				return b, false
			}
			def, defLevel = &r, lv
		case "records":
			if v == nil {
				continue
			}
			recs, ok := v.([]any)
			if !ok {
				return b, false
			}
			for _, x := range recs {
				m, ok := x.(map[string]any)
				if !ok {
					return b, false
				}
				r, lv, ok := plainJSONRecord(m)
				if !ok {
					return b, false
				}
				r.Level, ok = model.ParseLevel(lv)
				if !ok {
					return b, false
				}
				b.Records = append(b.Records, r)
			}
		default:
			return b, false
		}
	}
	if def != nil {
		dl, dok := model.ParseLevel(defLevel)
		for i := range b.Records {
			r := &b.Records[i]
			r.Service, r.Host = orDefault(r.Service, def.Service), orDefault(r.Host, def.Host)
			r.BuildID, r.DeployID = orDefault(r.BuildID, def.BuildID), orDefault(r.DeployID, def.DeployID)
			r.TraceID, r.SpanID = orDefault(r.TraceID, def.TraceID), orDefault(r.SpanID, def.SpanID)
			if r.Level == model.LevelUnset {
				if !dok {
					return b, false
				}
				r.Level = dl
			}
			for _, a := range def.Attrs {
				if _, ok := r.Attr(a.Key); !ok {
					r.Attrs = append(r.Attrs, a)
				}
			}
			sortTestAttrs(r.Attrs)
		}
	}
	return b, true
}

func plainJSONRecord(m map[string]any) (r model.Record, level string, ok bool) {
	str := func(v any) (string, bool) {
		s, ok := v.(string)
		return s, ok || v == nil
	}
	var msg, alias string
	for k, v := range m {
		var s string
		if k != "attributes" {
			if s, ok = str(v); !ok {
				return r, "", false
			}
		}
		switch k {
		case "service":
			r.Service = s
		case "host":
			r.Host = s
		case "build_id":
			r.BuildID = s
		case "deploy_id":
			r.DeployID = s
		case "trace_id":
			r.TraceID = s
		case "span_id":
			r.SpanID = s
		case "level":
			level = s
		case "message":
			msg = s
		case "msg":
			alias = s
		case "attributes":
			if v == nil {
				continue
			}
			as, ok := v.(map[string]any)
			if !ok {
				return r, "", false
			}
			for ak, av := range as {
				if av == nil {
					continue
				}
				s, ok := av.(string)
				if !ok {
					return r, "", false
				}
				r.Attrs = append(r.Attrs, model.Attr{Key: ak, Value: s})
			}
			sortTestAttrs(r.Attrs)
		default:
			return r, "", false
		}
	}
	if v, ok := m["message"]; ok && v != nil {
		r.Message = msg
	} else {
		r.Message = alias
	}
	return r, level, true
}

func TestJSONLReader(t *testing.T) {
	long := `{"message":"` + strings.Repeat("x", 200) + `"}`
	in := "\xEF\xBB\xBF{\"message\":\"one\"}\r\n" + // BOM, CRLF
		"\n   \n" + // blank lines
		"{\"message\":\"four\",\"level\":\"loud\"}\n" +
		long + "\n" +
		"{\"message\":\"six\"}\n" +
		long + long + long + long + "\n" + // far longer than the buffer
		"not json\n" +
		"{\"message\":\"nine\"}" // no final newline
	jr := NewJSONLReader(strings.NewReader(in), &model.Record{Labels: model.Labels{Service: "svc"}}, 100)
	type line struct {
		n   int
		msg string
		err string
	}
	var got []line
	for {
		rec, n, err := jr.Next()
		if err == io.EOF {
			break
		}
		l := line{n: n, msg: rec.Message}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatal(err)
			}
			l.err = err.Error()
		} else if rec.Service != "svc" {
			t.Fatalf("line %d: defaults not applied: %+v", n, rec)
		}
		got = append(got, l)
	}
	want := []line{
		{n: 1, msg: "one"},
		{n: 4, err: `invalid input: line 4, byte 26: unknown level "loud" (want trace, debug, info, warn, error or fatal)`},
		{n: 5, err: "invalid input: line 5, byte 100: line is longer than 100 bytes"},
		{n: 6, msg: "six"},
		{n: 7, err: "invalid input: line 7, byte 100: line is longer than 100 bytes"},
		{n: 8, err: "invalid input: line 8, byte 0: unexpected 'n', want an object"},
		{n: 9, msg: "nine"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", got, want)
	}
}

type failingReader struct{ err error }

func (e failingReader) Read([]byte) (int, error) { return 0, e.err }

func TestJSONLReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	jr := NewJSONLReader(io.MultiReader(strings.NewReader("{}\n{\"mess"), failingReader{boom}), nil, 0)
	if _, n, err := jr.Next(); err != nil || n != 1 {
		t.Fatalf("line 1: %v", err)
	}
	for range 2 {
		if _, _, err := jr.Next(); err != boom {
			t.Fatalf("got %v, want the reader's error (and not the cut line)", err)
		}
	}
}

// TestJSONLReaderClose checks that the records a closed reader returned
// keep their strings while later readers reuse its buffers, and that a
// closed reader reads no more.
func TestJSONLReaderClose(t *testing.T) {
	line := func(i int, word string) string {
		return fmt.Sprintf(`{"message":"%s %d \u00e9","host":"h%d","trace_id":"%s","attributes":{"k":"%s"}}`+"\n", word, i, i%3, word, word)
	}
	var kept []model.Record
	for round, word := range []string{"first", "second", "third"} {
		var sb strings.Builder
		for i := range 50 {
			sb.WriteString(line(i, word))
		}
		jr := NewJSONLReader(strings.NewReader(sb.String()), nil, 0)
		for {
			rec, _, err := jr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			kept = append(kept, rec)
		}
		jr.Close()
		if _, _, err := jr.Next(); err == nil || err == io.EOF {
			t.Fatalf("round %d: Next after Close: %v", round, err)
		}
		jr.Close() // twice is fine
	}
	for i, rec := range kept {
		word := []string{"first", "second", "third"}[i/50]
		want := fmt.Sprintf("%s %d é", word, i%50)
		if rec.Message != want || rec.Host != fmt.Sprintf("h%d", i%50%3) || rec.TraceID != word || len(rec.Attrs) != 1 || rec.Attrs[0].Value != word {
			t.Fatalf("record %d: %+v, want message %q", i, rec, want)
		}
	}
}

// benchJSONBatch is a batch of n records like those gen_logs.py writes
// (--keys shiplog): ~300 bytes a record, the message ~150 with the odd
// escaped quote.
func benchJSONBatch(n int) []byte {
	r := rand.New(rand.NewPCG(42, 42))
	services := []string{"api-gateway", "auth", "billing", "catalog", "checkout", "search", "inventory", "orders"}
	levels := []string{"info", "info", "info", "info", "info", "info", "info", "info", "debug", "warn", "error"}
	msgs := []string{
		"GET /api/v1/users/%d completed status=200 duration=%d.3ms bytes=%d request_id=%016x caller=internal/handler.go:412",
		"payment authorized for order %d amount_cents=%d provider=stripe latency=%dms caller=pkg/client.go:88 trace_id=%032x",
		"POST /api/v1/orders/%d failed status=503 error=\"upstream connect error or disconnect/reset before headers\" request_id=%x",
		"query on table orders returned %d rows in %d.2ms request_id=%016x caller=internal/repo.go:77 trace_id=%032x",
	}
	var buf bytes.Buffer
	buf.WriteString(`{"agent_id":"bench-agent","records":[`)
	t0 := tsNS("2026-01-01T00:00:00Z")
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		s := services[r.IntN(len(services))]
		msg, _ := json.Marshal(fmt.Sprintf(msgs[r.IntN(len(msgs))], r.IntN(1e7), r.IntN(1e4), r.IntN(1e6), r.Uint64()))
		fmt.Fprintf(&buf, `{"time":"%s","service":"%s","host":"%s-%06x","level":"%s","build_id":"build-%06d","deploy_id":"deploy-%08x","message":%s}`,
			time.Unix(0, t0+int64(i)*1234567).UTC().Format("2006-01-02T15:04:05.000000000Z"), s, s, r.IntN(4), levels[r.IntN(len(levels))],
			100+r.IntN(3), r.IntN(3), msg)
	}
	buf.WriteString("]}")
	return buf.Bytes()
}

func BenchmarkDecodeBatchJSON(b *testing.B) {
	const n = 1000
	data := benchJSONBatch(n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		batch, _, err := DecodeBatchJSON(data)
		if err != nil || len(batch.Records) != n {
			b.Fatal(err, len(batch.Records))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}

func BenchmarkJSONLReader(b *testing.B) {
	data := benchJSONBatch(1000)
	// One record a line.
	data = bytes.ReplaceAll(data[bytes.IndexByte(data, '[')+1:len(data)-2], []byte(`},{"time"`), []byte("}\n{\"time\""))
	n := bytes.Count(data, []byte("\n")) + 1
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if got := readJSONL(b, data); got != n {
			b.Fatal(got, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}

// FuzzJSONLReader checks that reading never panics nor loops, and that line
// numbers only go up.
func FuzzJSONLReader(f *testing.F) {
	f.Add([]byte("{\"message\":\"a\"}\n\n{\"level\":\"x\"}\r\n[]\n{\"msg\":\"b\"}"), 16)
	f.Add([]byte("\xEF\xBB\xBF{}\n"+strings.Repeat("x", 100)+"\n{}"), 8)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		jr := NewJSONLReader(bytes.NewReader(data), &model.Record{Labels: model.Labels{Service: "s"}}, max%200)
		last := 0
		for n := 0; ; n++ {
			rec, line, err := jr.Next()
			if err == io.EOF {
				return
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("line %d: %v", line, err)
			}
			if line <= last || n > len(data)+1 {
				t.Fatalf("line %d after %d", line, last)
			}
			if err == nil && rec.Service == "" {
				t.Fatalf("line %d: defaults not applied", line)
			}
			last = line
		}
	})
}

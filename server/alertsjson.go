package server

import (
	"bytes"
	"encoding/json"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The alert endpoints (GET /v1/alerts, /v1/alerts/rules,
// /v1/alerts/history, POST|PUT /-/reload) are the google.api.http bindings
// of QueryService.ListAlerts* and AdminService.ReloadRules, served by a
// grpc-gateway mux of their own (alertRoutes) because their JSON is older
// than the gateway's and users and the web UI read it as it is:
//
//   - an unset time is left out (fired_at, resolved_at, ...), where the
//     main gateway writes null; zero numbers, false, "" and empty lists are
//     written out, as the main gateway does;
//   - a few fields are left out when empty, or null (alertJSONEmpty);
//   - a value that is not finite is "NaN", "+Inf" or "-Inf", Prometheus'
//     spelling, where protojson writes "Infinity".

// alertPaths are the routes of the alert bindings.
var alertPaths = []string{"GET /v1/alerts", "GET /v1/alerts/rules", "GET /v1/alerts/history", "POST /-/reload", "PUT /-/reload"}

// emptyAs says what the alert JSON writes for an empty field.
type emptyAs int

const (
	emptyOmitted emptyAs = iota + 1
	emptyNull
)

// alertJSONEmpty are the fields of the alert messages written differently
// when empty ("", 0, [] or {}); all others are written out.
var alertJSONEmpty = map[protoreflect.FullName]emptyAs{
	"shiplog.v1.AlertLinks.logs":                          emptyOmitted,
	"shiplog.v1.AlertLinks.build":                         emptyOmitted,
	"shiplog.v1.AlertLinks.deploy":                        emptyOmitted,
	"shiplog.v1.AlertRule.agg":                            emptyOmitted,
	"shiplog.v1.AlertRule.window":                         emptyOmitted,
	"shiplog.v1.AlertRule.threshold":                      emptyOmitted,
	"shiplog.v1.AlertRule.by":                             emptyOmitted,
	"shiplog.v1.AlertRule.keep_firing_for":                emptyOmitted,
	"shiplog.v1.AlertRule.labels":                         emptyOmitted,
	"shiplog.v1.AlertRule.annotations":                    emptyOmitted,
	"shiplog.v1.AlertRule.last_error":                     emptyOmitted,
	"shiplog.v1.AlertGroup.query_offset":                  emptyOmitted,
	"shiplog.v1.AlertGroup.limit":                         emptyOmitted,
	"shiplog.v1.ListAlertRulesResponse.last_reload_error": emptyOmitted,
	"shiplog.v1.ListAlertRulesResponse.problems":          emptyOmitted,
	"shiplog.v1.ListAlertRulesResponse.receivers":         emptyNull,
}

// alertsMarshaler is the alert endpoints' JSON: protojson with proto
// names, zero values written out and unset messages left out, then the
// empty fields and non-finite values put as alert JSON has them.
type alertsMarshaler struct {
	runtime.JSONPb
}

func newAlertsMarshaler() *alertsMarshaler {
	return &alertsMarshaler{runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true},
	}}
}

func (m *alertsMarshaler) Marshal(v any) ([]byte, error) {
	b, err := m.JSONPb.Marshal(v)
	msg, ok := v.(proto.Message)
	if err != nil || !ok {
		return b, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	alertJSON(msg.ProtoReflect().Descriptor(), doc)
	return json.Marshal(doc)
}

// alertJSON rewrites doc, the protojson of a message of type md, in place.
func alertJSON(md protoreflect.MessageDescriptor, doc any) {
	obj, ok := doc.(map[string]any)
	if !ok {
		return
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		key := string(fd.Name())
		v, ok := obj[key]
		if !ok {
			continue
		}
		if as := alertJSONEmpty[fd.FullName()]; as != 0 && emptyJSON(v) {
			if as == emptyNull {
				obj[key] = nil
			} else {
				delete(obj, key)
			}
			continue
		}
		switch {
		case fd.IsMap():
		case fd.Kind() == protoreflect.DoubleKind && !fd.IsList():
			obj[key] = promFloatJSON(v)
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			list, _ := v.([]any)
			for _, e := range list {
				alertJSON(fd.Message(), e)
			}
		case fd.Kind() == protoreflect.MessageKind:
			alertJSON(fd.Message(), v)
		}
	}
}

// emptyJSON reports whether v is "", 0, false, [], {} or null.
func emptyJSON(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case json.Number:
		f, err := x.Float64()
		return err == nil && f == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

// promFloatJSON spells protojson's non-finite doubles as Prometheus does.
func promFloatJSON(v any) any {
	switch v {
	case "Infinity":
		return "+Inf"
	case "-Infinity":
		return "-Inf"
	}
	return v
}

package server

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
)

// The Prometheus HTTP API's JSON: {"status":"success","data":...} or
// {"status":"error","errorType":"bad_data","error":"..."}, with warnings and
// infos beside. Times are Unix seconds as JSON numbers with millisecond
// precision, sample values are strings ("NaN", "+Inf" and "-Inf" included),
// as prometheus/web/api/v1 writes them.

// promError is an error of the Prometheus API: its errorType and HTTP status.
type promError struct {
	typ  string
	code int
	err  error
}

func (e *promError) Error() string { return e.err.Error() }

func promBadData(err error) *promError {
	return &promError{typ: "bad_data", code: http.StatusBadRequest, err: err}
}

func writePromError(w http.ResponseWriter, e *promError) {
	b, _ := json.Marshal(struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
	}{"error", e.typ, e.err.Error()})
	w.Header().Set("Content-Type", "application/json")
	retryAfter(w, e.code)
	w.WriteHeader(e.code)
	_, _ = w.Write(append(b, '\n'))
}

// writePromData writes a success answer; data is JSON already.
func writePromData(w http.ResponseWriter, data []byte, warnings, infos []string) {
	b := make([]byte, 0, len(data)+64)
	b = append(b, `{"status":"success","data":`...)
	b = append(b, data...)
	if len(warnings) > 0 {
		b = append(b, `,"warnings":`...)
		b = appendJSON(b, warnings)
	}
	if len(infos) > 0 {
		b = append(b, `,"infos":`...)
		b = appendJSON(b, infos)
	}
	b = append(b, "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func appendJSON(b []byte, v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, j...)
}

// appendQueryData renders {"resultType":..., "result":...}.
func appendQueryData(b []byte, v parser.Value) []byte {
	b = append(b, `{"resultType":`...)
	b = strconv.AppendQuote(b, string(v.Type()))
	b = append(b, `,"result":`...)
	switch v := v.(type) {
	case promql.Vector:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"metric":`...)
			b = appendLabels(b, s.Metric)
			if s.H != nil {
				b = append(b, `,"histogram":`...)
				b = appendJSON(b, promql.HPoint{T: s.T, H: s.H})
			} else {
				b = append(b, `,"value":`...)
				b = appendPoint(b, s.T, s.F)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	case promql.Matrix:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"metric":`...)
			b = appendLabels(b, s.Metric)
			if len(s.Floats) > 0 {
				b = append(b, `,"values":[`...)
				for j, p := range s.Floats {
					if j > 0 {
						b = append(b, ',')
					}
					b = appendPoint(b, p.T, p.F)
				}
				b = append(b, ']')
			}
			if len(s.Histograms) > 0 {
				b = append(b, `,"histograms":`...)
				b = appendJSON(b, s.Histograms)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	case promql.Scalar:
		b = appendPoint(b, v.T, v.V)
	case promql.String:
		b = append(b, '[')
		b = appendTime(b, v.T)
		b = append(b, ',')
		b = appendJSON(b, v.V)
		b = append(b, ']')
	default:
		b = append(b, "null"...)
	}
	return append(b, '}')
}

func appendLabels(b []byte, ls labels.Labels) []byte {
	b = append(b, '{')
	first := true
	ls.Range(func(l labels.Label) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSON(b, l.Name)
		b = append(b, ':')
		b = appendJSON(b, l.Value)
	})
	return append(b, '}')
}

// appendPoint renders [seconds, "value"].
func appendPoint(b []byte, t int64, v float64) []byte {
	b = append(b, '[')
	b = appendTime(b, t)
	b = append(b, ',', '"')
	b = appendFloat(b, v)
	return append(b, '"', ']')
}

// appendTime renders milliseconds as seconds with up to three decimals.
func appendTime(b []byte, t int64) []byte {
	if t < 0 {
		b = append(b, '-')
		t = -t
	}
	b = strconv.AppendInt(b, t/1000, 10)
	if f := t % 1000; f != 0 {
		b = append(b, '.')
		if f < 100 {
			b = append(b, '0')
		}
		if f < 10 {
			b = append(b, '0')
		}
		b = strconv.AppendInt(b, f, 10)
	}
	return b
}

// appendFloat renders a value as Prometheus does: 'f' format, 'e' for very
// small or large magnitudes, NaN, +Inf and -Inf by name.
func appendFloat(b []byte, v float64) []byte {
	format := byte('f')
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, v, format, -1, 64)
}

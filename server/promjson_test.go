package server

import (
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

func TestPromJSON(t *testing.T) {
	for _, c := range []struct {
		t    int64
		v    float64
		want string
	}{
		{1435781451781, 1, `[1435781451.781,"1"]`},
		{1435781451000, 0.5, `[1435781451,"0.5"]`},
		{1435781451005, math.NaN(), `[1435781451.005,"NaN"]`},
		{1435781451050, math.Inf(1), `[1435781451.050,"+Inf"]`},
		{-1500, math.Inf(-1), `[-1.500,"-Inf"]`},
		{0, 1e-7, `[0,"1e-07"]`},
		{0, 1e21, `[0,"1e+21"]`},
		{0, 123456789, `[0,"123456789"]`},
	} {
		if got := string(appendPoint(nil, c.t, c.v)); got != c.want {
			t.Errorf("appendPoint(%d, %v) = %s, want %s", c.t, c.v, got, c.want)
		}
	}
	v := promql.Vector{{T: 1000, F: 2, Metric: labels.FromStrings("__name__", "up", "job", "a\"b")}}
	want := `{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1,"2"]}]}`
	if got := string(appendQueryData(nil, v)); got != want {
		t.Errorf("vector:\n%s\nwant\n%s", got, want)
	}
	m := promql.Matrix{{Metric: labels.FromStrings("x", "1"), Floats: []promql.FPoint{{T: 1000, F: 1}, {T: 61000, F: 2}}}}
	want = `{"resultType":"matrix","result":[{"metric":{"x":"1"},"values":[[1,"1"],[61,"2"]]}]}`
	if got := string(appendQueryData(nil, m)); got != want {
		t.Errorf("matrix:\n%s\nwant\n%s", got, want)
	}
	if got := string(appendQueryData(nil, promql.String{T: 2000, V: "hé\n"})); got != `{"resultType":"string","result":[2,"hé\n"]}` {
		t.Errorf("string: %s", got)
	}
}

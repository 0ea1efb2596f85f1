package server

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"testing"

	"github.com/shiplog/shiplog/model"
)

// A CSV export does not hand a spreadsheet a formula from a log line.
func TestExportCSVDefusesFormulas(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	write := exportWriter(bw, "csv")
	for _, msg := range []string{`=HYPERLINK("http://evil","x")`, "+1", "-2", "@SUM(A1)", "\tx", "plain - text"} {
		if err := write(&model.Record{Time: 1, Labels: model.Labels{Service: "=cmd"}, Message: msg}); err != nil {
			t.Fatal(err)
		}
	}
	_ = bw.Flush()
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`'=HYPERLINK("http://evil","x")`, "'+1", "'-2", "'@SUM(A1)", "'\tx", "plain - text"}
	for i, w := range want {
		if rows[i+1][7] != w || rows[i+1][2] != "'=cmd" {
			t.Errorf("row %d: %q", i, rows[i+1])
		}
	}
}

package server

import (
	"fmt"
	"strings"
	"testing"
)

// The metadata store keeps the newest entries of a name, cuts long help
// texts on a rune boundary, and takes no new names once full.
func TestMetaStoreBounds(t *testing.T) {
	m := newMetaStore()
	for i := 0; i < metaMaxPerName+2; i++ {
		m.add("jobs_total", metricMeta{Type: "counter", Help: fmt.Sprint("v", i)})
	}
	m.add("jobs_total", metricMeta{Type: "counter", Help: "v5"}) // known: no change
	got := m.get("jobs_total", 0, 0)["jobs_total"]
	if len(got) != metaMaxPerName || got[0].Help != "v2" || got[len(got)-1].Help != "v5" {
		t.Errorf("entries: %v", got)
	}
	if one := m.get("", 0, 1)["jobs_total"]; len(one) != 1 {
		t.Errorf("limit_per_metric 1: %v", one)
	}
	m.add("long", metricMeta{Help: strings.Repeat("é", metaMaxHelp)})
	if h := m.get("long", 0, 0)["long"][0]; len(h.Help) > metaMaxHelp || !strings.HasPrefix(h.Help, "éé") || h.Type != "unknown" || strings.ContainsRune(h.Help, '\uFFFD') {
		t.Errorf("long help: %d bytes, type %q", len(h.Help), h.Type)
	}
	m.add("", metricMeta{Type: "gauge"})
	m.add("empty", metricMeta{})
	if all := m.get("", 0, 0); len(all) != 2 {
		t.Errorf("names: %v", all)
	}
	for i := 0; len(m.byName) < metaMaxNames; i++ {
		m.add(fmt.Sprint("m", i), metricMeta{Type: "gauge"})
	}
	m.add("one_too_many", metricMeta{Type: "gauge"})
	if len(m.get("one_too_many", 0, 0)) != 0 || len(m.get("", 10, 0)) != 10 {
		t.Error("a new name was taken past the bound, or limit was not applied")
	}
}

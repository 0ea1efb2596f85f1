package logql

import (
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

// maxFormatted bounds the line a line_format template makes.
const maxFormatted = 64 << 10

// lineFormat is a | line_format "template" stage: Go's text/template over
// the row's labels ({{.status}}), with __line__ and __timestamp__ and a few
// of Loki's string functions.
type lineFormat struct {
	tmpl *template.Template
	cur  *Row // the row being formatted (a pipeline runs one row at a time)
}

func newLineFormat(src string) (*lineFormat, error) {
	lf := &lineFormat{}
	funcs := template.FuncMap{
		"__line__":      func() string { return lf.cur.Line },
		"__timestamp__": func() time.Time { return time.Unix(0, lf.cur.Rec.Time).UTC() },
		"ToUpper":       strings.ToUpper, "ToLower": strings.ToLower,
		"upper": strings.ToUpper, "lower": strings.ToLower,
		"Trim": strings.TrimSpace, "trim": strings.TrimSpace,
		"TrimPrefix": func(p, s string) string { return strings.TrimPrefix(s, p) },
		"TrimSuffix": func(p, s string) string { return strings.TrimSuffix(s, p) },
		"Replace":    func(s, old, new string, n int) string { return strings.Replace(s, old, new, n) },
		"replace":    func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
	}
	t, err := template.New("line_format").Option("missingkey=zero").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, unsupportedf("line_format %q: %v", src, err)
	}
	if err := checkTemplate(t.Tree.Root); err != nil {
		return nil, err
	}
	lf.tmpl = t
	return lf, nil
}

// checkTemplate refuses the actions whose cost is not bounded by the
// template's size (range loops, calls of other templates).
func checkTemplate(n parse.Node) error {
	switch x := n.(type) {
	case *parse.ListNode:
		if x == nil {
			return nil
		}
		for _, k := range x.Nodes {
			if err := checkTemplate(k); err != nil {
				return err
			}
		}
	case *parse.IfNode:
		if err := checkTemplate(x.List); err != nil {
			return err
		}
		return checkTemplate(x.ElseList)
	case *parse.WithNode:
		if err := checkTemplate(x.List); err != nil {
			return err
		}
		return checkTemplate(x.ElseList)
	case *parse.RangeNode:
		return unsupportedf("range in line_format")
	case *parse.TemplateNode:
		return unsupportedf("template calls in line_format")
	}
	return nil
}

// limitedBuilder stops growing at maxFormatted bytes.
type limitedBuilder struct{ strings.Builder }

func (b *limitedBuilder) Write(p []byte) (int, error) {
	if room := maxFormatted - b.Len(); len(p) > room {
		b.Builder.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.Builder.Write(p)
}

// apply formats row's line; a template that fails leaves the line as it was
// and sets __error__, as Loki does.
func (lf *lineFormat) apply(r *Row) string {
	lf.cur = r
	data := map[string]string{}
	for _, l := range r.Labels() {
		data[l.Name] = l.Value
	}
	for _, a := range r.Rec.Attrs {
		if _, ok := data[a.Key]; !ok {
			data[a.Key] = a.Value
		}
	}
	var b limitedBuilder
	if err := lf.tmpl.Execute(&b, data); err != nil {
		setExtracted(r, "__error__", "TemplateFormatErr")
		return r.Line
	}
	return b.String()
}

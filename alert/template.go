package alert

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Templates in labels and annotations see what Prometheus' do: $labels (the
// alert's labels), $value (the value that triggered it) and $externalURL.
const templateDefs = "{{$labels := .Labels}}{{$value := .Value}}{{$externalURL := .ExternalURL}}"

// templateData is the dot of label and annotation templates.
type templateData struct {
	Labels      map[string]string
	Value       float64
	ExternalURL string
}

var templateFuncs = template.FuncMap{
	"humanize":           humanize,
	"humanizeDuration":   humanizeDuration,
	"humanizePercentage": func(v float64) string { return humanize(v*100) + "%" },
	"toUpper":            strings.ToUpper,
	"toLower":            strings.ToLower,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"reReplaceAll": func(pattern, repl, text string) (string, error) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return "", err
		}
		return re.ReplaceAllString(text, repl), nil
	},
	"match": regexp.MatchString,
}

func parseTemplate(name, text string) (*template.Template, error) {
	return template.New(name).Funcs(templateFuncs).Option("missingkey=zero").Parse(templateDefs + text)
}

// checkTemplate reports a template that does not parse.
func checkTemplate(name, text string) error {
	if !strings.Contains(text, "{{") {
		return nil
	}
	_, err := parseTemplate(name, text)
	if err != nil {
		return fmt.Errorf("bad template: %s", strings.TrimPrefix(err.Error(), "template: "))
	}
	return nil
}

// expand runs one template; an error is rendered in place, as Prometheus does.
func expand(name, text string, d templateData) string {
	if !strings.Contains(text, "{{") {
		return text
	}
	t, err := parseTemplate(name, text)
	if err != nil {
		return fmt.Sprintf("<error expanding template: %v>", err)
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return fmt.Sprintf("<error expanding template: %v>", err)
	}
	return b.String()
}

// humanize renders v with an SI prefix: 1234 -> 1.234k.
func humanize(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.4g", v)
	}
	if math.Abs(v) >= 1 {
		prefix := ""
		for _, p := range []string{"k", "M", "G", "T", "P", "E", "Z", "Y"} {
			if math.Abs(v) < 1000 {
				break
			}
			prefix = p
			v /= 1000
		}
		return fmt.Sprintf("%.4g%s", v, prefix)
	}
	prefix := ""
	for _, p := range []string{"m", "u", "n", "p", "f", "a", "z", "y"} {
		if math.Abs(v) >= 1 {
			break
		}
		prefix = p
		v *= 1000
	}
	return fmt.Sprintf("%.4g%s", v, prefix)
}

// humanizeDuration renders seconds as 1d 2h 3m 4s.
func humanizeDuration(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Sprintf("%.4g", v)
	}
	if math.Abs(v) < 1 {
		return humanize(v) + "s"
	}
	d := time.Duration(v * float64(time.Second)).Round(time.Second)
	return humanizeDur(d)
}

func humanizeDur(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	var parts []string
	for _, u := range []struct {
		n string
		d time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}} {
		if k := d / u.d; k > 0 {
			parts = append(parts, strconv.FormatInt(int64(k), 10)+u.n)
			d -= k * u.d
		}
	}
	if len(parts) == 0 {
		return "0s"
	}
	s := strings.Join(parts, " ")
	if neg {
		s = "-" + s
	}
	return s
}

// formatValue renders a value for people: integers without a fraction.
func formatValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

package alert

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// SlackMessage is the body of a Slack incoming webhook: a fallback text for
// notifications and Block Kit blocks for the message itself.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is one Block Kit block (header, section, actions, context).
type SlackBlock struct {
	Type     string         `json:"type"`
	Text     *SlackText     `json:"text,omitempty"`
	Elements []SlackElement `json:"elements,omitempty"`
}

// SlackText is a text object.
type SlackText struct {
	Type string `json:"type"` // plain_text or mrkdwn
	Text string `json:"text"`
}

// SlackElement is a button (in actions blocks) or a text (in context blocks).
type SlackElement struct {
	Type  string `json:"type"`            // button, or mrkdwn
	Text  any    `json:"text"`            // *SlackText for buttons, a string for mrkdwn
	URL   string `json:"url,omitempty"`   // buttons
	Style string `json:"style,omitempty"` // primary, danger
}

// maxSlackAlerts bounds the alerts shown in one message (Slack takes 50 blocks).
const maxSlackAlerts = 15

// slackMessage renders a notification for people: what (the rule and its
// summary), where (the labels), the value, since when, and buttons to the
// matching logs and to the build or deploy they share.
func slackMessage(n *Notification, alerts []Alert, now time.Time) *SlackMessage {
	firing := 0
	for i := range alerts {
		if alerts[i].State == StateFiring {
			firing++
		}
	}
	status, icon := "RESOLVED", "✅"
	if firing > 0 {
		status, icon = "FIRING", "🔥"
	}
	title := fmt.Sprintf("%s %s: %s", icon, status, n.Rule)
	count := firing
	if firing == 0 {
		count = len(alerts)
	}
	if count > 1 {
		title = fmt.Sprintf("%s %s (%d): %s", icon, status, count, n.Rule)
	}
	ann := common(alerts, func(a *Alert) map[string]string { return a.Annotations })
	what := ann["summary"]
	if what == "" {
		what = ann["description"]
	}
	msg := &SlackMessage{Text: fmt.Sprintf("[%s:%d] %s", status, count, n.Rule)}
	if what != "" {
		msg.Text += ": " + what
	}
	msg.Blocks = append(msg.Blocks, SlackBlock{Type: "header", Text: &SlackText{Type: "plain_text", Text: cut(title, 150)}})
	var head []string
	if what != "" {
		head = append(head, "*"+slackEscape(what)+"*")
	}
	if d := ann["description"]; d != "" && d != what {
		head = append(head, slackEscape(d))
	}
	head = append(head, fmt.Sprintf("Rule `%s` in group `%s`: %s", slackEscape(n.Rule), slackEscape(n.Group), "`"+slackEscape(cut(n.Summary, 500))+"`"))
	msg.Blocks = append(msg.Blocks, SlackBlock{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: cut(strings.Join(head, "\n"), 3000)}})

	// Firing alerts first, then resolved; each group by its labels.
	sorted := append([]Alert(nil), alerts...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].State > sorted[j].State })
	for i := range sorted {
		if i == maxSlackAlerts {
			msg.Blocks = append(msg.Blocks, SlackBlock{Type: "context", Elements: []SlackElement{{Type: "mrkdwn",
				Text: fmt.Sprintf("… and %d more alert%s", len(sorted)-i, plural(len(sorted)-i))}}})
			break
		}
		a := &sorted[i]
		var lines []string
		where := where(a.Labels)
		if where == "" {
			where = "everywhere the query matches"
		}
		state := "🔥"
		if a.State != StateFiring {
			state = "✅"
		}
		lines = append(lines, fmt.Sprintf("%s *Where:* %s", state, slackEscape(where)))
		lines = append(lines, "*Value:* "+formatValue(float64(a.Value)))
		since := a.FiredAt
		if since.IsZero() {
			since = a.ActiveAt
		}
		if a.Resolved() {
			lines = append(lines, fmt.Sprintf("*Resolved:* %s, after firing for %s", stamp(a.ResolvedAt), humanizeDur(a.ResolvedAt.Sub(since).Round(time.Second))))
		} else {
			lines = append(lines, fmt.Sprintf("*Since:* %s (%s ago)", stamp(since), humanizeDur(now.Sub(since).Round(time.Second))))
		}
		if s := a.Annotations["summary"]; s != "" && s != what {
			lines = append(lines, slackEscape(s))
		}
		msg.Blocks = append(msg.Blocks, SlackBlock{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: cut(strings.Join(lines, "\n"), 3000)}})
		var buttons []SlackElement
		if a.Links.Logs != "" {
			buttons = append(buttons, button("View logs", a.Links.Logs, "primary"))
		}
		if a.Links.Build != "" {
			buttons = append(buttons, button("Build "+lastPart(a.Links.Build, a.Labels["build_id"]), a.Links.Build, ""))
		}
		if a.Links.Deploy != "" {
			buttons = append(buttons, button("Deploy "+lastPart(a.Links.Deploy, a.Labels["deploy_id"]), a.Links.Deploy, ""))
		}
		if len(buttons) > 0 {
			msg.Blocks = append(msg.Blocks, SlackBlock{Type: "actions", Elements: buttons})
		}
	}
	return msg
}

func button(text, url, style string) SlackElement {
	return SlackElement{Type: "button", Text: &SlackText{Type: "plain_text", Text: cut(text, 75)}, URL: url, Style: style}
}

// lastPart is id when set, else the last path element of u.
func lastPart(u, id string) string {
	if id != "" {
		return id
	}
	if i := strings.LastIndexByte(u, '/'); i >= 0 {
		return u[i+1:]
	}
	return u
}

// where renders the labels that say where: the log labels first, then the
// rest, without alertname.
func where(l map[string]string) string {
	var parts []string
	first := []string{"service", "host", "build_id", "deploy_id", "level"}
	for _, k := range first {
		if v, ok := l[k]; ok {
			parts = append(parts, k+"="+v)
		}
	}
	var rest []string
	for k := range l {
		if k != "alertname" && !slices.Contains(first, k) {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ", ")
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// slackEscape escapes the three characters Slack's mrkdwn reserves.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// cut shortens s to at most n runes, marking the cut.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// axePath is axe-core, installed by `make deps` from e2e/axe/package.json.
const axePath = "axe/node_modules/axe-core/axe.min.js"

// axeCheck runs axe-core's WCAG 2 A/AA rules on the page and fails on any
// serious or critical violation.
func (u *ui) axeCheck(t testing.TB, page string) {
	t.Helper()
	src, err := os.ReadFile(axePath)
	if err != nil {
		t.Fatalf("axe-core is needed for the accessibility checks and is missing (%v): run `make deps`, which installs it with npm", err)
	}
	if !eval[bool](t, u, `typeof window.axe === 'object'`) {
		u.do(t, chromedp.Evaluate[chromedp.Void](string(src)))
	}
	got := eval[[]string](t, u, `axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
	  .then(r => r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
	    .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' + v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\s+/g, ' ').slice(0, 200)).join(' | ')))`)
	if len(got) > 0 {
		u.failShot(t)
		t.Fatalf("axe-core on %s: %d serious or critical violations:\n%s", page, len(got), strings.Join(got, "\n"))
	}
}

// axeBoth runs axeCheck in light and dark mode.
func (u *ui) axeBoth(t testing.TB, page string) {
	t.Helper()
	for _, dark := range []bool{false, true} {
		u.dark(t, dark)
		want := map[bool]string{false: "rgb(255, 255, 255)", true: "rgb(13, 17, 23)"}[dark]
		u.wait(t, "the colour scheme", fmt.Sprintf(`getComputedStyle(document.body).backgroundColor === %q`, want))
		u.axeCheck(t, fmt.Sprintf("%s (dark %v)", page, dark))
	}
	u.dark(t, false)
}

// viewport resizes the page.
func (u *ui) viewport(t testing.TB, w, h int64) {
	t.Helper()
	u.do(t, chromedp.EmulateViewport(w, h))
}

// timezone sets the browser's time zone.
func (u *ui) timezone(t testing.TB, tz string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: tz}); err != nil {
		t.Fatal(err)
	}
}

// noSideways fails when the page scrolls sideways.
func (u *ui) noSideways(t testing.TB, page string) {
	t.Helper()
	w := eval[[]int](t, u, `[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]`)
	if w[0] > w[2] || w[1] > w[2] {
		u.failShot(t)
		wide := eval[[]string](t, u, `[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.tablewrap, .vlist, .hist')).slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))`)
		t.Fatalf("%s scrolls sideways at %d px: document %d px, body %d px wide; too wide: %v", page, w[2], w[0], w[1], wide)
	}
}

// ui19 is what TestUIIssue19 seeds.
type ui19 struct {
	errID   string // the error line of deploy dep/7 on web-2
	buildID string // shop/main/1234
	t0      time.Time
}

// seedUI19 writes a build with a slash in its id (two runners, one failing;
// ANSI colours, aligned columns, a long line), a deploy of three hosts with
// an error on web-2 while an unrelated CI build logs at the same moments,
// a build killed without an end, a build with no run, and ids the path
// cannot hold.
func seedUI19(t testing.TB, s *server, client shiplogv1.IngestServiceClient) ui19 {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	t0 := now.Add(-10 * time.Minute).Truncate(time.Second)
	write := func(req *shiplogv1.PushRequest) {
		t.Helper()
		if _, err := client.Write(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	at := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(t0.Add(d)) }
	// The build: runner-a passes, runner-b fails with exit code 1.
	const bid = "shop/main/1234"
	msgs := map[string][]string{
		"runner-a": {"\x1b[33mwarning:\x1b[0m unused variable x", "ok  \tshop/cart\t0.012s", "=== RUN   TestCart", "long " + strings.Repeat("abcdefghij", 300) + " end"},
		"runner-b": {"\x1b[1;31mERROR\x1b[0m capture failed", "FAIL\tshop/pay\t0.500s", "--- FAIL: TestPay (0.50s)", "\x1b[38;5;208mtruecolor\x1b[38;2;10;200;30m next\x1b[0m"},
	}
	for hi, h := range []string{"runner-a", "runner-b"} {
		req := &shiplogv1.PushRequest{AgentId: "agent-" + h, Closing: true, Defaults: &shiplogv1.Record{Service: "ci", Host: h, BuildId: bid}}
		for i, m := range msgs[h] {
			req.Records = append(req.Records, &shiplogv1.Record{Time: at(time.Duration(i*2+hi) * time.Second), Message: m, Seq: uint64(i + 1),
				Attributes: map[string]string{"step": fmt.Sprint(i)}})
		}
		write(req)
		exit := int32(hi)
		write(&shiplogv1.PushRequest{AgentId: "run-" + h, Run: &shiplogv1.RunReport{BuildId: bid, Service: "ci", Host: h, Command: []string{"make", "test"},
			Start: at(-time.Second), End: at(10 * time.Second), Finished: true, ExitCode: exit}})
	}
	// The deploy: three hosts, ten lines a second each for 20 s; web-2
	// logs an error at 10 s; a CI build logs as much at the same moments.
	var errID string
	for hi, h := range []string{"web-1", "web-2", "web-3", "ci-runner"} {
		req := &shiplogv1.PushRequest{AgentId: "agent-" + h, Defaults: &shiplogv1.Record{Service: "shop", Host: h, DeployId: "dep/7"}}
		if h == "ci-runner" {
			req.Defaults = &shiplogv1.Record{Service: "ci", Host: h, BuildId: "ci-unrelated"}
		}
		for i := range 200 {
			r := &shiplogv1.Record{Time: at(time.Minute + time.Duration(i*100+hi*7)*time.Millisecond), Message: fmt.Sprintf("%s tick %03d", h, i), Seq: uint64(i + 1)}
			if h == "web-2" && i == 100 {
				r.Level, r.Message = "error", "payment refused by upstream"
			}
			req.Records = append(req.Records, r)
		}
		write(req)
	}
	var r searchResp
	s.getJSON(t, "/v1/logs:search", map[string][]string{"q": {`"payment refused"`}}, &r)
	if len(r.Records) != 1 {
		t.Fatalf("%d error lines in the deploy", len(r.Records))
	}
	errID = r.Records[0].ID
	// Killed: a run that started and never ended, one line long ago.
	write(&shiplogv1.PushRequest{AgentId: "agent-k", Defaults: &shiplogv1.Record{Service: "ci", Host: "runner-k", BuildId: "b-killed"},
		Records: []*shiplogv1.Record{{Time: at(0), Message: "started"}}})
	write(&shiplogv1.PushRequest{AgentId: "run-k", Run: &shiplogv1.RunReport{BuildId: "b-killed", Service: "ci", Host: "runner-k", Command: []string{"sleep", "inf"}, Start: at(0)}})
	// No run at all.
	write(&shiplogv1.PushRequest{AgentId: "agent-n", Defaults: &shiplogv1.Record{Service: "ci", Host: "runner-n", BuildId: "b-norun"},
		Records: []*shiplogv1.Record{{Time: at(0), Message: "just lines"}}})
	// Ids a path cannot carry plainly.
	for _, id := range oddIDs {
		write(&shiplogv1.PushRequest{Defaults: &shiplogv1.Record{Service: "odd", Host: "odd-1", BuildId: id, DeployId: id},
			Records: []*shiplogv1.Record{{Time: at(0), Message: "odd id " + id}}})
	}
	return ui19{errID: errID, buildID: bid, t0: t0}
}

// oddIDs are build and deploy ids the ingest accepts that a URL path does
// not carry as they are.
var oddIDs = []string{"a b", "50%", "x?y#z", "ü/ø", "a:b", "a+b", ".", "..", `q"uote\`, "-"}

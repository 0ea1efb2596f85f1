package e2e

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// pathID is an id as the UI puts it in a page's path (or ?id= for the
// ids a path segment cannot be).
func pathID(kind, id string) string {
	if id == "." || id == ".." {
		return "/" + kind + "s/?id=" + url.QueryEscape(id)
	}
	return "/" + kind + "s/" + url.PathEscape(id)
}

// TestUIIssue19 drives the pages of issue 19 in headless Chromium: ids with
// "/", bad URL parameters, phones, whitespace and wrapping, time zones, ANSI
// colours, keyboard, contrast (axe-core), cross-host context, runs, refine
// and copy, exports, tail, live pages.
func TestUIIssue19(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end, in a browser")
	}
	u := newUI(t, 1280, 860)
	u.dir = t.ArtifactDir()
	s := startServer(t, t.TempDir()+"/data", "--silent-after", "8s")
	u.base = "http://" + s.httpAddr
	client := shiplogv1.NewIngestServiceClient(s.dial(t))
	d := seedUI19(t, s, client)
	buildPage := pathID("build", d.buildID)

	t.Run("ids", func(t *testing.T) {
		for _, id := range append(oddIDs, d.buildID, "dep/7") {
			for _, kind := range []string{"build", "deploy"} {
				if id == d.buildID && kind == "deploy" || id == "dep/7" && kind == "build" {
					continue
				}
				path := "/v1/" + kind + "s/" + url.PathEscape(id)
				if id == "." || id == ".." {
					path = "/v1/" + kind + "?" + kind + "_id=" + url.QueryEscape(id)
				}
				var g map[string]any
				if code, body := s.getJSON(t, path, nil, &g); code != 200 || g[kind+"_id"] != id {
					t.Fatalf("GET %s: %d %s", path, code, body)
				}
			}
		}
		for _, id := range []string{d.buildID, "..", "x?y#z", `q"uote\`} {
			u.open(t, pathID("build", id))
			u.wait(t, "the build "+id, `document.querySelector('.vrow[data-id]') && /\d+ lines?/.test(document.querySelector('.count').innerText)`)
			if h1 := eval[string](t, u, `document.querySelector('.summary .id').textContent`); h1 != id {
				t.Fatalf("page of %q shows %q", id, h1)
			}
		}
		// From the home page's link.
		u.open(t, "/")
		u.do(t, chromedp.Click(chromedp.CSS(`a[href="/builds/shop%2Fmain%2F1234"]`)))
		u.wait(t, "the build from its link", `/8 lines/.test((document.querySelector('.count') || {}).innerText)`)
	})

	t.Run("bad params", func(t *testing.T) {
		for _, c := range []struct{ path, want string }{
			{"/search?start=yesterday&end=banana", "start=yesterday"},
			{"/search?start=1h&end=banana", "end=banana"},
			{"/search?start=2026-01-02T00:00:00Z&end=2025-01-01T00:00:00Z", "is not before"},
			{"/hosts?state=bogus", "state=bogus"},
			{"/context/" + d.errID + "?cross=1&scope=planet", "scope=planet"},
			{"/context/zzz", "want 32 hex digits"},
			{buildPage + "?line=nosuchline", "nosuchline"},
			{"/builds/?nothing=1", "No such page"},
		} {
			u.open(t, c.path)
			u.wait(t, "a message for "+c.path, fmt.Sprintf(`(document.querySelector('main .msg') || {innerText: ''}).innerText.includes(%q) || document.querySelector('main').innerText.includes(%q)`, c.want, c.want))
			if eval[bool](t, u, `/Searching…|Loading…/.test(document.querySelector('main').innerText) && !document.querySelector('.msg.error')`) {
				t.Fatalf("%s still says it is loading", c.path)
			}
		}
	})

	t.Run("select text", func(t *testing.T) {
		u.open(t, "/search?q=service:ci&start=1h")
		u.wait(t, "results", `document.querySelectorAll('.results .rec').length > 3`)
		// Selecting a row's text (a drag ending in a click) opens nothing.
		u.do(t, chromedp.Evaluate[chromedp.Void](`(() => { const m = document.querySelector('.results .rec .msgtext'); const r = document.createRange(); r.selectNodeContents(m); getSelection().removeAllRanges(); getSelection().addRange(r); m.click(); })()`))
		if eval[bool](t, u, `!!document.querySelector('.results .details')`) {
			t.Fatal("selecting a row's text opened its details")
		}
		u.do(t, chromedp.Evaluate[chromedp.Void](`getSelection().removeAllRanges(); document.querySelector('.results .rec .msgtext').click()`))
		u.wait(t, "the details on a plain click", `document.querySelector('.results .details')`)
	})

	t.Run("whitespace and wrap", func(t *testing.T) {
		u.open(t, buildPage)
		u.wait(t, "the build's lines", `document.querySelectorAll('.vrow[data-id]').length === 8`)
		msgs := eval[[]string](t, u, `[...document.querySelectorAll('.vrow[data-id] .msgtext')].map(e => e.textContent)`)
		if !contains(msgs, "ok  \tshop/cart\t0.012s") || !contains(msgs, "=== RUN   TestCart") {
			t.Fatalf("whitespace lost: %q", msgs)
		}
		if ws := eval[string](t, u, `getComputedStyle(document.querySelector('.vrow .msgtext')).whiteSpace`); ws != "pre" {
			t.Fatalf("white-space %q, want pre", ws)
		}
		u.open(t, "/search?q=abcdefghij*&start=1h")
		u.open(t, `/search?q=%22end%22+service:ci&start=1h`)
		u.wait(t, "the long line", `[...document.querySelectorAll('.results .rec .msgtext')].some(e => e.textContent.startsWith('long '))`)
		long := `[...document.querySelectorAll('.results .rec')].find(r => r.querySelector('.msgtext').textContent.startsWith('long '))`
		if !eval[bool](t, u, long+`.querySelector('.msgtext').scrollWidth > `+long+`.querySelector('.msgtext').clientWidth`) {
			t.Fatal("the long line is not cut without wrap")
		}
		h0 := eval[float64](t, u, long+`.offsetHeight`)
		u.do(t, chromedp.Click(chromedp.CSS(`button.wrap`)))
		u.wait(t, "the long line wrapped", long+`.offsetHeight > 3 * `+fmt.Sprint(h0)+` && `+long+`.querySelector('.msgtext').scrollWidth <= `+long+`.querySelector('.msgtext').clientWidth + 1`)
		u.do(t, chromedp.Reload())
		u.wait(t, "wrap remembered", `document.querySelector('button.wrap').getAttribute('aria-pressed') === 'true' && document.documentElement.classList.contains('wrap')`)
		// The build's list wraps too: the long line takes several lines and
		// the rows below it move down.
		u.open(t, buildPage)
		rowsOK := `(() => { const rows = [...document.querySelectorAll('.vrow[data-id]')].sort((a, b) => a.dataset.i - b.dataset.i);
		  const long = rows.find(r => r.querySelector('.msgtext').textContent.startsWith('long '));
		  return rows.length === 8 && long && long.offsetHeight > 60 && rows.every((r, k) => k === 0 || r.offsetTop >= rows[k - 1].offsetTop + rows[k - 1].offsetHeight - 1); })()`
		u.wait(t, "wrapped rows in the build's list", rowsOK)
		u.do(t, chromedp.Click(chromedp.CSS(`button.wrap`)))
		u.wait(t, "wrap off", `document.querySelector('button.wrap').getAttribute('aria-pressed') === 'false'`)
		u.wait(t, "one-line rows again", `[...document.querySelectorAll('.vrow[data-id]')].every(r => r.offsetHeight === 20)`)
	})

	t.Run("time zones", func(t *testing.T) {
		u.timezone(t, "Asia/Kolkata")
		defer u.timezone(t, "UTC")
		u.open(t, "/search?q=%22payment+refused%22&start=1h")
		u.wait(t, "the line", `document.querySelector('.results .rec .time')`)
		var r searchResp
		s.getJSON(t, "/v1/logs:search", map[string][]string{"q": {`"payment refused"`}}, &r)
		tm := r.Records[0].Time
		local := tm.In(time.FixedZone("IST", 5*3600+1800)).Format("2006-01-02 15:04:05.000")
		utc := tm.UTC().Format("2006-01-02 15:04:05.000")
		if got := eval[string](t, u, `document.querySelector('.results .rec .time').textContent`); got != local {
			t.Fatalf("local time %q, want %q", got, local)
		}
		if z := eval[string](t, u, `document.querySelector('button.zone').textContent`); z != "UTC+05:30" {
			t.Fatalf("zone shown %q", z)
		}
		u.do(t, chromedp.Click(chromedp.CSS(`button.zone`)))
		u.wait(t, "UTC times", fmt.Sprintf(`document.querySelector('button.zone').textContent === 'UTC' && document.querySelector('.results .rec .time') && document.querySelector('.results .rec .time').textContent === %q`, utc))
		u.do(t, chromedp.Click(chromedp.CSS(`.results .rec .msgtext`)))
		u.wait(t, "the detail's time in UTC", fmt.Sprintf(`document.querySelector('.details time').textContent === %q`, utc+" UTC"))
		u.do(t, chromedp.Reload())
		u.wait(t, "UTC remembered", fmt.Sprintf(`document.querySelector('.results .rec .time') && document.querySelector('.results .rec .time').textContent === %q`, utc))
		u.do(t, chromedp.Click(chromedp.CSS(`button.zone`)))
		u.wait(t, "local again", `document.querySelector('button.zone').textContent === 'UTC+05:30'`)
		// A custom range is typed in the same 24-hour format, in the zone shown.
		u.open(t, "/search?start=2026-01-02T10:00:00Z&end=2026-01-02T22:30:00Z")
		u.wait(t, "the custom range", `!document.querySelector('.custom').hidden`)
		if got := eval[[]string](t, u, `[...document.querySelectorAll('.custom input')].map(e => e.value)`); got[0] != "2026-01-02 15:30:00" || got[1] != "2026-01-03 04:00:00" {
			t.Fatalf("custom range inputs %q, want IST 24-hour times", got)
		}
		u.do(t, chromedp.SetValue(`.custom input[name=from]`, "2026-01-02 16:00:00"), chromedp.Click(`form.bar button[type=submit]`))
		u.wait(t, "the new range in the URL", `/start=2026-01-02T10%3A30%3A00.000Z/.test(location.search)`)
	})

	t.Run("ansi", func(t *testing.T) {
		u.open(t, buildPage)
		u.wait(t, "the coloured lines", `document.querySelectorAll('.vrow[data-id] .ansi').length >= 4`)
		got := eval[[]string](t, u, `[...document.querySelectorAll('.vrow[data-id] .msgtext')].map(e => e.textContent).filter(x => /warning|ERROR|truecolor/.test(x))`)
		for _, m := range got {
			if strings.ContainsAny(m, "\x1b") || strings.Contains(m, "[33m") {
				t.Fatalf("an escape sequence shows: %q", m)
			}
		}
		colours := eval[map[string]string](t, u, `Object.fromEntries([...document.querySelectorAll('.vrow[data-id] .ansi')].map(e => [e.textContent, getComputedStyle(e).color + ' ' + getComputedStyle(e).fontWeight]))`)
		if c := colours["warning:"]; c == "" || strings.HasPrefix(c, eval[string](t, u, `getComputedStyle(document.body).color`)) {
			t.Fatalf("warning: not coloured: %v", colours)
		}
		if c := colours["ERROR"]; !strings.HasSuffix(c, " 700") {
			t.Fatalf("ERROR not bold: %v", colours)
		}
		u.shots(t, "build-ansi")
		u.axeBoth(t, "a build with ANSI colours")
	})

	t.Run("keyboard", func(t *testing.T) {
		u.open(t, buildPage)
		u.wait(t, "the build's lines", `document.querySelectorAll('.vrow[data-id]').length === 8`)
		u.do(t, chromedp.Focus(`.vlist`), chromedp.KeyEvent("j"), chromedp.KeyEvent("j"), chromedp.KeyEvent("\r"))
		u.wait(t, "the second line open", `document.querySelector('.vrow.sel[data-i="1"]') && !document.querySelector('.detail').hidden && /[?&]line=/.test(location.search)`)
		u.do(t, chromedp.KeyEvent("k"), chromedp.KeyEvent("\r"))
		u.wait(t, "the first line open", `document.querySelector('.vrow.sel[data-i="0"]')`)
		u.open(t, "/search?q=service:ci&start=1h")
		u.wait(t, "results", `document.querySelectorAll('.results .rec').length > 3`)
		u.do(t, chromedp.Focus(`.results .rec`))
		u.wait(t, "the first row focused", `document.activeElement === document.querySelector('.results .rec')`)
		u.do(t, chromedp.KeyEvent("j"))
		u.wait(t, "the second row focused", `document.activeElement === document.querySelectorAll('.results .rec')[1]`)
		u.do(t, chromedp.KeyEvent(kbArrowDown))
		u.wait(t, "the third row focused", `document.activeElement === document.querySelectorAll('.results .rec')[2]`)
		u.do(t, chromedp.KeyEvent("\r"))
		u.wait(t, "its details", `document.querySelectorAll('.results .rec')[2].nextElementSibling.classList.contains('details')`)
	})

	t.Run("detail keeps the row", func(t *testing.T) {
		u.open(t, pathID("deploy", "dep/7"))
		u.wait(t, "the deploy's lines", `document.querySelectorAll('.vrow[data-id]').length > 20`)
		// The lowest row in view: the panel opening above must not hide it.
		u.do(t, chromedp.Evaluate[chromedp.Void](`(() => { const L = document.querySelector('.vlist'), b = L.getBoundingClientRect();
		  const rows = [...L.querySelectorAll('.vrow[data-id]')].filter(r => r.getBoundingClientRect().bottom <= b.bottom - 2);
		  rows.sort((x, y) => y.getBoundingClientRect().top - x.getBoundingClientRect().top)[0].querySelector('.msgtext').click(); })()`))
		u.wait(t, "the clicked row in view with the panel open", `(() => { const r = document.querySelector('.vrow.sel'); const b = document.querySelector('.vlist').getBoundingClientRect(); if (!r || document.querySelector('.detail').hidden) return false; const x = r.getBoundingClientRect(); return x.top >= b.top && x.bottom <= b.bottom + 1; })()`)
	})

	t.Run("cross context", func(t *testing.T) {
		u.open(t, "/context/"+d.errID+"?cross=1")
		u.wait(t, "the cross-host context", `document.querySelector('.crow.target') && document.querySelectorAll('.crow.cross').length > 0`)
		hosts := eval[[]string](t, u, `[...new Set([...document.querySelectorAll('.crow .host')].map(e => e.textContent))].sort()`)
		if strings.Join(hosts, ",") != "web-1,web-2,web-3" {
			t.Fatalf("hosts in the deploy's context: %v (the CI build's lines must stay out)", hosts)
		}
		// Centred: other hosts' lines before and after the target.
		sides := eval[[]int](t, u, `(() => { const rows = [...document.querySelectorAll('.crow')]; const i = rows.findIndex(r => r.classList.contains('target'));
		  return [rows.slice(0, i).filter(r => r.classList.contains('cross')).length, rows.slice(i + 1).filter(r => r.classList.contains('cross')).length]; })()`)
		if sides[0] != 25 || sides[1] != 25 {
			t.Fatalf("other hosts' lines before/after the target: %v, want 25/25", sides)
		}
		// What is left out is said, and a page more comes on request.
		omitted := eval[string](t, u, `document.querySelector('.omitted[data-side=before]').innerText`)
		if !strings.Contains(omitted, "75 earlier lines of other hosts") {
			t.Fatalf("omitted note: %q", omitted)
		}
		for _, col := range []string{".svc", ".bld"} {
			if !eval[bool](t, u, `!!document.querySelector('.crow.target `+col+`')`) {
				t.Fatalf("no %s column", col)
			}
		}
		// A page of 25 earlier lines of the deploy (every host): what it
		// brings of the other hosts comes off the count left out.
		u.do(t, chromedp.Click(chromedp.CSS(`.omitted[data-side=before] button`)))
		u.wait(t, "more earlier lines", `document.querySelectorAll('.crow').length > `+fmt.Sprint(eval[int](t, u, `document.querySelectorAll('.crow').length`)))
		after := eval[[]int](t, u, `(() => { const rows = [...document.querySelectorAll('.crow')]; const i = rows.findIndex(r => r.classList.contains('target'));
		  return [rows.slice(0, i).filter(r => r.classList.contains('cross')).length, +document.querySelector('.omitted[data-side=before] strong').textContent.split(' ')[0]]; })()`)
		if after[0] <= 25 || after[0]+after[1] != 100 {
			t.Fatalf("after a page: %d other hosts' lines before, %d said left out; want more than 25, 100 in all", after[0], after[1])
		}
		times := eval[[]string](t, u, `[...document.querySelectorAll('.crow .time')].map(e => e.dataset.t)`)
		for i := 1; i < len(times); i++ {
			a, _ := time.Parse(time.RFC3339Nano, times[i-1])
			b, _ := time.Parse(time.RFC3339Nano, times[i])
			if b.Before(a) {
				t.Fatalf("out of time order: %s then %s", times[i-1], times[i])
			}
		}
		u.shots(t, "context-cross-scoped")
		u.axeBoth(t, "cross-host context")
		// Widen: every service brings the CI build in.
		u.open(t, "/context/"+d.errID+"?cross=1&scope=all")
		u.wait(t, "the widened context", `[...document.querySelectorAll('.crow .host')].some(e => e.textContent === 'ci-runner')`)
	})

	t.Run("runs", func(t *testing.T) {
		u.open(t, buildPage)
		u.wait(t, "the summary", `/failed/.test(document.querySelector('.summary').innerText) && document.querySelector('table.runs')`)
		sum := eval[string](t, u, `document.querySelector('.facts').innerText`)
		if !strings.Contains(sum, "exit code\n1") && !regexpMatch(`exit code\s+1`, sum) {
			t.Fatalf("build summary: %q, want exit code 1", sum)
		}
		runs := eval[[]string](t, u, `[...document.querySelectorAll('table.runs tbody tr')].map(r => r.innerText.replace(/\s+/g, ' '))`)
		if len(runs) != 2 || !strings.Contains(runs[0]+runs[1], "runner-b make test failed 1") || !strings.Contains(runs[0]+runs[1], "runner-a make test passed 0") {
			t.Fatalf("runs: %q", runs)
		}
		chips := eval[string](t, u, `document.querySelector('.summary .hosts').innerText`)
		if !regexpMatch(`runner-a\s*closed\s*4 lines`, chips) {
			t.Fatalf("host chips %q: want runner-a closed with the build's 4 lines", chips)
		}
		// Killed: lost after --silent-after (8 s) without a line.
		u.open(t, pathID("build", "b-killed"))
		u.wait(t, "a lost run", `document.querySelector('.summary .badge') && document.querySelector('.summary .badge').textContent === 'lost'`)
		u.open(t, "/")
		u.wait(t, "the builds", `document.querySelector('a[href="/builds/b-norun"]')`)
		dur := eval[string](t, u, `document.querySelector('a[href="/builds/b-norun"]').closest('tr').children[5].textContent`)
		if dur != "" {
			t.Fatalf("a build with no run shows duration %q", dur)
		}
	})

	t.Run("refine and copy", func(t *testing.T) {
		u.open(t, "/search?q=service:ci+build_id:%22shop/main/1234%22&start=1h")
		u.wait(t, "results", `document.querySelectorAll('.results .rec').length === 8`)
		u.do(t, chromedp.Evaluate[chromedp.Void](`window.__copied = []; navigator.clipboard.writeText = async (x) => { window.__copied.push(x); }`))
		u.do(t, chromedp.Click(chromedp.CSS(`.results .rec .msgtext`)))
		u.wait(t, "details", `document.querySelector('.details .acts')`)
		u.do(t, chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll('.details .links button')].find(b => b.textContent === 'Copy link').click()`))
		u.wait(t, "the permalink copied", `window.__copied.length === 1 && /\/context\/[0-9a-f]+$/.test(window.__copied[0])`)
		host := eval[string](t, u, `document.querySelector('.results .rec .host').textContent`)
		u.do(t, chromedp.Click(chromedp.CSS(fmt.Sprintf(`.details a[aria-label="exclude host=%s"]`, host))))
		u.wait(t, "the excluded host gone", fmt.Sprintf(`document.querySelector('[data-query]').value.endsWith('-host:%s') && document.querySelectorAll('.results .rec').length === 4 && ![...document.querySelectorAll('.results .rec .host')].some(e => e.textContent === %q)`, host, host))
		u.do(t, chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll('.results .rec .msgtext')].find(e => e.textContent.startsWith('warning:')).click()`))
		u.wait(t, "details", `document.querySelector('.details a[aria-label="include step=0"]')`)
		u.do(t, chromedp.Click(chromedp.CSS(`.details a[aria-label="include step=0"]`)))
		u.wait(t, "the included attribute", `/step:0/.test(document.querySelector('[data-query]').value) && document.querySelectorAll('.results .rec').length === 1`)
		u.axeBoth(t, "search with details")
	})

	t.Run("fields", func(t *testing.T) {
		u.open(t, "/search?q=service:shop&start=1h")
		u.wait(t, "the field sidebar", `document.querySelector('.fields [data-field=host] li')`)
		hosts := eval[map[string]string](t, u, `Object.fromEntries([...document.querySelectorAll('.fields [data-field=host] li')].map(li => [li.querySelector('.fv').textContent, li.querySelector('.fc').textContent]))`)
		if len(hosts) != 3 || hosts["web-1"] != "200" || hosts["web-2"] != "200" || hosts["web-3"] != "200" {
			t.Fatalf("host values in the sidebar: %v, want web-1..3 with 200 each", hosts)
		}
		u.do(t, chromedp.Click(chromedp.CSS(`.fields [data-field=host] a[aria-label="exclude host=web-1"]`)))
		u.wait(t, "web-1 excluded", `document.querySelector('[data-query]').value === 'service:shop -host:web-1' && document.querySelector('.fields [data-field=host] li') && document.querySelectorAll('.fields [data-field=host] li').length === 2`)
		u.do(t, chromedp.Click(chromedp.CSS(`.fields [data-field=level] a.fv`)))
		u.wait(t, "a level included", `/level:\w+/.test(document.querySelector('[data-query]').value)`)
		u.shots(t, "search-fields")
		u.axeBoth(t, "search with the field sidebar")
	})

	t.Run("export", func(t *testing.T) {
		q := url.Values{"q": {"service:shop"}, "start": {d.t0.Add(-time.Minute).Format(time.RFC3339)}}
		resp, err := http.Get("http://" + s.httpAddr + "/v1/logs:export?" + q.Encode() + "&format=jsonl")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			n++
		}
		resp.Body.Close()
		if n != 600 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("jsonl export: %d lines (%s), want 600", n, resp.Header.Get("Content-Type"))
		}
		resp, err = http.Get("http://" + s.httpAddr + "/v1/logs:export?" + q.Encode() + "&format=csv")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(resp.Body).ReadAll()
		resp.Body.Close()
		if err != nil || len(rows) != 601 || rows[0][0] != "time" || rows[1][7] != "web-1 tick 000" {
			t.Fatalf("csv export: %d rows, %v, first %v", len(rows), err, rows[:min(2, len(rows))])
		}
		for i := 2; i < len(rows); i++ {
			if rows[i][0] < rows[i-1][0] && len(rows[i][0]) == len(rows[i-1][0]) {
				t.Fatalf("csv not oldest first at row %d: %s after %s", i, rows[i][0], rows[i-1][0])
			}
		}
		// Over several pages of the server's reads (2,000 a page): every
		// line once, oldest first.
		req := &shiplogv1.PushRequest{Defaults: &shiplogv1.Record{Service: "exp", Host: "exp-1"}}
		t1 := time.Now().Add(-time.Minute)
		for i := range 4500 {
			req.Records = append(req.Records, &shiplogv1.Record{Time: timestamppb.New(t1.Add(time.Duration(i) * time.Millisecond)), Message: fmt.Sprintf("exp %04d", i)})
		}
		if _, err := client.Write(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		resp, err = http.Get("http://" + s.httpAddr + "/v1/logs:export?q=service:exp&format=csv")
		if err != nil {
			t.Fatal(err)
		}
		rows, err = csv.NewReader(resp.Body).ReadAll()
		resp.Body.Close()
		if err != nil || len(rows) != 4501 {
			t.Fatalf("csv export of 4,500 lines: %d rows, %v", len(rows), err)
		}
		for i, r := range rows[1:] {
			if want := fmt.Sprintf("exp %04d", i); r[7] != want {
				t.Fatalf("row %d: %q, want %q", i+1, r[7], want)
			}
		}
		if code, _ := s.getJSON(t, "/v1/logs:export", url.Values{"format": {"xml"}}, nil); code != 400 {
			t.Fatalf("format=xml: %d, want 400", code)
		}
		u.open(t, "/search?q=service:shop&start=1h")
		u.wait(t, "the export links", `document.querySelector('.exports a[href*="format=csv"]')`)
		href := eval[string](t, u, `document.querySelector('.exports a[href*="format=csv"]').href`)
		if !strings.Contains(href, "/v1/logs:export?q=service%3Ashop") {
			t.Fatalf("export link %s", href)
		}
	})

	t.Run("tail", func(t *testing.T) {
		req := &shiplogv1.PushRequest{Defaults: &shiplogv1.Record{Service: "tailsvc", Host: "tail-1"}}
		for i := range 150 {
			req.Records = append(req.Records, &shiplogv1.Record{Time: timestamppb.New(time.Now().Add(time.Duration(i-200) * time.Millisecond)), Message: fmt.Sprintf("t %03d", i)})
		}
		if _, err := client.Write(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		u.open(t, "/tail?q=service:tailsvc")
		u.wait(t, "the last 100 lines", `document.querySelectorAll('.tail .crow').length === 100`)
		first := eval[[]string](t, u, `[...document.querySelectorAll('.tail .crow .msgtext')].map(e => e.textContent)`)
		if first[0] != "t 050" || first[99] != "t 149" {
			t.Fatalf("tail starts %q ... %q, want t 050 ... t 149", first[0], first[99])
		}
	})

	t.Run("live build", func(t *testing.T) {
		start := time.Now()
		write := func(req *shiplogv1.PushRequest) {
			if _, err := client.Write(context.Background(), req); err != nil {
				t.Fatal(err)
			}
		}
		line := func(m string) {
			write(&shiplogv1.PushRequest{AgentId: "agent-live", Defaults: &shiplogv1.Record{Service: "ci", Host: "runner-l", BuildId: "b-live"},
				Records: []*shiplogv1.Record{{Message: m}}})
		}
		run := &shiplogv1.RunReport{BuildId: "b-live", Service: "ci", Host: "runner-l", Command: []string{"make"}, Start: timestamppb.New(start)}
		write(&shiplogv1.PushRequest{AgentId: "run-live", Run: run})
		line("first line")
		u.open(t, pathID("build", "b-live"))
		u.wait(t, "a running build", `document.querySelector('.summary .badge') && document.querySelector('.summary .badge').textContent === 'running'`)
		line("\x1b[31merror:\x1b[0m second line")
		u.wait(t, "the new line without a reload", `[...document.querySelectorAll('.vrow[data-id] .msgtext')].some(e => e.textContent === 'error: second line')`)
		run.End, run.Finished, run.ExitCode = timestamppb.Now(), true, 3
		write(&shiplogv1.PushRequest{AgentId: "run-live", Run: run})
		u.wait(t, "the end, its status and exit code", `document.querySelector('.summary .badge').textContent === 'failed' && /exit code\s*3/.test(document.querySelector('.facts').innerText)`)
	})

	t.Run("live deploy", func(t *testing.T) {
		line := func(m string) {
			if _, err := client.Write(context.Background(), &shiplogv1.PushRequest{AgentId: "agent-dl", Defaults: &shiplogv1.Record{Service: "shop", Host: "web-9", DeployId: "dep-live"},
				Records: []*shiplogv1.Record{{Message: m}}}); err != nil {
				t.Fatal(err)
			}
		}
		line("deploy started")
		u.open(t, pathID("deploy", "dep-live"))
		u.wait(t, "the deploy with a live host", `document.querySelector('.vrow[data-id]') && /1 line/.test(document.querySelector('.count').innerText)`)
		line("second deploy line")
		u.wait(t, "the new line without a reload", `[...document.querySelectorAll('.vrow[data-id] .msgtext')].some(e => e.textContent === 'second deploy line') && /2 lines/.test(document.querySelector('.count').innerText)`)
	})

	t.Run("runner host", func(t *testing.T) {
		dir := t.TempDir()
		for i, b := range []string{"b-seq-1", "b-seq-2"} {
			cmd := exec.Command(binary, "run", "--server", s.grpcAddr, "--service", "ci", "--host", "runner-seq", "--build-id", b,
				"--spool", fmt.Sprintf("%s/spool%d", dir, i), "--", "sh", "-c", "echo hello from "+b)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("shiplog run: %v\n%s", err, out)
			}
		}
		var r struct{ Hosts []hostJSON }
		s.getJSON(t, "/v1/hosts", url.Values{"build_id": {"b-seq-2"}}, &r)
		if len(r.Hosts) != 1 || r.Hosts[0].State != "closed" {
			t.Fatalf("a host whose two runs ended cleanly: %+v, want closed", r.Hosts)
		}
	})

	t.Run("phones", func(t *testing.T) {
		u.viewport(t, 390, 844)
		defer u.viewport(t, 1280, 860)
		for _, p := range []struct{ path, ready string }{
			{"/", `document.querySelector('a[href="/builds/b-norun"]')`},
			{"/search?q=service:ci&start=1h", `document.querySelector('.results .rec') && document.querySelector('.hist svg')`},
			{"/search?q=service:ci&start=" + url.QueryEscape(d.t0.Add(-time.Minute).Format(time.RFC3339)) + "&end=" + url.QueryEscape(time.Now().Format(time.RFC3339)), `document.querySelector('.results .rec') && !document.querySelector('.custom').hidden`},
			{"/hosts", `document.querySelector('tbody tr')`},
			{"/alerts", `/Alerting is not configured|Firing/.test(document.querySelector('main').innerText)`},
			{"/tail?q=service:tailsvc", `/following/.test(document.querySelector('.status').innerText)`},
			{buildPage, `document.querySelector('.vrow[data-id]') && document.querySelector('table.runs')`},
			{pathID("deploy", "dep/7"), `document.querySelector('.vrow[data-id]') && document.querySelector('.timeline')`},
			{"/context/" + d.errID + "?cross=1", `document.querySelector('.crow.target')`},
		} {
			u.open(t, p.path)
			u.wait(t, p.path, p.ready)
			u.noSideways(t, p.path)
			// The message gets most of the width.
			w := eval[float64](t, u, `Math.max(0, ...[...document.querySelectorAll('.rec .msgtext, .crow .msgtext, .vrow[data-id] .msgtext')].map(e => e.getBoundingClientRect().width))`)
			if strings.Contains(p.ready, "msgtext") || strings.Contains(p.ready, "rec") || strings.Contains(p.ready, "crow") || strings.Contains(p.ready, "vrow") {
				if w < 300 {
					u.failShot(t)
					t.Fatalf("%s at 390 px: messages are %.0f px wide", p.path, w)
				}
			}
		}
		u.open(t, "/search?q=service:ci&start=1h")
		u.wait(t, "results", `document.querySelector('.results .rec')`)
		u.shots(t, "phone-search")
		u.open(t, buildPage)
		u.wait(t, "the build", `document.querySelector('.vrow[data-id]')`)
		u.shots(t, "phone-build")
		u.axeBoth(t, "search at 390 px")
	})

	t.Run("axe", func(t *testing.T) {
		for _, p := range []struct{ path, ready string }{
			{"/", `document.querySelector('a[href="/builds/b-norun"]')`},
			{"/hosts", `document.querySelector('tbody tr')`},
			{"/alerts", `/Alerting is not configured|Firing/.test(document.querySelector('main').innerText)`},
			{"/tail?q=service:tailsvc", `/following/.test(document.querySelector('.status').innerText)`},
			{pathID("deploy", "dep/7"), `document.querySelector('.vrow[data-id]') && document.querySelector('.timeline')`},
		} {
			u.open(t, p.path)
			u.wait(t, p.path, p.ready)
			u.axeBoth(t, p.path)
		}
	})

	if errs := u.exceptions(); len(errs) > 0 {
		t.Fatalf("uncaught JavaScript exceptions:\n%s", strings.Join(errs, "\n"))
	}
}

const kbArrowDown = kb.ArrowDown

func regexpMatch(p, s string) bool { return regexp.MustCompile(p).MatchString(s) }

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// TestUIAlertsRefresh: the alerts page shows an alert that starts firing
// while it is open, without a reload.
func TestUIAlertsRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end, in a browser")
	}
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(`
groups:
  - name: ui
    interval: 1s
    rules:
      - alert: PaymentErrors
        logs: 'service:pay AND level:error'
        window: 5m
        threshold: '> 0'
`), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir()+"/data", "--rules", rules)
	u := newUI(t, 1280, 860)
	u.dir = t.ArtifactDir()
	u.base = "http://" + s.httpAddr
	u.open(t, "/alerts")
	u.wait(t, "the alerts page", `/Nothing is firing/.test(document.querySelector('main').innerText) && /refreshes every/.test(document.querySelector('main').innerText)`)
	client := shiplogv1.NewIngestServiceClient(s.dial(t))
	if _, err := client.Write(context.Background(), &shiplogv1.PushRequest{Defaults: &shiplogv1.Record{Service: "pay", Host: "pay-1"},
		Records: []*shiplogv1.Record{{Level: "error", Message: "card declined"}}}); err != nil {
		t.Fatal(err)
	}
	u.wait(t, "the alert firing without a reload", `/Firing \(1\)/.test(document.querySelector('main').innerText) && /PaymentErrors/.test(document.querySelector('main').innerText)`)
	u.axeBoth(t, "alerts with a firing alert")
	if errs := u.exceptions(); len(errs) > 0 {
		t.Fatalf("uncaught JavaScript exceptions:\n%s", strings.Join(errs, "\n"))
	}
}

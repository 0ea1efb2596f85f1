package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// chromiumPath is Debian's chromium, which `make deps` installs.
const chromiumPath = "/usr/bin/chromium"

// ui drives one tab of a headless Chromium against a running server.
type ui struct {
	ctx  context.Context
	base string
	dir  string // screenshots
	mu   sync.Mutex
	errs []string // uncaught JavaScript exceptions
}

// newUI starts headless Chromium (fresh profile, no network chatter) and
// collects the page's uncaught exceptions.
func newUI(t testing.TB, width, height int) *ui {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is needed for the web UI tests and is missing (%v): run `make deps`, which installs Debian's chromium package", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	u := &ui{ctx: ctx}
	go func() {
		for ev, err := range chromedp.Events(ctx, runtime.ExceptionThrown) {
			if err != nil {
				return
			}
			u.mu.Lock()
			u.errs = append(u.errs, (&chromedp.ExceptionError{ExceptionDetails: ev.ExceptionDetails}).Error())
			u.mu.Unlock()
		}
	}()
	return u
}

func (u *ui) do(t testing.TB, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v\npage: %s", err, u.pageText())
	}
}

func (u *ui) open(t testing.TB, path string) {
	t.Helper()
	u.do(t, chromedp.Navigate(u.base+path))
}

// wait polls a JavaScript expression until it is truthy.
func (u *ui) wait(t testing.TB, what, js string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 30*time.Second)
	defer cancel()
	guarded := "(() => { try { return (" + js + "); } catch (e) { return false; } })()"
	deadline := time.Now().Add(25 * time.Second)
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](guarded, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(time.Until(deadline))))
		if err == nil {
			return
		}
		// A navigation that lands while the poll runs destroys the page's
		// JavaScript context under it: poll again in the new document.
		if strings.Contains(err.Error(), "Cannot find context with specified id") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		u.failShot(t)
		t.Fatalf("waiting for %s (%s): %v\npage: %s", what, js, err, u.pageText())
	}
}

// eval runs JavaScript (awaiting a promise) and decodes its value.
func eval[T any](t testing.TB, u *ui, js string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("eval %s: %v", js, err)
	}
	return v
}

func (u *ui) pageText() string {
	ctx, cancel := context.WithTimeout(u.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + (document.querySelector("main") || document.body).innerText.slice(0, 1500)`))
	return s
}

func (u *ui) failShot(t testing.TB) {
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
	defer cancel()
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil && u.dir != "" {
		_ = os.WriteFile(filepath.Join(u.dir, "failed-"+strings.ReplaceAll(t.Name(), "/", "-")+".png"), png, 0o644)
	}
}

// dark switches prefers-color-scheme.
func (u *ui) dark(t testing.TB, on bool) {
	t.Helper()
	v := "light"
	if on {
		v = "dark"
	}
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}}}); err != nil {
		t.Fatal(err)
	}
}

// shots saves the viewport as name-light.png and name-dark.png.
func (u *ui) shots(t testing.TB, name string) {
	t.Helper()
	for _, mode := range []string{"light", "dark"} {
		u.dark(t, mode == "dark")
		want := map[string]string{"light": "rgb(255, 255, 255)", "dark": "rgb(13, 17, 23)"}[mode]
		u.wait(t, mode+" mode", fmt.Sprintf(`getComputedStyle(document.body).backgroundColor === %q`, want))
		ctx, cancel := context.WithTimeout(u.ctx, 20*time.Second)
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(u.dir, name+"-"+mode+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u.dark(t, false)
}

func (u *ui) exceptions() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.errs...)
}

// uiLine is one line of the seeded data, as the build page shows it.
type uiLine struct{ host, msg string }

// seedUI writes: build build-ui-7 from three runners (runner-c vanishes
// part-way: no goodbye, so it turns silent), and two deploys of api, the
// second one logging "connection refused" errors.
func seedUI(t testing.TB, client shiplogv1.IngestServiceClient) (build []uiLine) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	t0 := now.Add(-20 * time.Minute).Truncate(time.Second)
	runners := []string{"runner-a", "runner-b", "runner-c"}
	batches := map[string]*shiplogv1.PushRequest{}
	for _, h := range runners {
		batches[h] = &shiplogv1.PushRequest{AgentId: "agent-" + h, Closing: h != "runner-c",
			Defaults: &shiplogv1.Record{Service: "ci", Host: h, BuildId: "build-ui-7"}}
	}
	for i := 0; i < 60; i++ {
		h := runners[i%3]
		if h == "runner-c" && i >= 45 {
			continue // runner-c is gone
		}
		lv, msg := "info", fmt.Sprintf("step %03d on %s", i, h)
		switch i {
		case 23:
			lv, msg = "error", msg+": test TestPayments failed: exit status 2"
		case 30:
			lv = "warn"
		}
		b := batches[h]
		b.Records = append(b.Records, &shiplogv1.Record{Time: timestamppb.New(t0.Add(time.Duration(i) * 700 * time.Millisecond)),
			Level: lv, Message: msg, Seq: uint64(len(b.Records) + 1), Attributes: map[string]string{"step": fmt.Sprint(i)}})
		build = append(build, uiLine{h, msg})
	}
	for _, h := range runners {
		if _, err := client.Write(ctx, batches[h]); err != nil {
			t.Fatal(err)
		}
	}
	run := &shiplogv1.RunReport{BuildId: "build-ui-7", Service: "ci", Host: "runner-a", Command: []string{"make", "test"},
		Start: timestamppb.New(t0), End: timestamppb.New(t0.Add(45 * time.Second)), Finished: true, ExitCode: 2}
	if _, err := client.Write(ctx, &shiplogv1.PushRequest{AgentId: "ci-build-ui-7", Run: run}); err != nil {
		t.Fatal(err)
	}
	for d, hosts := range map[int][]string{1: {"api-1a", "api-1b"}, 2: {"api-2a", "api-2b", "api-2c"}} {
		base := now.Add(-time.Duration(45-15*d) * time.Minute)
		for hi, h := range hosts {
			req := &shiplogv1.PushRequest{AgentId: "agent-" + h, Closing: h == "api-1a",
				Defaults: &shiplogv1.Record{Service: "api", Host: h, DeployId: fmt.Sprintf("deploy-ui-%d", d), BuildId: fmt.Sprintf("build-api-%d", d)}}
			for i := 0; i < 40; i++ {
				r := &shiplogv1.Record{Time: timestamppb.New(base.Add(time.Duration(i*20+hi) * time.Second)), Level: "info",
					Message: fmt.Sprintf("GET /v1/users/%d 200", 1000+i), Seq: uint64(i + 1), Attributes: map[string]string{"path": "/v1/users", "status": "200"}}
				if d == 2 && i%4 == 3 || d == 1 && i == 7 {
					r.Level, r.Message, r.Attributes = "error", "connection refused to db-1:5432", map[string]string{"path": "/v1/users", "status": "500"}
					if d == 1 {
						r.Message = "timeout talking to db-1:5432"
					}
				}
				req.Records = append(req.Records, r)
			}
			if _, err := client.Write(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
	}
	return build
}

// TestUI drives the web UI in headless Chromium against the real server.
func TestUI(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end, in a browser")
	}
	u := newUI(t, 1280, 860)
	u.dir = t.ArtifactDir()
	t.Logf("screenshots in %s", u.dir)
	s := startServer(t, t.TempDir()+"/data", "--silent-after", "6s")
	u.base = "http://" + s.httpAddr
	client := shiplogv1.NewIngestServiceClient(s.dial(t))
	build := seedUI(t, client)
	heartbeat := func(host, deploy string) {
		t.Helper()
		_, err := client.Write(context.Background(), &shiplogv1.PushRequest{AgentId: "agent-" + host,
			Defaults: &shiplogv1.Record{Service: "api", Host: host, DeployId: deploy, BuildId: "build-api-2"},
			Records:  []*shiplogv1.Record{{Message: "GET /healthz 200"}}})
		if err != nil {
			t.Fatal(err)
		}
	}

	t.Run("home", func(t *testing.T) {
		u.open(t, "/")
		u.wait(t, "latest builds and deploys", `document.querySelector('a[href="/builds/build-ui-7"]') && document.querySelector('a[href="/deploys/deploy-ui-2"]')`)
		u.shots(t, "home")
	})

	t.Run("search", func(t *testing.T) {
		u.open(t, "/search?start=1h")
		u.wait(t, "the query box", `document.querySelector('[data-query]')`)
		// "/" focuses the query box; then type a query and press Enter.
		u.do(t, chromedp.Evaluate[chromedp.Void](`document.activeElement.blur()`), chromedp.KeyEvent("/"))
		u.wait(t, "focus on the query box", `document.activeElement && document.activeElement.matches('[data-query]')`)
		u.do(t, chromedp.KeyEvent(`"connection refused"`+"\r"))
		u.wait(t, "matching lines", `document.querySelectorAll('.results .rec').length === 30 && /End of results: 30 lines/.test(document.querySelector('.more').innerText)`)
		u.wait(t, "a histogram", `document.querySelectorAll('.hist svg rect.hb').length > 0 && /30 matching lines/.test(document.querySelector('.status').innerText)`)
		texts := eval[[]string](t, u, `[...document.querySelectorAll('.results .rec .msgtext')].map(e => e.textContent)`)
		for _, m := range texts {
			if m != "connection refused to db-1:5432" {
				t.Fatalf("a result that does not match: %q", m)
			}
		}
		loc := eval[string](t, u, `location.search`)
		if !strings.Contains(loc, "q=%22connection+refused%22") || !strings.Contains(loc, "start=1h") {
			t.Fatalf("the query is not in the URL: %s", loc)
		}
		// Newest first.
		times := eval[[]string](t, u, `[...document.querySelectorAll('.results .rec .time')].map(e => e.title)`)
		for i := 1; i < len(times); i++ {
			a, _ := time.Parse(time.RFC3339Nano, times[i-1])
			b, _ := time.Parse(time.RFC3339Nano, times[i])
			if b.After(a) {
				t.Fatalf("results not newest first: %s then %s", times[i-1], times[i])
			}
		}
		// Attributes on expand.
		u.do(t, chromedp.Click(chromedp.CSS(`.results .rec .msgtext`)))
		u.wait(t, "attributes", `/status\s*500/.test(document.querySelector('.details .attrs').innerText) && /path/.test(document.querySelector('.details .attrs').innerText)`)
		u.shots(t, "search")

		// Clicking a host narrows the query.
		host := eval[string](t, u, `document.querySelector('.results .rec a.host').textContent`)
		u.do(t, chromedp.Click(chromedp.CSS(`.results .rec a.host`)))
		u.wait(t, "the narrowed query", fmt.Sprintf(`document.querySelector('[data-query]').value === '"connection refused" host:%s' && document.querySelectorAll('.results .rec').length === 10`, host))
		hosts := eval[[]string](t, u, `[...document.querySelectorAll('.results .rec a.host')].map(e => e.textContent)`)
		for _, h := range hosts {
			if h != host {
				t.Fatalf("narrowed to %s, got a line of %s", host, h)
			}
		}

		// Drag on the histogram to zoom: the range lands in the URL. The
		// narrowed page draws its histogram after its first results.
		u.wait(t, "the narrowed query's histogram", `document.querySelectorAll('.hist svg rect.hb').length > 0`)
		box := eval[[]float64](t, u, `(() => { const r = document.querySelector('.hist svg').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`)
		y := box[1] + box[3]/2
		u.do(t,
			chromedp.MouseEvent(chromedp.MousePressed, box[0]+box[2]*0.3, y, chromedp.ButtonLeft, chromedp.ClickCount(1)),
			chromedp.MouseEvent(chromedp.MouseMoved, box[0]+box[2]*0.5, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(chromedp.MouseMoved, box[0]+box[2]*0.9, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(chromedp.MouseReleased, box[0]+box[2]*0.9, y, chromedp.ButtonLeft, chromedp.ClickCount(1)))
		u.wait(t, "a zoomed range", `/[?&]end=\d{4}-/.test(location.search) && /[?&]start=\d{4}-/.test(location.search) && document.querySelector('select[name=range]').value === 'custom'`)
		u.wait(t, "results or a message for the zoomed range", `document.querySelector('.results .rec, .results .msg')`)
	})

	t.Run("more on scroll", func(t *testing.T) {
		// 200 lines of api: a first page of 100, the rest through next_cursor.
		u.open(t, "/search?q=service:api&start=1h")
		u.wait(t, "the first page", `document.querySelectorAll('.results .rec').length === 100`)
		u.do(t, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, document.body.scrollHeight)`))
		u.wait(t, "the next page", `document.querySelectorAll('.results .rec').length === 200 && /End of results: 200 lines/.test(document.querySelector('.more').innerText)`)
		ids := eval[int](t, u, `new Set([...document.querySelectorAll('.results .rec')].map(e => e.dataset.id)).size`)
		if ids != 200 {
			t.Fatalf("%d distinct lines of 200", ids)
		}
	})

	t.Run("empty", func(t *testing.T) {
		u.open(t, "/search?q=nosuchwordanywhere&start=1h")
		u.wait(t, "the empty-result message", `/No lines match/.test(document.querySelector('.results').innerText)`)
	})

	t.Run("bad query", func(t *testing.T) {
		u.open(t, "/search?start=1h")
		u.wait(t, "the query box", `document.querySelector('[data-query]')`)
		u.do(t, chromedp.SendKeys(chromedp.CSS(`[data-query]`), "level:loud\r"))
		u.wait(t, "the server's error", `document.querySelector('.msg.error') && document.querySelector('.msg.error').innerText.includes('unknown level "loud"')`)
		u.shots(t, "bad-query")
	})

	// runner-c said no goodbye: it turns silent after --silent-after.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var r struct{ Hosts []hostJSON }
		s.getJSON(t, "/v1/hosts", map[string][]string{"build_id": {"build-ui-7"}}, &r)
		states := map[string]string{}
		for _, h := range r.Hosts {
			states[h.Host] = h.State
		}
		if states["runner-c"] == "silent" && states["runner-a"] == "closed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runner states: %v", states)
		}
		time.Sleep(200 * time.Millisecond)
	}

	t.Run("build", func(t *testing.T) {
		// From a link on the home page.
		u.open(t, "/")
		u.wait(t, "the build link", `document.querySelector('a[href="/builds/build-ui-7"]')`)
		u.do(t, chromedp.Click(chromedp.CSS(`a[href="/builds/build-ui-7"]`)))
		u.wait(t, "the build's lines", `location.pathname === '/builds/build-ui-7' && document.querySelector('.vrow[data-id]') && /55 lines/.test(document.querySelector('.count').innerText)`)
		u.wait(t, "the summary", `/failed/.test(document.querySelector('.summary').innerText) && /exit code\s*2/.test(document.querySelector('.summary').innerText)`)
		chips := eval[string](t, u, `document.querySelector('.summary .hosts').innerText`)
		for _, want := range []string{"runner-a", "closed", "runner-c", "silent", "3 hosts"} {
			if !strings.Contains(chips, want) {
				t.Fatalf("hosts of the build %q lack %q", chips, want)
			}
		}
		u.shots(t, "build")
		// Every line, in time order, across hosts: scroll through the list.
		got := eval[[]string](t, u, collectRowsJS)
		if len(got) != len(build) {
			t.Fatalf("%d lines on the page, want %d:\n%s", len(got), len(build), strings.Join(got, "\n"))
		}
		for i, l := range build {
			if want := l.host + " " + l.msg; got[i] != want {
				t.Fatalf("line %d: %q, want %q", i, got[i], want)
			}
		}
		// A colour per host.
		colours := eval[map[string]string](t, u, `(() => { const m = {}; for (const r of document.querySelectorAll('.vrow[data-id]')) m[r.querySelector('.host').textContent] = getComputedStyle(r).borderLeftColor; return m; })()`)
		if len(colours) != 3 || colours["runner-a"] == colours["runner-b"] || colours["runner-b"] == colours["runner-c"] || colours["runner-a"] == colours["runner-c"] {
			t.Fatalf("host colours: %v", colours)
		}
		// Jump to the first error: it is selected, shown, and in the URL.
		u.do(t, chromedp.Click(chromedp.CSS(`button[title="the earliest error or fatal line"]`)))
		u.wait(t, "the first error", `document.querySelector('.vrow.sel') && /TestPayments failed/.test(document.querySelector('.vrow.sel').innerText) && /[?&]line=/.test(location.search) && !document.querySelector('.detail').hidden`)
		u.shots(t, "build-first-error")
		// The filter box narrows the lines.
		u.do(t, chromedp.SetValue(chromedp.CSS(`.bar [data-query]`), "host:runner-c"), chromedp.SendKeys(chromedp.CSS(`.bar [data-query]`), "\r"))
		u.wait(t, "the filtered lines", `/filter=host%3Arunner-c/.test(location.search) && /15 lines match the filter/.test(document.querySelector('.count').innerText)`)
		hostsShown := eval[[]string](t, u, `[...new Set([...document.querySelectorAll('.vrow[data-id] .host')].map(e => e.textContent))]`)
		if len(hostsShown) != 1 || hostsShown[0] != "runner-c" {
			t.Fatalf("filter host:runner-c shows %v", hostsShown)
		}
	})

	t.Run("context", func(t *testing.T) {
		u.open(t, "/builds/build-ui-7")
		u.wait(t, "the build's lines", `document.querySelector('.vrow[data-i="5"][data-id] a.ctx')`)
		u.do(t, chromedp.Click(chromedp.CSS(`.vrow[data-i="5"] a.ctx`)))
		target := build[5]
		u.wait(t, "the highlighted line", fmt.Sprintf(`location.pathname.startsWith('/context/') && document.querySelector('.crow.target') && document.querySelector('.crow.target .msgtext').textContent === %q`, target.msg))
		hosts := eval[[]string](t, u, `[...new Set([...document.querySelectorAll('.crow .host')].map(e => e.textContent))]`)
		n := eval[int](t, u, `document.querySelectorAll('.crow').length`)
		if len(hosts) != 1 || hosts[0] != target.host || n < 6 {
			t.Fatalf("context of a %s line: %d lines from %v", target.host, n, hosts)
		}
		u.shots(t, "context")
		// Across hosts: the other runners' lines around it join in.
		u.do(t, chromedp.Click(chromedp.CSS(`.bar input[type=checkbox]`)))
		u.wait(t, "other hosts' lines", `/cross=1/.test(location.search) && document.querySelectorAll('.crow.cross').length > 0 && document.querySelector('.crow.target')`)
		hosts = eval[[]string](t, u, `[...new Set([...document.querySelectorAll('.crow .host')].map(e => e.textContent))].sort()`)
		if !strings.Contains(strings.Join(hosts, ","), "runner-a,runner-b,runner-c") {
			t.Fatalf("cross-host context shows %v", hosts)
		}
		times := eval[[]string](t, u, `[...document.querySelectorAll('.crow .time')].map(e => e.dataset.t)`)
		for i := 1; i < len(times); i++ {
			a, _ := time.Parse(time.RFC3339Nano, times[i-1])
			b, _ := time.Parse(time.RFC3339Nano, times[i])
			if b.Before(a) {
				t.Fatalf("context out of time order: %s before %s", times[i-1], times[i])
			}
		}
		u.shots(t, "context-cross")
	})

	t.Run("hosts", func(t *testing.T) {
		heartbeat("api-2a", "deploy-ui-2")
		heartbeat("api-2b", "deploy-ui-2")
		u.open(t, "/hosts")
		u.wait(t, "the hosts", `document.querySelectorAll('tbody tr').length === 8`)
		u.do(t, chromedp.SendKeys(chromedp.CSS(`[data-query]`), "runner"))
		u.wait(t, "the filtered hosts", `document.querySelectorAll('tbody tr').length === 3 && /filter=runner/.test(location.search)`)
		state := eval[string](t, u, `[...document.querySelectorAll('tbody tr')].find(r => r.innerText.includes('runner-c')).querySelector('.badge').textContent`)
		if state != "silent" {
			t.Fatalf("runner-c is %q", state)
		}
		u.shots(t, "hosts")
		// A vanished host opens like a live one: its lines over its whole life.
		u.do(t, chromedp.Click(chromedp.CSS(`tbody a.host[title="runner-c"]`)))
		u.wait(t, "the vanished host's lines", `location.pathname === '/search' && document.querySelectorAll('.results .rec').length === 15 && /End of results: 15 lines/.test(document.querySelector('.more').innerText)`)
	})

	t.Run("deploy", func(t *testing.T) {
		u.open(t, "/deploys/deploy-ui-2")
		u.wait(t, "the deploy", `document.querySelectorAll('.timeline rect.life').length === 3 && document.querySelector('.vrow[data-id]')`)
		rates := eval[string](t, u, `document.querySelector('.rates').innerText`)
		if !strings.Contains(rates, "deploy-ui-1") || !strings.Contains(rates, "previous deploy") {
			t.Fatalf("error rates: %q", rates)
		}
		u.shots(t, "deploy")
	})

	t.Run("tail", func(t *testing.T) {
		u.open(t, "/tail?q=service:tailtest")
		u.wait(t, "the tail to start", `/following/.test(document.querySelector('.status').innerText)`)
		push := func(msg string) {
			_, err := client.Write(context.Background(), &shiplogv1.PushRequest{Defaults: &shiplogv1.Record{Service: "tailtest", Host: "tail-1"},
				Records: []*shiplogv1.Record{{Message: msg, Level: "warn", Attributes: map[string]string{"k": "v"}}}})
			if err != nil {
				t.Fatal(err)
			}
		}
		// The server subscribes just after its answer's headers: push until seen.
		seen := false
		for i := 0; i < 40 && !seen; i++ {
			push(fmt.Sprintf("hello from the tail %d", i))
			time.Sleep(250 * time.Millisecond)
			seen = eval[bool](t, u, `[...document.querySelectorAll('.tail .crow')].some(r => r.innerText.includes('hello from the tail'))`)
		}
		if !seen {
			t.Fatalf("a pushed line did not appear\npage: %s", u.pageText())
		}
		u.do(t, chromedp.Click(chromedp.CSS(`button.pause`)))
		u.wait(t, "pause", `document.querySelector('button.pause').textContent === 'Resume'`)
		push("held while paused")
		u.wait(t, "the held line counted", `/paused/.test(document.querySelector('.status').innerText) && !/0 new lines/.test(document.querySelector('.status').innerText)`)
		if eval[bool](t, u, `document.querySelector('.tail').innerText.includes('held while paused')`) {
			t.Fatal("a line showed while paused")
		}
		u.do(t, chromedp.Click(chromedp.CSS(`button.pause`)))
		u.wait(t, "the held line after resume", `document.querySelector('.tail').innerText.includes('held while paused')`)
		u.shots(t, "tail")
	})

	t.Run("alerts", func(t *testing.T) {
		u.open(t, "/alerts")
		u.wait(t, "the alerts page", `/Alerting is not configured|Firing/.test(document.querySelector('main').innerText)`)
		u.shots(t, "alerts")
	})

	t.Run("unreachable", func(t *testing.T) {
		u.open(t, "/search?start=1h")
		u.wait(t, "the query box", `document.querySelector('[data-query]')`)
		s.kill()
		u.do(t, chromedp.SendKeys(chromedp.CSS(`[data-query]`), "level:error\r"))
		u.wait(t, "the unreachable message", `document.querySelector('.msg.error') && /Cannot reach the shiplog server/.test(document.querySelector('.msg.error').innerText)`)
		u.shots(t, "unreachable")
	})

	if errs := u.exceptions(); len(errs) > 0 {
		t.Fatalf("uncaught JavaScript exceptions:\n%s", strings.Join(errs, "\n"))
	}
	if b, err := json.Marshal(listPNGs(u.dir)); err == nil {
		t.Logf("screenshots: %s", b)
	}
}

// collectRowsJS scrolls the virtualised list from top to bottom and returns
// every row as "host message", in list order.
const collectRowsJS = `(async () => {
  const L = document.querySelector('.vlist');
  const out = {};
  const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const settle = async () => { for (let i = 0; i < 200 && L.querySelector('.vrow.loading'); i++) await new Promise((r) => setTimeout(r, 25)); };
  for (let top = 0; ; top += Math.max(60, L.clientHeight - 60)) {
    L.scrollTop = top;
    await frame();
    await settle();
    for (const r of L.querySelectorAll('.vrow[data-id]')) out[r.dataset.i] = r.querySelector('.host').textContent + ' ' + r.querySelector('.msgtext').textContent;
    if (L.scrollTop + L.clientHeight >= L.scrollHeight - 1) break;
  }
  L.scrollTop = 0;
  await frame();
  return Object.keys(out).map(Number).sort((a, b) => a - b).map((k) => out[k]);
})()`

func listPNGs(dir string) []string {
	ms, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	for i := range ms {
		ms[i] = filepath.Base(ms[i])
	}
	return ms
}

// seedBigBuild writes a build of n lines from hosts runners, line i being
// "big step <i>" at t0 + i*5ms, in batches of 5,000.
func seedBigBuild(t testing.TB, s *server, build string, n, hosts int) {
	t.Helper()
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	var batches []*shiplogv1.PushRequest
	reqs := map[int]*shiplogv1.PushRequest{}
	for i := 0; i < n; i++ {
		h := i % hosts
		r := reqs[h]
		if r == nil {
			r = &shiplogv1.PushRequest{AgentId: fmt.Sprintf("%s-agent-%d", build, h),
				Defaults: &shiplogv1.Record{Service: "ci", Host: fmt.Sprintf("%s-runner-%d", build, h), BuildId: build}}
			reqs[h] = r
		}
		lv := "info"
		if i%997 == 0 && i > 0 {
			lv = "error"
		}
		r.Records = append(r.Records, &shiplogv1.Record{Time: timestamppb.New(t0.Add(time.Duration(i) * 5 * time.Millisecond)),
			Level: lv, Message: fmt.Sprintf("big step %06d", i), Seq: uint64(i/hosts + 1)})
		if len(r.Records) == 5000 || i >= n-hosts {
			batches = append(batches, r)
			delete(reqs, h)
		}
	}
	pushAll(t, s.dial(t), batches)
}

// TestUIBigBuild: a build of 20,000 lines opens with only the visible rows in
// the page, and jumps (to the end, to a linked line) land on the right lines
// without reading everything before them.
func TestUIBigBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end, in a browser")
	}
	u := newUI(t, 1280, 860)
	u.dir = t.ArtifactDir()
	s := startServer(t, t.TempDir()+"/data")
	u.base = "http://" + s.httpAddr
	const n = 20000
	seedBigBuild(t, s, "build-big", n, 4)
	// rowsOK: every rendered row shows the line of its index.
	const rowsOK = `[...document.querySelectorAll('.vrow[data-id]')].every(r => r.querySelector('.msgtext').textContent === 'big step ' + String(r.dataset.i).padStart(6, '0'))`
	u.open(t, "/builds/build-big")
	u.wait(t, "the first lines", `document.querySelector('.vrow[data-i="0"][data-id]') && /20,000 lines/.test(document.querySelector('.count').innerText)`)
	if rows := eval[int](t, u, `document.querySelectorAll('.vrow').length`); rows > 200 {
		t.Fatalf("%d rows in the page for a %d-line build: not virtualised", rows, n)
	}
	if !eval[bool](t, u, rowsOK) {
		t.Fatal("rows out of place at the top")
	}
	u.do(t, chromedp.Click(chromedp.CSS(`button[title="last line"]`)))
	u.wait(t, "the last line", fmt.Sprintf(`document.querySelector('.vrow[data-i="%d"][data-id]')`, n-1))
	if !eval[bool](t, u, rowsOK) {
		t.Fatalf("rows out of place at the end:\n%s", u.pageText())
	}
	u.shots(t, "big-build-end")
	// The middle, by a link to one line.
	var r searchResp
	s.getJSON(t, "/v1/logs:search", map[string][]string{"q": {`"big step 012345"`}}, &r)
	if len(r.Records) != 1 {
		t.Fatalf("%d records for line 12345", len(r.Records))
	}
	u.open(t, "/builds/build-big?line="+r.Records[0].ID)
	u.wait(t, "the linked line", `document.querySelector('.vrow.sel[data-i="12345"]')`)
	if !eval[bool](t, u, rowsOK) {
		t.Fatal("rows out of place around a linked line")
	}
	// A filter counts its matches and lists them.
	u.open(t, "/builds/build-big?filter=level:error")
	u.wait(t, "the error lines", `/20 lines match the filter/.test(document.querySelector('.count').innerText) && document.querySelectorAll('.vrow[data-id]').length === 20`)
	if errs := u.exceptions(); len(errs) > 0 {
		t.Fatalf("uncaught JavaScript exceptions:\n%s", strings.Join(errs, "\n"))
	}
}

// TestUIAuth: against a server with --auth-file, the UI asks for a token once,
// keeps it for the session and sends it with every API call.
func TestUIAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end, in a browser")
	}
	tok, entry := newToken(t, "ui", "query")
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte("tokens:\n"+entry), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir()+"/data", "--auth-file", authFile)
	u := newUI(t, 1280, 860)
	u.dir = t.ArtifactDir()
	u.base = "http://" + s.httpAddr
	u.open(t, "/search?q=anything&start=1h")
	u.wait(t, "the token dialog", `document.querySelector('dialog.token-dialog[open]')`)
	u.shots(t, "token-dialog")
	u.do(t, chromedp.SendKeys(`dialog.token-dialog input`, "shp_wrong\r"))
	u.wait(t, "the dialog again after a wrong token", `/refused/.test(document.querySelector('dialog.token-dialog[open] p').textContent)`)
	u.do(t, chromedp.SendKeys(`dialog.token-dialog[open] input`, tok+"\r"))
	u.wait(t, "the search answered", `!document.querySelector('dialog.token-dialog') && /No lines match|0 matching/.test(document.body.innerText)`)
	if got := eval[string](t, u, `sessionStorage.getItem('shiplog-token')`); got != tok {
		t.Fatalf("token kept for the session: %q", got)
	}
	// Other pages reuse it without asking.
	u.open(t, "/hosts")
	u.wait(t, "the hosts page without a dialog", `document.querySelector('main') && !document.querySelector('dialog.token-dialog') && /host/i.test(document.querySelector('main').innerText)`)
	if ex := u.exceptions(); len(ex) > 0 {
		t.Fatalf("JavaScript exceptions: %v", ex)
	}
}

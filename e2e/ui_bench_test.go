package e2e

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/shiplog/shiplog/web"
)

// pageWeightJS sums what the page loaded as HTML, JavaScript and CSS (not the
// API's JSON): bytes on the wire (gzipped) and bytes decoded.
const pageWeightJS = `(() => {
  const es = [performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')]
    .filter((e) => e.entryType === 'navigation' || /\.(js|css|html)$/.test(new URL(e.name).pathname));
  return [es.reduce((a, e) => a + e.encodedBodySize, 0), es.reduce((a, e) => a + e.decodedBodySize, 0), es.length];
})()`

// BenchmarkUIBuildPage: time from navigation to the first lines on the build
// page of a 100,000-line build (10 hosts), in headless Chromium with an empty
// cache, and the page weight. Also: the time to jump to the build's last line.
//
//	go test -run '^$' -bench UIBuildPage -benchtime 10x ./e2e
func BenchmarkUIBuildPage(b *testing.B) {
	u := newUI(b, 1280, 860)
	s := startServer(b, b.TempDir()+"/data")
	u.base = "http://" + s.httpAddr
	const n = 100000
	seedBigBuild(b, s, "build-100k", n, 10)
	ctx, cancel := context.WithTimeout(u.ctx, 10*time.Minute)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		b.Fatal(err)
	}
	var firstMs, endMs []float64
	var weight []float64
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		u.open(b, "/")
		if _, err := chromedp.Call(ctx, network.ClearBrowserCache, cdp.Empty{}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		// Navigate returns at the load event; the lines come after.
		u.do(b, chromedp.Navigate(u.base+"/builds/build-100k"))
		ms := eval[float64](b, u, `new Promise((resolve) => {
		  const check = () => document.querySelector('.vrow[data-id]') ? resolve(performance.now()) : requestAnimationFrame(check);
		  check();
		})`)
		b.StopTimer()
		firstMs = append(firstMs, ms)
		weight = eval[[]float64](b, u, pageWeightJS)
		if rows := eval[int](b, u, `document.querySelectorAll('.vrow').length`); rows > 200 {
			b.Fatalf("%d rows in the page: not virtualised", rows)
		}
		u.wait(b, "the count", `/100,000 lines/.test(document.querySelector('.count').innerText)`)
		t0 := eval[float64](b, u, `performance.now()`)
		u.do(b, chromedp.Click(chromedp.CSS(`button[title="last line"]`)))
		t1 := eval[float64](b, u, `new Promise((resolve) => {
		  const check = () => document.querySelector('.vrow[data-i="99999"][data-id]') ? resolve(performance.now()) : requestAnimationFrame(check);
		  check();
		})`)
		endMs = append(endMs, t1-t0)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(median(firstMs), "ms-to-first-lines")
	b.ReportMetric(median(endMs), "ms-to-last-line")
	b.ReportMetric(weight[0], "page-gzip-bytes")
	b.ReportMetric(weight[1], "page-bytes")
	b.ReportMetric(weight[2], "page-files")
	raw, gz := 0, 0
	for _, sz := range web.Files() {
		raw += sz[0]
		gz += sz[1]
	}
	b.ReportMetric(float64(raw), "ui-all-bytes")
	b.ReportMetric(float64(gz), "ui-all-gzip-bytes")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

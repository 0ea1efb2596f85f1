// Package web is shiplog's browser UI: plain HTML, CSS and JavaScript modules,
// embedded in the binary and served as an http.Handler. Nothing is built: the
// files under static/ are what the browser gets (gzipped when it asks).
//
// Every view's state is in its URL. The paths below serve index.html (the app
// picks the view from location); files under /assets/ are served as they are.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
)

//go:embed static
var static embed.FS

// routes are the app's views, each with the modules it loads: every view
// serves index.html, with those modules preloaded so that the browser fetches
// them at once rather than one import after another. A path under a prefix
// ending in "/" needs a non-empty rest (/builds/{id}).
var routes = []struct {
	path    string
	modules []string
}{
	{"/", []string{"home.js", "search.js"}},
	{"/search", []string{"search.js"}},
	{"/hosts", []string{"hosts.js", "search.js"}},
	{"/tail", []string{"tail.js", "search.js"}},
	{"/alerts", []string{"alerts.js"}},
	{"/builds/", []string{"build.js", "vlist.js"}},
	{"/deploys/", []string{"build.js", "vlist.js"}},
	{"/context/", []string{"context.js", "search.js"}},
}

// preloadMark in index.html is replaced by a route's modulepreload links.
const preloadMark = "<!--preload-->"

// asset is one file, ready to serve.
type asset struct {
	body  []byte
	gz    []byte // nil when gzip would not help
	ctype string
	etag  string
}

var assets = sync.OnceValue(func() map[string]*asset {
	m := map[string]*asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		m["/"+strings.TrimPrefix(p, "static/")] = newAsset(body, path.Ext(p))
		return nil
	})
	if err != nil {
		panic("web: embedded assets: " + err.Error()) // cannot happen: the files are compiled in
	}
	return m
})

// pages holds index.html for each route (by route path), and for no route
// ("").
var pages = sync.OnceValue(func() map[string]*asset {
	idx := string(assets()["/index.html"].body)
	out := map[string]*asset{"": page(strings.Replace(idx, preloadMark, "", 1))}
	for _, rt := range routes {
		var links strings.Builder
		for i, mod := range rt.modules {
			if i > 0 {
				links.WriteString("\n")
			}
			links.WriteString(`<link rel="modulepreload" href="/assets/` + mod + `">`)
		}
		out[rt.path] = page(strings.Replace(idx, preloadMark, links.String(), 1))
	}
	return out
})

func newAsset(body []byte, ext string) *asset {
	sum := sha256.Sum256(body)
	a := &asset{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: mime.TypeByExtension(ext)}
	switch ext {
	case ".js":
		a.ctype = "text/javascript; charset=utf-8"
	case ".html":
		a.ctype = "text/html; charset=utf-8"
	case ".css":
		a.ctype = "text/css; charset=utf-8"
	}
	if a.ctype == "" {
		a.ctype = "application/octet-stream"
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(body)
	_ = zw.Close()
	if buf.Len() < len(body)*9/10 {
		a.gz = buf.Bytes()
	}
	return a
}

func page(html string) *asset { return newAsset([]byte(html), ".html") }

// Handler serves the UI: index.html for the app's views, the files under
// /assets/, and a 404 (still the app, which says so) for anything else.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

// Files lists the embedded files by URL path with their sizes and gzipped
// sizes (equal when not compressed), for page-weight reports.
func Files() map[string][2]int {
	out := map[string][2]int{}
	for p, a := range assets() {
		gz := len(a.body)
		if a.gz != nil {
			gz = len(a.gz)
		}
		out[p] = [2]int{len(a.body), gz}
	}
	return out
}

func serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	all := assets()
	p := r.URL.Path
	if strings.HasPrefix(p, "/assets/") {
		a := all[p]
		if a == nil {
			http.NotFound(w, r)
			return
		}
		write(w, r, a, http.StatusOK)
		return
	}
	rt := route(p)
	if rt == "" && (p == "/builds/" || p == "/deploys/") && r.URL.Query().Has("id") {
		rt = p // an id that cannot be a path segment ("." or "..")
	}
	code, idx := http.StatusNotFound, pages()[rt]
	if idx != pages()[""] {
		code = http.StatusOK
	}
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	write(w, r, idx, code)
}

// route returns the route path that serves p, or "".
func route(p string) string {
	for _, rt := range routes {
		if rt.path != "/" && strings.HasSuffix(rt.path, "/") {
			if len(p) > len(rt.path) && strings.HasPrefix(p, rt.path) {
				return rt.path
			}
		} else if p == rt.path {
			return rt.path
		}
	}
	return ""
}

func write(w http.ResponseWriter, r *http.Request, a *asset, code int) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Vary", "Accept-Encoding")
	h.Set("ETag", a.etag)
	if code == http.StatusOK && etagMatch(r.Header.Get("If-None-Match"), a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		body = a.gz
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			f, err := strconv.ParseFloat(q, 64)
			return err == nil && f > 0
		}
		return true
	}
	return false
}

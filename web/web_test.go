package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, method, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, r)
	return w
}

func TestRoutes(t *testing.T) {
	for _, tc := range []struct {
		path  string
		code  int
		ctype string
	}{
		{"/", 200, "text/html"},
		{"/search?q=level:error", 200, "text/html"},
		{"/builds/build-1", 200, "text/html"},
		{"/deploys/d%2F1", 200, "text/html"},
		{"/context/abc?cross=1", 200, "text/html"},
		{"/hosts", 200, "text/html"},
		{"/tail", 200, "text/html"},
		{"/alerts", 200, "text/html"},
		{"/builds/", 404, "text/html"},
		{"/builds/?id=..", 200, "text/html"},
		{"/deploys/?id=.", 200, "text/html"},
		{"/nope", 404, "text/html"},
		{"/assets/app.js", 200, "text/javascript"},
		{"/assets/app.css", 200, "text/css"},
		{"/assets/missing.js", 404, "text/plain"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			w := get(t, "GET", tc.path)
			if w.Code != tc.code || !strings.HasPrefix(w.Header().Get("Content-Type"), tc.ctype) {
				t.Fatalf("%d %q, want %d %s", w.Code, w.Header().Get("Content-Type"), tc.code, tc.ctype)
			}
			if tc.ctype == "text/html" && !strings.Contains(w.Body.String(), `src="/assets/app.js"`) {
				t.Fatalf("not the app: %s", w.Body.String())
			}
		})
	}
}

func TestGzipETagAndMethods(t *testing.T) {
	plain := get(t, "GET", "/assets/lib.js")
	w := get(t, "GET", "/assets/lib.js", "Accept-Encoding", "br, gzip")
	if w.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip: %v", w.Header())
	}
	zr, err := gzip.NewReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(zr)
	if !bytes.Equal(body, plain.Body.Bytes()) || w.Body.Len() >= len(body) {
		t.Fatalf("gzip body: %d bytes for %d", w.Body.Len(), len(body))
	}
	if w := get(t, "GET", "/assets/lib.js", "Accept-Encoding", "gzip;q=0"); w.Header().Get("Content-Encoding") != "" {
		t.Fatal("gzip;q=0 got gzip")
	}
	if w := get(t, "GET", "/assets/lib.js", "If-None-Match", plain.Header().Get("ETag")); w.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", w.Code)
	}
	if w := get(t, "HEAD", "/hosts"); w.Code != 200 || w.Body.Len() != 0 {
		t.Fatalf("HEAD: %d, %d bytes", w.Code, w.Body.Len())
	}
	if w := get(t, "POST", "/"); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", w.Code)
	}
}

// TestImports checks that every module a script imports is embedded, and
// that the page stays small.
func TestImports(t *testing.T) {
	files := Files()
	re := regexp.MustCompile(`(?:from |import\()'\./([a-z]+\.js)'`)
	raw, gz := 0, 0
	for p, sz := range files {
		raw += sz[0]
		gz += sz[1]
		if !strings.HasSuffix(p, ".js") {
			continue
		}
		body := get(t, "GET", p).Body.String()
		for _, m := range re.FindAllStringSubmatch(body, -1) {
			if _, ok := files["/assets/"+m[1]]; !ok {
				t.Errorf("%s imports %s, which is not embedded", p, m[1])
			}
		}
	}
	for _, rt := range routes {
		for _, m := range rt.modules {
			if _, ok := files["/assets/"+m]; !ok {
				t.Errorf("route %s preloads %s, which is not embedded", rt.path, m)
			}
		}
	}
	if body := get(t, "GET", "/builds/b-1").Body.String(); !strings.Contains(body, `<link rel="modulepreload" href="/assets/vlist.js">`) || strings.Contains(body, preloadMark) {
		t.Errorf("the build page does not preload its modules:\n%s", body)
	}
	t.Logf("%d files, %d bytes, %d gzipped", len(files), raw, gz)
	if raw > 150<<10 {
		t.Errorf("the UI is %d bytes: keep it under 150 KiB", raw)
	}
}

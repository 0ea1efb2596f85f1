package e2e

import (
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestQueryLanguageOverHTTP: CI output with colour codes shipped by
// `shiplog run`, and JSON lines with and without labels, searched through
// /v1/logs:search: words and levels read without the escape sequences (the
// bytes kept as sent), a:b as text, prefixes, CJK, Unicode case, empty labels.
func TestQueryLanguageOverHTTP(t *testing.T) {
	s := startServer(t, t.TempDir())
	script := `printf '\033[33mwarning:\033[0m unused import\n\033[31mERROR\033[0m capture failed\n--- FAIL: TestPayment (0.01s)\n    payment_test.go:88: expected 200\n日本語テキストを検索する\nΕλληνικά γράμματα\n'`
	out, err := exec.Command(binary, "run", "--server", s.grpcAddr, "--service", "ci", "--build-id", "b-lang", "--", "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("shiplog run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "\x1b[31mERROR\x1b[0m capture failed") {
		t.Errorf("shiplog run changed the output it passes through:\n%q", out)
	}
	jl := `{"host":"h-1","message":"no service here"}` + "\n" + `{"service":"api","host":"h-1","message":"dial tcp stripe-mock:12111: connection refused"}` + "\n" +
		`{"service":"api","host":"h-1","level":"\u001b[31mERROR\u001b[0m","message":"coloured level field"}` + "\n"
	resp, err := http.Post("http://"+s.httpAddr+"/v1/logs:jsonl", "application/x-ndjson", strings.NewReader(jl))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("jsonl: %d", resp.StatusCode)
	}
	search := func(q string) []string {
		t.Helper()
		var r searchResp
		code, body := s.getJSON(t, "/v1/logs:search", url.Values{"q": {q}, "limit": {"100"}}, &r)
		if code != 200 {
			t.Fatalf("search %q: %d %s", q, code, body)
		}
		var msgs []string
		for _, rec := range r.Records {
			msgs = append(msgs, rec.Level+" "+rec.Message)
		}
		return msgs
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(search("")) < 9 {
		if time.Now().After(deadline) {
			t.Fatalf("records stored: %q", search(""))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tc := range []struct{ q, want string }{
		{"warning", "warn \x1b[33mwarning:\x1b[0m unused import"},
		{"level:error build_id:b-lang", "error \x1b[31mERROR\x1b[0m capture failed"},
		{"capture", "error \x1b[31mERROR\x1b[0m capture failed"},
		{"payment_test.go:88", "info     payment_test.go:88: expected 200"},
		{"stripe-mock:12111", "info dial tcp stripe-mock:12111: connection refused"},
		{"TestPay*", "info --- FAIL: TestPayment (0.01s)"},
		{"日本語", "info 日本語テキストを検索する"},
		{"ελληνικά", "info Ελληνικά γράμματα"},
		{`service:""`, "info no service here"},
		{"level:error service:api", "error coloured level field"},
		{`-build_id:* -service:api`, "info no service here"},
	} {
		got := search(tc.q)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("search %q: %q, want [%q]", tc.q, got, tc.want)
		}
	}
	if got := search("build_id:*"); len(got) != 6 {
		t.Errorf("build_id:* found %d records, want the 6 of the build: %q", len(got), got)
	}
}

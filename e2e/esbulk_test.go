package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// esDo sends an Elasticsearch API request with an Authorization header
// (none when auth is empty) and returns the status, headers and body.
func esDo(t *testing.T, s *server, method, path, auth, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.httpAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestElasticsearchBulk drives the bulk API as shippers do: the start-up
// probes, POST /_bulk and /{index}/_bulk with ECS documents, per-item
// statuses for what is refused, and token auth by ApiKey and Basic.
func TestElasticsearchBulk(t *testing.T) {
	tok, entry := newToken(t, "beats", "ingest,query")
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte("tokens:\n"+entry), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), "--auth-file", authFile)
	apiKey := "ApiKey " + base64.StdEncoding.EncodeToString([]byte("beats:"+tok))
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("elastic:"+tok))

	// The probes: the version, the license, nodes, templates.
	code, hdr, body := esDo(t, s, "GET", "/", apiKey, "")
	var info struct {
		Version struct{ Number string }
		Tagline string
	}
	if err := json.Unmarshal([]byte(body), &info); code != 200 || err != nil || !strings.HasPrefix(info.Version.Number, "8.") || hdr.Get("X-Elastic-Product") != "Elasticsearch" {
		t.Fatalf("GET /: %d %s %v", code, body, hdr)
	}
	for _, p := range []string{"/_license", "/_nodes/http", "/_cluster/health", "/_index_template/filebeat-8.17.0", "/_ilm/policy/filebeat"} {
		if code, _, body := esDo(t, s, "GET", p, basic, ""); code != 200 || !json.Valid([]byte(body)) {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	if code, _, _ := esDo(t, s, "HEAD", "/_index_template/filebeat-8.17.0", basic, ""); code != 200 {
		t.Errorf("HEAD template: %d", code)
	}
	if code, _, body := esDo(t, s, "PUT", "/_index_template/filebeat-8.17.0", basic, `{"index_patterns":["filebeat-*"]}`); code != 200 || !strings.Contains(body, `"acknowledged":true`) {
		t.Errorf("PUT template: %d %s", code, body)
	}

	now := time.Now().UTC()
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339Nano) }
	bulk := strings.Join([]string{
		`{"create":{"_index":"logs-api"}}`,
		`{"@timestamp":"` + ts(-3*time.Second) + `","message":"es bulk connection refused","log":{"level":"error"},"service":{"name":"esapi"},"host":{"name":"web-1"},"trace":{"id":"0af7651916cd43dd8448eb211c80319c"},"labels":{"env":"prod"}}`,
		`{"index":{}}`,
		`{"@timestamp":"` + ts(-2*time.Second) + `","message":"es bulk second","log.level":"warn","service.name":"esapi","host.name":"web-2"}`,
		`{"create":{}}`,
		`{"@timestamp":"1999-01-01T00:00:00Z","message":"es bulk too old","service":{"name":"esapi"}}`,
		`{"delete":{"_id":"x"}}`,
	}, "\n") + "\n"
	code, _, body = esDo(t, s, "POST", "/default-idx/_bulk", apiKey, bulk)
	var ans struct {
		Errors bool
		Items  []map[string]struct {
			Index  string `json:"_index"`
			Status int
			Error  *struct{ Type, Reason string }
		}
	}
	if err := json.Unmarshal([]byte(body), &ans); code != 200 || err != nil || !ans.Errors || len(ans.Items) != 4 {
		t.Fatalf("bulk: %d %s", code, body)
	}
	var got []string
	for _, it := range ans.Items {
		for action, r := range it {
			s := action + " " + r.Index + " " + http.StatusText(r.Status)
			if r.Error != nil && r.Error.Reason != "" {
				s += " (refused)"
			}
			got = append(got, s)
		}
	}
	if strings.Join(got, "|") != "create logs-api Created|index default-idx Created|create default-idx Bad Request (refused)|delete default-idx Bad Request (refused)" {
		t.Errorf("items: %v\n%s", got, body)
	}

	recs := s.searchAllAs(t, tok, url.Values{"q": {"service:esapi"}, "start": {"1h"}, "order": {"asc"}})
	if len(recs) != 2 || !strings.Contains(recs[0], `"level":"error"`) || !strings.Contains(recs[0], `"host":"web-1"`) ||
		!strings.Contains(recs[0], `"index":"logs-api"`) || !strings.Contains(recs[0], `"env":"prod"`) || !strings.Contains(recs[0], `"trace_id":"0af7651916cd43dd8448eb211c80319c"`) ||
		!strings.Contains(recs[1], `"index":"default-idx"`) || !strings.Contains(recs[1], `"level":"warn"`) {
		t.Errorf("stored: %v", recs)
	}

	// No token, a wrong token, a malformed action line.
	if code, _, _ := esDo(t, s, "POST", "/_bulk", "", bulk); code != 401 {
		t.Errorf("no token: %d", code)
	}
	if code, _, _ := esDo(t, s, "POST", "/_bulk", "Basic "+base64.StdEncoding.EncodeToString([]byte("elastic:wrong")), bulk); code != 401 {
		t.Errorf("wrong password: %d", code)
	}
	code, _, body = esDo(t, s, "POST", "/_bulk", basic, "{\"explode\":{}}\n{}\n")
	if code != 400 || !strings.Contains(body, `"type":"illegal_argument_exception"`) || !strings.Contains(body, "malformed action/metadata line") {
		t.Errorf("malformed action: %d %s", code, body)
	}
}

// searchAllAs is searchAll with a bearer token.
func (s *server) searchAllAs(t testing.TB, tok string, params url.Values) []string {
	t.Helper()
	var out []string
	for {
		var res struct {
			Records    []json.RawMessage `json:"records"`
			NextCursor string            `json:"next_cursor"`
		}
		if code, body := s.getJSONAs(t, tok, "/v1/logs:search", params, &res); code != 200 {
			t.Fatalf("search: %d %s", code, body)
		}
		for _, r := range res.Records {
			out = append(out, string(bytes.TrimSpace(r)))
		}
		if res.NextCursor == "" {
			return out
		}
		params.Set("cursor", res.NextCursor)
	}
}

// TestElasticsearchGoClient drives shiplog with Elastic's own Go client (what
// the OpenTelemetry Collector's exporter is built on): its product check on
// GET /, and its BulkIndexer, which counts what the answers' items say.
func TestElasticsearchGoClient(t *testing.T) {
	tok, entry := newToken(t, "es-go", "ingest,query")
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte("tokens:\n"+entry), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), "--auth-file", authFile)
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{"http://" + s.httpAddr},
		APIKey: base64.StdEncoding.EncodeToString([]byte("es-go:" + tok))})
	if err != nil {
		t.Fatal(err)
	}
	info, err := es.Info()
	if err != nil || info.IsError() {
		t.Fatalf("info (the client's product check): %v %v", info, err)
	}
	info.Body.Close()

	ctx := context.Background()
	var failed []string
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: es, Index: "logs-go", FlushBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i := 0; i < 500; i++ {
		doc := fmt.Sprintf(`{"@timestamp":%q,"message":"go client line %d","log.level":"info","service.name":"esgo","host.name":"h-%d"}`,
			now.Add(time.Duration(i-500)*time.Millisecond).Format(time.RFC3339Nano), i, i%3)
		if i == 7 {
			doc = `{"@timestamp":"1999-01-01T00:00:00Z","message":"too old","service.name":"esgo"}`
		}
		err := bi.Add(ctx, esutil.BulkIndexerItem{Action: "create", Body: strings.NewReader(doc),
			OnFailure: func(_ context.Context, item esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
				failed = append(failed, fmt.Sprintf("%d %s %v", res.Status, res.Error.Type, err))
			}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := bi.Stats()
	if st.NumAdded != 500 || st.NumCreated != 499 || st.NumFailed != 1 || len(failed) != 1 || !strings.HasPrefix(failed[0], "400 document_parsing_exception") {
		t.Fatalf("bulk indexer stats %+v, failures %v", st, failed)
	}
	recs := s.searchAllAs(t, tok, url.Values{"q": {"service:esgo"}, "start": {"1h"}})
	if len(recs) != 499 || !strings.Contains(recs[0], `"index":"logs-go"`) {
		t.Fatalf("%d records stored, want 499: %.300s", len(recs), recs)
	}
}

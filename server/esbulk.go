package server

// Elasticsearch bulk ingest, the output every log shipper has (Filebeat,
// Logstash, Vector, Fluent Bit's es, the OpenTelemetry Collector's
// elasticsearch exporter): POST /_bulk and POST /{index}/_bulk, NDJSON
// action and document pairs decoded by ingest.DecodeESBulk (ECS fields
// mapped), answered in the bulk API's shape (took, errors, items with their
// status). The few endpoints shippers probe at start (GET /, /_license,
// /_nodes/http, /_cluster/health, index templates, ILM policies, ingest
// pipelines) get harmless answers. Every answer carries X-Elastic-Product,
// which Elastic's clients check.

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/shiplog/shiplog/ingest"
)

const (
	// esVersion is the Elasticsearch version shiplog answers as: shippers
	// pick their request format from it (8.x: no document types).
	esVersion = "8.17.0"
	// esMaxItems bounds the actions of one bulk request.
	esMaxItems = 1 << 20
)

// registerES adds the bulk endpoints and the probes' answers. POST
// /{index}/_bulk and GET / (for a client that is not a browser) are front
// routes, as they overlap the mux's other patterns. The probes are open, as
// shippers send them before (or without) their credentials.
func registerES(rt *router, core Core, maxBody int64) {
	bulk := esBulkHandler(core, maxBody)
	rt.handle("POST /_bulk", ScopeIngest, bulk)
	rt.handle("PUT /_bulk", ScopeIngest, bulk)
	rt.handleFront("POST|PUT /{index}/_bulk", ScopeIngest, func(r *http.Request) bool {
		return (r.Method == http.MethodPost || r.Method == http.MethodPut) && esIndexBulk(r.URL.Path)
	}, bulk)
	// GET / from a client that does not ask for HTML: Elastic's clients read
	// the version there; browsers get the UI.
	rt.handleFront("GET|HEAD / (not text/html)", scopeOpen, func(r *http.Request) bool {
		return r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && !strings.Contains(r.Header.Get("Accept"), "text/html")
	}, http.HandlerFunc(esRoot))
	rt.handleFunc("GET /_license", scopeOpen, func(w http.ResponseWriter, _ *http.Request) {
		writeES(w, http.StatusOK, map[string]any{"license": map[string]any{"status": "active", "uid": "shiplog", "type": "basic",
			"issue_date": "2026-01-01T00:00:00.000Z", "issue_date_in_millis": 1767225600000, "max_nodes": 1000, "issued_to": "shiplog", "issuer": "shiplog"}})
	})
	rt.handleFunc("GET /_xpack", scopeOpen, func(w http.ResponseWriter, _ *http.Request) {
		writeES(w, http.StatusOK, map[string]any{"build": map[string]any{}, "license": map[string]any{"mode": "basic", "status": "active", "type": "basic"}, "features": map[string]any{}})
	})
	rt.handleFunc("GET /_nodes/http", scopeOpen, esNodes)
	rt.handleFunc("GET /_nodes/_all/http", scopeOpen, esNodes)
	rt.handleFunc("GET /_cluster/health", scopeOpen, func(w http.ResponseWriter, _ *http.Request) {
		writeES(w, http.StatusOK, map[string]any{"cluster_name": "shiplog", "status": "green", "timed_out": false, "number_of_nodes": 1, "number_of_data_nodes": 1})
	})
	for _, p := range []string{"/_index_template/", "/_template/", "/_component_template/", "/_ilm/policy/", "/_ingest/pipeline/", "/_data_stream/"} {
		rt.handleFunc("GET "+p+"{name}", scopeOpen, esSetupGet(p))
		rt.handleFunc("HEAD "+p+"{name}", scopeOpen, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("X-Elastic-Product", "Elasticsearch")
			w.WriteHeader(http.StatusOK)
		})
		rt.handleFunc("PUT "+p+"{name}", scopeOpen, func(w http.ResponseWriter, _ *http.Request) {
			writeES(w, http.StatusOK, map[string]any{"acknowledged": true})
		})
	}
}

func esRoot(w http.ResponseWriter, _ *http.Request) {
	writeES(w, http.StatusOK, map[string]any{"name": "shiplog", "cluster_name": "shiplog", "cluster_uuid": "c2hpcGxvZy1zaGlwbG9n",
		"version": map[string]any{"number": esVersion, "build_flavor": "default", "build_type": "shiplog", "lucene_version": "9.12.0",
			"minimum_wire_compatibility_version": "7.17.0", "minimum_index_compatibility_version": "7.0.0"},
		"tagline": "You Know, for Search"})
}

// esIndexBulk reports whether p is /{index}/_bulk.
func esIndexBulk(p string) bool {
	idx, ok := strings.CutSuffix(p, "/_bulk")
	return ok && len(idx) > 1 && idx[0] == '/' && !strings.Contains(idx[1:], "/")
}

// esIndexOf is the index of a /{index}/_bulk path ("" for /_bulk).
func esIndexOf(p string) string {
	idx, _ := strings.CutSuffix(p, "/_bulk")
	return strings.TrimPrefix(idx, "/")
}

func esNodes(w http.ResponseWriter, r *http.Request) {
	writeES(w, http.StatusOK, map[string]any{"_nodes": map[string]int{"total": 1, "successful": 1, "failed": 0}, "cluster_name": "shiplog",
		"nodes": map[string]any{"shiplog": map[string]any{"name": "shiplog", "version": esVersion, "roles": []string{"data", "ingest", "master"},
			"http": map[string]any{"publish_address": r.Host, "bound_address": []string{r.Host}}}}})
}

// esSetupGet answers a GET of a template, policy or pipeline: it exists.
func esSetupGet(prefix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var body any
		switch prefix {
		case "/_index_template/":
			body = map[string]any{"index_templates": []any{map[string]any{"name": name, "index_template": map[string]any{"index_patterns": []string{name + "*"}}}}}
		case "/_component_template/":
			body = map[string]any{"component_templates": []any{map[string]any{"name": name, "component_template": map[string]any{"template": map[string]any{}}}}}
		case "/_data_stream/":
			body = map[string]any{"data_streams": []any{map[string]any{"name": name}}}
		case "/_ilm/policy/":
			body = map[string]any{name: map[string]any{"version": 1, "policy": map[string]any{"phases": map[string]any{}}}}
		default:
			body = map[string]any{name: map[string]any{}}
		}
		writeES(w, http.StatusOK, body)
	}
}

func writeES(w http.ResponseWriter, code int, v any) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	writeJSON(w, code, v)
}

// writeESError answers a request-level error in Elasticsearch's shape,
// with the status the error table gives (429 and 503 with Retry-After).
func writeESError(w http.ResponseWriter, err error) {
	st, code := httpStatusOf(w, err)
	typ := "illegal_argument_exception"
	switch code {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		typ = "es_rejected_execution_exception"
	case http.StatusRequestEntityTooLarge:
		typ = "content_too_long_exception"
	case http.StatusUnauthorized, http.StatusForbidden:
		typ = "security_exception"
	}
	msg := st.Message()
	cause := map[string]string{"type": typ, "reason": msg}
	writeES(w, code, map[string]any{"error": map[string]any{"root_cause": []any{cause}, "type": typ, "reason": msg}, "status": code})
}

func esBulkHandler(core Core, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		enc, err := contentEncoding(r)
		if err != nil {
			writeESError(w, err)
			return
		}
		// The body is read before a slot is taken: a slow sender holds none.
		mem := core.Limits.bodyMem()
		defer mem.release()
		raw, err := mem.readRaw(r, maxBody)
		if err != nil {
			writeESError(w, err)
			return
		}
		release, err := core.Limits.ingest(r.Context())
		if err != nil {
			writeESError(w, err)
			return
		}
		defer release()
		body, err := mem.decode(enc, raw, maxBody)
		if err != nil {
			writeESError(w, err)
			return
		}
		if enc != "" {
			mem.give(int64(cap(raw)))
		}
		b, err := ingest.DecodeESBulk(body, esIndexOf(r.URL.Path), esMaxItems)
		if err != nil {
			writeESError(w, err)
			return
		}
		refused := make(map[int]error)
		res := stored{OnReject: func(i int, err error) { refused[i] = err }}
		if err := storeRecords(r.Context(), core.Ingest, b.Records, &res); err != nil {
			// Nothing is acknowledged: the shipper resends the batch.
			writeESError(w, err)
			return
		}
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(esBulkAnswer(b, refused, time.Since(start)))
	})
}

// esBulkAnswer renders the bulk API's answer: took, errors, and an item per
// action with its status (201 created, 400 with an error).
func esBulkAnswer(b *ingest.ESBulk, refused map[int]error, took time.Duration) []byte {
	errs := len(refused) > 0
	for _, it := range b.Items {
		errs = errs || it.Err != nil
	}
	out := make([]byte, 0, 64+len(b.Items)*160)
	out = fmt.Appendf(out, `{"took":%d,"errors":%t,"items":[`, took.Milliseconds(), errs)
	for i, it := range b.Items {
		if i > 0 {
			out = append(out, ',')
		}
		err := it.Err
		if err == nil && it.Record >= 0 {
			err = refused[it.Record]
		}
		out = append(out, `{"`...)
		out = append(out, it.Action...)
		out = append(out, `":{"_index":`...)
		out = appendJSONString(out, it.Index)
		if it.ID != "" {
			out = append(out, `,"_id":`...)
			out = appendJSONString(out, it.ID)
		}
		if err != nil {
			out = append(out, `,"status":400,"error":{"type":"document_parsing_exception","reason":`...)
			out = appendJSONString(out, rejectMessage(err))
			out = append(out, `}}}`...)
			continue
		}
		out = append(out, `,"_version":1,"result":"created","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}}`...)
	}
	return append(out, "]}\n"...)
}

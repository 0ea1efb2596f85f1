package server

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// exportPage is the number of records an export reads per search; each page
// takes a query slot of its own (and is bounded by the query timeout), so a
// long export never holds one slot for its whole length.
const exportPage = 2000

// exportHandler serves GET /v1/logs:export?q=&start=&end=&format=jsonl|csv:
// every matching record, oldest first, streamed as it is read. JSON lines
// have the API's record shape; CSV has a header row and the attributes as
// one JSON object in the last column.
func exportHandler(core Core) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		format := v.Get("format")
		switch format {
		case "", "jsonl":
			format = "jsonl"
		case "csv":
		default:
			writeHTTPError(w, invalid("format %q: want jsonl or csv", format))
			return
		}
		q, err := query.Parse(v.Get("q"))
		if err != nil {
			writeHTTPError(w, toStatus(err))
			return
		}
		now := time.Now()
		tr, err := parseRange(v.Get("start"), v.Get("end"), time.Unix(0, 0), now.Add(farFuture), now)
		if err != nil {
			writeHTTPError(w, toStatus(err))
			return
		}
		p := query.SearchParams{Query: q, Range: tr, Limit: exportPage, Asc: true}
		res, err := exportSearch(r, core, p)
		if err != nil {
			writeHTTPError(w, toStatus(err))
			return
		}
		name := "shiplog-export-" + now.UTC().Format("20060102T150405Z") + "." + format
		h := w.Header()
		h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
		h.Set("X-Content-Type-Options", "nosniff")
		if format == "csv" {
			h.Set("Content-Type", "text/csv; charset=utf-8")
		} else {
			h.Set("Content-Type", "application/x-ndjson")
		}
		bw := bufio.NewWriterSize(w, 64<<10)
		out := exportWriter(bw, format)
		for {
			for i := range res.Records {
				if err := out(&res.Records[i]); err != nil {
					return // the client went away
				}
			}
			if res.NextCursor == "" {
				break
			}
			if err := bw.Flush(); err != nil {
				return
			}
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			p.Cursor = res.NextCursor
			if res, err = exportSearch(r, core, p); err != nil {
				// The answer has begun: say so in-band, as the last line.
				_, _ = bw.WriteString("\n# export stopped: " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n")
				break
			}
		}
		_ = bw.Flush()
	})
}

// exportSearch reads one page under a query slot.
func exportSearch(r *http.Request, core Core, p query.SearchParams) (*query.SearchResult, error) {
	ctx, release, err := core.Limits.query(r.Context())
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := core.Backend.Search(ctx, p)
	return res, core.Limits.queryError(ctx, err)
}

var exportJSON = protojson.MarshalOptions{UseProtoNames: true}

// exportWriter returns the function writing one record in format.
func exportWriter(bw *bufio.Writer, format string) func(*model.Record) error {
	if format == "jsonl" {
		return func(rec *model.Record) error {
			b, err := exportJSON.Marshal(toProto(rec))
			if err != nil {
				return err
			}
			_, _ = bw.Write(b)
			return bw.WriteByte('\n')
		}
	}
	cw := csv.NewWriter(bw)
	_ = cw.Write([]string{"time", "id", "service", "host", "build_id", "deploy_id", "level", "message", "trace_id", "span_id", "attributes"})
	return func(rec *model.Record) error {
		attrs := ""
		if len(rec.Attrs) > 0 {
			m := make(map[string]string, len(rec.Attrs))
			for _, a := range rec.Attrs {
				m[a.Key] = a.Value
			}
			b, _ := json.Marshal(m)
			attrs = string(b)
		}
		err := cw.Write([]string{timeOf(rec.Time).Format(time.RFC3339Nano), rec.ID.String(), csvText(rec.Service), csvText(rec.Host),
			csvText(rec.BuildID), csvText(rec.DeployID), rec.Level.String(), csvText(rec.Message), csvText(rec.TraceID), csvText(rec.SpanID), attrs})
		cw.Flush()
		if err == nil {
			err = cw.Error()
		}
		return err
	}
}

// csvText defuses a cell a spreadsheet would run as a formula (one starting
// with =, +, -, @, a tab or a carriage return: a log line is whatever a
// client sent): it gets a leading ', as OWASP's CSV injection advice says.
// The JSON lines export keeps every byte.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

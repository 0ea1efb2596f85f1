package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// clientFlags are the flags every client command shares.
type clientFlags struct {
	server *string
	output *string
	conn   *connFlags
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		server: fs.String("server", "127.0.0.1:7071", "shiplog gRPC address"),
		output: fs.String("output", "text", "output: text (colour on a terminal) or json (one record a line)"),
		conn:   addConnFlags(fs),
	}
}

func (c clientFlags) check(cmd string) error {
	if *c.output != "text" && *c.output != "json" {
		return usagef("%s: --output %q: want text or json", cmd, *c.output)
	}
	if *c.server == "" {
		return usagef("%s: --server must not be empty", cmd)
	}
	return nil
}

// dialServer connects to the --server list: the first address that answers,
// the next one when it stops answering.
func dialServer(cmd, addr string, cf *connFlags) (*grpc.ClientConn, error) {
	opts, err := cf.dialOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	return dialServers(cmd, addr, opts...)
}

// printer writes records as text lines or JSON lines.
type printer struct {
	w     io.Writer
	json  bool
	color bool
}

func newPrinter(w io.Writer, output string) *printer {
	p := &printer{w: w, json: output == "json"}
	if f, ok := w.(*os.File); ok && !p.json && os.Getenv("NO_COLOR") == "" {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.color = true
		}
	}
	return p
}

var levelColor = map[string]string{"trace": "\x1b[90m", "debug": "\x1b[36m", "info": "\x1b[32m", "warn": "\x1b[33m", "error": "\x1b[31m", "fatal": "\x1b[1;31m"}

var jsonOut = protojson.MarshalOptions{UseProtoNames: true}

func (p *printer) print(r *shiplogv1.Record) error {
	if p.json {
		b, err := jsonOut.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(p.w, "%s\n", compactJSON(b))
		return err
	}
	t := r.GetTime().AsTime().UTC().Format("2006-01-02T15:04:05.000Z")
	lv := strings.ToUpper(r.GetLevel())
	if p.color {
		lv = levelColor[r.GetLevel()] + fmt.Sprintf("%-5s", lv) + "\x1b[0m"
	} else {
		lv = fmt.Sprintf("%-5s", lv)
	}
	_, err := fmt.Fprintf(p.w, "%s %s %s %s\n", t, r.GetHost(), lv, r.GetMessage())
	return err
}

// compactJSON removes the spaces protojson puts after separators at random.
func compactJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	inStr, esc := false, false
	for _, c := range b {
		if inStr {
			out = append(out, c)
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		if c == ' ' || c == '\n' {
			continue
		}
		if c == '"' {
			inStr = true
		}
		out = append(out, c)
	}
	return out
}

// rpcError turns a gRPC error into the server's words.
func rpcError(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	cf := addClientFlags(fs)
	start := fs.String("start", "", "start: RFC 3339 or a duration back from now (15m, 24h); default: all time")
	end := fs.String("end", "", "end: RFC 3339 or a duration back from now; default: now")
	limit := fs.Int("limit", 100, "print the last N matches (0: every match)")
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if err := cf.check("query"); err != nil {
		return err
	}
	if *limit < 0 {
		return usagef("query: --limit must not be negative")
	}
	q := strings.Join(fs.Args(), " ")
	cc, err := dialServer("query", *cf.server, cf.conn)
	if err != nil {
		return err
	}
	defer cc.Close()
	client := shiplogv1.NewQueryServiceClient(cc)
	p := newPrinter(stdout, *cf.output)
	if *limit > 0 {
		// The newest N, printed oldest first.
		var recs []*shiplogv1.Record
		cursor := ""
		for len(recs) < *limit {
			resp, err := client.Search(ctx, &shiplogv1.SearchRequest{Q: q, Start: *start, End: *end, Limit: int32(min(*limit-len(recs), 10000)), Cursor: cursor})
			if err != nil {
				return rpcError(err)
			}
			recs = append(recs, resp.GetRecords()...)
			if cursor = resp.GetNextCursor(); cursor == "" {
				break
			}
		}
		for i := len(recs) - 1; i >= 0; i-- {
			if err := p.print(recs[i]); err != nil {
				return err
			}
		}
		return nil
	}
	cursor := ""
	for {
		resp, err := client.Search(ctx, &shiplogv1.SearchRequest{Q: q, Start: *start, End: *end, Limit: 5000, Cursor: cursor, Order: "asc"})
		if err != nil {
			return rpcError(err)
		}
		for _, r := range resp.GetRecords() {
			if err := p.print(r); err != nil {
				return err
			}
		}
		if cursor = resp.GetNextCursor(); cursor == "" {
			return nil
		}
	}
}

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	cf := addClientFlags(fs)
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if err := cf.check("tail"); err != nil {
		return err
	}
	cc, err := dialServer("tail", *cf.server, cf.conn)
	if err != nil {
		return err
	}
	defer cc.Close()
	stream, err := shiplogv1.NewQueryServiceClient(cc).Tail(ctx, &shiplogv1.TailRequest{Q: strings.Join(fs.Args(), " ")})
	if err != nil {
		return rpcError(err)
	}
	p := newPrinter(stdout, *cf.output)
	for {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return rpcError(err)
		}
		if n := resp.GetDropped(); n > 0 {
			fmt.Fprintf(stderr, "shiplog tail: fell behind: the server skipped %d new records (they are stored; search for them)\n", n)
		}
		for _, r := range resp.GetRecords() {
			if err := p.print(r); err != nil {
				return err
			}
		}
	}
}

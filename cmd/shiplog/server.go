package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/server"
	"github.com/shiplog/shiplog/store"
)

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	sd := server.DefaultOptions()
	httpAddr := fs.String("http", sd.HTTPAddr, "HTTP address: JSON API, web UI, /metrics")
	grpcAddr := fs.String("grpc", sd.GRPCAddr, "gRPC address")
	data := fs.String("data", "./shiplog-data", "data directory")
	fsync := fs.Bool("fsync", false, "fsync the write-ahead log before every ack (survives power loss, slower)")
	maxLine := fs.Int("max-line-bytes", ingest.DefaultOptions().MaxLineBytes, "longer messages are cut and marked truncated=true")
	maxRecv := fs.Int("max-request-bytes", sd.MaxRecvBytes, "largest gRPC message or HTTP body")
	maxPast := fs.Duration("max-past", ingest.DefaultOptions().MaxPast, "refuse records older than this")
	maxFuture := fs.Duration("max-future", ingest.DefaultOptions().MaxFuture, "refuse records further ahead of the server's clock than this")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	silentAfter := fs.Duration("silent-after", 5*time.Minute, "a host with no new line for this long is silent (unless its agent said goodbye)")
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return usagef("server: unexpected argument %q", fs.Arg(0))
	}
	for _, a := range []struct{ name, v string }{{"http", *httpAddr}, {"grpc", *grpcAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return usagef("server: --%s %q: want HOST:PORT", a.name, a.v)
		}
	}
	if *data == "" {
		return usagef("server: --data must not be empty")
	}
	if *maxLine < 1024 {
		return usagef("server: --max-line-bytes must be at least 1024")
	}
	if *silentAfter <= 0 {
		return usagef("server: --silent-after must be positive")
	}
	if *maxPast <= 0 || *maxFuture <= 0 {
		return usagef("server: --max-past and --max-future must be positive")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("server: --log-level %q: want debug, info, warn or error", *logLevel)
	}
	var log *slog.Logger
	switch *logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	case "json":
		log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	default:
		return usagef("server: --log-format %q: want text or json", *logFormat)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	so := store.DefaultOptions()
	so.Fsync = *fsync
	start := time.Now()
	st, err := store.Open(*data, so, log, reg)
	if err != nil {
		return err
	}
	log.Info("store open", "data", *data, "took", time.Since(start).Round(time.Millisecond))
	io := ingest.DefaultOptions()
	io.MaxLineBytes, io.MaxPast, io.MaxFuture = *maxLine, *maxPast, *maxFuture
	hub := server.NewHub()
	core := server.Core{
		Ingest:      ingest.New(server.TailSink{Next: st, Hub: hub}, io, log, reg),
		Query:       query.New(st, query.DefaultOptions()),
		Catalog:     st,
		Getter:      st,
		Hub:         hub,
		SilentAfter: *silentAfter,
	}
	so2 := server.DefaultOptions()
	so2.HTTPAddr, so2.GRPCAddr, so2.MaxRecvBytes, so2.Gatherer = *httpAddr, *grpcAddr, *maxRecv, reg
	srv, err := server.New(core, so2, log)
	if err != nil {
		_ = st.Close()
		return err
	}
	base := "http://" + srv.HTTPAddr()
	fmt.Fprintf(stdout, "shiplog is serving\n  web UI and HTTP API: %s/\n  gRPC:                %s\n  health:              %s/readyz\n  data:                %s\n",
		base, srv.GRPCAddr(), base, *data)
	if f, ok := stdout.(*os.File); ok {
		_ = f.Sync()
	}
	serveErr := srv.Serve(ctx)
	log.Info("shutting down: sealing open chunks")
	closeErr := st.Close()
	if serveErr != nil && !strings.Contains(serveErr.Error(), "use of closed") {
		return serveErr
	}
	return closeErr
}

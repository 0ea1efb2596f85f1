package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/shiplog/shiplog/agent"
)

// attrFlag collects repeated --attr k=v.
type attrFlag map[string]string

func (a attrFlag) String() string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k+"="+a[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (a attrFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	a[strings.TrimSpace(k)] = v
	return nil
}

// shipFlags are the flags agent and run share.
type shipFlags struct {
	server, service, host, buildID, deployID *string
	attrs                                    attrFlag
	spool                                    *string
	spoolMax                                 byteSize
	spoolFsync                               *bool
	multiline                                *bool
	maxLine                                  byteSize
	shutdown                                 *time.Duration
	batchRecords                             *int
	batchBytes                               byteSize
	linger                                   *time.Duration
	backoffMax                               *time.Duration
	conn                                     *connFlags
	servers                                  []string // --server, checked
	dialOpts                                 []grpc.DialOption
}

func addShipFlags(fs *flag.FlagSet, multiline bool, shutdown time.Duration) *shipFlags {
	hostname, _ := os.Hostname()
	f := &shipFlags{
		server:   fs.String("server", "127.0.0.1:7071", "shiplog gRPC address HOST:PORT; several, comma-separated, for failover: the next is used when one fails"),
		service:  fs.String("service", "", "service of every record"),
		host:     fs.String("host", hostname, "host of every record"),
		buildID:  fs.String("build-id", "", "build id of every record"),
		deployID: fs.String("deploy-id", "", "deploy id of every record"),
		attrs:    attrFlag{},
		spoolMax: 256 << 20,
		maxLine:  256 << 10,
	}
	fs.Var(f.attrs, "attr", "attribute KEY=VALUE of every record (repeatable)")
	f.spool = fs.String("spool", "", "spool directory: agent id, unacked batches, read positions (default: under the user cache directory)")
	fs.Var(&f.spoolMax, "spool-max-bytes", "spool size bound; when full, the oldest unacked records are dropped and counted")
	f.spoolFsync = fs.Bool("spool-fsync", false, "fsync every spooled batch (survives power loss, slower)")
	f.multiline = fs.Bool("multiline", multiline, "join stack-trace lines (indented, 'at ', 'Caused by:', '...') to the line before")
	fs.Var(&f.maxLine, "max-line-bytes", "longer lines are cut and marked truncated=true")
	f.shutdown = fs.Duration("shutdown-timeout", shutdown, "at the end, how long to keep trying to deliver what is spooled")
	f.batchRecords = fs.Int("batch-max-records", agent.DefaultOptions().BatchMaxRecords, "records in one batch")
	f.batchBytes = byteSize(agent.DefaultOptions().BatchMaxBytes)
	fs.Var(&f.batchBytes, "batch-max-bytes", "bytes in one batch")
	f.linger = fs.Duration("linger", agent.DefaultOptions().Linger, "how long a batch waits for more records")
	f.backoffMax = fs.Duration("backoff-max", agent.DefaultOptions().BackoffMax, "longest wait between reconnection attempts")
	f.conn = addConnFlags(fs)
	return f
}

func (f *shipFlags) check(cmd string) error {
	servers, err := parseServers(cmd, *f.server)
	if err != nil {
		return err
	}
	f.servers = servers
	if f.spoolMax < 1<<20 {
		return usagef("%s: --spool-max-bytes must be at least 1MiB", cmd)
	}
	if f.maxLine < 1024 {
		return usagef("%s: --max-line-bytes must be at least 1024", cmd)
	}
	if *f.shutdown < 0 || *f.linger <= 0 || *f.backoffMax <= 0 {
		return usagef("%s: --shutdown-timeout, --linger and --backoff-max must be positive", cmd)
	}
	if *f.batchRecords <= 0 || f.batchBytes <= 0 {
		return usagef("%s: --batch-max-records and --batch-max-bytes must be positive", cmd)
	}
	if f.batchBytes > f.spoolMax {
		return usagef("%s: --batch-max-bytes must not exceed --spool-max-bytes", cmd)
	}
	if f.batchBytes > 64<<20 {
		return usagef("%s: --batch-max-bytes must be at most 64MiB", cmd)
	}
	dopts, err := f.conn.dialOptions()
	if err != nil {
		return usagef("%s: %v", cmd, err)
	}
	f.dialOpts = dopts
	return nil
}

func (f *shipFlags) tags() agent.Tags {
	return agent.Tags{Service: *f.service, Host: *f.host, BuildID: *f.buildID, DeployID: *f.deployID, Attrs: f.attrs}
}

func (f *shipFlags) options(dir string) agent.Options {
	o := agent.DefaultOptions()
	o.Servers = f.servers
	o.Dir, o.Tags = dir, f.tags()
	o.SpoolMaxBytes, o.Fsync = int64(f.spoolMax), *f.spoolFsync
	o.BatchMaxRecords, o.BatchMaxBytes, o.Linger = *f.batchRecords, int(f.batchBytes), *f.linger
	o.BackoffMax = *f.backoffMax
	o.BackoffMin = min(o.BackoffMin, o.BackoffMax)
	o.DialOptions = f.dialOpts
	return o
}

func (f *shipFlags) handlerOptions() agent.HandlerOptions {
	ho := agent.DefaultHandlerOptions()
	ho.Multiline = *f.multiline
	ho.MaxLineBytes = int(f.maxLine)
	ho.MultilineMaxBytes = int(f.maxLine)
	return ho
}

// cacheDir is where default spools live.
func cacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "shiplog")
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// safeName turns s into a directory name part.
func safeName(s string) string {
	n := unsafeName.ReplaceAllString(s, "_")
	if n != s || len(n) > 64 {
		sum := sha256.Sum256([]byte(s))
		n = n[:min(len(n), 48)] + "-" + hex.EncodeToString(sum[:4])
	}
	return n
}

// openShipper opens the spool dir; with fallback, a dir held by another
// running process is skipped for dir.1, dir.2 ... (default spools only).
func openShipper(o agent.Options, fallback bool, log *slog.Logger) (*agent.Shipper, error) {
	base := o.Dir
	for i := 0; ; i++ {
		if i > 0 {
			o.Dir = fmt.Sprintf("%s.%d", base, i)
		}
		sh, err := agent.Open(o, log)
		if err == nil || !fallback || !errors.Is(err, agent.ErrSpoolLocked) || i >= 16 {
			return sh, err
		}
	}
}

func newAgentLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	sf := addShipFlags(fs, true, 10*time.Second)
	format := fs.String("format", "text", "input format: text (the level is read from each line) or json (one record in the contract's JSON form a line)")
	poll := fs.Duration("poll-interval", 250*time.Millisecond, "how often followed files are checked for new lines, rotation and truncation")
	logLevel := fs.String("log-level", "info", "log level of the agent's own messages: debug, info, warn or error")
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if err := sf.check("agent"); err != nil {
		return err
	}
	fmtv, err := agent.ParseFormat(*format)
	if err != nil {
		return usagef("agent: --format: %v", err)
	}
	if *poll <= 0 {
		return usagef("agent: --poll-interval must be positive")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("agent: --log-level %q: want debug, info, warn or error", *logLevel)
	}
	log := newAgentLogger(stderr, lvl)
	files := fs.Args()

	dir, fallback := *sf.spool, false
	if dir == "" {
		key := *sf.service + "\x00"
		for _, f := range files {
			abs, _ := filepath.Abs(f)
			key += abs + "\x00"
		}
		sum := sha256.Sum256([]byte(key))
		dir = filepath.Join(cacheDir(), "agent-"+hex.EncodeToString(sum[:6]))
		fallback = len(files) == 0 // stdin has no positions to keep: any free spool will do
	}
	sh, err := openShipper(sf.options(dir), fallback, log)
	if err != nil {
		if errors.Is(err, agent.ErrSpoolLocked) {
			return fmt.Errorf("agent: %v; give each agent its own --spool", err)
		}
		return fmt.Errorf("agent: %w", err)
	}
	log.Debug("agent started", "agent_id", sh.AgentID(), "spool", sh.Dir())
	ho := sf.handlerOptions()
	ho.Format = fmtv

	if len(files) == 0 {
		ho.Name = "stdin"
		h := agent.NewHandler(sh, ho, log)
		if err := agent.ReadStream(ctx, os.Stdin, h); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("reading stdin", "err", err)
		}
	} else {
		var wg sync.WaitGroup
		for _, f := range files {
			hoF := ho
			hoF.Name = f
			abs, _ := filepath.Abs(f)
			hoF.Attrs = map[string]string{"file": abs}
			h := agent.NewHandler(sh, hoF, log)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := agent.Follow(ctx, f, h, sh, agent.FollowOptions{Poll: *poll}, log); err != nil {
					log.Error("cannot follow file", "file", f, "err", err)
				}
			}()
		}
		<-ctx.Done()
		wg.Wait()
	}

	cctx, cancel := context.WithTimeout(context.Background(), *sf.shutdown)
	defer cancel()
	err = sh.Close(cctx)
	st := sh.Stats()
	var ue *agent.UndeliveredError
	switch {
	case errors.As(err, &ue) && ue.Records > 0:
		return fmt.Errorf("agent: %d of %d lines not delivered within --shutdown-timeout %s; they stay in spool %s for the next agent on it (last error: %v)",
			ue.Records, st.Added, *sf.shutdown, ue.Dir, ue.LastErr)
	case errors.As(err, &ue):
		log.Warn("every line was delivered, but the server did not answer the closing batch", "err", ue.LastErr)
	case err != nil:
		return fmt.Errorf("agent: %w", err)
	}
	if st.Unparsed > 0 {
		log.Warn("lines that could not be parsed were dropped", "lines", st.Unparsed)
	}
	if st.Lost > 0 {
		return fmt.Errorf("agent: %d lines were dropped (spool full, or refused by the server; see above); the other %d were delivered",
			st.Lost, st.Added-st.Lost)
	}
	return nil
}

package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/shiplog/shiplog"

// pkgInfo is what go list says of one of our packages.
type pkgInfo struct {
	imports []string // direct imports (non-test files)
	deps    []string // every package it depends on, transitively
}

// listPackages runs go list over the module.
func listPackages(t *testing.T) map[string]pkgInfo {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "list", "-e", "-f", "{{.ImportPath}}\t{{join .Imports \" \"}}\t{{join .Deps \" \"}}", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Skipf("go list: %v", err)
	}
	pkgs := map[string]pkgInfo{}
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			t.Fatalf("go list line %q", line)
		}
		pkgs[f[0]] = pkgInfo{imports: strings.Fields(f[1]), deps: strings.Fields(f[2])}
	}
	return pkgs
}

func isOurs(p string) bool { return p == module || strings.HasPrefix(p, module+"/") }

func isProto(p string) bool {
	return p == module+"/proto" || strings.HasPrefix(p, module+"/proto/")
}

func isWire(p string) bool {
	for _, m := range []string{"google.golang.org/protobuf", "google.golang.org/grpc", "github.com/grpc-ecosystem/grpc-gateway"} {
		if p == m || strings.HasPrefix(p, m+"/") {
			return true
		}
	}
	return isProto(p)
}

// TestLayering keeps the arrows of STYLE.md pointing one way.
func TestLayering(t *testing.T) {
	pkgs := listPackages(t)
	for _, p := range []string{"model", "store", "ingest", "query", "server"} {
		if _, ok := pkgs[module+"/"+p]; !ok {
			t.Fatalf("go list does not know %s/%s", module, p)
		}
	}
	ours := func(p string) []string { // p and our packages it depends on
		out := []string{p}
		for _, d := range pkgs[p].deps {
			if isOurs(d) {
				out = append(out, d)
			}
		}
		return out
	}

	// store and model see neither protobuf nor gRPC: not they, not any of our
	// packages they use, and not the generated code. (Third-party libraries
	// may use protobuf inside: Badger and the Prometheus client do.)
	for _, p := range []string{"store", "model"} {
		for _, q := range ours(module + "/" + p) {
			for _, imp := range pkgs[q].imports {
				if isWire(imp) {
					t.Errorf("%s imports %s (through %s)", p, imp, q)
				}
			}
		}
	}

	forbidden := map[string][]string{
		"model":  {module + "/"}, // nothing of ours
		"web":    {module + "/"}, // nothing of ours
		"alert":  {module + "/store", module + "/query", module + "/ingest", module + "/server", module + "/proto/"},
		"ingest": {module + "/query", module + "/server", module + "/store", module + "/proto/"},
		"query":  {module + "/ingest", module + "/server", module + "/proto/"},
		"store":  {module + "/query", module + "/ingest", module + "/server", module + "/proto/"},
	}
	// The store may use Prometheus' chunk encoding, never its engine: the
	// PromQL adapter (metrics) sits above the store.
	forbidden["store"] = append(forbidden["store"], "github.com/prometheus/prometheus/promql", "github.com/prometheus/prometheus/storage")
	forbidden["metrics"] = []string{module + "/query", module + "/ingest", module + "/server", module + "/proto/"}
	for p, bad := range forbidden {
		info, ok := pkgs[module+"/"+p]
		if !ok {
			continue
		}
		for _, d := range info.deps {
			for _, b := range bad {
				if d == strings.TrimSuffix(b, "/") || strings.HasPrefix(d, b) {
					t.Errorf("%s depends on %s", p, d)
				}
			}
		}
	}

	// Only server, agent and the commands use the generated code.
	for p, info := range pkgs {
		rel := strings.TrimPrefix(p, module+"/")
		if isProto(p) || rel == "server" || rel == "agent" || strings.HasPrefix(rel, "cmd/") {
			continue
		}
		for _, imp := range info.imports {
			if isProto(imp) {
				t.Errorf("%s imports %s", p, imp)
			}
		}
	}
}

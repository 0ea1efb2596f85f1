package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Secret files others can write are refused (a usage error, exit 2); ones
// they can read are let through with a warning.
func TestCheckSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("shp_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mode       os.FileMode
		warn, fail bool
	}{
		{0o600, false, false},
		{0o400, false, false},
		{0o640, true, false},
		{0o644, true, false},
		{0o620, false, true},
		{0o602, false, true},
		{0o666, false, true},
	} {
		if err := os.Chmod(path, c.mode); err != nil {
			t.Fatal(err)
		}
		warn, err := checkSecretFile(path, "token-file")
		var ue usageError
		if c.fail != (err != nil) || (err != nil && (!errors.As(err, &ue) || !strings.Contains(err.Error(), "--token-file"))) {
			t.Errorf("mode %04o: err %v", c.mode, err)
		}
		if c.warn != (warn != "") {
			t.Errorf("mode %04o: warning %q", c.mode, warn)
		}
	}
	if _, err := checkSecretFile(path+".missing", "auth-file"); err == nil {
		t.Error("a missing file passed")
	}
	// A client with --token-file refuses a file others can write.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	tok, tf, ca := "", path, ""
	c := &connFlags{token: &tok, tokenFile: &tf, tlsCA: &ca}
	if _, err := c.bearerToken(); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Fatalf("--token-file 0666: %v", err)
	}
}

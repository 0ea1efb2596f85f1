package main

import (
	"fmt"
	"os"
	"runtime"
)

// checkSecretFile vets a file holding a secret (--auth-file, --tls-key,
// --token-file): one that users other than its owner can write is refused
// (they could swap in their own tokens or key); one they can read gets a
// warning back (the secret may already be out; Kubernetes mounts secrets
// 0644 unless told otherwise, so this is not refused).
func checkSecretFile(path, flagName string) (warning string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", usagef("--%s: %v", flagName, err)
	}
	mode := fi.Mode().Perm()
	if mode&0o022 != 0 {
		return "", usagef("--%s %s is writable by group or others (mode %04o): anyone who can change it controls who gets in; chmod 600 it", flagName, path, mode)
	}
	if mode&0o044 != 0 {
		return fmt.Sprintf("--%s %s is readable by group or others (mode %04o): other local users can read it; chmod 600 it", flagName, path, mode), nil
	}
	return "", nil
}

// checkPrivateFile refuses a secret file that its group or others may read
// or write (as ssh refuses such a private key): another local user could
// read the secret, or replace it.
func checkPrivateFile(flagName, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return usagef("server: %s: %v", flagName, err)
	}
	if !fi.Mode().IsRegular() {
		return usagef("server: %s %s: not a regular file", flagName, path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return usagef("server: %s %s: mode %#o lets other users read or write it; run `chmod 600 %s`",
			flagName, path, fi.Mode().Perm(), path)
	}
	return nil
}

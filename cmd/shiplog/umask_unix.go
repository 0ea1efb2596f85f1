//go:build unix

package main

import "syscall"

// privateUmask makes every file the process creates from now on private to
// its user (0600 files, 0700 directories), including those that libraries
// (Bleve, Badger, NATS) create with wider modes.
func privateUmask() { syscall.Umask(0o077) }

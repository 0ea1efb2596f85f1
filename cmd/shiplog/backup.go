package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/store"
)

func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	server := fs.String("server", "127.0.0.1:7071", "shiplog gRPC address")
	cf := addConnFlags(fs)
	to := fs.String("to", "", "backup file to write (a running server's consistent copy)")
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *to == "" {
		return usagef("backup: --to FILE is required")
	}
	cc, err := dialServer("backup", *server, cf)
	if err != nil {
		return err
	}
	defer cc.Close()
	stream, err := shiplogv1.NewAdminServiceClient(cc).Backup(ctx, &shiplogv1.BackupRequest{})
	if err != nil {
		return rpcError(err)
	}
	tmp := *to + ".partial"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	var n int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			f.Close()
			return rpcError(err)
		}
		k, err := f.Write(msg.GetData())
		n += int64(k)
		if err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("backup: the server sent nothing")
	}
	if err := os.Rename(tmp, *to); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup written to %s (%d bytes)\n", *to, n)
	return nil
}

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	from := fs.String("from", "", "backup file made by shiplog backup")
	data := fs.String("data", "", "data directory to create (must be empty or absent)")
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *from == "" || *data == "" {
		return usagef("restore: --from FILE and --data DIR are required")
	}
	f, err := os.Open(*from)
	if err != nil {
		return err
	}
	defer f.Close()
	privateUmask() // Badger creates some files 0666
	if err := store.Restore(f, *data); err != nil {
		return err
	}
	abs, _ := filepath.Abs(*data)
	fmt.Fprintf(stdout, "restored into %s; start the server on it and the indexes are rebuilt\n", abs)
	return nil
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/shiplog/shiplog/server"
)

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "new" {
		return usagef("token: usage: shiplog token new --name N --scopes ingest,query,admin")
	}
	fs := flag.NewFlagSet("token new", flag.ContinueOnError)
	name := fs.String("name", "", "a name for the token (who or what uses it)")
	scopes := fs.String("scopes", "", "comma-separated scopes: ingest, query, admin")
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *name == "" || strings.ContainsAny(*name, "\"\n") {
		return usagef("token new: --name is required (no quotes or newlines)")
	}
	var list []string
	for _, s := range strings.Split(*scopes, ",") {
		s = strings.TrimSpace(s)
		switch s {
		case server.ScopeIngest, server.ScopeQuery, server.ScopeAdmin:
			list = append(list, s)
		case "":
		default:
			return usagef("token new: unknown scope %q (want ingest, query or admin)", s)
		}
	}
	if len(list) == 0 {
		return usagef("token new: --scopes is required (ingest, query, admin)")
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	tok := "shp_" + base64.RawURLEncoding.EncodeToString(b)
	fmt.Fprintf(stdout, "token: %s\n\nAdd this entry to the auth file (it keeps only the token's SHA-256):\n\ntokens:\n  - name: %s\n    scopes: [%s]\n    sha256: %s\n",
		tok, *name, strings.Join(list, ", "), server.TokenSHA256(tok))
	return nil
}

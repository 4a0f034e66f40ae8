// Command ferretdb runs FerretDB (SQLite backend) as a throwaway MongoDB wire
// server for the chat test suite.
//
// It exists instead of `go install .../cmd/ferretdb` because FerretDB's own
// main module panics at start-up when build/version/version.txt is missing
// (it is generated in their release pipeline, not shipped in the module).
// build/version only reads that file when the main module path is
// github.com/FerretDB/FerretDB, so wrapping the public embeddable package in
// a module of our own sidesteps the problem without patching FerretDB.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on; port 0 picks a free port")
	stateDir := flag.String("state-dir", "", "directory for the SQLite database files (created if missing)")
	watchStdin := flag.Bool("exit-on-stdin-eof", false, "exit when stdin is closed (so a crashed parent does not leak servers)")
	var level slog.Level
	flag.TextVar(&level, "log-level", slog.LevelWarn, "debug, info, warn or error")
	flag.Parse()

	// Stdout is reserved for the ready line. Note that at warn level FerretDB
	// also logs every error response (e.g. duplicate key) in full.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if *stateDir == "" {
		fatal(logger, "-state-dir is required")
	}

	dir, err := filepath.Abs(*stateDir)
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		fatal(logger, err.Error())
	}

	// The embedded package never starts the telemetry reporter and locks it
	// off; the environment variables are belt and braces in case that changes.
	os.Setenv("FERRETDB_TELEMETRY", "disable")
	os.Setenv("DO_NOT_TRACK", "1")

	// FerretDB requires a "file:" URI naming an existing directory with a
	// trailing slash; url.URL escapes odd characters in the path for us.
	sqliteURL := (&url.URL{Scheme: "file", Path: dir + "/"}).String()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listenAddr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		fatal(logger, err.Error())
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}

	// Drop our handler once the first signal arrives: FerretDB gives open
	// connections a 3 s grace period, and a second signal should not wait.
	go func() {
		<-ctx.Done()
		stop()
	}()

	// New() has already bound the socket, so clients may connect from now on
	// (they queue in the backlog until Run starts accepting).
	fmt.Println("ready " + f.MongoDBURI())

	// Run returns after the listener, all connections and SQLite are closed,
	// so a clean exit means everything acknowledged is on disk.
	if err := f.Run(ctx); err != nil {
		fatal(logger, err.Error())
	}
}

func fatal(logger *slog.Logger, msg string) {
	logger.Error(msg)
	os.Exit(1)
}

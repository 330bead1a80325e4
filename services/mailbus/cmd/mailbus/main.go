// Command mailbus is the all-in-one mailbus binary: `mailbus serve` runs
// the store, imapsync and pop3fetcher in one process, `mailbus demo` adds
// demo mail servers and accounts, and the other commands are the client
// of a running store. See `mailbus --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailbus/mailbus/services/mailbus/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.IO{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Program: cli.ProgramName(os.Args[0]), ProcessArgs: os.Args})
	stop()
	os.Exit(code)
}

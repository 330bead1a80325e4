package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/services/store/store"
)

const migrateUsage = `mailbus-store migrate: see and apply the database schema migrations
before a rollout. The store applies pending migrations itself when it starts;
'migrate up' does it ahead, and 'migrate status' shows where the database is.
A store refuses to start on a database migrated by a newer mailbus.

Usage: mailbus-store migrate status|up [--data DIR | --database-url URL]
       (the flags may also come before the action)

  status   list the migrations: applied (when) or pending; changes nothing.
           Exit code 1 when the database is newer than this mailbus-store.
  up       apply the pending migrations, each in its own transaction

Examples:
  mailbus-store migrate status --data ./mailbus-data
  MAILBUS_DATABASE_URL=postgres://mailbus@db/mailbus mailbus-store migrate up

Flags:
`

// runMigrate runs "mailbus-store migrate ACTION [flags]" and returns the
// exit code: 0 done, 1 an error (or a database newer than this binary), 2
// a usage error.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("mailbus-store migrate", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), migrateUsage)
		fs.PrintDefaults()
	}
	cmd := envflag.NewCommand("mailbus-store migrate", fs)
	dataDir := envflag.String(fs, "data", "MAILBUS_DATA", "./mailbus-data", "data directory of the SQLite database")
	databaseURL := envflag.String(fs, "database-url", "MAILBUS_DATABASE_URL", "", "PostgreSQL URL (postgres://...); empty means SQLite in --data")
	// The action may come before, between or after the flags.
	positional, _, code, ok := cmd.ParseArgs(args)
	if !ok {
		return code
	}
	if len(positional) != 1 || (positional[0] != "status" && positional[0] != "up") {
		fmt.Fprintf(fs.Output(), "mailbus-store migrate: give one action, status or up (got %q)\nRun 'mailbus-store migrate --help' for details.\n", positional)
		return 2
	}
	action := positional[0]
	cfg := store.Config{DataDir: *dataDir, DatabaseURL: *databaseURL}
	where := "the SQLite database in " + *dataDir
	if *databaseURL != "" {
		where = envflag.Redact(*databaseURL)
	}
	if action == "up" {
		applied, err := store.MigrateSchema(ctx, cfg)
		for _, v := range applied {
			fmt.Fprintf(stdout, "applied migration %d\n", v)
		}
		if err != nil {
			fmt.Fprintf(fs.Output(), "mailbus-store migrate: %s: %v\n", where, err)
			return 1
		}
		if len(applied) == 0 {
			fmt.Fprintf(stdout, "%s: no migration pending\n", where)
		}
	}
	st, err := store.ReadSchemaStatus(ctx, cfg)
	if err != nil {
		fmt.Fprintf(fs.Output(), "mailbus-store migrate: %s: %v\n", where, err)
		return 1
	}
	printSchemaStatus(stdout, where, st)
	if st.Newer() {
		return 1
	}
	return 0
}

func printSchemaStatus(w io.Writer, where string, st store.SchemaStatus) {
	switch {
	case st.Newer():
		fmt.Fprintf(w, "%s: schema version %d, newer than this mailbus-store knows (%d): a newer mailbus migrated it; this one refuses to start on it\n", where, st.Version, st.Known)
	case st.Pending() > 0:
		fmt.Fprintf(w, "%s: schema version %d of %d; %d pending (mailbus-store migrate up, or the next start, applies them)\n", where, st.Version, st.Known, st.Pending())
	default:
		fmt.Fprintf(w, "%s: schema version %d of %d, up to date\n", where, st.Version, st.Known)
	}
	for _, m := range st.Migrations {
		state := "pending"
		if !m.AppliedAt.IsZero() {
			state = "applied " + m.AppliedAt.Format("2006-01-02 15:04:05Z07:00")
		}
		name := m.Name
		if name == "" {
			name = "(unknown to this mailbus-store)"
		}
		fmt.Fprintf(w, "  %3d  %-33s  %s\n", m.Version, state, name)
	}
}

// migrateMain is the migrate command with the process's signals.
func migrateMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runMigrate(ctx, args, os.Stdout, os.Stderr)
}

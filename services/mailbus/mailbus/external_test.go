package mailbus_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// postgresURL creates a database for the test (MAILBUS_TEST_POSTGRES, or
// PostgreSQL on 127.0.0.1:5432 with trust auth) and drops it afterwards.
func postgresURL(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("MAILBUS_TEST_POSTGRES")
	if admin == "" {
		admin = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL unreachable: %v", err)
		}
		t.Skipf("PostgreSQL unreachable (%v): start it or set MAILBUS_TEST_POSTGRES", err)
	}
	var r [6]byte
	rand.Read(r[:])
	name := "mailbus_allinone_" + hex.EncodeToString(r[:])
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		db.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		db.Close()
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// TestExternalNATSAndPostgres: with NATSURL and DatabaseURL the server
// uses them (no embedded NATS, no SQLite file): an account's events reach
// the external NATS server's stream, which was made with EventsMaxAge
// (--events-max-age).
func TestExternalNATSAndPostgres(t *testing.T) {
	dbURL := postgresURL(t)
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })

	data := filepath.Join(t.TempDir(), "data")
	const maxAge = 3 * time.Hour
	r := start(t, mailbus.Config{DataDir: data, DatabaseURL: dbURL, NATSURL: ns.ClientURL(), EventsMaxAge: maxAge})
	if r.info.Database != "postgres" || r.info.NATSURL != ns.ClientURL() {
		t.Fatalf("info %+v", r.info)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	created, err := mailbusv1.NewAccountServiceClient(dial(t, r.info)).CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "pg", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "127.0.0.1", Port: 1,
		Security: mailbusv1.Security_SECURITY_NONE, Username: "u", Secret: "p",
	}})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if got := stream.CachedInfo().Config; got.MaxAge != maxAge || got.Replicas != 1 {
		t.Errorf("events stream made with max age %v and %d replicas, want %v and 1", got.MaxAge, got.Replicas, maxAge)
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AccountSubjects(created.Account.Id)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Next(jetstream.FetchContext(ctx)); err != nil {
		t.Fatalf("no event on the external NATS: %v", err)
	}
	for _, p := range []string{"mailbus.db", "nats"} {
		if _, err := os.Stat(data + "/" + p); !os.IsNotExist(err) {
			t.Errorf("%s in the data directory with external PostgreSQL and NATS: %v", p, err)
		}
	}
}

package db_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

func TestValidateAccount(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(a *mailbusv1.Account)
		wantField string
	}{
		{"valid", func(a *mailbusv1.Account) {}, ""},
		{"no name", func(a *mailbusv1.Account) { a.Name = " " }, "account.name"},
		{"no protocol", func(a *mailbusv1.Account) { a.Protocol = 0 }, "account.protocol"},
		{"no host", func(a *mailbusv1.Account) { a.Host = "" }, "account.host"},
		{"bad port", func(a *mailbusv1.Account) { a.Port = 70000 }, "account.port"},
		{"security not chosen", func(a *mailbusv1.Account) { a.Security = 0 }, "account.security"},
		{"no username", func(a *mailbusv1.Account) { a.Username = "" }, "account.username"},
		{"CR LF in username", func(a *mailbusv1.Account) { a.Username = "victim\r\nDELE 1" }, "account.username"},
		{"tab in username", func(a *mailbusv1.Account) { a.Username = "a\tb" }, "account.username"},
		{"control character in host", func(a *mailbusv1.Account) { a.Host = "imap.example.com\x00" }, "account.host"},
		{"host with a port", func(a *mailbusv1.Account) { a.Host = "imap.example.com:993" }, "account.host"},
		{"host an IPv6 address", func(a *mailbusv1.Account) { a.Host = "2001:db8::1" }, ""},
		{"escape in name", func(a *mailbusv1.Account) { a.Name = "x\x1b[31m" }, "account.name"},
		{"all-digit name", func(a *mailbusv1.Account) { a.Name = "123" }, "account.name"},
		{"pop3 mode on imap", func(a *mailbusv1.Account) { a.Pop3Mode = mailbusv1.Pop3Mode_POP3_MODE_DELETE }, "account.pop3_mode"},
		{"poll too fast", func(a *mailbusv1.Account) { a.PollInterval = durationpb.New(1) }, "account.poll_interval"},
		{"bad folder pattern", func(a *mailbusv1.Account) { a.FolderInclude = []string{"a\nb"} }, "account.folder_include"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := imapAccount("x")
			tt.edit(a)
			err := db.ValidateAccount(a)
			var fe *db.FieldError
			switch {
			case tt.wantField == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantField != "" && !errors.As(err, &fe):
				t.Fatalf("err = %v, want a FieldError on %s", err, tt.wantField)
			case tt.wantField != "" && fe.Field != tt.wantField:
				t.Fatalf("field = %s, want %s", fe.Field, tt.wantField)
			}
		})
	}
}

func TestAccountLifecycle(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		if a.Secret != "" {
			t.Fatal("secret returned")
		}
		if a.Generation != 1 || a.State == 0 {
			t.Fatalf("generation %d state %d", a.Generation, a.State)
		}
		if _, err := d.CreateAccount(ctx, imapAccount("work")); !errors.Is(err, db.ErrConflict) {
			t.Fatalf("duplicate name: %v", err)
		}
		secret, gen, err := d.AccountSecret(ctx, a.Id)
		if err != nil || secret != "hunter2" || gen != 1 {
			t.Fatalf("secret %q gen %d err %v", secret, gen, err)
		}
		// Parked accounts are un-parked by an update.
		if err := d.ReportStatus(ctx, a.Id, &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_PARKED, Reason: "bad password"}); err != nil {
			t.Fatal(err)
		}
		up, err := d.UpdateAccount(ctx, &mailbusv1.Account{Id: a.Id, Secret: "new", Port: 143}, []string{"secret", "port"})
		if err != nil {
			t.Fatal(err)
		}
		if up.Port != 143 || up.Generation != 2 || up.Host != a.Host || up.Status.State == mailbusv1.SyncState_SYNC_STATE_PARKED {
			t.Fatalf("after update: %v", up)
		}
		if s, _, _ := d.AccountSecret(ctx, a.Id); s != "new" {
			t.Fatalf("secret after update = %q", s)
		}
		if _, err := d.UpdateAccount(ctx, &mailbusv1.Account{Id: a.Id}, []string{"protocol"}); !errors.Is(err, db.ErrInvalid) {
			t.Fatalf("protocol update: %v", err)
		}
		if _, err := d.UpdateAccount(ctx, &mailbusv1.Account{Id: a.Id, Port: 0}, []string{"port"}); !errors.Is(err, db.ErrInvalid) {
			t.Fatalf("invalid update: %v", err)
		}
		b := mustCreate(t, d, pop3Account("home"))
		list, err := d.ListAccounts(ctx, 0, 10, mailbusv1.Protocol_PROTOCOL_POP3)
		if err != nil || len(list) != 1 || list[0].Id != b.Id {
			t.Fatalf("list pop3: %v %v", list, err)
		}
		if err := d.DeleteAccount(ctx, a.Id); err != nil {
			t.Fatal(err)
		}
		if _, err := d.GetAccount(ctx, a.Id); !errors.Is(err, db.ErrNotFound) {
			t.Fatalf("deleted account: %v", err)
		}
		if _, err := d.GetAccount(ctx, "x"); !errors.Is(err, db.ErrInvalid) {
			t.Fatalf("bad id: %v", err)
		}
	})
}

func TestSecretEncryptedAtRest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d, err := db.Open(context.Background(), db.Config{DataDir: dir, Secrets: dbtest.Secrets(t)})
	if err != nil {
		t.Fatal(err)
	}
	a := mustCreate(t, d, imapAccount("work"))
	d.Close()
	raw, err := sql.Open("sqlite", "file:"+dir+"/mailbus.db")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var sealed, config []byte
	if err := raw.QueryRow(`SELECT secret, config FROM accounts WHERE id = ?`, a.Id).Scan(&sealed, &config); err != nil {
		t.Fatal(err)
	}
	if len(sealed) == 0 || strings.Contains(string(sealed), "hunter2") || strings.Contains(string(config), "hunter2") {
		t.Fatal("secret stored in the clear")
	}
	var c mailbusv1.Account
	if err := proto.Unmarshal(config, &c); err != nil || c.Secret != "" {
		t.Fatalf("config holds the secret: %v", err)
	}
	// Another key cannot open it.
	d2, err := db.Open(context.Background(), db.Config{DataDir: dir, Secrets: dbtest.Secrets(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if _, _, err := d2.AccountSecret(context.Background(), a.Id); err == nil {
		t.Fatal("opened with the wrong key")
	}
}

func TestStatusEventsOnlyOnChange(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		st := &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_IDLE}
		for i := 0; i < 3; i++ {
			if err := d.ReportStatus(ctx, a.Id, st); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.ReportStatus(ctx, a.Id, &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_SYNCING}); err != nil {
			t.Fatal(err)
		}
		// Only last_success_time moves: recorded, not announced.
		done := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := 0; i < 2; i++ {
			if err := d.ReportStatus(ctx, a.Id, &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_SYNCING, LastSuccessTime: timestamppb.New(done.Add(time.Duration(i) * time.Minute))}); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := d.GetAccount(ctx, a.Id)
		if !got.Status.LastSuccessTime.AsTime().Equal(done.Add(time.Minute)) {
			t.Fatalf("last success time %v not recorded", got.Status.LastSuccessTime.AsTime())
		}
		if n := countKind(allEvents(t, d, a.Id), "account.status"); n != 2 {
			t.Fatalf("%d status events, want 2", n)
		}
		state, _, _ := d.AccountState(ctx, a.Id)
		if state != a.State {
			t.Fatalf("status moved the state: %d -> %d", a.State, state)
		}
	})
}

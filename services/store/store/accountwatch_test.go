package store_test

import (
	"slices"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// accountWatch is one WatchAccounts stream, past its ready answer.
type accountWatch struct {
	stream grpc.ServerStreamingClient[mailbusv1.WatchAccountsResponse]
}

func (e *env) watchAccounts(t *testing.T, protocol mailbusv1.Protocol) *accountWatch {
	t.Helper()
	stream, err := e.ingest.WatchAccounts(callCtx(t), &mailbusv1.WatchAccountsRequest{Protocol: protocol})
	if err != nil {
		t.Fatalf("WatchAccounts: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil || !resp.Ready {
		t.Fatalf("WatchAccounts: first answer %v, %v; want ready", resp, err)
	}
	return &accountWatch{stream: stream}
}

// next returns the ids of the next announcement. A resync is skipped: on
// PostgreSQL the store's listener asks for one when it connects, which
// may be after the watch began.
func (w *accountWatch) next(t *testing.T) []string {
	t.Helper()
	for {
		resp, err := w.stream.Recv()
		if err != nil {
			t.Fatalf("WatchAccounts: %v", err)
		}
		if resp.Resync {
			continue
		}
		if resp.Ready {
			t.Fatalf("WatchAccounts: %v, want account ids", resp)
		}
		return resp.AccountIds
	}
}

// TestWatchAccounts (decision 0028): a created, updated and deleted
// account is announced to the watchers of its protocol, and only to
// them; a deleted one to every watcher (its protocol is gone with it).
func TestWatchAccounts(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		imapW := e.watchAccounts(t, mailbusv1.Protocol_PROTOCOL_IMAP)
		popW := e.watchAccounts(t, mailbusv1.Protocol_PROTOCOL_POP3)
		allW := e.watchAccounts(t, mailbusv1.Protocol_PROTOCOL_UNSPECIFIED)

		imapAcct := e.createAccount(t, imapAccount("imap"))
		popAcct := e.createAccount(t, pop3Account("pop"))
		// Announcements keep their order: the POP3 watcher's first is the
		// POP3 account, so it never heard of the IMAP one.
		if got := popW.next(t); !slices.Equal(got, []string{popAcct.Id}) {
			t.Errorf("POP3 watcher: %v, want [%s]", got, popAcct.Id)
		}
		if got := imapW.next(t); !slices.Equal(got, []string{imapAcct.Id}) {
			t.Errorf("IMAP watcher after create: %v, want [%s]", got, imapAcct.Id)
		}
		var all []string
		for len(all) < 2 {
			all = append(all, allW.next(t)...)
		}
		if !slices.Equal(all, []string{imapAcct.Id, popAcct.Id}) {
			t.Errorf("watcher of every protocol: %v, want [%s %s]", all, imapAcct.Id, popAcct.Id)
		}

		if _, err := e.accounts.UpdateAccount(callCtx(t), &mailbusv1.UpdateAccountRequest{
			Account:    &mailbusv1.Account{Id: imapAcct.Id, Secret: "new"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"secret"}},
		}); err != nil {
			t.Fatal(err)
		}
		if got := imapW.next(t); !slices.Equal(got, []string{imapAcct.Id}) {
			t.Errorf("IMAP watcher after update: %v, want [%s]", got, imapAcct.Id)
		}

		if _, err := e.accounts.DeleteAccount(callCtx(t), &mailbusv1.DeleteAccountRequest{AccountId: imapAcct.Id}); err != nil {
			t.Fatal(err)
		}
		if got := imapW.next(t); !slices.Equal(got, []string{imapAcct.Id}) {
			t.Errorf("IMAP watcher after delete: %v, want [%s]", got, imapAcct.Id)
		}
		if got := popW.next(t); !slices.Equal(got, []string{imapAcct.Id}) {
			t.Errorf("POP3 watcher after delete: %v, want [%s] (the protocol of a deleted account is not known)", got, imapAcct.Id)
		}
	})
}

// TestWatchAccountsEndsWhenStoreStops: a stopping store ends the streams
// (UNAVAILABLE), so that the fetchers watch again, on the store that
// comes back, instead of holding a stream to nothing.
func TestWatchAccountsEndsWhenStoreStops(t *testing.T) {
	e := startStore(t, dbtest.Backends()[0], storeOpts{noNATS: true})
	w := e.watchAccounts(t, mailbusv1.Protocol_PROTOCOL_IMAP)
	e.stop()
	if resp, err := w.stream.Recv(); err == nil {
		t.Fatalf("WatchAccounts after the store stopped: %v, want an error", resp)
	}
}

// TestWatchAccountsAcrossReplicas: two store replicas on one PostgreSQL;
// an account created, updated and deleted through one is announced to
// the watchers of the other (PostgreSQL LISTEN/NOTIFY).
func TestWatchAccountsAcrossReplicas(t *testing.T) {
	pg := dbtest.Backends()[1]
	cfg := pg.Config(t)
	a := startStore(t, pg, storeOpts{noNATS: true, dbConfig: &cfg})
	b := startStore(t, pg, storeOpts{noNATS: true, dbConfig: &cfg})
	w := b.watchAccounts(t, mailbusv1.Protocol_PROTOCOL_POP3)

	acct := a.createAccount(t, pop3Account("elsewhere"))
	if got := w.next(t); !slices.Equal(got, []string{acct.Id}) {
		t.Errorf("after create on the other replica: %v, want [%s]", got, acct.Id)
	}
	if _, err := a.accounts.UpdateAccount(callCtx(t), &mailbusv1.UpdateAccountRequest{
		Account:    &mailbusv1.Account{Id: acct.Id, Secret: "new"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"secret"}},
	}); err != nil {
		t.Fatal(err)
	}
	if got := w.next(t); !slices.Equal(got, []string{acct.Id}) {
		t.Errorf("after update on the other replica: %v, want [%s]", got, acct.Id)
	}
	if _, err := a.accounts.DeleteAccount(callCtx(t), &mailbusv1.DeleteAccountRequest{AccountId: acct.Id}); err != nil {
		t.Fatal(err)
	}
	if got := w.next(t); !slices.Equal(got, []string{acct.Id}) {
		t.Errorf("after delete on the other replica: %v, want [%s]", got, acct.Id)
	}
}

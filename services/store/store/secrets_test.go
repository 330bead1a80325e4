package store_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// TestAdminCannotMakeServiceToken: an admin token may not make a service
// token, which would read every upstream password (issue 16: `mailbus
// token create --role service` then GetAccountSecret returned the
// password). The refused call leaves no token behind.
func TestAdminCannotMakeServiceToken(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		acct := e.createAccount(t, pop3Account("victim"))
		tokens := mailbusv1.NewTokenServiceClient(e.conn)
		resp, err := tokens.CreateToken(callCtx(t), &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
			Name: "exfil", Role: mailbusv1.TokenRole_TOKEN_ROLE_SERVICE,
		}})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "--service-token-file") {
			t.Errorf("CreateToken of a service token with an admin token: %v, want PERMISSION_DENIED naming --service-token-file", err)
		}
		if resp.GetSecret() != "" {
			sec, err := mailbusv1.NewIngestServiceClient(e.dial(t, resp.Secret)).GetAccountSecret(callCtx(t), &mailbusv1.GetAccountSecretRequest{AccountId: acct.Id})
			t.Fatalf("the made token read the secret: %q %v", sec.GetSecret(), err)
		}
		list, err := tokens.ListTokens(callCtx(t), &mailbusv1.ListTokensRequest{IncludeRevoked: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range list.Tokens {
			if tok.Role == mailbusv1.TokenRole_TOKEN_ROLE_SERVICE {
				t.Errorf("a service token was stored: %v", tok)
			}
		}
		// The admin token itself is refused the secret (in English).
		if _, err := mailbusv1.NewIngestServiceClient(e.conn).GetAccountSecret(callCtx(t), &mailbusv1.GetAccountSecretRequest{AccountId: acct.Id}); status.Code(err) != codes.PermissionDenied ||
			!strings.Contains(err.Error(), "an admin token may not call /mailbus.v1.IngestService/GetAccountSecret") {
			t.Fatalf("GetAccountSecret with the admin token: %v, want PERMISSION_DENIED: an admin token may not call ...", err)
		}
	})
}

// TestGetAccountSecretFenced: once a fetcher has claimed an account with a
// lease token, only that token (or a later owner's larger one) reads the
// secret: a replica whose lease has moved on, or a caller without
// ownership (token 0), gets STALE_LEASE.
func TestGetAccountSecretFenced(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		pop := e.createAccount(t, pop3Account("pop"))
		imap := e.createAccount(t, imapAccount("imap"))
		get := func(id string, token uint64) (string, error) {
			r, err := e.ingest.GetAccountSecret(callCtx(t), &mailbusv1.GetAccountSecretRequest{AccountId: id, LeaseToken: token})
			return r.GetSecret(), err
		}
		// Before any claim (no ownership in use), token 0 reads it.
		if s, err := get(pop.Id, 0); err != nil || s != "s3cret" {
			t.Fatalf("before a claim: %q %v", s, err)
		}
		if _, err := e.ingest.ClaimAccount(callCtx(t), &mailbusv1.ClaimAccountRequest{AccountId: pop.Id, LeaseToken: 42}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			token uint64
			ok    bool
		}{{0, false}, {41, false}, {42, true}, {43, true}} {
			s, err := get(pop.Id, tc.token)
			if tc.ok {
				if err != nil || s != "s3cret" {
					t.Errorf("token %d: %q %v, want the secret", tc.token, s, err)
				}
				continue
			}
			checkStale(t, "GetAccountSecret", err)
			if s != "" {
				t.Errorf("token %d: got the secret", tc.token)
			}
		}
		// Another account's tokens are its own.
		if s, err := get(imap.Id, 0); err != nil || s != "hunter2" {
			t.Fatalf("the other account: %q %v", s, err)
		}
	})
}

// TestEndpointChangeClearsSecret: an update that points an account at
// another server (host, port, security) without a new secret clears the
// stored one and parks the account; with a new secret the new one is stored; other changes keep it
// (issue 16: `account update --host` sent the old password to a server of
// the admin's choosing).
func TestEndpointChangeClearsSecret(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		for i, tc := range []struct {
			name    string
			upd     *mailbusv1.Account
			paths   []string
			secret  string // what GetAccountSecret returns afterwards
			cleared bool
		}{
			{"host", &mailbusv1.Account{Host: "evil.example.net"}, []string{"host"}, "", true},
			{"host, other case", &mailbusv1.Account{Host: "POP.Example.com"}, []string{"host"}, "s3cret", false},
			{"same host", &mailbusv1.Account{Host: "pop.example.com"}, []string{"host"}, "s3cret", false},
			{"port", &mailbusv1.Account{Port: 18450}, []string{"port"}, "", true},
			{"security", &mailbusv1.Account{Security: mailbusv1.Security_SECURITY_NONE}, []string{"security"}, "", true},
			{"verification off", &mailbusv1.Account{InsecureSkipVerify: true}, []string{"insecure_skip_verify"}, "s3cret", false},
			{"verification on", &mailbusv1.Account{InsecureSkipVerify: false}, []string{"insecure_skip_verify"}, "s3cret", false},
			{"host with a new secret", &mailbusv1.Account{Host: "new.example.net", Secret: "new-pw"}, []string{"host", "secret"}, "new-pw", false},
			{"username", &mailbusv1.Account{Username: "carol"}, []string{"username"}, "s3cret", false},
			{"poll interval", &mailbusv1.Account{PollInterval: nil}, []string{"poll_interval"}, "s3cret", false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := pop3Account("acct-" + string(rune('a'+i)))
				a.PollInterval = nil
				created := e.createAccount(t, a)
				tc.upd.Id = created.Id
				resp, err := e.accounts.UpdateAccount(callCtx(t), &mailbusv1.UpdateAccountRequest{Account: tc.upd, UpdateMask: &fieldmaskpb.FieldMask{Paths: tc.paths}})
				if err != nil {
					t.Fatalf("UpdateAccount: %v", err)
				}
				sec, err := e.ingest.GetAccountSecret(callCtx(t), &mailbusv1.GetAccountSecretRequest{AccountId: created.Id})
				if err != nil {
					t.Fatal(err)
				}
				if sec.Secret != tc.secret {
					t.Errorf("secret after the update %q, want %q", sec.Secret, tc.secret)
				}
				st := resp.Account.GetStatus()
				parked := st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED
				if parked != tc.cleared {
					t.Errorf("status %v, parked want %v", st, tc.cleared)
				}
				if !tc.cleared {
					return
				}
				if !strings.Contains(st.GetReason(), "password was cleared") {
					t.Errorf("reason %q does not say the password was cleared", st.GetReason())
				}
				// Another update without a secret leaves it parked; one with
				// a secret un-parks it.
				for _, u := range []struct {
					acct   *mailbusv1.Account
					path   string
					parked bool
				}{
					{&mailbusv1.Account{Id: created.Id, Username: "dave"}, "username", true},
					{&mailbusv1.Account{Id: created.Id, Secret: "pw-for-the-new-server"}, "secret", false},
				} {
					resp, err := e.accounts.UpdateAccount(callCtx(t), &mailbusv1.UpdateAccountRequest{Account: u.acct, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{u.path}}})
					if err != nil {
						t.Fatalf("UpdateAccount %s: %v", u.path, err)
					}
					if parked := resp.Account.GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED; parked != u.parked {
						t.Errorf("after an update of %s: status %v, parked want %v", u.path, resp.Account.GetStatus(), u.parked)
					}
				}
			})
		}
	})
}

// TestExpiredTokenRefused: a token with an expiry works until then, is
// refused afterwards like a revoked one (new calls, and an open
// WatchChanges stream, which ends with UNAUTHENTICATED), and ListTokens
// shows its expiry and leaves it out unless asked for revoked ones.
func TestExpiredTokenRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		acct := e.createAccount(t, imapAccount("a"))
		tokens := mailbusv1.NewTokenServiceClient(e.conn)
		// The window must be long enough to open the watch; the test
		// waits for the stream's end, not for a time. A machine too loaded
		// to open it in time gets a token with twice the window (the
		// expiry cut the watch before it caught up: not what is tested).
		var (
			expiry time.Time
			made   *mailbusv1.CreateTokenResponse
			conn   *grpc.ClientConn
			stream grpc.ServerStreamingClient[mailbusv1.WatchChangesResponse]
		)
		for window := 3 * time.Second; ; window *= 2 {
			expiry = time.Now().Add(window)
			var err error
			made, err = tokens.CreateToken(callCtx(t), &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
				Name: "short", Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: []string{acct.Id}, ExpireTime: timestamppb.New(expiry),
			}})
			if err != nil {
				t.Fatal(err)
			}
			if got := made.Token.GetExpireTime().AsTime(); !got.Equal(expiry.Truncate(time.Microsecond)) {
				t.Fatalf("expire_time %v, want %v", got, expiry)
			}
			conn = e.dial(t, made.Secret)
			stream, err = mailbusv1.NewSyncServiceClient(conn).WatchChanges(callCtx(t), &mailbusv1.WatchChangesRequest{AccountId: acct.Id})
			if err != nil {
				t.Fatal(err)
			}
			if err = recvCaughtUp(stream); err == nil {
				break
			}
			if !time.Now().Before(expiry) && window < 24*time.Second {
				t.Logf("the watch was not open before a %v expiry (%v); again with twice the window", window, err)
				continue
			}
			t.Fatalf("watch before the expiry: %v", err)
		}
		// The stream ends (callCtx bounds the wait) with UNAUTHENTICATED.
		for {
			_, err := stream.Recv()
			if err == nil {
				continue
			}
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "expired") {
				t.Errorf("watch after the expiry ended with %v, want UNAUTHENTICATED saying expired", err)
			}
			break
		}
		if time.Now().Before(expiry) {
			t.Fatalf("the watch ended before the token expired")
		}
		if _, err := mailbusv1.NewSyncServiceClient(conn).GetState(callCtx(t), &mailbusv1.GetStateRequest{AccountId: acct.Id}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("call after the expiry: %v, want UNAUTHENTICATED", err)
		}
		list, err := tokens.ListTokens(callCtx(t), &mailbusv1.ListTokensRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range list.Tokens {
			if tok.Id == made.Token.Id {
				t.Errorf("ListTokens lists the expired token")
			}
		}
		all, err := tokens.ListTokens(callCtx(t), &mailbusv1.ListTokensRequest{IncludeRevoked: true})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, tok := range all.Tokens {
			if tok.Id == made.Token.Id {
				found = tok.ExpireTime != nil
			}
		}
		if !found {
			t.Errorf("ListTokens with revoked ones: the expired token with its expiry missing")
		}
	})
}

// recvCaughtUp reads a WatchChanges stream until its caught_up message.
func recvCaughtUp(stream grpc.ServerStreamingClient[mailbusv1.WatchChangesResponse]) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if resp.CaughtUp {
			return nil
		}
	}
}

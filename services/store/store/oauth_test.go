package store_test

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthtest"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// lockedBuffer is a log sink the test reads at the end.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestOAuthAccountThroughTheAPI: an account with OAuth 2.0 credentials
// created through the API gets access tokens from GetAccountSecret (with
// their expiry, renewed on request), UNAVAILABLE while the token endpoint
// fails, FAILED_PRECONDITION REAUTHORIZATION_NEEDED after invalid_grant;
// neither the account API's answers nor the store's debug log carry the
// client secret, a refresh token or an access token.
func TestOAuthAccountThroughTheAPI(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		srv := oauthtest.New(oauthtest.WithRotation())
		defer srv.Close()
		logs := &lockedBuffer{}
		e := startStore(t, b, storeOpts{noNATS: true, logger: slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))})
		secrets := []string{srv.ClientSecret}
		rt := srv.Grant()
		secrets = append(secrets, rt)
		acct := imapAccount("gmail")
		acct.Secret = ""
		acct.Oauth2 = &mailbusv1.Oauth2Credentials{
			Provider: mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC, TokenUrl: srv.URL,
			ClientId: srv.ClientID, ClientSecret: srv.ClientSecret, RefreshToken: rt,
		}
		created := e.createAccount(t, acct)

		sec, err := e.ingest.GetAccountSecret(callCtx(t), &mailbusv1.GetAccountSecretRequest{AccountId: created.Id})
		if err != nil || !srv.Valid(sec.Secret) || sec.ExpireTime == nil || sec.Generation != created.Generation {
			t.Fatalf("GetAccountSecret: %v (valid token %v, expire_time %v)", err, srv.Valid(sec.GetSecret()), sec.GetExpireTime())
		}
		secrets = append(secrets, sec.Secret)
		again, err := e.ingest.GetAccountSecret(callCtx(t), &mailbusv1.GetAccountSecretRequest{AccountId: created.Id, Refresh: true})
		if err != nil || again.Secret == sec.Secret || !srv.Valid(again.Secret) {
			t.Fatalf("GetAccountSecret refresh: %v (new valid token %v)", err, again.GetSecret() != sec.Secret && srv.Valid(again.GetSecret()))
		}
		secrets = append(secrets, again.Secret)

		srv.FailNext(1)
		_, err = e.ingest.GetAccountSecret(callCtx(t), &mailbusv1.GetAccountSecretRequest{AccountId: created.Id, Refresh: true})
		wantCode(t, "GetAccountSecret with the token endpoint failing", err, codes.Unavailable, "")

		rt2 := srv.Grant()
		secrets = append(secrets, rt2)
		if _, err := e.accounts.UpdateAccount(callCtx(t), &mailbusv1.UpdateAccountRequest{
			Account:    &mailbusv1.Account{Id: created.Id, Oauth2: &mailbusv1.Oauth2Credentials{RefreshToken: rt2}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"oauth2.refresh_token"}},
		}); err != nil {
			t.Fatalf("UpdateAccount oauth2.refresh_token: %v", err)
		}
		srv.Revoke()
		_, err = e.ingest.GetAccountSecret(callCtx(t), &mailbusv1.GetAccountSecretRequest{AccountId: created.Id})
		wantCode(t, "GetAccountSecret after revocation", err, codes.FailedPrecondition, "")
		if r := errorReason(err); r != "REAUTHORIZATION_NEEDED" {
			t.Errorf("ErrorInfo reason %q, want REAUTHORIZATION_NEEDED", r)
		}

		got, err := e.accounts.GetAccount(callCtx(t), &mailbusv1.GetAccountRequest{AccountId: created.Id})
		if err != nil {
			t.Fatal(err)
		}
		if st := got.Account.GetStatus(); st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED || !strings.Contains(st.GetReason(), "re-authorization needed") {
			t.Errorf("status %v %q, want PARKED for re-authorization", st.GetState(), st.GetReason())
		}
		list, err := e.accounts.ListAccounts(callCtx(t), &mailbusv1.ListAccountsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		e.stop()
		answers := protojson.Format(created) + protojson.Format(got) + protojson.Format(list)
		for i, s := range secrets {
			if strings.Contains(answers, s) {
				t.Errorf("secret %d is in an account answer", i)
			}
			if strings.Contains(logs.String(), s) {
				t.Errorf("secret %d is in the store's log", i)
			}
		}
	})
}

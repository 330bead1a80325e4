package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
	"github.com/mailbus/mailbus/services/store/store"
)

// TestKeyRotation: credentials sealed under an old key are sealed again
// under a new one while a store holding both keys serves (and changes a
// credential in between); afterwards a store with only the new key opens
// every credential, one with only the old key none, and a second rotation
// has nothing to do.
func TestKeyRotation(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		cfg := b.Config(t)
		oldKey, newKey, otherKey := mustKey(t), mustKey(t), mustKey(t)
		secrets := func(e *env, ids []string) ([]string, error) {
			var out []string
			for _, id := range ids {
				r, err := e.ingest.GetAccountSecret(callCtx(t), &mailbusv1.GetAccountSecretRequest{AccountId: id})
				if err != nil {
					return out, err
				}
				out = append(out, r.Secret)
			}
			return out, nil
		}

		before := startStore(t, b, storeOpts{noNATS: true, dbConfig: &cfg, secretKey: oldKey})
		var ids, want []string
		for i := range 3 {
			a := pop3Account(fmt.Sprint("rotate-", i))
			a.Secret = fmt.Sprint("password-", i)
			ids = append(ids, before.createAccount(t, a).Id)
			want = append(want, a.Secret)
		}
		before.stop()

		// The store restarts with the new key as primary and the old one
		// to open what is not rotated yet; it changes one credential
		// (sealed under the new key) before the rotation.
		during := startStore(t, b, storeOpts{noNATS: true, dbConfig: &cfg, secretKey: newKey, oldSecretKeys: [][]byte{oldKey}})
		if got, err := secrets(during, ids); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("before the rotation: %v %v, want %v", got, err, want)
		}
		if _, err := during.accounts.UpdateAccount(callCtx(t), &mailbusv1.UpdateAccountRequest{
			Account:    &mailbusv1.Account{Id: ids[2], Secret: "changed"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"secret"}},
		}); err != nil {
			t.Fatal(err)
		}
		want[2] = "changed"

		rotate := store.Config{DataDir: cfg.DataDir, DatabaseURL: cfg.URL, SecretKey: newKey, OldSecretKeys: [][]byte{oldKey}}
		res, err := store.RotateSecrets(context.Background(), rotate)
		if err != nil {
			t.Fatal(err)
		}
		if res.Resealed != 2 || res.Current != 1 || len(res.Failed) != 0 {
			t.Fatalf("rotation: %+v, want 2 resealed, 1 current", res)
		}
		if got, err := secrets(during, ids); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("the serving store after the rotation: %v %v, want %v", got, err, want)
		}
		during.stop()

		after := startStore(t, b, storeOpts{noNATS: true, dbConfig: &cfg, secretKey: newKey})
		if got, err := secrets(after, ids); err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("with only the new key: %v %v, want %v", got, err, want)
		}
		after.stop()
		stale := startStore(t, b, storeOpts{noNATS: true, dbConfig: &cfg, secretKey: oldKey})
		for _, id := range ids {
			if _, err := secrets(stale, []string{id}); status.Code(err) != codes.FailedPrecondition {
				t.Errorf("account %s with the old key alone: %v, want FAILED_PRECONDITION", id, err)
			}
		}
		stale.stop()

		if res, err := store.RotateSecrets(context.Background(), rotate); err != nil || res.Resealed != 0 || res.Current != 3 {
			t.Fatalf("second rotation: %+v %v, want nothing to do", res, err)
		}
		wrong := rotate
		wrong.SecretKey, wrong.OldSecretKeys = otherKey, nil
		if res, err := store.RotateSecrets(context.Background(), wrong); err != nil || len(res.Failed) != 3 || res.Resealed != 0 {
			t.Fatalf("rotation without the current key: %+v %v, want 3 failed and nothing changed", res, err)
		}
	})
}

func mustKey(t *testing.T) []byte {
	t.Helper()
	k, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestKeyRotationRefusesPendingMigrations: key rotation on a database
// whose schema is older than this mailbus (a CLI newer than the stores
// serving it) fails saying to migrate first, and leaves the schema as it
// is: migrating it would make the older stores refuse to start.
func TestKeyRotationRefusesPendingMigrations(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		ctx := context.Background()
		cfg := b.Config(t)
		if cfg.URL == "" {
			// An empty SQLite database: schema version 0.
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(cfg.DataDir, store.SQLiteFileName), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		where := store.Config{DataDir: cfg.DataDir, DatabaseURL: cfg.URL}
		before, err := store.ReadSchemaStatus(ctx, where)
		if err != nil || before.Pending() == 0 {
			t.Fatalf("schema before: %+v %v, want migrations pending", before, err)
		}

		rotate := where
		rotate.SecretKey = mustKey(t)
		_, err = store.RotateSecrets(ctx, rotate)
		if !errors.Is(err, store.ErrSchemaPending) || !strings.Contains(err.Error(), "mailbus-store migrate up") {
			t.Errorf("rotation with migrations pending: %v, want ErrSchemaPending saying to run mailbus-store migrate up", err)
		}
		after, err := store.ReadSchemaStatus(ctx, where)
		if err != nil || after.Version != before.Version {
			t.Fatalf("schema after the refused rotation: version %d %v, want %d (not migrated)", after.Version, err, before.Version)
		}
	})
}

// Package auth authenticates and authorises every gRPC call to the store
// (decision 0016).
//
// A caller sends an API token as "authorization: Bearer mbt_<id>_<secret>".
// The store keeps the token's public id and the SHA-256 hash of the whole
// token, finds the row by id and compares hashes in constant time. A token
// has a role:
//
//   - device: reads (and unless read-only changes) the accounts it is
//     scoped to. Any other account, and any mailbox or message of one, is
//     NOT_FOUND, exactly as if it did not exist; ListAccounts shows only
//     its accounts. Mutations of a read-only token, and AccountService
//     mutations, are PERMISSION_DENIED.
//   - admin: AccountService, TokenService, and every account through
//     MailboxService and SyncService; not IngestService (which hands out
//     upstream passwords).
//   - service: the fetchers. IngestService, and reads of every account.
//     Made only by the bootstrap (a token file, or Config.ServiceToken);
//     TokenService refuses to make one (decision 0023).
//
// No token, or an unknown, revoked or expired one, is UNAUTHENTICATED. The
// standard health and reflection services stay open. Every method of the
// mailbus.v1 services needs a rule in rules; one without is refused, so a
// new RPC cannot be left open by mistake (and a test fails).
//
// Revocation: lookups are cached for CacheTTL (never past the token's
// expiry); a revoke on this replica drops the cache entry at once. Open
// streams re-check their token every RecheckInterval and end with
// UNAUTHENTICATED once it is revoked or expired, so a revoked token stops
// within CacheTTL + RecheckInterval on any replica, an expired one within
// RecheckInterval of its expiry.
package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/mailbus/mailbus/pkg/apitoken"
)

// errMalformed is a token that cannot be one of ours.
var errMalformed = errors.New("malformed API token")

// NewToken makes a new random token and returns it, its public id and the
// hash to store.
func NewToken() (token, id string, hash []byte, err error) {
	token, id, err = apitoken.Generate()
	if err != nil {
		return "", "", nil, err
	}
	return token, id, Hash(token), nil
}

// Parse splits a token into its public id and the hash to compare.
func Parse(token string) (id string, hash []byte, err error) {
	rest, ok := strings.CutPrefix(token, apitoken.Prefix)
	if !ok {
		return "", nil, errMalformed
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != apitoken.IDLen || secret == "" || len(token) > 256 {
		return "", nil, errMalformed
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", nil, errMalformed
	}
	return id, Hash(token), nil
}

// Hash is the stored form of a token.
func Hash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// Package apitoken is the client side of mailbus API tokens: it reads a
// token from a flag, an environment variable or a file, and attaches it to
// every gRPC call as "authorization: Bearer <token>" metadata.
//
// A token looks like "mbt_<id>_<secret>"; the store keeps only a hash of
// it (see the store's internal/auth package and decision 0016). Tokens are
// secrets: this package never logs them, and its errors never contain them.
package apitoken

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mailbus/mailbus/pkg/privatefile"
)

// MetadataKey is the gRPC metadata key that carries the token.
const MetadataKey = "authorization"

// Scheme is the authorization scheme in front of the token.
const Scheme = "Bearer"

// EnvToken is the environment variable clients read a token from.
const EnvToken = "MAILBUS_TOKEN"

// Prefix starts every mailbus API token.
const Prefix = "mbt_"

// bearer is a token sent with each call.
type bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{MetadataKey: Scheme + " " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. It is
// false so that a loopback store without TLS works; with TLS configured the
// token travels encrypted.
func (bearer) RequireTransportSecurity() bool { return false }

// Credentials returns per-call credentials that send token.
func Credentials(token string) credentials.PerRPCCredentials { return bearer(token) }

// DialOption returns the dial option that sends token with every call, or
// nil-free no-op when token is empty (the store then answers
// UNAUTHENTICATED, which says what to do).
func DialOption(token string) grpc.DialOption {
	if token == "" {
		return grpc.EmptyDialOption{}
	}
	return grpc.WithPerRPCCredentials(Credentials(token))
}

// ReadFile reads a token from a file (surrounding white space removed).
// A file that other users may read or change (a mode wider than 0600) is
// refused, with the command that fixes it (privatefile.ErrNotPrivate).
func ReadFile(path string) (string, error) {
	b, err := privatefile.Read(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if err := Check(tok); err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	return tok, nil
}

// Check reports whether s looks like a mailbus API token, without saying
// what it contains.
func Check(s string) error {
	switch {
	case s == "":
		return errors.New("empty token")
	case !strings.HasPrefix(s, Prefix):
		return fmt.Errorf("not a mailbus API token (those start with %q)", Prefix)
	case strings.ContainsAny(s, " \t\r\n"):
		return errors.New("the token contains white space")
	}
	return nil
}

// ID returns the public id of a token, the part between "mbt_" and the
// secret (what `mailbus token list` shows and RevokeToken takes).
func ID(token string) (string, error) {
	rest, ok := strings.CutPrefix(token, Prefix)
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(id) != IDLen || secret == "" {
		return "", errors.New("not a mailbus API token (mbt_<id>_<secret>)")
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", errors.New("not a mailbus API token (mbt_<id>_<secret>)")
	}
	return id, nil
}

// Resolve picks a client's token: the token given directly (a flag), else
// the file named (a flag), else $MAILBUS_TOKEN through getenv. It returns
// "" with no error when none is set.
func Resolve(token, file string, getenv func(string) (string, bool)) (string, error) {
	if token = strings.TrimSpace(token); token != "" {
		if err := Check(token); err != nil {
			return "", err
		}
		return token, nil
	}
	if file != "" {
		return ReadFile(file)
	}
	if getenv == nil {
		getenv = os.LookupEnv
	}
	if v, ok := getenv(EnvToken); ok && strings.TrimSpace(v) != "" {
		v = strings.TrimSpace(v)
		if err := Check(v); err != nil {
			return "", fmt.Errorf("%s: %w", EnvToken, err)
		}
		return v, nil
	}
	return "", nil
}

// idBytes and secretBytes are the random bytes of a token's public id and
// of its secret: 256 bits of secret make guessing hopeless, so the store
// can keep a fast hash (SHA-256) of it; no password hashing is needed.
const (
	idBytes     = 8
	secretBytes = 32
)

// IDLen is the length of a token's public id (hex).
const IDLen = 2 * idBytes

// Generate makes a new random token "mbt_<id>_<secret>" and returns it with
// its public id. The store registers tokens it makes itself; a process
// that runs a store in-process (mailbus serve, tests) uses Generate for the
// store's Config.ServiceToken.
func Generate() (token, id string, err error) {
	b := make([]byte, idBytes+secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("token: %w", err)
	}
	id = hex.EncodeToString(b[:idBytes])
	return Prefix + id + "_" + base64.RawURLEncoding.EncodeToString(b[idBytes:]), id, nil
}

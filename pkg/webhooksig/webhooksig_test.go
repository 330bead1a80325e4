package webhooksig

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestKnownVector pins the scheme to an HMAC computed independently:
// printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
func TestKnownVector(t *testing.T) {
	const want = "49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
	if got := Sign([]byte("secret"), 1700000000, []byte(`{"a":1}`)); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"kind":"message.created"}`)
	now := time.Unix(1700000000, 0)
	newKey, oldKey, wrong := []byte("new-secret-0123456789"), []byte("old-secret-0123456789"), []byte("wrong-secret-0123456789")
	both := Value(now, body, newKey, oldKey)
	if strings.Count(both, "v1=") != 2 || !strings.HasPrefix(both, "t=1700000000,v1=") {
		t.Fatalf("Value with two secrets: %q", both)
	}
	tests := []struct {
		name    string
		header  string
		body    []byte
		secret  []byte
		now     time.Time
		wantErr error
	}{
		{"new key", both, body, newKey, now, nil},
		{"old key during overlap", both, body, oldKey, now, nil},
		{"wrong key", both, body, wrong, now, ErrNoMatch},
		{"changed body", both, []byte(`{"kind":"message.deleted"}`), newKey, now, ErrNoMatch},
		{"old key after overlap", Value(now, body, newKey), body, oldKey, now, ErrNoMatch},
		{"too old", both, body, newKey, now.Add(DefaultTolerance + time.Second), ErrTooOld},
		{"from the future", both, body, newKey, now.Add(-DefaultTolerance - time.Second), ErrTooOld},
		{"no v1", "t=1700000000", body, newKey, now, ErrMalformed},
		{"no t", "v1=00", body, newKey, now, ErrMalformed},
		{"bad t", "t=x,v1=00", body, newKey, now, ErrMalformed},
		{"empty", "", body, newKey, now, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.header, tt.body, tt.secret, tt.now, 0)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("Verify: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

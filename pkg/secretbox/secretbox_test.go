package secretbox

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/privatefile"
)

func mustKey(t *testing.T) []byte {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	old, err := New(k1)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := old.Seal([]byte("hunter2"), "account-1")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("plaintext visible in sealed value")
	}
	rotated, err := New(k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		box     *Box
		sealed  []byte
		owner   string
		want    string
		wantErr error
	}{
		{"same key", old, sealed, "account-1", "hunter2", nil},
		{"old key kept during rotation", rotated, sealed, "account-1", "hunter2", nil},
		{"other owner", old, sealed, "account-2", "", ErrCorrupt},
		{"unknown key", mustBox(t, k2), sealed, "account-1", "", ErrNoKey},
		{"truncated", old, sealed[:10], "account-1", "", ErrCorrupt},
		{"tampered", old, flipLast(sealed), "account-1", "", ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.box.Open(tt.sealed, tt.owner)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if string(got) != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func mustBox(t *testing.T, k []byte) *Box {
	t.Helper()
	b, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flipLast(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)-1] ^= 1
	return c
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	k := mustKey(t)
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, k); err == nil {
		t.Fatal("overwrote an existing key file")
	}
	got, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, k) {
		t.Fatal("key changed on the way through the file")
	}
	// A key file others may read is refused (issue 16).
	if runtime.GOOS != "windows" {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadKeyFile(path); !errors.Is(err, privatefile.ErrNotPrivate) || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("LoadKeyFile of a 0644 file: %v, want a refusal saying chmod 600", err)
		}
	}
}

func TestParseKey(t *testing.T) {
	for _, bad := range []string{"", "short", "zz" + string(make([]byte, 62))} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) succeeded", bad)
		}
	}
	hex := "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	k, err := ParseKey(hex)
	if err != nil || k[31] != 0x1f {
		t.Fatalf("hex key: %v %x", err, k)
	}
}

func TestSealedKeyIDAndKeyFiles(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	box, err := New(k1, k2)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := box.Seal([]byte("pw"), "account/1")
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := SealedKeyID(sealed); !ok || id != KeyID(k1) || id != box.PrimaryKeyID() {
		t.Fatalf("SealedKeyID = %08x, %v; want the primary key's %08x", id, ok, KeyID(k1))
	}
	for _, bad := range [][]byte{nil, []byte("short"), append([]byte{9}, sealed[1:]...)} {
		if _, ok := SealedKeyID(bad); ok {
			t.Errorf("SealedKeyID(%q) ok", bad)
		}
	}
	dir := t.TempDir()
	f1, f2 := filepath.Join(dir, "1.key"), filepath.Join(dir, "2.key")
	if err := WriteKeyFile(f1, k1); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(f2, k2); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeyFiles(f1 + ", " + f2 + ",")
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], k1) || !bytes.Equal(keys[1], k2) {
		t.Fatalf("LoadKeyFiles: %d keys, %v", len(keys), err)
	}
	if keys, err := LoadKeyFiles(""); err != nil || len(keys) != 0 {
		t.Fatalf("LoadKeyFiles(\"\"): %v %v", keys, err)
	}
	if _, err := LoadKeyFiles(f1 + "," + filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing key file accepted")
	}
}

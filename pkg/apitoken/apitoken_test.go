package apitoken

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/privatefile"
)

func TestResolveOrder(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  mbt_0123456789abcdef_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(v string) func(string) (string, bool) {
		return func(k string) (string, bool) { return v, k == EnvToken && v != "" }
	}
	for _, tc := range []struct {
		name, flag, file, env, want, err string
	}{
		{name: "flag wins", flag: "mbt_0123456789abcdef_flag", file: file, env: "mbt_0123456789abcdef_env", want: "mbt_0123456789abcdef_flag"},
		{name: "then the file", file: file, env: "mbt_0123456789abcdef_env", want: "mbt_0123456789abcdef_fromfile"},
		{name: "then the environment", env: "mbt_0123456789abcdef_env", want: "mbt_0123456789abcdef_env"},
		{name: "none"},
		{name: "not a token", flag: "hunter2", err: "not a mailbus API token"},
		{name: "missing file", file: filepath.Join(dir, "nope"), err: "no such file"},
		{name: "bad environment", env: "x y", err: EnvToken},
	} {
		got, err := Resolve(tc.flag, tc.file, env(tc.env))
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %q %v, want an error with %q", tc.name, got, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("%s: the error shows the value", tc.name)
			}
		case err != nil || got != tc.want:
			t.Errorf("%s: %q %v, want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestCredentials(t *testing.T) {
	tok, id, err := Generate()
	if err != nil || len(id) != IDLen || !strings.HasPrefix(tok, Prefix+id+"_") || Check(tok) != nil {
		t.Fatalf("Generate: %q %q %v", tok, id, err)
	}
	md, err := Credentials(tok).GetRequestMetadata(context.Background())
	if err != nil || md[MetadataKey] != "Bearer "+tok {
		t.Fatalf("metadata %v %v", md, err)
	}
}

// TestReadFileRefusesSharedFile: a token file that other users may read
// or change is refused, saying how to fix it, and never shows the token.
func TestReadFileRefusesSharedFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("modes are not checked on Windows")
	}
	const tok = "mbt_0123456789abcdef_secretpart"
	for _, mode := range []os.FileMode{0o600, 0o400, 0o640, 0o644, 0o606} {
		path := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFile(path)
		if mode&0o077 == 0 {
			if err != nil || got != tok {
				t.Errorf("mode %04o: %q %v, want the token", mode, got, err)
			}
			continue
		}
		if !errors.Is(err, privatefile.ErrNotPrivate) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %q %v, want a refusal saying chmod 600", mode, got, err)
		}
		if err != nil && strings.Contains(err.Error(), "secretpart") {
			t.Errorf("mode %04o: the error shows the token", mode)
		}
	}
}

func TestID(t *testing.T) {
	for _, tc := range []struct{ token, id string }{
		{"mbt_0123456789abcdef_secret", "0123456789abcdef"},
		{"mbt_0123456789abcdeg_secret", ""},
		{"mbt_0123456789abcdef_", ""},
		{"mbt_0123_secret", ""},
		{"0123456789abcdef_secret", ""},
	} {
		id, err := ID(tc.token)
		if id != tc.id || (err == nil) != (tc.id != "") {
			t.Errorf("ID(%q) = %q, %v; want %q", tc.token, id, err, tc.id)
		}
	}
}

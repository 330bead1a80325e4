package apitoken

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

package privatefile

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("modes are not checked on Windows")
	}
	tests := []struct {
		mode    os.FileMode
		private bool
	}{
		{0o600, true},
		{0o400, true},
		{0o700, true},
		{0o640, false},
		{0o604, false},
		{0o644, false},
		{0o620, false},
		{0o602, false},
		{0o666, false},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			b, err := Read(path)
			if tt.private {
				if err != nil || string(b) != "s3cret\n" {
					t.Fatalf("Read = %q, %v; want the content", b, err)
				}
				return
			}
			if !errors.Is(err, ErrNotPrivate) {
				t.Fatalf("Read = %q, %v; want ErrNotPrivate", b, err)
			}
			if !strings.Contains(err.Error(), "chmod 600 "+path) {
				t.Errorf("error %q does not say how to fix it", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestReadMissing(t *testing.T) {
	if _, err := Read(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

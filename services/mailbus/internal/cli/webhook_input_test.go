package cli

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseIncludes(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    []string
		wantErr string
	}{
		{in: nil, want: nil},
		{in: []string{"text"}, want: []string{"text"}},
		{in: []string{"text", "html", "headers", "attachments"}, want: []string{"text", "html", "headers", "attachments"}},
		{in: []string{" Text ", "HTML", "text"}, want: []string{"text", "html"}},
		{in: []string{""}, want: nil},
		{in: []string{"body"}, wantErr: `--include "body": want text, html, headers, attachments`},
		{in: []string{"text", "raw"}, wantErr: `--include "raw"`},
	} {
		got, err := parseIncludes(tc.in)
		if tc.wantErr != "" {
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseIncludes(%q) = %v, want a usage error with %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseIncludes(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseEventKinds(t *testing.T) {
	for _, tc := range []struct {
		in      []string
		want    []string
		wantErr string
	}{
		{in: nil, want: nil},
		{in: []string{"message.created"}, want: []string{"message.created"}},
		{in: []string{"Message.Created", "account.status", "message.created"}, want: []string{"message.created", "account.status"}},
		{in: []string{"message"}, wantErr: `--event "message": want one of message.created, message.updated`},
		{in: []string{"message.*"}, wantErr: `--event "message.*"`},
	} {
		got, err := parseEventKinds(tc.in)
		if tc.wantErr != "" {
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseEventKinds(%q) = %v, want a usage error with %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseEventKinds(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCheckWebhookURL(t *testing.T) {
	for _, tc := range []struct {
		url     string
		wantErr string // "" accepts
	}{
		{url: "https://crm.example.com/hooks/mailbus"},
		{url: "http://127.0.0.1:8080/hook"},
		{url: "", wantErr: "missing --url"},
		{url: "crm.example.com/hook", wantErr: "want an http:// or https:// URL"},
		{url: "ftp://example.com/", wantErr: "want an http:// or https:// URL"},
		{url: "https:///path", wantErr: "no host"},
		{url: "https://user:hunter2@example.com/", wantErr: "no user or password in the URL"},
		{url: "https://exa mple.com/", wantErr: "--url"},
	} {
		err := checkWebhookURL(tc.url)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("checkWebhookURL(%q) = %v, want nil", tc.url, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("checkWebhookURL(%q) = %v, want an error with %q", tc.url, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("checkWebhookURL(%q): the error shows the password: %v", tc.url, err)
		}
	}
}

func TestReadWebhookSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want, wantErr string
	}{
		{name: "ok", content: "0123456789abcdef0123\n", mode: 0o600, want: "0123456789abcdef0123"},
		{name: "first-line", content: "  0123456789abcdef  \r\nsecond\n", mode: 0o400, want: "0123456789abcdef"},
		{name: "readable", content: "0123456789abcdef0123\n", mode: 0o644, wantErr: "chmod 600"},
		{name: "empty", content: "\nsecret-on-line-two\n", mode: 0o600, wantErr: "the first line is empty"},
		{name: "short", content: "hunter2\n", mode: 0o600, wantErr: "want at least 16"},
	} {
		got, err := readWebhookSecret(write(tc.name, tc.content, tc.mode))
		if tc.wantErr != "" {
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %v, want a usage error with %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := readWebhookSecret(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a missing file: %v", err)
	}
}

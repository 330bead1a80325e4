package mailbus_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// TestServeConnect: mailbus serve answers Connect JSON on the store's
// port (the same as gRPC) and CORS preflights of its --cors-origin.
func TestServeConnect(t *testing.T) {
	const origin = "http://localhost:5173"
	r := start(t, mailbus.Config{DataDir: filepath.Join(t.TempDir(), "data"), CORSOrigins: []string{origin}})
	token, err := apitoken.ReadFile(r.info.AdminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := "http://" + r.info.StoreAddr + "/mailbus.v1.AccountService/ListAccounts"

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Origin", origin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("ListAccounts over Connect: %s %q (%v), Access-Control-Allow-Origin %q", resp.Status, body, err, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	pre, err := http.NewRequestWithContext(ctx, http.MethodOptions, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	pre.Header.Set("Origin", origin)
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	resp, err = http.DefaultClient.Do(pre)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %s, Access-Control-Allow-Headers %q", resp.Status, resp.Header.Get("Access-Control-Allow-Headers"))
	}
}

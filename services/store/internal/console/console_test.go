package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHandler: "/" is the app's page and its script and style are served,
// each with the strict policy; anything else is 404, also under the policy.
func TestHandler(t *testing.T) {
	h, err := Handler()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, wantType, wantBody string
		wantStatus               int
	}{
		{path: "/", wantStatus: 200, wantType: "text/html; charset=utf-8", wantBody: `<script defer src="app.js">`},
		{path: "/app.js", wantStatus: 200, wantType: "text/javascript; charset=utf-8"},
		{path: "/app.css", wantStatus: 200, wantType: "text/css; charset=utf-8"},
		{path: "/index.html", wantStatus: 404},
		{path: "/../go.mod", wantStatus: 404},
		{path: "/nothing", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://store"+tt.path, nil))
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("Content-Security-Policy"); got != Policy {
				t.Fatalf("Content-Security-Policy %q, want %q", got, Policy)
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Fatal("no X-Content-Type-Options: nosniff")
			}
			if tt.wantStatus != 200 {
				return
			}
			if got := rec.Header().Get("Content-Type"); got != tt.wantType {
				t.Fatalf("Content-Type %q, want %q", got, tt.wantType)
			}
			if !strings.Contains(string(body), tt.wantBody) || len(body) == 0 {
				t.Fatalf("body lacks %q:\n%.300s", tt.wantBody, body)
			}
			// A second load with the ETag is answered 304.
			req := httptest.NewRequest(http.MethodGet, "http://store"+tt.path, nil)
			req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
			again := httptest.NewRecorder()
			h.ServeHTTP(again, req)
			if again.Code != http.StatusNotModified {
				t.Fatalf("with its ETag: status %d, want 304", again.Code)
			}
		})
	}
}

// TestPolicyIsStrict: the page's policy allows no remote origin, no inline
// or evaluated script, and no framing.
func TestPolicyIsStrict(t *testing.T) {
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"} {
		if !strings.Contains(Policy, want) {
			t.Errorf("policy lacks %q", want)
		}
	}
	for _, bad := range []string{"http:", "https:", "*", "'unsafe-eval'", "script-src 'self' 'unsafe-inline'"} {
		if strings.Contains(Policy, bad) {
			t.Errorf("policy has %q", bad)
		}
	}
}

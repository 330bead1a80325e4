package serving_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/serving"
)

// TestWebPages: with Web.Pages, a browser's GET of a path that is no
// service's gets the pages, while the API's calls, a GET of a method
// included, and a POST anywhere still reach the API.
func TestWebPages(t *testing.T) {
	pages := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "page "+r.URL.Path)
	})
	addr := startWebWith(t, nil, &serving.Web{Keepalive: time.Minute, Pages: pages}).Addr().String()
	base := "http://" + addr
	tests := []struct {
		name, method, path, contentType, body string
		wantStatus                            int
		wantPage                              bool
	}{
		{name: "root", method: http.MethodGet, path: "/", wantStatus: 200, wantPage: true},
		{name: "asset", method: http.MethodGet, path: "/app.js", wantStatus: 200, wantPage: true},
		{name: "head", method: http.MethodHead, path: "/", wantStatus: 200},
		{name: "unknown service GET", method: http.MethodGet, path: "/nope.v1.X/Y", wantStatus: 200, wantPage: true},
		{name: "Connect unary", method: http.MethodPost, path: "/grpc.health.v1.Health/Check", contentType: "application/json", body: "{}", wantStatus: 200},
		// The API's own answer: Connect GET is for methods without side
		// effects, which Health.Check does not declare.
		{name: "Connect GET of a method", method: http.MethodGet, path: "/grpc.health.v1.Health/Check?encoding=json&message=%7B%7D&connect=v1", wantStatus: 405},
		{name: "POST of a page path", method: http.MethodPost, path: "/", contentType: "application/json", body: "{}", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctxOf(t), tt.method, base+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s %s: status %d, want %d (%s)", tt.method, tt.path, resp.StatusCode, tt.wantStatus, body)
			}
			isPage := strings.HasPrefix(string(body), "page ")
			if isPage != tt.wantPage {
				t.Fatalf("%s %s: answered by the pages = %v, want %v (%s)", tt.method, tt.path, isPage, tt.wantPage, body)
			}
			if !tt.wantPage && tt.wantStatus == 200 && tt.method != http.MethodHead && !strings.Contains(string(body), "SERVING") {
				t.Fatalf("%s %s: not the API's answer: %s", tt.method, tt.path, body)
			}
		})
	}
}

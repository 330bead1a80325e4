package oauthtest_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/oauthtest"
)

// refresh gets an access token with the refresh_token grant.
func refresh(t *testing.T, s *oauthtest.Server, rt string) string {
	t.Helper()
	resp, err := http.PostForm(s.URL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt},
		"client_id": {s.ClientID}, "client_secret": {s.ClientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || ans.AccessToken == "" {
		t.Fatalf("token answer: %v %+v", err, ans)
	}
	return ans.AccessToken
}

// introspect asks the introspection endpoint about token with the given
// endpoint URL (credentials in its user information, or not).
func introspect(t *testing.T, endpoint, token string) (int, map[string]any) {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	user := u.User
	u.User = nil
	req, err := http.NewRequest(http.MethodPost, u.String(), strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != nil {
		pw, _ := user.Password()
		req.SetBasicAuth(user.Username(), pw)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ans := map[string]any{}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, ans
}

// TestIntrospection: RFC 7662 answers: an issued, unexpired token is
// active with its user and expiry; an unknown one, or one ended by
// ExpireAccessTokens, is not; a caller without the resource's credentials
// is refused.
func TestIntrospection(t *testing.T) {
	s := oauthtest.New(oauthtest.WithSubject("alice"))
	defer s.Close()
	at := refresh(t, s, s.Grant())
	endpoint := s.IntrospectionURL()

	code, ans := introspect(t, endpoint, at)
	if code != http.StatusOK || ans["active"] != true || ans["username"] != "alice" || ans["client_id"] != s.ClientID || ans["exp"] == nil {
		t.Fatalf("valid token: %d %v", code, ans)
	}
	if code, ans := introspect(t, endpoint, "access-unknown"); code != http.StatusOK || ans["active"] != false || len(ans) != 1 {
		t.Fatalf("unknown token: %d %v", code, ans)
	}
	noCreds, _ := url.Parse(endpoint)
	noCreds.User = url.UserPassword("mail-server", "wrong")
	if code, ans := introspect(t, noCreds.String(), at); code != http.StatusUnauthorized || ans["active"] != nil {
		t.Fatalf("wrong resource credentials: %d %v", code, ans)
	}
	s.ExpireAccessTokens()
	if code, ans := introspect(t, endpoint, at); code != http.StatusOK || ans["active"] != false {
		t.Fatalf("ended token: %d %v", code, ans)
	}
	if s.Valid(at) {
		t.Fatal("Valid after ExpireAccessTokens")
	}
	if n := s.Introspections(); n != 4 {
		t.Fatalf("%d introspections counted, want 4", n)
	}
	// The token endpoint is unchanged: a new access token is active.
	if _, ans := introspect(t, endpoint, refresh(t, s, s.Grant())); ans["active"] != true {
		t.Fatalf("new token: %v", ans)
	}
}

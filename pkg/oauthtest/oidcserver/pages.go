package oidcserver

import (
	"fmt"
	"html"
	"net/http"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// login is the login page of the authorization code flow: GET shows the
// form, POST logs in (then the op redirects to the client with a code) or
// denies (the op redirects with error=access_denied).
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id := r.Form.Get("authRequestID")
	req, ok := s.st.authRequest(id)
	if !ok {
		http.Error(w, "unknown authorization request", http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Log in</title><form method="post" action="/login">
<input type="hidden" name="authRequestID" value="%s">
<input name="username"> <input name="password" type="password">
<button name="action" value="approve">Allow</button> <button name="action" value="deny">Deny</button></form>`, html.EscapeString(id))
		return
	}
	if r.Form.Get("action") == "deny" {
		op.AuthRequestError(w, r, req, oidc.ErrAccessDenied().WithDescription("the user denied the request"), s.op)
		return
	}
	if err := s.st.login(id, r.Form.Get("username"), r.Form.Get("password")); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	http.Redirect(w, r, op.AuthCallbackURL(s.op)(r.Context(), id), http.StatusFound)
}

// device is the verification page of the device flow: the user enters the
// user code and logs in to allow, or denies.
func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	code := r.Form.Get("user_code")
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Device</title><form method="post" action="/device">
<input name="user_code" value="%s"> <input name="username"> <input name="password" type="password">
<button name="action" value="approve">Allow</button> <button name="action" value="deny">Deny</button></form>`, html.EscapeString(code))
		return
	}
	if _, err := s.st.GetDeviceAuthorizationByUserCode(r.Context(), code); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Form.Get("action") == "deny" {
		if err := s.st.DenyDeviceAuthorization(r.Context(), code); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "Denied. You can close this page.")
		return
	}
	if r.Form.Get("username") != s.User.Username || r.Form.Get("password") != s.User.Password {
		http.Error(w, "wrong username or password", http.StatusForbidden)
		return
	}
	if err := s.st.CompleteDeviceAuthorization(r.Context(), code, s.User.ID); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintln(w, "Allowed. Return to your device.")
}

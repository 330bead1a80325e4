// Package console serves the mailbus web console, the browser app built
// from web/console (npm run build) into dist/ and embedded here, so that
// the store serves it at "/" of its API address with no Node at run time
// (decision 0032). The app calls the store's API from the same origin with
// Connect; the pages themselves are public (they hold no data), and the
// app asks for an API token before it shows anything.
//
// Every page is served with a strict Content-Security-Policy (Policy):
// scripts and styles only from the store itself, no remote fonts, images
// or connections, and the app may not be framed.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"time"
)

//go:embed dist
var dist embed.FS

// Policy is the Content-Security-Policy of the console's pages. Inline
// styles are allowed because a message's HTML, shown in a sandboxed
// srcdoc iframe, inherits this policy and mail is styled inline; inline
// scripts are not, and the frame runs no script at all (no allow-scripts).
// The frame adds its own policy (default-src 'none'; img-src data:), so
// remote content is blocked there even from the store's origin.
const Policy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one embedded file, ready to serve.
type file struct {
	data        []byte
	contentType string
	etag        string
}

// Handler serves the console: "/" is the app's page, the other files of
// dist/ are its script and style; any other path is 404.
func Handler() (http.Handler, error) {
	files := map[string]file{}
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := dist.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		name := "/" + p[len("dist/"):]
		if name == "/index.html" {
			name = "/"
		}
		files[name] = file{data: data, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console: embedded files: %w", err)
	}
	if _, ok := files["/"]; !ok {
		return nil, fmt.Errorf("console: the embedded bundle has no index.html (run npm run build in web/console)")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		h := w.Header()
		h.Set("Content-Security-Policy", Policy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.Set("Content-Type", f.contentType)
		h.Set("ETag", f.etag)
		// Revalidated on every load, so a new store's bundle is picked up.
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
	}), nil
}

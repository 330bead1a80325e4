package store_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// countingBody is a request body of n bytes of JSON whitespace (a body
// that is valid JSON up to where it stops) that counts how much of it was
// read.
type countingBody struct {
	left int64
	read atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), b.left)
	for i := range n {
		p[i] = ' '
	}
	b.left -= n
	b.read.Add(n)
	return int(n), nil
}

// TestConnectBodyLimit sends a Connect JSON body far larger than the
// store's largest request, without a token and without a Content-Length
// (chunked), as anyone who can reach the port can: the store stops reading
// at its request limit, as gRPC does, instead of buffering the body to
// transcode it (vanguard's default buffer is 4 GiB, before any token is
// checked).
func TestConnectBodyLimit(t *testing.T) {
	const maxMessage = 1 << 20 // the store's gRPC limit is this + 1 MiB
	e := startStore(t, dbtest.Backends()[0], storeOpts{noNATS: true, maxMessageSize: maxMessage})
	body := &countingBody{left: 64 << 20}
	for _, proto := range []string{"application/json", "application/proto"} {
		t.Run(proto, func(t *testing.T) {
			body := &countingBody{left: body.left}
			req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, "http://"+e.addr+"/mailbus.v1.AccountService/ListAccounts", body)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = -1 // chunked: the size is not known in advance
			req.Header.Set("Content-Type", proto)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Fatalf("a %d MiB body without a token: %s", body.left>>20, resp.Status)
				}
			}
			// What the client sent beyond the limit sits in socket buffers
			// at most, a few MiB on loopback.
			if got := body.read.Load(); got > 32<<20 {
				t.Fatalf("the store read %d MiB of a request body without a token before refusing it; its limit is %d MiB", got>>20, (maxMessage+1<<20)>>20)
			}
		})
	}
}

// TestWebRefusesBeforeReadingBody sends, without a token or with a wrong
// one, a body within the store's request limit (64 MiB by default) but
// large, chunked, in each web protocol: the call is refused from its
// headers, before the store reads the body (it read and, for JSON,
// buffered all of it, and only then did the interceptor look at the
// token), with the error and status the interceptors give.
func TestWebRefusesBeforeReadingBody(t *testing.T) {
	e := startStore(t, dbtest.Backends()[0], storeOpts{noNATS: true})
	const size = 48 << 20
	for _, tc := range []struct {
		contentType, token string
		wantStatus         int
		wantGRPCStatus     string
	}{
		{"application/json", "", http.StatusUnauthorized, ""},
		{"application/json", "mbt_nope_nope", http.StatusUnauthorized, ""},
		{"application/proto", "", http.StatusUnauthorized, ""},
		{"application/grpc-web+proto", "", http.StatusOK, "16"},
		{"application/grpc-web+proto", "mbt_nope_nope", http.StatusOK, "16"},
	} {
		t.Run(tc.contentType+" "+tc.token, func(t *testing.T) {
			body := &countingBody{left: size}
			var r io.Reader = body
			if strings.HasPrefix(tc.contentType, "application/grpc-web") {
				// One message of the whole size.
				hdr := []byte{0, 0, 0, 0, 0}
				binary.BigEndian.PutUint32(hdr[1:], size)
				r = io.MultiReader(bytes.NewReader(hdr), body)
			}
			req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, "http://"+e.addr+"/mailbus.v1.MailboxService/AppendMessage", r)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = -1
			req.Header.Set("Content-Type", tc.contentType)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || resp.Header.Get("Grpc-Status") != tc.wantGRPCStatus {
				t.Errorf("%s, grpc-status %q; want %d, %q", resp.Status, resp.Header.Get("Grpc-Status"), tc.wantStatus, tc.wantGRPCStatus)
			}
			// What the client sent before the answer sits in socket
			// buffers at most, a few MiB on loopback.
			if got := body.read.Load(); got > 16<<20 {
				t.Fatalf("the store read %d MiB of the body of a call without a token that works before refusing it", got>>20)
			}
		})
	}
}

package store_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// TestWebEveryMethodNeedsAToken calls every method of the mailbus.v1
// services over gRPC-Web, over HTTP/1.1 (a client-streaming one cannot be:
// 505) and over HTTP/2 (h2c), without a token and with a wrong one: each
// is UNAUTHENTICATED and answers no message, whatever its kind of
// streaming, so that no method is reachable without a token through the
// web protocols (issue 12, review of issue 16). A method added later is
// called too.
func TestWebEveryMethodNeedsAToken(t *testing.T) {
	e := startStore(t, dbtest.Backends()[0], storeOpts{noNATS: true})
	type method struct {
		path            string
		clientStreaming bool
	}
	var methods []method
	protoregistry.GlobalFiles.RangeFilesByPackage("mailbus.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				methods = append(methods, method{fmt.Sprintf("/%s/%s", sd.FullName(), md.Name()), md.IsStreamingClient()})
			}
		}
		return true
	})
	if len(methods) < 30 {
		t.Fatalf("found %d methods of mailbus.v1, want all of them (30 or more)", len(methods))
	}
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	clients := []struct {
		name   string
		client *http.Client
		proto  int
	}{
		{"HTTP/1.1", &http.Client{Transport: &http.Transport{}}, 1},
		{"h2c", &http.Client{Transport: &http.Transport{Protocols: &h2c}}, 2},
	}
	want := strconv.Itoa(int(codes.Unauthenticated))
	for _, c := range clients {
		for _, m := range methods {
			for _, token := range []string{"", "mbt_nope_nope"} {
				req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, "http://"+e.addr+m.path, bytes.NewReader(envelope(0, nil)))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/grpc-web+proto")
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := c.client.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", c.name, m.path, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatalf("%s %s: %v", c.name, m.path, err)
				}
				if resp.ProtoMajor != c.proto {
					t.Fatalf("%s %s: answered over %s", c.name, m.path, resp.Proto)
				}
				if c.proto == 1 && m.clientStreaming && resp.StatusCode == http.StatusHTTPVersionNotSupported {
					continue
				}
				status, messages := resp.Header.Get("Grpc-Status"), 0
				r := bufio.NewReader(bytes.NewReader(body))
				for status == "" {
					flags, data, err := readEnvelope(r)
					if err != nil {
						break
					}
					if flags&0x80 == 0 {
						messages++
						continue
					}
					for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\r\n") {
						if k, v, _ := strings.Cut(line, ":"); strings.EqualFold(strings.TrimSpace(k), "grpc-status") {
							status = strings.TrimSpace(v)
						}
					}
				}
				if resp.StatusCode != http.StatusOK || status != want || messages != 0 {
					t.Errorf("%s %s with token %q over gRPC-Web: %s, grpc-status %q, %d messages; want 200, %s and none", c.name, m.path, token, resp.Status, status, messages, want)
				}
			}
		}
	}
}

package store_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// connectError is the JSON body of a Connect error.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// postJSON calls procedure ("/mailbus.v1.AccountService/ListAccounts")
// with the Connect protocol, JSON over HTTP/1.1, the way a browser's fetch
// or curl does, and returns the status and body.
func postJSON(t *testing.T, e *env, token, procedure, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, "http://"+e.addr+procedure, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	// gRPC metadata is sent as headers.
	req.Header.Set("Mailbus-Device-Id", "connect-test")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", procedure, err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Errorf("POST %s answered over %s, want HTTP/1.1", procedure, resp.Proto)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read: %v", procedure, err)
	}
	return resp.StatusCode, got
}

// TestConnectJSON calls the store with Connect's JSON over HTTP/1.1 and a
// device token: the same answers and the same rules as over gRPC, and
// errors with their Connect code and HTTP status.
func TestConnectJSON(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		f := newAuthFixture(t, b)
		e := f.e

		status, body := postJSON(t, e, f.deviceA, "/mailbus.v1.AccountService/ListAccounts", `{}`)
		if status != http.StatusOK {
			t.Fatalf("ListAccounts: %d %q", status, body)
		}
		var list struct {
			Accounts []struct {
				ID   string `json:"id"`
				Name string `json:"name"`
			} `json:"accounts"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatalf("ListAccounts: %v: %s", err, body)
		}
		if len(list.Accounts) != 1 || list.Accounts[0].ID != f.a.account {
			t.Fatalf("ListAccounts with a device token of account a = %s, want only a (%s)", body, f.a.account)
		}

		// A mutation, with the proto field names as written in the .proto
		// (both spellings are accepted).
		status, body = postJSON(t, e, f.deviceA, "/mailbus.v1.MailboxService/UpdateFlags",
			fmt.Sprintf(`{"account_id":%q,"messageIds":[%q],"add":["\\Flagged"]}`, f.a.account, f.a.message))
		if status != http.StatusOK {
			t.Fatalf("UpdateFlags: %d %s", status, body)
		}
		got, err := e.sync.GetState(callCtx(t), &mailbusv1.GetStateRequest{AccountId: f.a.account})
		if err != nil {
			t.Fatal(err)
		}
		msg, err := e.mailboxes.GetMessage(callCtx(t), &mailbusv1.GetMessageRequest{MessageId: f.a.message})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(msg.GetMessage().GetSummary().GetFlags(), `\Flagged`) {
			t.Fatalf("after UpdateFlags over Connect the message has flags %v (state %d), want \\Flagged", msg.GetMessage().GetSummary().GetFlags(), got.State)
		}

		tests := []struct {
			name, token, procedure, body string
			wantStatus                   int
			wantCode                     string
			wantInMessage                string
		}{
			{"no token", "", "/mailbus.v1.AccountService/ListAccounts", `{}`, http.StatusUnauthorized, "unauthenticated", ""},
			{"wrong token", "mbt_nope", "/mailbus.v1.AccountService/ListAccounts", `{}`, http.StatusUnauthorized, "unauthenticated", ""},
			// As over gRPC, a device does not learn that another account exists.
			{"another account", f.deviceA, "/mailbus.v1.MailboxService/UpdateFlags",
				fmt.Sprintf(`{"accountId":%q,"messageIds":[%q],"add":["\\Seen"]}`, f.b.account, f.b.message), http.StatusNotFound, "not_found", ""},
			{"read-only token", f.readOnlyA, "/mailbus.v1.MailboxService/UpdateFlags",
				fmt.Sprintf(`{"accountId":%q,"messageIds":[%q],"add":["\\Seen"]}`, f.a.account, f.a.message), http.StatusForbidden, "permission_denied", ""},
			{"missing field", f.deviceA, "/mailbus.v1.MailboxService/ListMessages", `{}`, http.StatusBadRequest, "invalid_argument", "mailbox_id"},
			{"malformed JSON", f.deviceA, "/mailbus.v1.MailboxService/ListMessages", `{"mailboxId": 12}`, http.StatusBadRequest, "invalid_argument", "mailboxId"},
			{"not JSON", f.deviceA, "/mailbus.v1.MailboxService/ListMessages", `{"mailboxId": `, http.StatusBadRequest, "invalid_argument", "malformed"},
			// Unknown fields are ignored (as in Connect and protobuf), so
			// the missing one is named.
			{"unknown field", f.deviceA, "/mailbus.v1.MailboxService/ListMessages", `{"mailboxIdd": "x"}`, http.StatusBadRequest, "invalid_argument", "mailbox_id"},
			{"admin method", f.deviceA, "/mailbus.v1.TokenService/ListTokens", `{}`, http.StatusForbidden, "permission_denied", ""},
			{"no such method", f.deviceA, "/mailbus.v1.AccountService/Nope", `{}`, http.StatusNotFound, "", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, body := postJSON(t, e, tt.token, tt.procedure, tt.body)
				if status != tt.wantStatus {
					t.Fatalf("status %d (%s), want %d", status, body, tt.wantStatus)
				}
				if tt.wantCode == "" {
					return
				}
				var ce connectError
				if err := json.Unmarshal(body, &ce); err != nil {
					t.Fatalf("error body %q: %v", body, err)
				}
				if ce.Code != tt.wantCode || !strings.Contains(ce.Message, tt.wantInMessage) {
					t.Fatalf("error %+v, want code %s and %q in the message", ce, tt.wantCode, tt.wantInMessage)
				}
			})
		}
	})
}

// TestGRPCWeb calls the store with gRPC-Web (binary) over HTTP/1.1, as a
// browser's grpc-web client does.
func TestGRPCWeb(t *testing.T) {
	f := newAuthFixture(t, dbtest.Backends()[0])
	req := &mailbusv1.ListMailboxesRequest{AccountId: f.a.account}
	frames := grpcWebCall(t, f.e, f.deviceA, "/mailbus.v1.MailboxService/ListMailboxes", req)
	if len(frames.messages) != 1 || frames.trailer.Get("grpc-status") != "0" {
		t.Fatalf("ListMailboxes over gRPC-Web: %d messages, trailer %v", len(frames.messages), frames.trailer)
	}
	var resp mailbusv1.ListMailboxesResponse
	if err := proto.Unmarshal(frames.messages[0], &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Mailboxes) == 0 || resp.Mailboxes[0].AccountId != f.a.account {
		t.Fatalf("ListMailboxes over gRPC-Web = %v", &resp)
	}
	// Refused: the status is the one gRPC gets.
	other := &mailbusv1.ListMailboxesRequest{AccountId: f.b.account}
	_, err := mailbusv1.NewMailboxServiceClient(f.e.dial(t, f.deviceA)).ListMailboxes(callCtx(t), other)
	if !refused(err) && status.Code(err) != codes.NotFound {
		t.Fatalf("ListMailboxes of another account over gRPC: %v, want refused", err)
	}
	frames = grpcWebCall(t, f.e, f.deviceA, "/mailbus.v1.MailboxService/ListMailboxes", other)
	if got, want := frames.trailer.Get("grpc-status"), strconv.Itoa(int(status.Code(err))); got != want {
		t.Fatalf("ListMailboxes of another account over gRPC-Web: grpc-status %q (%v), want %s as over gRPC", got, frames.trailer, want)
	}
}

// TestGRPCWebWatchChanges follows WatchChanges with gRPC-Web (binary)
// over HTTP/1.1, as a browser's grpc-web client does: caught_up, then a
// change made through the API as it happens; revoking the token ends the
// stream with a trailer frame carrying UNAUTHENTICATED, as over gRPC.
func TestGRPCWebWatchChanges(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		f := newAuthFixture(t, b)
		e := f.e
		msg, err := proto.Marshal(&mailbusv1.WatchChangesRequest{AccountId: f.a.account, SinceState: e.state(t, f.a.account)})
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, "http://"+e.addr+"/mailbus.v1.SyncService/WatchChanges", bytes.NewReader(envelope(0, msg)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc-web+proto")
		req.Header.Set("X-Grpc-Web", "1")
		req.Header.Set("Authorization", "Bearer "+f.deviceA)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 {
			t.Fatalf("WatchChanges over gRPC-Web: %s over %s", resp.Status, resp.Proto)
		}
		if s := resp.Header.Get("Grpc-Status"); s != "" {
			t.Fatalf("WatchChanges over gRPC-Web ended at once: grpc-status %s %q", s, resp.Header.Get("Grpc-Message"))
		}
		r := bufio.NewReader(resp.Body)
		// next returns the next message, or nil and the trailer once the
		// stream ends.
		next := func() (*mailbusv1.WatchChangesResponse, http.Header) {
			t.Helper()
			flags, data, err := readEnvelope(r)
			if err != nil {
				t.Fatalf("WatchChanges over gRPC-Web: %v", err)
			}
			if flags&0x80 != 0 {
				return nil, parseGRPCWebTrailer(data)
			}
			var m mailbusv1.WatchChangesResponse
			if err := proto.Unmarshal(data, &m); err != nil {
				t.Fatalf("WatchChanges over gRPC-Web: item: %v", err)
			}
			return &m, nil
		}
		if m, trailer := next(); !m.GetCaughtUp() {
			t.Fatalf("first item %v (trailer %v), want caught_up", m, trailer)
		}
		if _, err := e.mailboxes.UpdateFlags(metadata.AppendToOutgoingContext(callCtx(t), "mailbus-device-id", "test"), &mailbusv1.UpdateFlagsRequest{
			AccountId: f.a.account, MessageIds: []string{f.a.message}, Add: []string{`\Seen`},
		}); err != nil {
			t.Fatal(err)
		}
		m, trailer := next()
		if m.GetEvent().GetAccountId() != f.a.account || !strings.Contains(protojson.Format(m.GetEvent()), f.a.message) {
			t.Fatalf("live item %v (trailer %v), want the event of the flag change of %s", m, trailer, f.a.message)
		}

		tokens := mailbusv1.NewTokenServiceClient(e.conn)
		list, err := tokens.ListTokens(callCtx(t), &mailbusv1.ListTokensRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var id string
		for _, tok := range list.Tokens {
			if tok.Name == "phone" {
				id = tok.Id
			}
		}
		if _, err := tokens.RevokeToken(callCtx(t), &mailbusv1.RevokeTokenRequest{TokenId: id}); err != nil {
			t.Fatal(err)
		}
		// The stream ends (callCtx bounds the wait) with a trailer frame.
		for {
			m, trailer := next()
			if m != nil {
				continue
			}
			if got, want := trailer.Get("grpc-status"), strconv.Itoa(int(codes.Unauthenticated)); got != want {
				t.Fatalf("WatchChanges over gRPC-Web after revoke ended with trailer %v, want grpc-status %s", trailer, want)
			}
			break
		}
		if _, _, err := readEnvelope(r); err != io.EOF {
			t.Fatalf("after the trailer frame: %v, want the end of the body", err)
		}
	})
}

// parseGRPCWebTrailer reads the trailer frame of a gRPC-Web response:
// HTTP/1.1 header lines.
func parseGRPCWebTrailer(data []byte) http.Header {
	trailer := http.Header{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		trailer.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return trailer
}

// grpcWebFrames is a gRPC-Web response: its messages and its trailer.
type grpcWebFrames struct {
	messages [][]byte
	trailer  http.Header
}

func grpcWebCall(t *testing.T, e *env, token, procedure string, req proto.Message) grpcWebFrames {
	t.Helper()
	msg, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, "http://"+e.addr+procedure, bytes.NewReader(envelope(0, msg)))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Type", "application/grpc-web+proto")
	hreq.Header.Set("X-Grpc-Web", "1")
	hreq.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 {
		t.Fatalf("gRPC-Web %s: %s over %s", procedure, resp.Status, resp.Proto)
	}
	var out grpcWebFrames
	// An error before any message comes as headers only.
	if s := resp.Header.Get("Grpc-Status"); s != "" {
		out.trailer = http.Header{"Grpc-Status": {s}}
		return out
	}
	r := bufio.NewReader(resp.Body)
	for {
		flags, data, err := readEnvelope(r)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("gRPC-Web %s: %v", procedure, err)
		}
		if flags&0x80 == 0 {
			out.messages = append(out.messages, data)
			continue
		}
		out.trailer = parseGRPCWebTrailer(data)
	}
}

// envelope frames one message as gRPC-Web and Connect streaming do: a
// flags byte, the length, the data.
func envelope(flags byte, data []byte) []byte {
	out := make([]byte, 5, 5+len(data))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(data)))
	return append(out, data...)
}

func readEnvelope(r io.Reader) (flags byte, data []byte, err error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, nil, err
	}
	data = make([]byte, binary.BigEndian.Uint32(head[1:]))
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, fmt.Errorf("read frame: %w", err)
	}
	return head[0], data, nil
}

// TestConnectWatchChangesHTTP1 follows WatchChanges over HTTP/1.1 with
// Connect's JSON streaming, as a browser's fetch does, and receives a
// change made after the replay ended.
func TestConnectWatchChangesHTTP1(t *testing.T) {
	f := newAuthFixture(t, dbtest.Backends()[0])
	e := f.e
	state := e.state(t, f.a.account)
	body := envelope(0, fmt.Appendf(nil, `{"accountId":%q,"sinceState":"%d"}`, f.a.account, state))
	req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, "http://"+e.addr+"/mailbus.v1.SyncService/WatchChanges", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/connect+json")
	req.Header.Set("Authorization", "Bearer "+f.deviceA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 {
		t.Fatalf("WatchChanges: %s over %s", resp.Status, resp.Proto)
	}
	r := bufio.NewReader(resp.Body)
	next := func() map[string]any {
		t.Helper()
		flags, data, err := readEnvelope(r)
		if err != nil {
			t.Fatalf("WatchChanges: %v", err)
		}
		if flags&0x02 != 0 { // end of stream: an error
			t.Fatalf("WatchChanges ended: %s", data)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("WatchChanges item %q: %v", data, err)
		}
		return m
	}
	if m := next(); m["caughtUp"] != true {
		t.Fatalf("first item %v, want caughtUp", m)
	}
	if _, err := e.mailboxes.UpdateFlags(metadata.AppendToOutgoingContext(callCtx(t), "mailbus-device-id", "test"), &mailbusv1.UpdateFlagsRequest{
		AccountId: f.a.account, MessageIds: []string{f.a.message}, Add: []string{`\Seen`},
	}); err != nil {
		t.Fatal(err)
	}
	m := next()
	ev, _ := m["event"].(map[string]any)
	if ev == nil || ev["accountId"] != f.a.account || !strings.Contains(fmt.Sprint(ev), f.a.message) {
		t.Fatalf("live item %v, want the event of the flag change of %s", m, f.a.message)
	}
}

// TestCORS checks the browser rules: a listed origin's preflight is
// answered, with the Authorization header allowed; another origin gets no
// CORS header; without --cors-origin there is none at all.
func TestCORS(t *testing.T) {
	const allowedOrigin = "https://console.example"
	e := startStore(t, dbtest.Backends()[0], storeOpts{noNATS: true, corsOrigins: []string{allowedOrigin}})
	plain := startStore(t, dbtest.Backends()[0], storeOpts{noNATS: true})
	tests := []struct {
		name, origin string
		e            *env
		preflight    bool
		wantAllowed  bool
		wantStatus   int
	}{
		{"preflight from a listed origin", allowedOrigin, e, true, true, http.StatusNoContent},
		{"preflight from another origin", "https://evil.example", e, true, false, http.StatusForbidden},
		{"preflight without --cors-origin", allowedOrigin, plain, true, false, http.StatusNotFound},
		{"call from a listed origin", allowedOrigin, e, false, true, http.StatusOK},
		{"call from another origin", "https://evil.example", e, false, false, http.StatusOK},
		{"call without --cors-origin", allowedOrigin, plain, false, false, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, body := http.MethodPost, strings.NewReader(`{}`)
			if tt.preflight {
				method = http.MethodOptions
			}
			req, err := http.NewRequestWithContext(callCtx(t), method, "http://"+tt.e.addr+"/mailbus.v1.AccountService/ListAccounts", body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Origin", tt.origin)
			if tt.preflight {
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,connect-protocol-version")
			} else {
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tt.e.adminToken)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %s, want %d", resp.Status, tt.wantStatus)
			}
			gotOrigin := resp.Header.Get("Access-Control-Allow-Origin")
			if !tt.wantAllowed {
				for k := range resp.Header {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("CORS header %s: %s for an origin not allowed", k, resp.Header.Get(k))
					}
				}
				return
			}
			if gotOrigin != tt.origin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", gotOrigin, tt.origin)
			}
			if tt.preflight {
				allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
				for _, h := range []string{"authorization", "content-type", "connect-protocol-version"} {
					if !strings.Contains(allowed, h) {
						t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, h)
					}
				}
				if !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
					t.Errorf("Access-Control-Allow-Methods %q lacks POST", resp.Header.Get("Access-Control-Allow-Methods"))
				}
			}
		})
	}
}

// TestConnectStreamBadInput: the bad input of issue 12 on a server stream
// (Connect's streaming JSON, as a browser's WatchChanges): a malformed body
// ends the stream with invalid_argument naming the field, a missing token
// with unauthenticated, as on unary calls (TestConnectJSON); and the store
// counts none of them as INTERNAL (startStore's check): vanguard ends the
// gRPC request of a malformed one without a message, which grpc-go calls
// INTERNAL, as it does a gRPC client's call without its request message.
func TestConnectStreamBadInput(t *testing.T) {
	f := newAuthFixture(t, dbtest.Backends()[0])
	tests := []struct {
		name, token, body string
		wantCode          string
		wantInMessage     string
	}{
		{"malformed JSON", f.deviceA, `{"accountId": 12}`, "invalid_argument", "accountId"},
		{"not JSON", f.deviceA, `{"accountId": `, "invalid_argument", "malformed"},
		{"no token", "", fmt.Sprintf(`{"accountId":%q}`, f.a.account), "unauthenticated", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(callCtx(t), http.MethodPost, "http://"+f.e.addr+"/mailbus.v1.SyncService/WatchChanges",
				bytes.NewReader(envelope(0, []byte(tt.body))))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/connect+json")
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			flags, data, err := readEnvelope(resp.Body)
			if err != nil {
				t.Fatalf("WatchChanges: %s: %v", resp.Status, err)
			}
			if flags&0x02 == 0 {
				t.Fatalf("WatchChanges answered %q, want the end of the stream with an error", data)
			}
			var end struct {
				Error *connectError `json:"error"`
			}
			if err := json.Unmarshal(data, &end); err != nil || end.Error == nil {
				t.Fatalf("end of stream %q: %v, want an error", data, err)
			}
			if end.Error.Code != tt.wantCode || !strings.Contains(end.Error.Message, tt.wantInMessage) {
				t.Fatalf("error %+v, want code %s and %q in the message", end.Error, tt.wantCode, tt.wantInMessage)
			}
		})
	}

	// grpc-go answers a gRPC client INTERNAL itself; the store counts the
	// call as the client's error (startStore's check at the end).
	t.Run("gRPC without a request message", func(t *testing.T) {
		stream, err := f.e.conn.NewStream(callCtx(t), &grpc.StreamDesc{ServerStreams: true}, "/mailbus.v1.SyncService/WatchChanges")
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if err := stream.RecvMsg(&mailbusv1.WatchChangesResponse{}); err == nil {
			t.Fatal("WatchChanges without its request answered")
		}
	})
}

package store_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// BenchmarkListMessagesProtocols lists a page of 50 messages (SQLite, one
// store, the same data) over gRPC and over Connect, JSON on HTTP/1.1 and
// on HTTP/2 (h2c) and binary on HTTP/1.1 (issue 12 asks Connect JSON to
// stay within 1.5x of gRPC). Each protocol is called twice:
//
//   - decoded: the answer decoded into the response message, as a Go client
//     does (protojson for JSON);
//   - undecoded: the answer read whole but not decoded (gRPC through
//     rawCodec), which is what the store costs; a browser
//     decodes JSON with its native JSON.parse, not with protojson.
//
// Besides ns/op (wall time, noisy on a shared machine) it reports
// cpu-ns/op: the CPU the whole process (client and store) used per call,
// user and system, from getrusage.
//
//	go test -run='^$' -bench=BenchmarkListMessagesProtocols -benchtime=2s -count=4 ./services/store/store/
func BenchmarkListMessagesProtocols(b *testing.B) {
	e := startStore(b, dbtest.Backends()[0], storeOpts{noNATS: true})
	acct := e.createAccount(b, imapAccount("bench"))
	inbox := e.inbox(b, acct.Id)
	items := make([]item, 60)
	for i := range items {
		items[i] = imapItem(acct.Id, inbox.Id, 1, uint32(i+1), testMessage(i))
	}
	e.mustIngest(b, items...)
	ctx := context.Background()
	req := &mailbusv1.ListMessagesRequest{MailboxId: inbox.Id, PageSize: 50}
	check := func(b *testing.B, resp *mailbusv1.ListMessagesResponse) {
		if len(resp.Messages) != 50 {
			b.Fatalf("ListMessages: %d messages, want 50", len(resp.Messages))
		}
	}

	b.Run("grpc/decoded", func(b *testing.B) {
		defer reportCPU(b)()
		for b.Loop() {
			resp, err := e.mailboxes.ListMessages(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			check(b, resp)
		}
	})
	b.Run("grpc/undecoded", func(b *testing.B) {
		defer reportCPU(b)()
		body, err := proto.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			var got []byte
			if err := e.conn.Invoke(ctx, "/mailbus.v1.MailboxService/ListMessages", &body, &got, grpc.ForceCodec(rawCodec{})); err != nil {
				b.Fatal(err)
			}
			if len(got) == 0 {
				b.Fatal("ListMessages over gRPC: empty answer")
			}
		}
	})

	url := "http://" + e.addr + "/mailbus.v1.MailboxService/ListMessages"
	connectCall := func(b *testing.B, client *http.Client, contentType string, marshal func(proto.Message) ([]byte, error), unmarshal func([]byte, proto.Message) error, wantProto int) {
		defer reportCPU(b)()
		body, err := marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			hreq.Header.Set("Content-Type", contentType)
			hreq.Header.Set("Connect-Protocol-Version", "1")
			hreq.Header.Set("Authorization", "Bearer "+e.adminToken)
			hresp, err := client.Do(hreq)
			if err != nil {
				b.Fatal(err)
			}
			got, err := io.ReadAll(hresp.Body)
			hresp.Body.Close()
			if err != nil || hresp.StatusCode != http.StatusOK {
				b.Fatalf("ListMessages over Connect: %s %q %v", hresp.Status, got, err)
			}
			if hresp.ProtoMajor != wantProto {
				b.Fatalf("answered over %s, want HTTP/%d", hresp.Proto, wantProto)
			}
			if unmarshal == nil {
				continue
			}
			var resp mailbusv1.ListMessagesResponse
			if err := unmarshal(got, &resp); err != nil {
				b.Fatal(err)
			}
			check(b, &resp)
		}
	}
	http1 := &http.Client{Transport: &http.Transport{}}
	var h2cProtocols http.Protocols
	h2cProtocols.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &h2cProtocols}}
	b.Cleanup(http1.CloseIdleConnections)
	b.Cleanup(h2c.CloseIdleConnections)
	for _, tt := range []struct {
		name        string
		client      *http.Client
		contentType string
		marshal     func(proto.Message) ([]byte, error)
		unmarshal   func([]byte, proto.Message) error
		wantProto   int
	}{
		{"connect-json-http1", http1, "application/json", protojson.Marshal, protojson.Unmarshal, 1},
		{"connect-json-h2c", h2c, "application/json", protojson.Marshal, protojson.Unmarshal, 2},
		{"connect-proto-http1", http1, "application/proto", proto.Marshal, proto.Unmarshal, 1},
	} {
		b.Run(tt.name+"/decoded", func(b *testing.B) {
			connectCall(b, tt.client, tt.contentType, tt.marshal, tt.unmarshal, tt.wantProto)
		})
		b.Run(tt.name+"/undecoded", func(b *testing.B) {
			connectCall(b, tt.client, tt.contentType, tt.marshal, nil, tt.wantProto)
		})
	}
}

// reportCPU starts counting the process's CPU time; the function it
// returns reports it per op as cpu-ns/op.
func reportCPU(b *testing.B) func() {
	start := processCPU(b)
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

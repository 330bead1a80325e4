package imapsync

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// newerSecretIngest is a store whose account secret belongs to a newer
// generation than the worker's (the account was updated since the worker
// got it).
type newerSecretIngest struct {
	mailbusv1.IngestServiceClient
	generation uint64
}

func (f *newerSecretIngest) ClaimAccount(context.Context, *mailbusv1.ClaimAccountRequest, ...grpc.CallOption) (*mailbusv1.ClaimAccountResponse, error) {
	return &mailbusv1.ClaimAccountResponse{}, nil
}

func (f *newerSecretIngest) GetAccountSecret(context.Context, *mailbusv1.GetAccountSecretRequest, ...grpc.CallOption) (*mailbusv1.GetAccountSecretResponse, error) {
	return &mailbusv1.GetAccountSecretResponse{Secret: "new-password", Generation: f.generation}, nil
}

func (f *newerSecretIngest) ReportAccountStatus(context.Context, *mailbusv1.ReportAccountStatusRequest, ...grpc.CallOption) (*mailbusv1.ReportAccountStatusResponse, error) {
	return &mailbusv1.ReportAccountStatusResponse{}, nil
}

// messageHandler hands over the message of every log record.
type messageHandler struct{ messages chan string }

func (h messageHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h messageHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.messages <- r.Message:
	default:
	}
	return nil
}
func (h messageHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h messageHandler) WithGroup(string) slog.Handler      { return h }

// TestOldGenerationWorkerDoesNotLogIn (issue 17, defect C): a worker whose
// account was updated since it got it reads a secret of the newer
// generation; it never connects to the host of its old configuration with
// it, and waits for the supervisor to restart it.
func TestOldGenerationWorkerDoesNotLogIn(t *testing.T) {
	oldHost, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer oldHost.Close()
	connected := make(chan struct{}, 1)
	go func() {
		for {
			c, err := oldHost.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case connected <- struct{}{}:
			default:
			}
		}
	}()
	conn, err := grpc.NewClient("passthrough:///unused", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	logs := messageHandler{messages: make(chan string, 64)}
	s, err := New(Config{StoreConn: conn, Listen: "127.0.0.1:0", MetricsListen: "-", Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(oldHost.Addr().String())
	p, _ := strconv.Atoi(port)
	acct := &mailbusv1.Account{Id: "1", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: host, Port: uint32(p),
		Security: mailbusv1.Security_SECURITY_NONE, Username: "alice", Generation: 1}
	w := newAccount(s, storeClients{ingest: &newerSecretIngest{generation: 2}}, acct)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx)
	}()
	defer func() { cancel(); <-done }()
	deadline := time.After(time.Minute)
	for {
		select {
		case <-connected:
			t.Fatal("the worker of generation 1 connected to its host with the secret of generation 2")
		case msg := <-logs.messages:
			if msg == "the account was updated; waiting for its worker to restart" {
				return
			}
		case <-deadline:
			t.Fatal("the worker neither stopped nor connected")
		}
	}
}

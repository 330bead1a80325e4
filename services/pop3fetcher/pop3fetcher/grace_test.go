package pop3fetcher_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// heldAnswerStream holds back the store's first answer on an ingest
// stream until release closes.
type heldAnswerStream struct {
	grpc.ClientStream
	release <-chan struct{}
	once    sync.Once
}

func (s *heldAnswerStream) RecvMsg(m any) error {
	s.once.Do(func() { <-s.release })
	return s.ClientStream.RecvMsg(m)
}

// storeConnHoldingAnswers is a connection to the store on which every
// IngestMessages stream's first answer waits for release; it sends the
// service token.
func storeConnHoldingAnswers(t testing.TB, addr, token string, release <-chan struct{}) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(token),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil || method != mailbusv1.IngestService_IngestMessages_FullMethodName {
				return cs, err
			}
			return &heldAnswerStream{ClientStream: cs, release: release}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestShutdownGraceIsOneDeadlinePerPass: once a pass's context ends (the
// lease context, under ownership), everything still done for it — waiting
// for the store to commit, DELE, QUIT — shares one deadline,
// Config.ShutdownGrace after the end (decision 0015). The store answers
// after storeAnswer and the server answers DELE after deleDelay: when the
// two together exceed the grace the session is cut before QUIT and the
// server deletes nothing (a grace per step would have let both finish);
// the next pass deletes the stored messages without storing them twice.
func TestShutdownGraceIsOneDeadlinePerPass(t *testing.T) {
	tests := []struct {
		name        string
		grace       time.Duration
		storeAnswer time.Duration
		deleDelay   time.Duration
		wantDeleted bool
	}{
		{name: "commit and DELE together exceed the grace", grace: time.Second, storeAnswer: 600 * time.Millisecond, deleDelay: 700 * time.Millisecond},
		{name: "commit and DELE fit in the grace", grace: 10 * time.Second, storeAnswer: 200 * time.Millisecond, deleDelay: 300 * time.Millisecond, wantDeleted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startStore(t)
			msgs := someMessages(1, 2)
			srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...),
				pop3test.WithFault(pop3test.Delay("DELE 1", tt.deleDelay).Once()))
			acct := e.fakeAccount(t, srv, "bob", "pw", dele)
			release := make(chan struct{})
			conn := storeConnHoldingAnswers(t, e.addr, e.serviceToken, release)
			f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) { c.Conn = conn; c.ShutdownGrace = tt.grace })
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { _, err := f.Poll(ctx, acct); done <- err }()
			waitFor(t, "both messages committed in the store", func() bool { return len(e.stored(t, acct.Id)) == 2 })
			cancel() // the lease context ends
			time.AfterFunc(tt.storeAnswer, func() { close(release) })
			<-done
			idle(t, srv)
			left := len(srv.Messages("bob"))
			if tt.wantDeleted && left != 0 {
				t.Errorf("the server holds %d messages after a pass whose clean-up fits in the grace, want 0", left)
			}
			if !tt.wantDeleted && left != 2 {
				t.Errorf("the server holds %d messages, want 2: DELE and QUIT ran past the pass's grace deadline", left)
			}
			res := poll(t, f, acct)
			if res.Fetched != 0 || res.Deleted != left {
				t.Errorf("next pass: %+v, want nothing fetched and %d deleted", res, left)
			}
			idle(t, srv)
			e.checkStoredExactly(t, acct.Id, wires(msgs))
			if n := len(srv.Messages("bob")); n != 0 {
				t.Errorf("the server still holds %d messages after the next pass", n)
			}
		})
	}
}

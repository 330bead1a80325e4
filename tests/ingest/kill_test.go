package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/grpc"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ingest"
)

var errCut = errors.New("test: the fetcher died here")

// tracker follows the requests of an ingest stream: which message and
// which request of it is being sent.
type tracker struct {
	msg   int // index of the current message (-1 before the first meta)
	chunk int // requests of the current message sent before this one
	ended int // messages whose end_of_message went out
}

// kill says where a stream is cut, as if the fetcher died there: before
// a request goes out (send) or once an answer arrived, before the client
// sees it (recv). stopStore stops the store instead of cutting the
// stream (the store dies, the fetcher lives).
type kill struct {
	send      func(tr tracker, r *mailbusv1.IngestMessagesRequest) bool
	recv      func(r *mailbusv1.IngestMessagesResponse) bool
	stopStore bool
}

// cutConn is a connection to the store whose first IngestMessages stream
// is cut (or the store stopped) where k says.
func (e *env) cutConn(t *testing.T, k kill) grpc.ClientConnInterface {
	var once sync.Once
	return e.connect(t, e.serviceToken, func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if method != mailbusv1.IngestService_IngestMessages_FullMethodName {
			return streamer(ctx, desc, cc, method, opts...)
		}
		ctx, cancel := context.WithCancel(ctx)
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			cancel()
			return nil, err
		}
		return &cutStream{ClientStream: cs, k: k, tr: tracker{msg: -1}, fire: func() {
			once.Do(func() {
				if k.stopStore {
					e.stop()
					return
				}
				cancel()
			})
		}}, nil
	})
}

type cutStream struct {
	grpc.ClientStream
	k    kill
	tr   tracker
	fire func()
	cut  bool
}

func (s *cutStream) SendMsg(m any) error {
	r := m.(*mailbusv1.IngestMessagesRequest)
	if r.Meta != nil {
		s.tr.msg, s.tr.chunk = s.tr.msg+1, 0
	}
	if !s.cut && s.k.send != nil && s.k.send(s.tr, r) {
		s.cut = true
		s.fire()
		if !s.k.stopStore {
			return errCut
		}
	}
	s.tr.chunk++
	if r.EndOfMessage {
		s.tr.ended++
	}
	return s.ClientStream.SendMsg(m)
}

func (s *cutStream) RecvMsg(m any) error {
	if err := s.ClientStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.cut && s.k.recv != nil && s.k.recv(m.(*mailbusv1.IngestMessagesResponse)) {
		s.cut = true
		s.fire()
		return errCut
	}
	return nil
}

// message returns a message of n octets whose bytes say which it is.
func message(i, n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Subject: message %d\r\nMessage-ID: <m%d@test>\r\n\r\n", i, i)
	for b.Len() < n {
		fmt.Fprintf(&b, "line %d of message %d, with some text\r\n", b.Len(), i)
	}
	return b.Bytes()[:n]
}

// TestKillAtEachStep cuts the ingest stream at each step of sending a
// message (before its meta, mid-body, after its last chunk before the
// store answered, after the store committed but before the client saw the
// answer, after the answer) or stops the store mid-body, then restarts
// the store and sends again, as a fetcher does, every message it has no
// result for. Nothing is lost, nothing doubled: every message ends up
// stored once with its exact bytes, an acknowledged message is stored
// even before the retry, and a half-sent message is never stored.
//
// Message 1 is the one the cuts aim at; it takes 5 chunks, the others
// one. Each message is flushed and answered before the next is sent, so
// what the store has at the cut is known. It runs with the fetcher on TCP
// and on the store's in-process channel (mailbus serve, decision 0045),
// where a cut is the stream's context cancelled and reaches the store's
// handler the same way.
func TestKillAtEachStep(t *testing.T) {
	eachTransport(t, killAtEachStep)
}

func killAtEachStep(t *testing.T, inProcess bool) {
	const chunk = 1024
	msgs := [][]byte{message(0, 300), message(1, 5*chunk-10), message(2, 700)}
	cases := []struct {
		name string
		kill kill
		// storedAtCut: the messages the store must have after the cut and
		// restart (message 1 never when it was half-sent).
		storedAtCut []int
	}{
		{"before meta", kill{send: func(tr tracker, r *mailbusv1.IngestMessagesRequest) bool { return r.Meta != nil && tr.msg == 0 }}, nil},
		{"before message 1", kill{send: func(tr tracker, r *mailbusv1.IngestMessagesRequest) bool { return r.Meta != nil && tr.msg == 1 }}, []int{0}},
		{"mid-body", kill{send: func(tr tracker, r *mailbusv1.IngestMessagesRequest) bool { return tr.msg == 1 && tr.chunk == 2 }}, []int{0}},
		{"after the last chunk, before the result", kill{send: func(tr tracker, r *mailbusv1.IngestMessagesRequest) bool { return r.Flush && tr.ended == 2 }}, []int{0}},
		{"after the commit, before the client saw the result", kill{recv: func(r *mailbusv1.IngestMessagesResponse) bool {
			return len(r.Results) > 0 && r.Results[0].Ref == "1"
		}}, []int{0, 1}},
		{"after the result", kill{send: func(tr tracker, r *mailbusv1.IngestMessagesRequest) bool { return r.Meta != nil && tr.msg == 2 }}, []int{0, 1}},
		{"store stopped mid-body", kill{stopStore: true, send: func(tr tracker, r *mailbusv1.IngestMessagesRequest) bool { return tr.msg == 1 && tr.chunk == 2 }}, []int{0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startStoreOn(t, inProcess)
			account := e.pop3Account(t)
			meta := func(i int) *mailbusv1.IngestMeta {
				return &mailbusv1.IngestMeta{AccountId: account, Upstream: &mailbusv1.UpstreamId{Uidl: "uidl-" + strconv.Itoa(i)},
					Ref: strconv.Itoa(i), Size: uint64(len(msgs[i]))}
			}
			acked := map[int]bool{}
			take := func(s *ingest.Stream) []*mailbusv1.IngestResult {
				rs := s.Take()
				for _, r := range rs {
					if r.Error != "" {
						t.Errorf("message %s refused: %s", r.Ref, r.Error)
					}
					i, _ := strconv.Atoi(r.Ref)
					acked[i] = true
				}
				return rs
			}

			// The first run, cut where the case says.
			c := ingest.New(mailbusv1.NewIngestServiceClient(e.cutConn(t, tc.kill)), ingest.Config{ChunkSize: chunk})
			s, err := c.Open(callCtx(t), ingest.Options{FlushMessages: 1})
			if err != nil {
				t.Fatal(err)
			}
			var runErr error
			for i := range msgs {
				if _, runErr = s.Send(meta(i), bytes.NewReader(msgs[i])); runErr != nil {
					break
				}
				if runErr = s.Wait(callCtx(t)); runErr != nil {
					break
				}
				take(s)
			}
			if runErr == nil {
				runErr = s.Finish()
			}
			take(s)
			s.Close()
			if runErr == nil {
				t.Fatal("the stream was not cut")
			}
			if got := ingest.Classify(runErr); got != ingest.Retryable {
				t.Errorf("the cut's error %v is %v, want retryable", runErr, got)
			}

			e.restart(t)
			svc := mailbusv1.NewIngestServiceClient(e.connect(t, e.serviceToken, nil))
			atCut, _ := e.stored(t, svc, account)
			for i := range acked {
				if atCut["uidl-"+strconv.Itoa(i)] == nil {
					t.Errorf("message %d was acknowledged but is not stored after the restart", i)
				}
			}
			want := map[string]bool{}
			for _, i := range tc.storedAtCut {
				want["uidl-"+strconv.Itoa(i)] = true
			}
			for u := range atCut {
				if !want[u] {
					t.Errorf("after the cut the store has %s (half-sent or never sent)", u)
				}
			}
			for u := range want {
				if atCut[u] == nil {
					t.Errorf("after the cut the store lacks %s", u)
				}
			}

			// The retry: every message without a result, on a new stream.
			s, err = ingest.New(svc, ingest.Config{ChunkSize: chunk}).Open(callCtx(t), ingest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var resent []int
			for i := range msgs {
				if acked[i] {
					continue
				}
				resent = append(resent, i)
				if _, err := s.Send(meta(i), bytes.NewReader(msgs[i])); err != nil {
					t.Fatalf("retry: send message %d: %v", i, err)
				}
			}
			if err := s.Finish(); err != nil {
				t.Fatalf("retry: %v", err)
			}
			rs := take(s)
			if len(rs) != len(resent) {
				t.Fatalf("retry: %d results for %d messages", len(rs), len(resent))
			}
			for _, r := range rs {
				if wasStored := atCut["uidl-"+r.Ref] != nil; r.Created == wasStored {
					t.Errorf("retry of message %s: created %v, but stored before the retry: %v", r.Ref, r.Created, wasStored)
				}
			}

			got, total := e.stored(t, svc, account)
			if total != len(msgs) || len(got) != len(msgs) {
				t.Errorf("%d messages in the mailboxes, %d UIDLs stored; want %d", total, len(got), len(msgs))
			}
			for i, m := range msgs {
				if b := got["uidl-"+strconv.Itoa(i)]; !bytes.Equal(b, m) {
					t.Errorf("message %d stored as %d bytes, want its %d bytes exactly", i, len(b), len(m))
				}
			}
		})
	}
}

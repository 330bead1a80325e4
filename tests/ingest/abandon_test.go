package ingest_test

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ingest"
)

// shortReader yields the first n octets of data, then io.ErrUnexpectedEOF:
// an upstream connection closed in the middle of a body (imapsync's
// literal reader and the POP3 dot-reader both end so).
type shortReader struct {
	data []byte
	n    int
}

func (r *shortReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	k := copy(p, r.data[:min(r.n, len(p))])
	r.data, r.n = r.data[k:], r.n-k
	return k, nil
}

// TestAbandonRealStore: on the real store, a body that breaks off after
// several chunks (a *BodyError) and Abandon commit the message sent in
// full before it, unflushed, and drop the half-sent one: the store has
// message 0 byte-exact and nothing of message 1, which a retry then
// stores whole. On TCP and on the store's in-process channel.
func TestAbandonRealStore(t *testing.T) {
	eachTransport(t, abandonRealStore)
}

func abandonRealStore(t *testing.T, inProcess bool) {
	const chunk = 1024
	e := startStoreOn(t, inProcess)
	account := e.pop3Account(t)
	svc := mailbusv1.NewIngestServiceClient(e.connect(t, e.serviceToken, nil))
	msgs := [][]byte{message(0, 300), message(1, 5*chunk-10)}
	meta := func(i int) *mailbusv1.IngestMeta {
		return &mailbusv1.IngestMeta{AccountId: account, Upstream: &mailbusv1.UpstreamId{Uidl: "uidl-" + strconv.Itoa(i)},
			Ref: strconv.Itoa(i), Size: uint64(len(msgs[i]))}
	}
	c := ingest.New(svc, ingest.Config{ChunkSize: chunk})
	s, err := c.Open(callCtx(t), ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(meta(0), bytes.NewReader(msgs[0])); err != nil {
		t.Fatal(err)
	}
	_, err = s.Send(meta(1), &shortReader{data: msgs[1], n: 3 * chunk})
	var be *ingest.BodyError
	if !errors.As(err, &be) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Send of a body cut short: %v, want a BodyError of io.ErrUnexpectedEOF", err)
	}
	s.Abandon(callCtx(t))
	if rs := s.Take(); len(rs) != 1 || rs[0].Ref != "0" || rs[0].Error != "" {
		t.Fatalf("results after Abandon: %v, want message 0's", rs)
	}
	got, total := e.stored(t, svc, account)
	if total != 1 || len(got) != 1 || !bytes.Equal(got["uidl-0"], msgs[0]) {
		t.Fatalf("after Abandon the store has %d messages (%d UIDLs), want message 0 exactly", total, len(got))
	}

	s, err = c.Open(callCtx(t), ingest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(meta(1), bytes.NewReader(msgs[1])); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	got, total = e.stored(t, svc, account)
	if total != 2 || len(got) != 2 || !bytes.Equal(got["uidl-1"], msgs[1]) || !bytes.Equal(got["uidl-0"], msgs[0]) {
		t.Errorf("after the retry the store has %d messages (%d UIDLs), want both exactly", total, len(got))
	}
}

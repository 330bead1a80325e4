package pop3fetcher_test

import (
	"testing"

	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// TestByteExactFake fetches the corpus from the fake server (pipelined,
// delete mode) and compares what the store returns (GetRawMessage) with the
// wire form: the stored octets, plus CRLF where they do not end in one
// (the fake server passes bare CR, bare LF and NUL through unchanged).
func TestByteExactFake(t *testing.T) {
	e := startStore(t)
	var msgs []pop3test.Message
	var want [][]byte
	for _, m := range corpus(true) {
		msgs = append(msgs, pop3test.Message{Data: m.data})
		want = append(want, fakeWire(m.data))
	}
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...))
	acct := e.fakeAccount(t, srv, "bob", "pw", dele)
	f, _ := e.newFetcher(t)
	res := poll(t, f, acct)
	if res.Fetched != len(msgs) || res.Deleted != len(msgs) {
		t.Errorf("pass: %+v", res)
	}
	stored := e.checkStoredExactly(t, acct.Id, want)
	e.checkOneEventEach(t, acct.Id, stored)
	if srv.PipelinedCommands() == 0 {
		t.Error("RETR was not pipelined")
	}
}

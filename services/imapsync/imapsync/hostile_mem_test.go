package imapsync_test

import (
	"bufio"
	"io"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// hugeLiteral is what the hostile server announces for every message body:
// 10 GiB.
const hugeLiteral = "10737418240"

// startLiarProxy forwards IMAP between the client and the server at
// upstream, but announces every FETCH body literal as 10 GiB (the
// RFC822.SIZE stays true) and then sends zeros for as long as the client
// reads. It returns its address and the count of bytes it sent.
func startLiarProxy(t *testing.T, upstream string) (string, *atomic.Int64) {
	return startHostileProxy(t, upstream, false)
}

// startDripProxy forwards IMAP between the client and the server at
// upstream, but sends every FETCH body literal one octet per 100 ms.
func startDripProxy(t *testing.T, upstream string) (string, *atomic.Int64) {
	return startHostileProxy(t, upstream, true)
}

func startHostileProxy(t *testing.T, upstream string, drip bool) (string, *atomic.Int64) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	var sent atomic.Int64
	body := regexp.MustCompile(`BODY\[\] \{\d+\}\r\n$`)
	go func() {
		for {
			client, err := lis.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				continue
			}
			go func() {
				defer server.Close()
				io.Copy(server, client)
			}()
			go func() {
				defer client.Close()
				r := bufio.NewReader(server)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if drip && body.MatchString(line) {
						n, _ := client.Write([]byte(line))
						sent.Add(int64(n))
						for {
							b, err := r.ReadByte()
							if err != nil {
								return
							}
							time.Sleep(100 * time.Millisecond)
							if _, err := client.Write([]byte{b}); err != nil {
								return
							}
							sent.Add(1)
						}
					}
					if body.MatchString(line) {
						line = body.ReplaceAllString(line, "BODY[] {"+hugeLiteral+"}\r\n")
						n, _ := client.Write([]byte(line))
						sent.Add(int64(n))
						zeros := make([]byte, 64<<10)
						for {
							n, err := client.Write(zeros)
							sent.Add(int64(n))
							if err != nil {
								return
							}
						}
					}
					n, err := client.Write([]byte(line))
					sent.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String(), &sent
}

// TestMemHostileLiteral: a server that announces a 10 GiB literal for a
// message whose RFC822.SIZE is small makes its account fail with a clear
// reason, without the literal being read or memory taken for it, and an
// account on an honest server beside it syncs all its mail.
func TestMemHostileLiteral(t *testing.T) {
	e := startStore(t)
	honest, liar := startMem(t), startMem(t)
	for _, m := range []*memServer{honest, liar} {
		tp := dialPlain(t, m.addr, "alice", "secret")
		for i := 1; i <= 3; i++ {
			appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
		}
	}
	proxy, sent := startLiarProxy(t, liar.addr)
	good := e.createAccount(t, honest.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	bad := e.createAccount(t, proxy, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	startSync(t, e, func(c *imapsync.Config) { c.MaxMessageSize = 1 << 20; c.Timeout = 5 * time.Second })

	waitFor(t, "the honest account's mail", func() bool { return len(e.storeFolder(t, good.Id, "INBOX")) == 3 })
	var reason string
	waitFor(t, "the hostile account's error", func() bool {
		st := e.account(t, bad.Id).GetStatus()
		reason = st.GetReason()
		return st.GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE && strings.Contains(reason, "larger than the size limit")
	})
	if !strings.Contains(reason, hugeLiteral) {
		t.Errorf("reason %q does not name the announced size", reason)
	}
	if n := len(e.storeFolder(t, bad.Id, "INBOX")); n != 0 {
		t.Errorf("%d messages of the hostile server stored", n)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapSys) - int64(before.HeapSys); grew > 512<<20 {
		t.Errorf("the heap grew by %d MiB", grew>>20)
	}
	// Sockets buffer some of the zeros; the client reads none of the
	// literal beyond that.
	if n := sent.Load(); n > 64<<20 {
		t.Errorf("the client read %d MiB of the 10 GiB literal", n>>20)
	}
}

// TestMemDripLiteral: a server that sends a message body one octet per
// 100 ms fails its account on the timeout (500 ms per KiB) instead of
// holding it forever, and an account on an honest server beside it syncs.
func TestMemDripLiteral(t *testing.T) {
	e := startStore(t)
	honest, slow := startMem(t), startMem(t)
	for _, m := range []*memServer{honest, slow} {
		tp := dialPlain(t, m.addr, "alice", "secret")
		appendMsg(t, tp, "INBOX", testMessage(1, "INBOX"))
	}
	proxy, sent := startDripProxy(t, slow.addr)
	good := e.createAccount(t, honest.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	bad := e.createAccount(t, proxy, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, func(c *imapsync.Config) { c.Timeout = 500 * time.Millisecond })
	waitFor(t, "the honest account's mail", func() bool { return len(e.storeFolder(t, good.Id, "INBOX")) == 1 })
	waitFor(t, "the dripping account's timeout", func() bool {
		st := e.account(t, bad.Id).GetStatus()
		return st.GetState() == mailbusv1.SyncState_SYNC_STATE_RETRYING && strings.Contains(st.GetReason(), "timed out")
	})
	if n := len(e.storeFolder(t, bad.Id, "INBOX")); n != 0 {
		t.Errorf("%d messages stored from the dripping server", n)
	}
	if sent.Load() == 0 {
		t.Error("the proxy sent nothing")
	}
}

// startCutProxy forwards IMAP between the client and the server at
// upstream, but once, at the at-th FETCH body literal it forwards (counted
// over all connections), sends only half of the literal and closes the
// connection. cut reports whether it did.
func startCutProxy(t *testing.T, upstream string, at int64) (addr string, cut *atomic.Bool) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	cut = &atomic.Bool{}
	var seen atomic.Int64
	body := regexp.MustCompile(`BODY\[\] \{(\d+)\}\r\n$`)
	go func() {
		for {
			client, err := lis.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				continue
			}
			go func() {
				defer server.Close()
				io.Copy(server, client)
			}()
			go func() {
				defer client.Close()
				defer server.Close()
				r := bufio.NewReader(server)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := client.Write([]byte(line)); err != nil {
						return
					}
					m := body.FindStringSubmatch(line)
					if m == nil || seen.Add(1) != at {
						continue
					}
					size, _ := strconv.ParseInt(m[1], 10, 64)
					if _, err := io.CopyN(client, r, size/2); err != nil {
						return
					}
					cut.Store(true)
					return
				}
			}()
		}
	}()
	return lis.Addr().String(), cut
}

// TestMemCutLiteral: a server that closes the connection in the middle of
// a message body (here the 256th of a FETCH, so that the store's batch
// of 256 messages would commit as soon as the client ended it) does not
// get the truncated body stored: the pass fails, the half-sent message is
// dropped, and the next pass stores every message byte-exact.
func TestMemCutLiteral(t *testing.T) {
	e := startStore(t)
	m := startMem(t)
	tp := dialPlain(t, m.addr, "alice", "secret")
	const n = 256
	for i := 1; i <= n; i++ {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}
	proxy, cut := startCutProxy(t, m.addr, n)
	a := e.createAccount(t, proxy, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, func(c *imapsync.Config) { c.FetchBatch = 2 * n })
	waitFor(t, "every message stored", func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) == n })
	if !cut.Load() {
		t.Fatal("the proxy never cut a literal")
	}
	if err := sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")); err != nil {
		t.Error(err)
	}
}

// startReorderProxy forwards IMAP between the client and the server at
// upstream, but in every FETCH response with a body it repeats the UID
// item before the body and moves INTERNALDATE after it: a response whose
// items before the body are UID, UID and FLAGS. It counts the responses
// it changed.
func startReorderProxy(t *testing.T, upstream string) (string, *atomic.Int64) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	var changed atomic.Int64
	body := regexp.MustCompile(`^(\* \d+ FETCH \()(.*)BODY\[\] \{(\d+)\}\r\n$`)
	date := regexp.MustCompile(`INTERNALDATE "[^"]*" ?`)
	uid := regexp.MustCompile(`UID \d+`)
	go func() {
		for {
			client, err := lis.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				continue
			}
			go func() {
				defer server.Close()
				io.Copy(server, client)
			}()
			go func() {
				defer client.Close()
				defer server.Close()
				r := bufio.NewReader(server)
				w := bufio.NewWriter(client)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					m := body.FindStringSubmatch(line)
					d := ""
					if m != nil {
						d = strings.TrimSpace(date.FindString(m[2]))
					}
					if m == nil || d == "" || uid.FindString(m[2]) == "" {
						if _, err := w.WriteString(line); err != nil || w.Flush() != nil {
							return
						}
						continue
					}
					items := date.ReplaceAllString(m[2], "")
					line = m[1] + uid.FindString(items) + " " + items + "BODY[] {" + m[3] + "}\r\n"
					size, _ := strconv.ParseInt(m[3], 10, 64)
					w.WriteString(line)
					if _, err := io.CopyN(w, r, size); err != nil {
						return
					}
					rest, err := r.ReadString('\n')
					if err != nil {
						return
					}
					i := strings.LastIndex(rest, ")")
					if i < 0 {
						return
					}
					w.WriteString(rest[:i] + " " + d + rest[i:])
					if w.Flush() != nil {
						return
					}
					changed.Add(1)
				}
			}()
		}
	}()
	return lis.Addr().String(), &changed
}

// TestMemRepeatedItemBeforeBody: a server whose FETCH response repeats
// UID before the body and sends INTERNALDATE after it gets its messages
// stored with their INTERNALDATE: the body streams only once each of UID,
// FLAGS and INTERNALDATE came (counting items would stream it after UID,
// UID, FLAGS, and store the message without its date).
func TestMemRepeatedItemBeforeBody(t *testing.T) {
	e := startStore(t)
	m := startMem(t)
	tp := dialPlain(t, m.addr, "alice", "secret")
	when := time.Date(2006, 1, 2, 15, 4, 5, 0, time.UTC)
	raw := testMessage(1, "INBOX")
	cmd := tp.Append("INBOX", int64(len(raw)), &imap.AppendOptions{Time: when})
	if _, err := cmd.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	proxy, changed := startReorderProxy(t, m.addr)
	a := e.createAccount(t, proxy, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, nil)
	waitFor(t, "the message stored", func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) == 1 })
	if changed.Load() == 0 {
		t.Fatal("the proxy changed no FETCH response")
	}
	resp, err := e.mailboxes.ListMessages(ctxT(t), &mailbusv1.ListMessagesRequest{MailboxId: e.mailboxID(t, a.Id, "INBOX")})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Messages) != 1 || !resp.Messages[0].GetInternalDate().AsTime().Equal(when) {
		t.Errorf("stored %v, want one message of %v", resp.Messages, when)
	}
}

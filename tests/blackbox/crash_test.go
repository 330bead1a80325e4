package blackbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// buildBinary builds one of the project's commands into a temporary
// directory.
func buildBinary(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// startNATS runs an embedded NATS server with JetStream for one test.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		JetStream: true, StoreDir: t.TempDir(), Port: -1, Host: "127.0.0.1",
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// crashCorpus is n distinct messages of about size bytes each, each with a
// Message-ID that names its number.
func crashCorpus(n, size int) []pop3test.Message {
	msgs := make([]pop3test.Message, n)
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n" // 66 bytes
	for i := range msgs {
		var b strings.Builder
		fmt.Fprintf(&b, "From: sender%d@example.com\r\nTo: alice@example.com\r\nSubject: crash corpus %d\r\nMessage-ID: <crash-%d@example.com>\r\nDate: Fri, 20 Nov 2026 08:30:00 +0000\r\n\r\n", i, i, i)
		for b.Len() < size {
			b.WriteString(line)
		}
		msgs[i] = pop3test.Message{UID: fmt.Sprintf("crash-%d", i), Data: []byte(b.String())}
	}
	return msgs
}

// TestStoreKilledDuringIngest kills a real mailbus-store process with
// SIGKILL twice while a real mailbus-pop3fetcher process streams a
// maildrop into it (delete mode), restarting it each time on the same data
// directory and address. At the end the maildrop is empty, the store holds
// every message exactly once, its change log has one message.created per
// message, and JetStream has one event per message: nothing lost, nothing
// doubled.
func TestStoreKilledDuringIngest(t *testing.T) {
	const (
		user, password = "alice", "s3cret-crash"
		total          = 600
	)
	storeBin := buildStore(t)
	fetcherBin := buildBinary(t, "github.com/mailbus/mailbus/services/pop3fetcher/cmd/mailbus-pop3fetcher")
	ns := startNATS(t)
	pop := pop3test.NewServer(t, pop3test.WithMailbox(user, password, crashCorpus(total, 40_000)...))

	data := filepath.Join(t.TempDir(), "data")
	env := []string{"MAILBUS_SECRET_KEY=" + newKey()}
	serviceTokenFile := filepath.Join(t.TempDir(), "service.token")
	storeArgs := []string{"--nats", ns.ClientURL(), "--service-token-file", serviceTokenFile}
	st := startStore(t, storeBin, data, env, storeArgs...)
	st.waitHealthy(t)

	adminToken, err := apitoken.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(st.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	host, port := splitHostPort(t, pop.Addr())
	created, err := mailbusv1.NewAccountServiceClient(conn).CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "crash", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: host, Port: port,
		Security: mailbusv1.Security_SECURITY_NONE, Username: user, Secret: password,
		Pop3Mode: mailbusv1.Pop3Mode_POP3_MODE_DELETE, PollInterval: durationpb.New(time.Second),
	}})
	if err != nil {
		t.Fatal(err)
	}
	accountID := created.Account.Id

	fetcher := startProcess(t, "pop3fetcher", fetcherBin,
		"--store", st.grpcAddr, "--token-file", serviceTokenFile, "--listen", "127.0.0.1:0", "--metrics-listen", "-",
		"--refresh", "500ms", "--timeout", "10s")

	// Kill the store twice, each time once it has taken another share of
	// the maildrop, and start it again on the same address and data.
	sync := mailbusv1.NewSyncServiceClient(conn)
	for i, share := range []int{total / 4, total / 2} {
		waitFor(t, 3*time.Minute, fmt.Sprintf("store to hold %d messages", share), func() (bool, string) {
			n, err := countCreated(ctx, sync, accountID)
			return err == nil && n >= share, fmt.Sprintf("%d (%v)", n, err)
		})
		if err := st.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-st.done
		st.done <- nil
		t.Logf("kill %d: store killed with at least %d messages ingested", i+1, share)
		st = restartStore(t, storeBin, data, env, st.grpcAddr, storeArgs...)
	}

	waitFor(t, 3*time.Minute, "maildrop to be emptied", func() (bool, string) {
		left := len(pop.Messages(user))
		return left == 0, fmt.Sprintf("%d left", left)
	})

	// The store: every message exactly once.
	seen := map[string]int{}
	mailboxes, err := mailbusv1.NewMailboxServiceClient(conn).ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: accountID})
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range mailboxes.Mailboxes {
		token := ""
		for {
			page, err := mailbusv1.NewMailboxServiceClient(conn).ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: mb.Id, PageSize: 1000, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range page.Messages {
				seen[m.GetEnvelope().GetMessageId()]++
			}
			if token = page.NextPageToken; token == "" {
				break
			}
		}
	}
	if len(seen) != total {
		t.Errorf("store holds %d distinct messages, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("message %s stored %d times", id, n)
		}
	}

	// The change log: one message.created per message.
	if n, err := countCreated(ctx, sync, accountID); err != nil || n != total {
		t.Errorf("change log has %d created messages (%v), want %d", n, err, total)
	}

	// JetStream: one message.created event per message, each event once.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subject := events.SubjectPrefix + "." + accountID + "." + events.KindMessageCreated
	waitFor(t, time.Minute, "JetStream to hold every message.created event", func() (bool, string) {
		n, err := streamCount(ctx, js, subject)
		return err == nil && n >= total, fmt.Sprintf("%d (%v)", n, err)
	})
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	eventIDs, messageIDs := map[string]bool{}, map[string]bool{}
	for len(eventIDs) < total {
		batch, err := cons.Fetch(total, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			ev, err := events.Unmarshal(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			if eventIDs[ev.Id] {
				t.Errorf("event %s delivered twice", ev.Id)
			}
			eventIDs[ev.Id] = true
			messageIDs[ev.GetMessageCreated().GetMessage().GetId()] = true
		}
		if got == 0 {
			break
		}
	}
	if n, _ := streamCount(ctx, js, subject); n != total || len(messageIDs) != total {
		t.Errorf("JetStream: %d message.created events for %d messages, want %d each", n, len(messageIDs), total)
	}
	if strings.Contains(st.out.String()+fetcher.out.String(), password) {
		t.Error("the account password is in a log")
	}
}

// streamCount is the number of messages on subject in the events stream.
func streamCount(ctx context.Context, js jetstream.JetStream, subject string) (int, error) {
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, err
	}
	return int(info.State.Subjects[subject]), nil
}

// countCreated counts the messages the store's change log shows as created
// since state 0, over every page.
func countCreated(ctx context.Context, sync mailbusv1.SyncServiceClient, accountID string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var since uint64
	n := 0
	for {
		resp, err := sync.GetChanges(ctx, &mailbusv1.GetChangesRequest{AccountId: accountID, SinceState: since, MaxChanges: 1000})
		if err != nil {
			return n, err
		}
		n += len(resp.CreatedMessageIds)
		since = resp.NewState
		if !resp.HasMore {
			return n, nil
		}
	}
}

// restartStore starts the store again on the same data and gRPC address
// (the fetcher keeps dialing that address).
func restartStore(t *testing.T, bin, dataDir string, env []string, grpcAddr string, args ...string) *storeProc {
	t.Helper()
	var p *storeProc
	// The killed process's port is free at once (no TIME_WAIT on a
	// listening socket), but retry in case another process took it.
	for attempt := 0; ; attempt++ {
		p = startStore(t, bin, dataDir, env, append(args, "--listen", grpcAddr)...)
		select {
		case err := <-p.done:
			p.done <- err
			if attempt < 5 && strings.Contains(p.out.String(), "address already in use") {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			t.Fatalf("store did not restart: %v\n%s", err, p.out)
		case <-time.After(300 * time.Millisecond):
		}
		break
	}
	p.waitHealthy(t)
	if p.grpcAddr != grpcAddr {
		t.Fatalf("store restarted on %s, want %s", p.grpcAddr, grpcAddr)
	}
	return p
}

// process is a running command whose output is kept for the test log.
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func startProcess(t *testing.T, name, bin string, args ...string) *process {
	t.Helper()
	p := &process{out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = os.Environ()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out)
		}
	})
	return p
}

// waitFor polls cond until it holds or the timeout passes; state describes
// the last observation for the failure message.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: still %s after %s", what, state, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func splitHostPort(t *testing.T, addr string) (string, uint32) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	var port uint32
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return addr[:i], port
}

package webhooks

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// childEnv, set to a NATS URL, makes the test binary run the service as a
// child process (TestMain) that a test can kill -9.
const childEnv = "MAILBUS_WEBHOOKS_TEST_CHILD_NATS"

func TestMain(m *testing.M) {
	if url := os.Getenv(childEnv); url != "" {
		os.Exit(runChild(url))
	}
	os.Exit(m.Run())
}

// runChild runs the service with the tests' timings until killed.
func runChild(url string) int {
	ready := make(chan struct{})
	s, err := New(Config{NATSURL: url, Listen: "-", MetricsListen: "-", SecretKey: testKey, AllowPrivate: true,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, RequestTimeout: 2 * time.Second,
		// The ack wait is longer than the pinned TTL, so that the next
		// process is pinned while the killed one's event still waits for
		// its ack wait: only MaxAckPending 1 keeps later events from
		// overtaking it then.
		AckWait: 4 * time.Second, PinnedTTL: time.Second, Ready: func(string) { close(ready) }})
	if err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ready
		os.Stdout.WriteString("ready\n")
	}()
	if err := s.Run(ctx); err != nil {
		return 1
	}
	return 0
}

// startChild starts the service in a process of its own.
func startChild(t *testing.T, n *natsServer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+n.url())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		ready <- err == nil && line == "ready\n"
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("child service did not start")
		}
	case <-time.After(waitFor):
		t.Fatal("child service not ready")
	}
	return cmd
}

// TestNoLossAcrossKill9: every event is delivered in order per account
// while the service process is killed with SIGKILL (another process takes
// over after the pinned TTL and the ack wait) and while NATS restarts;
// at most the event in flight at each of the two is sent twice.
func TestNoLossAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	n := startNATS(t)
	js := n.jetStream(t)
	rcv := newReceiver(t, testSecret, failFirst)
	setup := startService(t, n, nil)
	createEndpoint(t, setup.s, &mailbusv1.WebhookEndpoint{Url: rcv.url(), Secret: testSecret})
	setup.stop()
	pub := newPublisher(js)
	accounts := []string{"a", "b", "c"}
	want := map[string]int{}
	publish := func(k int) {
		for i := range k {
			a := accounts[i%len(accounts)]
			pub.publish(t, a)
			want[a]++
		}
	}
	total := func() int { return want["a"] + want["b"] + want["c"] }

	first := startChild(t, n)
	publish(60)
	rcv.waitAccepted(t, 20)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	publish(30)
	startChild(t, n)
	rcv.waitAccepted(t, total())
	n.restart()
	publish(30)
	rcv.waitAccepted(t, total())
	dups := checkOrder(t, rcv.accepted(), want)
	if dups > 2 {
		t.Errorf("%d events accepted twice; at most the one in flight at the kill and the one at the NATS restart may be", dups)
	}
	t.Logf("%d events, %d requests, %d sent twice", total(), len(rcv.requests()), dups)
}

package webhooks

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/secretbox"
)

// binDir holds the built mailbus-webhooks; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildService builds mailbus-webhooks once per test process.
var buildService = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "webhooks-bin")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "mailbus-webhooks")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/mailbus/mailbus/services/webhooks/cmd/mailbus-webhooks").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build mailbus-webhooks: %v\n%s", err, out)
	}
	return bin, nil
})

// startBinary runs the built mailbus-webhooks on n. Its ack wait is
// longer than its pinned TTL, so that the next process is pinned while a
// killed one's event still waits for its ack wait: only MaxAckPending 1
// keeps later events from overtaking it then.
func startBinary(t *testing.T, n *natsServer) *exec.Cmd {
	t.Helper()
	bin, err := buildService()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := secretbox.WriteKeyFile(keyFile, testKey); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--nats", n.url(), "--listen", "-", "--metrics-listen", "-", "--store", "127.0.0.1:1",
		"--secret-key-file", keyFile, "--allow-private-webhooks", "--retry-min", "20ms", "--retry-max", "200ms",
		"--request-timeout", "2s", "--ack-wait", "4s", "--pinned-ttl", "1s")
	cmd.Env = append(os.Environ(), "MAILBUS_TOKEN=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "webhooks running") {
				ready <- true
			}
			if testing.Verbose() {
				fmt.Fprintln(os.Stderr, sc.Text())
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("mailbus-webhooks ended before it ran")
		}
	case <-time.After(2 * waitFor):
		t.Fatal("mailbus-webhooks not running")
	}
	return cmd
}

// TestNoLossAcrossKill9: every event is delivered in order per account
// while the mailbus-webhooks process is killed with SIGKILL (another process takes
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

	first := startBinary(t, n)
	publish(60)
	rcv.waitAccepted(t, 20)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	publish(30)
	startBinary(t, n)
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

package mailbus_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// TestServeOpensNoHiddenListeners: mailbus serve listens where it is told
// (the store's gRPC address here; metrics and NATS are off) and nowhere
// else. imapsync and pop3fetcher used to open gRPC listeners of their own
// on random loopback ports that nothing used (issue 16).
func TestServeOpensNoHiddenListeners(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the process's sockets from /proc")
	}
	before := listeningSockets(t)
	r := start(t, mailbus.Config{DataDir: filepath.Join(t.TempDir(), "data")})
	var opened []string
	for inode, addr := range listeningSockets(t) {
		if _, ok := before[inode]; !ok {
			opened = append(opened, addr)
		}
	}
	_, port, _ := net.SplitHostPort(r.info.StoreAddr)
	n, _ := strconv.Atoi(port)
	if len(opened) != 1 || !strings.HasSuffix(opened[0], fmt.Sprintf(":%04X", n)) {
		t.Fatalf("serve opened the listeners %v, want only the store's (%s)", opened, r.info.StoreAddr)
	}
}

// listeningSockets returns the TCP sockets this process listens on, by
// inode, with their local address as /proc/net/tcp spells it.
func listeningSockets(t *testing.T) map[string]string {
	t.Helper()
	own := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			own[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	listening := map[string]string{}
	for _, table := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ... inode
			if len(fields) < 10 || fields[3] != "0A" || !own[fields[9]] {
				continue
			}
			listening[fields[9]] = fields[1]
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return listening
}

package cli

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestTokenHiddenFromPs: a token given with --token is overwritten in the
// process's arguments before the command connects, so
// /proc/<pid>/cmdline (what ps shows every user) no longer holds it,
// while the command still sends it. Both spellings, --token VALUE and
// --token=VALUE.
func TestTokenHiddenFromPs(t *testing.T) {
	if _, err := os.Stat("/proc/self/cmdline"); err != nil {
		t.Skip("no /proc on this system")
	}
	for _, spelling := range []func(string) []string{
		func(tok string) []string { return []string{"--token", tok} },
		func(tok string) []string { return []string{"--token=" + tok} },
	} {
		token := fmt.Sprintf("mbt_%016x_hiddenfromps", time.Now().UnixNano())
		args := spelling(token)
		t.Run(strings.Join(args, " ")[:8], func(t *testing.T) {
			// A server that accepts and never answers: the command is
			// past its flags once it connects.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c := &cli{t: t, bin: mailbusBin(t), server: ln.Addr().String()}
			p := c.start(append(args, "account", "list")...)
			accepted := make(chan net.Conn, 1)
			go func() {
				if conn, err := ln.Accept(); err == nil {
					accepted <- conn
				}
			}()
			select {
			case conn := <-accepted:
				defer conn.Close()
			case <-p.done:
				t.Fatalf("the command ended before connecting: %v\n%s", p.err, p.stderr)
			case <-time.After(waitLong):
				t.Fatal("the command did not connect")
			}
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			shown := strings.ReplaceAll(string(cmdline), "\x00", " ")
			if strings.Contains(shown, token) || strings.Contains(shown, "hiddenfromps") {
				t.Fatalf("/proc/<pid>/cmdline shows the token: %q", shown)
			}
			if !strings.Contains(shown, "--token") || !strings.Contains(shown, "account list") {
				t.Fatalf("/proc/<pid>/cmdline lost the other arguments: %q", shown)
			}
			if strings.Contains(p.stderr.String(), "warning") {
				t.Fatalf("warned although the token could be hidden: %s", p.stderr)
			}
		})
	}
}

// TestTokenFlagStillWorks: hiding --token from ps copies the token first:
// a command given the admin token with --token (and no other way to find
// one) is let in, in both spellings.
func TestTokenFlagStillWorks(t *testing.T) {
	c, _, _ := startServe(t)
	var data string
	for _, kv := range c.env {
		if v, ok := strings.CutPrefix(kv, "MAILBUS_DATA="); ok {
			data = v
		}
	}
	token, err := os.ReadFile(data + "/admin.token")
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(string(token))
	other := &cli{t: t, bin: c.bin, server: c.server, env: []string{"MAILBUS_DATA=" + t.TempDir()}}
	for _, args := range [][]string{{"--token", tok}, {"--token=" + tok}} {
		if r := other.run(append(args, "account", "list")...); r.code != 0 {
			t.Errorf("account list with %s: %s", args[0][:7], r)
		}
	}
}

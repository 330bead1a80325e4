package pop3test

import (
	"errors"
	"io"
	"strings"
	"time"
)

// Action is what a Fault does to the command it matches.
type Action int

const (
	// ActionReply sends Fault.Reply verbatim (no line break added) instead
	// of handling the command; the command has no effect. Use it for a
	// bare "+OK", "-ERR [IN-USE] ..." or garbage.
	ActionReply Action = iota
	// ActionDrop handles the command (so its effect happens: QUIT commits
	// deletions, PASS locks the maildrop), sends only the first Fault.After
	// octets of the answer and closes the connection.
	ActionDrop
	// ActionStall sends nothing and holds the connection open, reading and
	// ignoring input, until the client closes it or the server stops.
	ActionStall
	// ActionEndlessLine answers "+OK " followed by an endless line without
	// a line break (stopping after 1 GiB or when the client goes away),
	// then closes the connection.
	ActionEndlessLine
	// ActionDelay waits Fault.Delay, then handles the command normally.
	ActionDelay
	// ActionPause handles the command, sends the first Fault.After octets
	// of its answer, waits until Fault.Release is closed (or the server
	// stops; a nil Release waits for that alone), then sends the rest. Tests use it to see that a client
	// streams what it has before the answer is complete.
	ActionPause
	// ActionDrip handles the command and sends its answer one octet per
	// Fault.Delay (a slowloris server), until the client goes away.
	ActionDrip
)

// Fault makes the server misbehave at a chosen command.
type Fault struct {
	// Match selects the command: "GREETING" for the greeting, "*" for any
	// command, "VERB" for any command with that verb ("RETR"), or "VERB
	// ARG..." for one with those leading arguments ("RETR 3", "AUTH
	// XOAUTH2"). The verb is matched case-insensitively.
	Match   string
	Action  Action
	Reply   []byte          // ActionReply
	After   int             // ActionDrop, ActionPause: octets of the answer sent first
	Delay   time.Duration   // ActionDelay
	Release <-chan struct{} // ActionPause
	// Times is how many matching commands the fault fires for; 0 means
	// every one.
	Times int
}

// Once returns f firing only for the first matching command.
func (f Fault) Once() Fault { f.Times = 1; return f }

// Reply answers the matching command with line and CRLF, instead of
// handling it.
func Reply(match, line string) Fault {
	return Fault{Match: match, Action: ActionReply, Reply: []byte(line + "\r\n")}
}

// ReplyBytes answers the matching command with b, verbatim.
func ReplyBytes(match string, b []byte) Fault {
	return Fault{Match: match, Action: ActionReply, Reply: b}
}

// Drop handles the matching command, sends the first after octets of the
// answer and closes the connection.
func Drop(match string, after int) Fault {
	return Fault{Match: match, Action: ActionDrop, After: after}
}

// Stall never answers the matching command.
func Stall(match string) Fault { return Fault{Match: match, Action: ActionStall} }

// EndlessLine answers the matching command with a line that never ends.
func EndlessLine(match string) Fault { return Fault{Match: match, Action: ActionEndlessLine} }

// Delay answers the matching command normally after d.
func Delay(match string, d time.Duration) Fault {
	return Fault{Match: match, Action: ActionDelay, Delay: d}
}

// Drip answers the matching command one octet per interval.
func Drip(match string, interval time.Duration) Fault {
	return Fault{Match: match, Action: ActionDrip, Delay: interval}
}

// Pause sends the first after octets of the answer, then waits for release
// to be closed before sending the rest.
func Pause(match string, after int, release <-chan struct{}) Fault {
	return Fault{Match: match, Action: ActionPause, After: after, Release: release}
}

// matches reports whether the fault applies to a command line, or to the
// greeting when line is "GREETING".
func (f *Fault) matches(line string) bool {
	want := strings.Fields(f.Match)
	got := strings.Fields(line)
	if len(want) == 0 || len(got) == 0 {
		return false
	}
	if want[0] == "*" {
		return line != "GREETING"
	}
	if len(got) < len(want) || !strings.EqualFold(want[0], got[0]) {
		return false
	}
	for i := 1; i < len(want); i++ {
		if want[i] != got[i] {
			return false
		}
	}
	return true
}

// errCut is returned by cutWriter once its allowance is used up.
var errCut = errors.New("pop3test: connection dropped by fault")

// cutWriter passes on the first left octets and fails after that.
type cutWriter struct {
	w    io.Writer
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) <= c.left {
		c.left -= len(p)
		return c.w.Write(p)
	}
	n, err := c.w.Write(p[:c.left])
	c.left = 0
	if err == nil {
		err = errCut
	}
	return n, err
}

// pauseWriter passes on the first after octets, flushes, waits for
// release, then passes on the rest.
type pauseWriter struct {
	w interface {
		io.Writer
		Flush() error
	}
	after   int
	release <-chan struct{}
	done    <-chan struct{}
	paused  bool
}

func (p *pauseWriter) Write(b []byte) (int, error) {
	if p.paused || len(b) <= p.after {
		p.after -= len(b)
		return p.w.Write(b)
	}
	n, err := p.w.Write(b[:p.after])
	if err != nil {
		return n, err
	}
	if err := p.w.Flush(); err != nil {
		return n, err
	}
	p.paused = true
	select {
	case <-p.release:
	case <-p.done:
		return n, errCut
	}
	m, err := p.w.Write(b[p.after:])
	return n + m, err
}

package pop3

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// ListEntry is one message of a LIST answer.
type ListEntry struct {
	Number int   // message number in this session, from 1
	Size   int64 // size in octets as the server reports it
}

// UIDLEntry is one message of a UIDL answer.
type UIDLEntry struct {
	Number int    // message number in this session, from 1
	UID    string // unique-id, stable across sessions
}

// okLine rebuilds a "+OK" line for an error message.
func okLine(text string) []byte {
	if text == "" {
		return []byte("+OK")
	}
	return []byte("+OK " + text)
}

func checkNumber(cmd string, n int) error {
	if n < 1 {
		return fmt.Errorf("pop3: %s: message number %d: %w", cmd, n, ErrInvalidArgument)
	}
	return nil
}

// simple runs a command with a single-line answer and returns its text.
func (c *Client) simple(ctx context.Context, line string) (string, error) {
	stop, err := c.begin(ctx)
	if err != nil {
		return "", err
	}
	defer stop()
	st, err := c.cmd(ctx, line, line)
	return st.text, err
}

// UTF8 switches the session to UTF-8 mode (the UTF8 command, RFC 6856
// section 2): the server then sends messages with raw UTF-8 as it holds
// them, where a session without it may get them rewritten (downgraded, for
// example wrapped in MIME encodings). RFC 6856 makes the command valid in
// the AUTHORIZATION state, before authentication; a server may accept it
// after authentication too. A refusal ("-ERR") is an *Error and leaves the
// session usable in ASCII mode; the caller may go on without it. UTF8Mode
// reports the outcome.
func (c *Client) UTF8(ctx context.Context) error {
	stop, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if c.utf8 {
		return nil
	}
	if _, err := c.cmd(ctx, "UTF8", "UTF8"); err != nil {
		return err
	}
	c.utf8 = true
	return nil
}

// UTF8Mode reports whether the server accepted UTF8 in this session.
func (c *Client) UTF8Mode() bool { return c.utf8 }

// Stat returns the number of messages and their total size (STAT). An
// answer without both numbers is a *ProtocolError.
func (c *Client) Stat(ctx context.Context) (count int, size int64, err error) {
	text, err := c.simple(ctx, "STAT")
	if err != nil {
		return 0, 0, err
	}
	v, ok := parseNumbers(text, 2)
	if !ok || v[0] > int64(maxInt) {
		return 0, 0, protoErr("STAT", "expected \"+OK count size\"", okLine(text))
	}
	return int(v[0]), v[1], nil
}

// List returns every message's number and size (LIST).
func (c *Client) List(ctx context.Context) ([]ListEntry, error) {
	var out []ListEntry
	err := c.multi(ctx, "LIST", func(line []byte) error {
		e, ok := parseListLine(string(line))
		if !ok {
			return protoErr("LIST", "expected \"number size\"", line)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// ListOne returns message n's size (LIST n).
func (c *Client) ListOne(ctx context.Context, n int) (ListEntry, error) {
	if err := checkNumber("LIST", n); err != nil {
		return ListEntry{}, err
	}
	line := "LIST " + strconv.Itoa(n)
	text, err := c.simple(ctx, line)
	if err != nil {
		return ListEntry{}, err
	}
	e, ok := parseListLine(text)
	if !ok {
		return ListEntry{}, protoErr(line, "expected \"+OK number size\"", okLine(text))
	}
	return e, nil
}

// Uidl returns every message's unique-id (UIDL). A plain "-ERR" (no
// response code) means the server has no UIDL: the error then matches
// both ErrUIDLUnsupported and *Error.
func (c *Client) Uidl(ctx context.Context) ([]UIDLEntry, error) {
	var out []UIDLEntry
	err := c.multi(ctx, "UIDL", func(line []byte) error {
		e, ok := parseUIDLLine(string(line))
		if !ok {
			return protoErr("UIDL", "expected \"number unique-id\"", line)
		}
		out = append(out, e)
		return nil
	})
	var pe *Error
	if errors.As(err, &pe) && pe.Code == "" {
		return nil, fmt.Errorf("%w: %w", ErrUIDLUnsupported, err)
	}
	return out, err
}

// UidlOne returns message n's unique-id (UIDL n). A "-ERR" is returned as
// *Error: it may mean "no such message" as well as "no UIDL".
func (c *Client) UidlOne(ctx context.Context, n int) (UIDLEntry, error) {
	if err := checkNumber("UIDL", n); err != nil {
		return UIDLEntry{}, err
	}
	line := "UIDL " + strconv.Itoa(n)
	text, err := c.simple(ctx, line)
	if err != nil {
		return UIDLEntry{}, err
	}
	e, ok := parseUIDLLine(text)
	if !ok {
		return UIDLEntry{}, protoErr(line, "expected \"+OK number unique-id\"", okLine(text))
	}
	return e, nil
}

// multi runs a command with a multi-line answer of short lines.
func (c *Client) multi(ctx context.Context, cmd string, fn func(line []byte) error) error {
	stop, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if _, err := c.cmd(ctx, cmd, cmd); err != nil {
		return err
	}
	return c.readLines(ctx, cmd, fn)
}

// Dele marks message n for deletion (DELE n). The server deletes it only
// when Quit succeeds.
func (c *Client) Dele(ctx context.Context, n int) error {
	if err := checkNumber("DELE", n); err != nil {
		return err
	}
	_, err := c.simple(ctx, "DELE "+strconv.Itoa(n))
	return err
}

// Noop does nothing but keep the session alive (NOOP).
func (c *Client) Noop(ctx context.Context) error {
	_, err := c.simple(ctx, "NOOP")
	return err
}

// Rset unmarks every message marked for deletion (RSET).
func (c *Client) Rset(ctx context.Context) error {
	_, err := c.simple(ctx, "RSET")
	return err
}

// Quit ends the session (QUIT) and closes the connection. In the
// TRANSACTION state it is the server's "+OK" to QUIT that commits the
// deletions: a nil error means they were applied. A "-ERR" (such as
// [SYS/TEMP] when the server could not remove them) is returned as *Error,
// and a network error means the outcome is unknown; in both cases the
// messages may still be on the server, so a caller must be ready to see
// them again.
func (c *Client) Quit(ctx context.Context) error {
	stop, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer stop()
	defer c.abort()
	_, err = c.cmd(ctx, "QUIT", "QUIT")
	return err
}

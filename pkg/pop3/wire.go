package pop3

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
)

// write buffers one command line; display is what logs and errors show
// (no secrets).
func (c *Client) write(ctx context.Context, line, display string) error {
	if strings.ContainsAny(line, "\r\n\x00") {
		return fmt.Errorf("pop3: %s: argument contains CR, LF or NUL: %w", display, ErrInvalidArgument)
	}
	if c.log != nil {
		c.log.Debug("pop3 send", "cmd", display)
	}
	if _, err := c.bw.WriteString(line); err != nil {
		return c.ioError(ctx, display, err)
	}
	if _, err := c.bw.WriteString("\r\n"); err != nil {
		return c.ioError(ctx, display, err)
	}
	return nil
}

func (c *Client) flush(ctx context.Context, display string) error {
	if err := c.bw.Flush(); err != nil {
		return c.ioError(ctx, display, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, line, display string) error {
	if err := c.write(ctx, line, display); err != nil {
		return err
	}
	return c.flush(ctx, display)
}

// readLine reads one response line, without its line break. The result
// is valid until the next read.
func (c *Client) readLine(ctx context.Context, cmd string) ([]byte, error) {
	c.line = c.line[:0]
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(c.line)+len(frag) > c.opts.MaxLineLength+2 {
			c.line = append(c.line, frag[:min(len(frag), 80)]...)
			return nil, c.fail(&ProtocolError{
				Command: cmd,
				Reason:  fmt.Sprintf("response line longer than %d octets", c.opts.MaxLineLength),
				Line:    printable(c.line, 80),
				Err:     ErrLineTooLong,
			})
		}
		c.line = append(c.line, frag...)
		switch {
		case err == nil:
			line := c.line[:len(c.line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			// The server owed us a line: its end of the connection is
			// premature.
			return nil, c.ioError(ctx, displayOr(cmd), unexpected(err))
		}
	}
}

func displayOr(cmd string) string {
	if cmd == "" {
		return "greeting"
	}
	return cmd
}

// readStatus reads and parses a status line. A line that is no status
// line means client and server disagree about where a response ends, so
// it makes the session unusable.
func (c *Client) readStatus(ctx context.Context, cmd string) (status, error) {
	line, err := c.readLine(ctx, cmd)
	if err != nil {
		return status{}, err
	}
	st, ok := parseStatus(line)
	if !ok {
		return status{}, c.fail(protoErr(cmd, "expected +OK or -ERR", line))
	}
	if c.log != nil {
		shown := "+"
		if st.kind != statusCont { // a continuation may carry secrets
			shown = printable(line, 200)
		}
		c.log.Debug("pop3 recv", "cmd", displayOr(cmd), "status", shown)
	}
	return st, nil
}

// cmd sends one command and reads its status line. A "-ERR" answer is
// returned as *Error along with the status; a continuation is a protocol
// error.
func (c *Client) cmd(ctx context.Context, line, display string) (status, error) {
	if err := c.send(ctx, line, display); err != nil {
		return status{}, err
	}
	return c.expectStatus(ctx, display)
}

// expectStatus reads the status line answering display.
func (c *Client) expectStatus(ctx context.Context, display string) (status, error) {
	st, err := c.readStatus(ctx, display)
	if err != nil {
		return st, err
	}
	switch st.kind {
	case statusErr:
		return st, st.toError(display)
	case statusCont:
		return st, c.fail(&ProtocolError{Command: display, Reason: "unexpected continuation line"})
	}
	return st, nil
}

// readLines reads the lines of a multi-line response up to the "."
// terminator, undoing dot-stuffing, and passes each to fn. It always reads
// up to the terminator, so an error from fn leaves the session usable; the
// first such error is returned.
func (c *Client) readLines(ctx context.Context, cmd string, fn func(line []byte) error) error {
	var first error
	for {
		line, err := c.readLine(ctx, cmd)
		if err != nil {
			return err
		}
		if len(line) == 1 && line[0] == '.' {
			return first
		}
		if len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		if first == nil {
			first = fn(line)
		}
	}
}

package pop3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Retr retrieves message n (RETR n) and returns its body as a stream, see
// the package documentation for what byte-exact means. The body is read
// from the network as the caller reads it; nothing is held in memory
// beyond a 32 KiB buffer.
//
// The caller must Close the reader; Close discards what was not read, so
// the session can go on. Any other method called before that closes the
// reader first. ctx governs reading the body too, until Close or EOF.
//
// Reading more than Options.MaxMessageSize octets fails with an error
// matching ErrTooLarge; Close then discards the rest if it ends within
// another MaxMessageSize octets, else closes the connection. Reading an
// incomplete body (the connection dropped mid-message) fails with an error
// wrapping io.ErrUnexpectedEOF, never with io.EOF.
func (c *Client) Retr(ctx context.Context, n int) (io.ReadCloser, error) {
	if err := checkNumber("RETR", n); err != nil {
		return nil, err
	}
	return c.fetch(ctx, "RETR "+strconv.Itoa(n))
}

// Top retrieves the header and the first lines lines of the body of
// message n (TOP n lines), as a stream like Retr.
func (c *Client) Top(ctx context.Context, n, lines int) (io.ReadCloser, error) {
	if err := checkNumber("TOP", n); err != nil {
		return nil, err
	}
	if lines < 0 {
		return nil, fmt.Errorf("pop3: TOP: negative line count %d", lines)
	}
	return c.fetch(ctx, "TOP "+strconv.Itoa(n)+" "+strconv.Itoa(lines))
}

func (c *Client) fetch(ctx context.Context, line string) (io.ReadCloser, error) {
	stop, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.cmd(ctx, line, line); err != nil {
		stop()
		return nil, err
	}
	return c.body(ctx, line, stop), nil
}

// body starts reading a multi-line body; stop, if not nil, is called when
// the body is finished.
func (c *Client) body(ctx context.Context, cmd string, stop func() bool) *messageReader {
	m := &messageReader{
		c:     c,
		ctx:   ctx,
		cmd:   cmd,
		stop:  stop,
		dr:    dotReader{r: c.br},
		limit: c.opts.MaxMessageSize,
	}
	c.pending = m
	return m
}

// errBodyClosed is returned by Read after Close.
var errBodyClosed = errors.New("read after Close")

// messageReader is a message body being read.
type messageReader struct {
	c     *Client
	ctx   context.Context
	cmd   string
	stop  func() bool
	dr    dotReader
	n     int64 // octets returned
	limit int64 // 0: none
	err   error // sticky: io.EOF, a too-large error, or a fatal one
	done  bool  // the body has been read to its end, or given up
}

func (m *messageReader) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if m.limit > 0 {
		room := m.limit - m.n
		if room == 0 {
			// At the limit: the body may end right here.
			var one [1]byte
			k, err := m.dr.Read(one[:])
			if k > 0 {
				m.err = fmt.Errorf("pop3: %s: %w (limit %d octets)", m.cmd, ErrTooLarge, m.limit)
				return 0, m.err
			}
			return 0, m.settle(err)
		}
		if int64(len(p)) > room {
			p = p[:room]
		}
	}
	k, err := m.dr.Read(p)
	m.n += int64(k)
	return k, m.settle(err)
}

// settle records the end of the body or a fatal error.
func (m *messageReader) settle(err error) error {
	switch {
	case err == nil:
		return nil
	case err == io.EOF:
		m.err = io.EOF
	default:
		m.err = m.c.ioError(m.ctx, m.cmd, err)
	}
	m.finish()
	return m.err
}

func (m *messageReader) finish() {
	if m.done {
		return
	}
	m.done = true
	if m.c.pending == m {
		m.c.pending = nil
	}
	if m.stop != nil {
		m.stop()
	}
}

// Close discards the unread rest of the body, so that the session can go
// on. The rest may be at most MaxMessageSize octets (unbounded without a
// limit); past that the connection is closed and an error matching
// ErrTooLarge returned. Close returns an error only if the session is no
// longer usable.
func (m *messageReader) Close() error {
	if m.done {
		if m.err == io.EOF || errors.Is(m.err, ErrTooLarge) || errors.Is(m.err, errBodyClosed) {
			return nil
		}
		return m.err
	}
	var buf [bufferSize]byte
	var discarded int64
	for {
		k, err := m.dr.Read(buf[:])
		discarded += int64(k)
		if m.limit > 0 && discarded > m.limit {
			e := m.c.fail(fmt.Errorf("pop3: %s: %w: gave up discarding the rest after %d octets, connection closed",
				m.cmd, ErrTooLarge, discarded))
			m.err = e
			m.finish()
			return e
		}
		if err == io.EOF {
			if m.err == nil {
				m.err = fmt.Errorf("pop3: %s: %w", m.cmd, errBodyClosed)
			}
			m.finish()
			return nil
		}
		if err != nil {
			e := m.c.ioError(m.ctx, m.cmd, err)
			m.err = e
			m.finish()
			return e
		}
	}
}

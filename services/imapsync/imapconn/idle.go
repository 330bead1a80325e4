package imapconn

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2/imapclient"
)

// Idle starts IDLE on the selected mailbox (RFC 2177); started, if not
// nil, runs just before the command is sent, so that a handler can tell
// what the server says in IDLE from what it said before. No other
// command may run on the connection until EndIdle.
func (c *Conn) Idle(ctx context.Context, started func()) (*imapclient.IdleCommand, error) {
	var cmd *imapclient.IdleCommand
	err := c.Do(ctx, func(*Guard) error {
		if started != nil {
			started()
		}
		var err error
		cmd, err = c.c.Idle()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("imapconn: IDLE: %w", err)
	}
	return cmd, nil
}

// EndIdle ends an IDLE command (DONE) and waits for its end.
func (c *Conn) EndIdle(ctx context.Context, cmd *imapclient.IdleCommand) error {
	err := c.Do(ctx, func(*Guard) error {
		if err := cmd.Close(); err != nil {
			return err
		}
		return cmd.Wait()
	})
	if err != nil {
		return fmt.Errorf("imapconn: end IDLE: %w", err)
	}
	return nil
}

// Noop sends NOOP: a round trip that a silent connection fails within
// the timeout.
func (c *Conn) Noop(ctx context.Context) error {
	if err := c.Do(ctx, func(*Guard) error { return c.c.Noop().Wait() }); err != nil {
		return fmt.Errorf("imapconn: NOOP: %w", err)
	}
	return nil
}

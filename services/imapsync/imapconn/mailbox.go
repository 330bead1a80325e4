package imapconn

import (
	"context"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Create creates the mailbox name.
func (c *Conn) Create(ctx context.Context, name string) error {
	if err := c.Do(ctx, func(*Guard) error { return c.c.Create(name, nil).Wait() }); err != nil {
		return fmt.Errorf("imapconn: CREATE %s: %w", name, err)
	}
	return nil
}

// Rename renames the mailbox from to to.
func (c *Conn) Rename(ctx context.Context, from, to string) error {
	if err := c.Do(ctx, func(*Guard) error { return c.c.Rename(from, to, nil).Wait() }); err != nil {
		return fmt.Errorf("imapconn: RENAME %s: %w", from, err)
	}
	return nil
}

// Delete deletes the mailbox name.
func (c *Conn) Delete(ctx context.Context, name string) error {
	if err := c.Do(ctx, func(*Guard) error { return c.c.Delete(name).Wait() }); err != nil {
		return fmt.Errorf("imapconn: DELETE %s: %w", name, err)
	}
	return nil
}

// Append appends the message raw to the mailbox name with flags and,
// unless zero, the internal date. The data carries APPENDUID's UID when the server has UIDPLUS.
func (c *Conn) Append(ctx context.Context, name string, raw []byte, flags []imap.Flag, date time.Time) (*imap.AppendData, error) {
	var data *imap.AppendData
	err := c.Do(ctx, func(*Guard) error {
		opts := &imap.AppendOptions{Flags: flags, Time: date}
		cmd := c.c.Append(name, int64(len(raw)), opts)
		if _, err := cmd.Write(raw); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		var err error
		data, err = cmd.Wait()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("imapconn: APPEND to %s: %w", name, err)
	}
	return data, nil
}

// List lists every mailbox (LIST "" "*", with the SPECIAL-USE attributes
// when the server offers them, RFC 6154). It keeps at most max of them
// and reads and drops the rest; tooMany says some were dropped.
func (c *Conn) List(ctx context.Context, max int) (list []*imap.ListData, tooMany bool, err error) {
	err = c.Do(ctx, func(g *Guard) error {
		opts := &imap.ListOptions{}
		if c.caps.Has(imap.CapSpecialUse) {
			opts.ReturnSpecialUse = true
		}
		cmd := c.c.List("", "*", opts)
		for d := cmd.Next(); d != nil; d = cmd.Next() {
			g.Touch()
			if len(list) == max {
				tooMany = true
				continue // the rest is read and dropped
			}
			list = append(list, d)
		}
		return cmd.Close()
	})
	if err != nil {
		return nil, false, fmt.Errorf("imapconn: LIST: %w", err)
	}
	return list, tooMany, nil
}

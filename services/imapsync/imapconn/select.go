package imapconn

import (
	"context"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Select selects name for reading and writing, with CONDSTORE when the
// server offers it (RFC 7162: the data then carries HIGHESTMODSEQ, and
// FETCH takes CHANGEDSINCE). A NO (the folder is gone) satisfies IsNo.
// When it returns, SelectedMessages and Selected tell of name.
func (c *Conn) Select(ctx context.Context, name string) (*imap.SelectData, error) {
	sel, err := c.selectMailbox(ctx, name, &imap.SelectOptions{CondStore: c.CondStore()})
	if err == nil {
		c.settleSelected(name, sel.NumMessages)
	}
	return sel, err
}

// settleWait bounds settleSelected's wait.
const settleWait = time.Second

// settleSelected waits until go-imap has recorded the mailbox a SELECT
// selected: beta.8 ends the command (Wait returns) just before it does,
// so that right after Select the session's view may still be the
// mailbox selected before, and an expunge check would compare another
// folder's count. Nothing else is sent meanwhile, so the count is the
// SELECT's; the wait is microseconds, bounded by settleWait.
func (c *Conn) settleSelected(name string, n uint32) {
	deadline := time.Now().Add(settleWait)
	for {
		if mb := c.c.Mailbox(); mb != nil && mb.Name == name && mb.NumMessages == n {
			return
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Microsecond)
	}
}

// Examine selects name read-only (EXAMINE), without CONDSTORE: for a
// connection that only IDLEs or fetches bodies.
func (c *Conn) Examine(ctx context.Context, name string) (*imap.SelectData, error) {
	return c.selectMailbox(ctx, name, &imap.SelectOptions{ReadOnly: true})
}

func (c *Conn) selectMailbox(ctx context.Context, name string, opts *imap.SelectOptions) (*imap.SelectData, error) {
	var sel *imap.SelectData
	err := c.Do(ctx, func(*Guard) error {
		var err error
		sel, err = c.c.Select(name, opts).Wait()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("imapconn: SELECT %s: %w", name, err)
	}
	return sel, nil
}

// Status asks STATUS of name (which need not be selected; a server may
// answer the selected one from the session's view).
func (c *Conn) Status(ctx context.Context, name string, opts *imap.StatusOptions) (*imap.StatusData, error) {
	var sd *imap.StatusData
	err := c.Do(ctx, func(*Guard) error {
		var err error
		sd, err = c.c.Status(name, opts).Wait()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("imapconn: STATUS %s: %w", name, err)
	}
	return sd, nil
}

// UIDValidity is name's UIDVALIDITY, by STATUS.
func (c *Conn) UIDValidity(ctx context.Context, name string) (uint32, error) {
	sd, err := c.Status(ctx, name, &imap.StatusOptions{UIDValidity: true})
	if err != nil {
		return 0, err
	}
	return sd.UIDValidity, nil
}

// SelectedMessages is the number of messages in the selected mailbox as
// the session sees it now (it follows EXISTS and EXPUNGE), and false
// when none is selected. After Examine (not Select) it may lag: go-imap
// beta.8 records a SELECT's mailbox just after the command ends.
func (c *Conn) SelectedMessages() (uint32, bool) {
	mb := c.c.Mailbox()
	if mb == nil {
		return 0, false
	}
	return mb.NumMessages, true
}

// Selected is the name of the selected mailbox ("" when none is), as
// SelectedMessages sees it.
func (c *Conn) Selected() string {
	if mb := c.c.Mailbox(); mb != nil {
		return mb.Name
	}
	return ""
}

package imapconn

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2"
)

// UIDs makes a UID set of uids.
func UIDs(uids []uint32) imap.UIDSet {
	s := imap.UIDSet{}
	for _, u := range uids {
		s.AddNum(imap.UID(u))
	}
	return s
}

// StoreFlags adds or removes (op) flags of the messages uids of the
// selected mailbox, silently (UID STORE +FLAGS.SILENT / -FLAGS.SILENT).
// +FLAGS and -FLAGS commute with other clients' changes of other flags,
// so no UNCHANGEDSINCE is sent (decision 0006).
func (c *Conn) StoreFlags(ctx context.Context, uids []uint32, op imap.StoreFlagsOp, flags []imap.Flag) error {
	err := c.Do(ctx, func(*Guard) error {
		return c.c.Store(UIDs(uids), &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Close()
	})
	if err != nil {
		return fmt.Errorf("imapconn: UID STORE: %w", err)
	}
	return nil
}

// ExpungeUIDs removes the messages uids of the selected mailbox: UID
// STORE +FLAGS.SILENT \Deleted, then UID EXPUNGE of exactly those UIDs
// (UIDPLUS, RFC 4315). Without UIDPLUS a plain EXPUNGE is the only way,
// and it also removes any other message marked \Deleted there.
func (c *Conn) ExpungeUIDs(ctx context.Context, uids []uint32) error {
	err := c.Do(ctx, func(*Guard) error { return c.expunge(UIDs(uids)) })
	if err != nil {
		return fmt.Errorf("imapconn: expunge UIDs: %w", err)
	}
	return nil
}

func (c *Conn) expunge(set imap.UIDSet) error {
	if err := c.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		return err
	}
	if c.caps.Has(imap.CapUIDPlus) {
		return c.c.UIDExpunge(set).Close()
	}
	return c.c.Expunge().Close()
}

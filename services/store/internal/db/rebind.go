package db

import (
	"context"
	"errors"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// RebindMessages gives stored IMAP messages new upstream identities (after
// a UIDVALIDITY change the fetcher matched the server's messages to stored
// ones, so that it need not fetch them again). The upstream identity is not
// part of what devices see, so no event is written, except a
// message.deleted for a row that already held a new identity (the rebound
// message wins, as with a write-back's placement). Pending write-backs of
// a rebound message follow it. It returns how many messages changed.
func (d *DB) RebindMessages(ctx context.Context, accountID string, placements []*mailbusv1.UpstreamPlacement) (uint32, error) {
	acct, err := parseID("account_id", accountID)
	if err != nil {
		return 0, err
	}
	if len(placements) > 10000 {
		return 0, invalid("placements", "more than 10000")
	}
	for _, pl := range placements {
		up := pl.GetUpstream()
		if up.GetUid() == 0 || up.GetUidvalidity() == 0 {
			return 0, invalid("placements.upstream", "IMAP identities need mailbox_id, uidvalidity and uid")
		}
	}
	var n uint32
	origin := &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM}
	err = d.inTx(ctx, origin, func(t *tx) error {
		n = 0
		a, err := t.lock(ctx, acct)
		if err != nil {
			return err
		}
		if err := t.fence(ctx, a, d.leaseToken); err != nil {
			return err
		}
		if a.protocol != mailbusv1.Protocol_PROTOCOL_IMAP {
			return invalid("account_id", "only IMAP messages have (mailbox, UIDVALIDITY, UID) identities")
		}
		for _, pl := range placements {
			id, err := parseID("placements.message_id", pl.MessageId)
			if err != nil {
				return err
			}
			mbID, err := parseID("placements.upstream.mailbox_id", pl.Upstream.MailboxId)
			if err != nil {
				return err
			}
			mb, err := t.mailboxByID(ctx, mbID)
			if err != nil || mb.Mailbox.AccountId != accountID {
				return notFound("mailbox", pl.Upstream.MailboxId)
			}
			m, err := t.messageByID(ctx, id)
			if errors.Is(err, ErrNotFound) || (err == nil && m.account != acct) {
				continue // deleted meanwhile
			}
			if err != nil {
				return err
			}
			if m.upMailbox == mbID && m.uidvalidity == int64(pl.Upstream.Uidvalidity) && m.uid == int64(pl.Upstream.Uid) {
				continue
			}
			if err := t.place(ctx, a, pl); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

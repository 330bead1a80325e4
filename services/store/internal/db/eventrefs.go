package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"unicode/utf8"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Bounds on the attachment list of a message.created event (decision
// 0034). An event must fit a NATS message (1 MiB by default) with room for
// its envelope, or the relay could never publish it and every later event
// would wait behind it; mailmsg lists up to 1,000 parts, each with a file
// name of any length.
const (
	// maxEventAttachments is the most attachments one event lists.
	maxEventAttachments = 100
	// maxEventAttachmentString is the most bytes of each string of an
	// attachment (a file name is at most 255 bytes on common file
	// systems).
	maxEventAttachmentString = 255
)

// describe fills in what an event says beyond ids (issue 13, decision
// 0034): the account's name on every event, and the mailbox, with its name
// and role, on message.* and mailbox.* events, as they are at this point of
// the transaction. The account must be locked (every caller of emit has
// locked it to get its state).
//
// The mailboxes are looked up once per transaction and remembered in
// t.mailboxRefs. A mailbox's name and role change only with a mailbox.*
// event of their own (every change is announced), written right after the
// change, so describe keeps the memory current from those events: a
// mailbox.created or mailbox.updated event replaces the mailbox's entry, a
// mailbox.deleted one removes it.
func (t *tx) describe(ctx context.Context, accountID int64, ev *mailbusv1.Event) error {
	a, err := t.lock(ctx, accountID)
	if err != nil {
		return err
	}
	ev.AccountName = a.name
	if t.mailboxRefs == nil {
		t.mailboxRefs = map[int64]*mailbusv1.MailboxRef{}
	}
	switch p := ev.Payload.(type) {
	case *mailbusv1.Event_MessageCreated:
		ev.Mailbox, err = t.mailboxRef(ctx, p.MessageCreated.GetMessage().GetMailboxId())
	case *mailbusv1.Event_MessageUpdated:
		u := p.MessageUpdated
		if ev.Mailbox, err = t.mailboxRef(ctx, u.GetMessage().GetMailboxId()); err == nil && u.PreviousMailboxId != "" {
			u.PreviousMailbox, err = t.mailboxRef(ctx, u.PreviousMailboxId)
		}
	case *mailbusv1.Event_MessageDeleted:
		ev.Mailbox, err = t.mailboxRef(ctx, p.MessageDeleted.MailboxId)
	case *mailbusv1.Event_MailboxCreated:
		ev.Mailbox = t.remember(p.MailboxCreated.GetMailbox())
	case *mailbusv1.Event_MailboxUpdated:
		ev.Mailbox = t.remember(p.MailboxUpdated.GetMailbox())
	case *mailbusv1.Event_MailboxDeleted:
		// The row is gone: the caller names the mailbox as it was.
		if ev.Mailbox == nil {
			return errors.New("db: mailbox.deleted event without its mailbox")
		}
		id, err := parseID("mailbox_id", ev.Mailbox.Id)
		if err != nil {
			return fmt.Errorf("db: mailbox.deleted event: %w", err)
		}
		delete(t.mailboxRefs, id)
	}
	return err
}

// mailboxRef returns the mailbox with the id as an event names it.
func (t *tx) mailboxRef(ctx context.Context, mailboxID string) (*mailbusv1.MailboxRef, error) {
	id, err := parseID("mailbox_id", mailboxID)
	if err != nil {
		return nil, fmt.Errorf("db: event mailbox: %w", err)
	}
	if r, ok := t.mailboxRefs[id]; ok {
		return r, nil
	}
	var name string
	var role int
	err = t.queryRow(ctx, `SELECT name, role FROM mailboxes WHERE id = ?`, id).Scan(&name, &role)
	if errors.Is(err, sql.ErrNoRows) {
		// Every event about a message is written while its mailbox
		// exists; one that is not is a bug to be seen, not an event
		// without its mailbox.
		return nil, fmt.Errorf("db: event mailbox %d: no such mailbox", id)
	}
	if err != nil {
		return nil, fmt.Errorf("db: event mailbox: %w", err)
	}
	r := &mailbusv1.MailboxRef{Id: mailboxID, Name: name, Role: mailbusv1.MailboxRole(role)}
	t.mailboxRefs[id] = r
	return r, nil
}

// remember records a mailbox just created or updated and returns it as an
// event names it.
func (t *tx) remember(mb *mailbusv1.Mailbox) *mailbusv1.MailboxRef {
	r := mailboxRefOf(mb)
	if id, err := parseID("mailbox_id", mb.GetId()); err == nil {
		t.mailboxRefs[id] = r
	}
	return r
}

// mailboxRefOf is a mailbox as an event names it.
func mailboxRefOf(mb *mailbusv1.Mailbox) *mailbusv1.MailboxRef {
	return &mailbusv1.MailboxRef{Id: mb.GetId(), Name: mb.GetName(), Role: mb.GetRole()}
}

// eventAttachments is the attachment list of a message.created event, cut
// to the bounds above, and how many attachments it leaves out. Part ids are
// kept whole (a cut one would name another part); mailmsg's nesting bound
// keeps them short.
func eventAttachments(atts []*mailbusv1.Attachment) ([]*mailbusv1.Attachment, uint32) {
	var omitted uint32
	if len(atts) > maxEventAttachments {
		omitted = uint32(len(atts) - maxEventAttachments)
		atts = atts[:maxEventAttachments]
	}
	out := make([]*mailbusv1.Attachment, len(atts))
	for i, a := range atts {
		out[i] = &mailbusv1.Attachment{
			PartId:      a.PartId, // short: mailmsg bounds the nesting
			Filename:    cutUTF8(a.Filename, maxEventAttachmentString),
			ContentType: cutUTF8(a.ContentType, maxEventAttachmentString),
			Size:        a.Size,
			ContentId:   cutUTF8(a.ContentId, maxEventAttachmentString),
			Inline:      a.Inline,
		}
	}
	return out, omitted
}

// cutUTF8 cuts s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

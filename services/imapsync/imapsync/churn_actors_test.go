package imapsync_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// flagChange returns the flags to add and remove for a draw.
func flagChange(d churnDraw) (add, remove []string) {
	if d.add {
		return []string{d.flag}, nil
	}
	return nil, []string{d.flag}
}

// otherFolder is the drawn folder, or the next one when the message is
// there already.
func otherFolder(d churnDraw, from string) string {
	if d.folder != from {
		return d.folder
	}
	return churnFolders[(slices.Index(churnFolders, from)+1)%len(churnFolders)]
}

// deviceChange changes the target through the store's API, as the device
// sees it there.
func (c *churn) deviceChange(d churnDraw, target string) string {
	msgs := c.storeMessages()[target]
	if len(msgs) == 0 {
		c.last = target
		return "not in the store"
	}
	m := msgs[0]
	const device = "churn-device"
	var what string
	var err error
	switch d.kind {
	case devFlags:
		add, remove := flagChange(d)
		what = fmt.Sprintf("device: flags +%v -%v on %s in %s (was %v)", add, remove, m.id, m.folder, m.flags)
		_, err = c.dev.UpdateFlags(c.ctx, &mailbusv1.UpdateFlagsRequest{AccountId: c.acct, MessageIds: []string{m.id}, Add: add, Remove: remove, DeviceId: device})
	case devMove:
		to := otherFolder(d, m.folder)
		what = fmt.Sprintf("device: move %s from %s to %s", m.id, m.folder, to)
		_, err = c.dev.MoveMessages(c.ctx, &mailbusv1.MoveMessagesRequest{AccountId: c.acct, MessageIds: []string{m.id}, ToMailboxId: c.mailboxIDs[to], DeviceId: device})
	case devDelete:
		what = fmt.Sprintf("device: delete %s in %s", m.id, m.folder)
		c.mayBeGone[target] = true
		_, err = c.dev.DeleteMessages(c.ctx, &mailbusv1.DeleteMessagesRequest{AccountId: c.acct, MessageIds: []string{m.id}, DeviceId: device})
	}
	return c.deviceOutcome(target, what, err)
}

// deviceOutcome records a device call's result: a message gone meanwhile
// (NOT_FOUND) is part of the churn; an internal error fails the test.
func (c *churn) deviceOutcome(target, what string, err error) string {
	switch code := status.Code(err); code {
	case codes.OK:
		c.record(target, what)
		return "ok"
	case codes.NotFound, codes.FailedPrecondition:
		c.record(target, what+": "+err.Error())
		return strings.ToLower(code.String()) + ": " + err.Error()
	default:
		c.t.Errorf("step %d, %s: %v", c.steps, what, err)
		return "error: " + err.Error()
	}
}

func (c *churn) deviceAppend(d churnDraw) string {
	raw := c.newMessage()
	target := c.pool[len(c.pool)-1]
	var flags []string
	if d.add {
		flags = []string{d.flag}
	}
	what := fmt.Sprintf("device: append to %s with %v", d.folder, flags)
	_, err := c.dev.AppendMessage(c.ctx, &mailbusv1.AppendMessageRequest{MailboxId: c.mailboxIDs[d.folder], Raw: raw, Flags: flags, DeviceId: "churn-device"})
	return c.deviceOutcome(target, what, err)
}

// thirdPartyChange changes the target on the server, where the third
// party sees it.
func (c *churn) thirdPartyChange(d churnDraw, target string) string {
	msgs := c.serverMessages()[target]
	if len(msgs) == 0 {
		c.last = target
		return "not on the server"
	}
	m := msgs[0]
	if _, err := c.tp.Select(m.folder, nil).Wait(); err != nil {
		c.t.Fatalf("step %d: third party: select %s: %v", c.steps, m.folder, err)
	}
	uids := imap.UIDSetNum(imap.UID(m.uid))
	var what string
	var err error
	switch d.kind {
	case tpFlags:
		add, remove := flagChange(d)
		op, fl := imap.StoreFlagsAdd, add
		if remove != nil {
			op, fl = imap.StoreFlagsDel, remove
		}
		what = fmt.Sprintf("third party: flags +%v -%v on %s UID %d (was %v)", add, remove, m.folder, m.uid, m.flags)
		err = c.tp.Store(uids, &imap.StoreFlags{Op: op, Silent: true, Flags: toIMAPFlags(fl)}, nil).Close()
	case tpMove:
		to := otherFolder(d, m.folder)
		what = fmt.Sprintf("third party: move %s UID %d to %s", m.folder, m.uid, to)
		_, err = c.tp.Move(uids, to).Wait()
	case tpExpunge:
		what = fmt.Sprintf("third party: expunge %s UID %d", m.folder, m.uid)
		c.mayBeGone[target] = true
		if err = c.tp.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err == nil {
			err = c.tp.UIDExpunge(uids).Close()
		}
	}
	return c.thirdPartyOutcome(target, what, err)
}

// thirdPartyOutcome records an IMAP command's result: a NO (the message
// went meanwhile) is part of the churn; a broken connection fails.
func (c *churn) thirdPartyOutcome(target, what string, err error) string {
	var ie *imap.Error
	switch {
	case err == nil:
		c.record(target, what)
		return "ok"
	case errors.As(err, &ie):
		c.record(target, what+": "+err.Error())
		return "refused: " + err.Error()
	default:
		c.t.Fatalf("step %d, %s: %v", c.steps, what, err)
		return ""
	}
}

func (c *churn) thirdPartyNew(d churnDraw) string {
	raw := c.newMessage()
	target := c.pool[len(c.pool)-1]
	var flags []string
	if d.add && d.flag != "$Important" {
		flags = []string{d.flag}
	}
	if d.kind == tpDeliver {
		if err := c.dc.Deliver("alice", "INBOX", raw, flags...); err != nil {
			c.t.Fatal(err)
		}
		c.record(target, fmt.Sprintf("new mail in INBOX with %v", flags))
		return "ok"
	}
	what := fmt.Sprintf("third party: append to %s with %v", d.folder, flags)
	cmd := c.tp.Append(d.folder, int64(len(raw)), &imap.AppendOptions{Flags: toIMAPFlags(flags)})
	_, err := cmd.Write(raw)
	if err == nil {
		err = cmd.Close()
	}
	if err == nil {
		_, err = cmd.Wait()
	}
	return c.thirdPartyOutcome(target, what, err)
}

func toIMAPFlags(fl []string) []imap.Flag {
	out := make([]imap.Flag, len(fl))
	for i, f := range fl {
		out[i] = imap.Flag(f)
	}
	return out
}

package imapsync

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/mailboxname"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// roles maps RFC 6154 special-use attributes to mailbox roles.
var roles = map[imap.MailboxAttr]mailbusv1.MailboxRole{
	imap.MailboxAttrSent:    mailbusv1.MailboxRole_MAILBOX_ROLE_SENT,
	imap.MailboxAttrDrafts:  mailbusv1.MailboxRole_MAILBOX_ROLE_DRAFTS,
	imap.MailboxAttrTrash:   mailbusv1.MailboxRole_MAILBOX_ROLE_TRASH,
	imap.MailboxAttrJunk:    mailbusv1.MailboxRole_MAILBOX_ROLE_JUNK,
	imap.MailboxAttrArchive: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE,
	imap.MailboxAttrAll:     mailbusv1.MailboxRole_MAILBOX_ROLE_ALL,
	imap.MailboxAttrFlagged: mailbusv1.MailboxRole_MAILBOX_ROLE_FLAGGED,
}

// matchPattern matches a mailbox name against a LIST-style pattern: "*"
// matches anything, "%" anything but the hierarchy delimiter. INBOX is
// case-insensitive.
//
// It runs in O(len(pattern)*len(name)) time and O(len(name)) memory: a
// backtracking matcher is exponential in the number of wildcards
// ("*a*a*a*a*a*a*a*b" against 40 "a"s took seconds per folder), and
// patterns are account input.
func matchPattern(pattern, name, delim string) bool {
	if strings.EqualFold(pattern, "INBOX") && strings.EqualFold(name, "INBOX") {
		return true
	}
	// next[j] is whether pattern[i+1:] matches name[j:]; cur[j] the same
	// for pattern[i:]. Rows are filled from the end of the pattern.
	next := make([]bool, len(name)+1)
	cur := make([]bool, len(name)+1)
	next[len(name)] = true
	for i := len(pattern) - 1; i >= 0; i-- {
		p := pattern[i]
		for j := len(name); j >= 0; j-- {
			more := j < len(name)
			switch p {
			case '*':
				cur[j] = next[j] || (more && cur[j+1])
			case '%':
				cur[j] = next[j] || (more && (delim == "" || !strings.HasPrefix(name[j:], delim)) && cur[j+1])
			default:
				cur[j] = more && name[j] == p && next[j+1]
			}
		}
		next, cur = cur, next
	}
	return next[0]
}

// errTooManyFolders is a LIST longer than Config.MaxFolders.
var errTooManyFolders = errors.New("too many folders (imapsync MaxFolders)")

// wanted applies the account's include and exclude patterns. INBOX is
// always synced.
func (w *account) wanted(name, delim string) bool {
	if strings.EqualFold(name, "INBOX") {
		return true
	}
	in := len(w.a.FolderInclude) == 0
	for _, p := range w.a.FolderInclude {
		if matchPattern(p, name, delim) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range w.a.FolderExclude {
		if matchPattern(p, name, delim) {
			return false
		}
	}
	return true
}

// syncFolderList lists the server's folders, declares the wanted ones to
// the store, and applies folders renamed or deleted upstream. A folder the
// store knows (it has a UIDVALIDITY) but the server no longer lists is
// renamed when a new folder has the same UIDVALIDITY, else deleted; never
// while a write-back is pending (it may be a device's folder change not yet
// applied).
func (w *account) syncFolderList(ctx context.Context) error {
	w.relist = false
	list, tooMany, err := w.work.List(ctx, w.s.cfg.MaxFolders)
	if err != nil {
		return fmt.Errorf("imapsync: folder list: %w", err)
	}
	if tooMany {
		return imapconn.Permanent(fmt.Sprintf("the server lists more than %d folders", w.s.cfg.MaxFolders), errTooManyFolders)
	}
	var ups []*mailbusv1.UpstreamMailbox
	onServer := map[string]bool{}
	for _, d := range list {
		name := d.Mailbox
		if strings.EqualFold(name, "INBOX") {
			name = "INBOX"
		}
		delim := ""
		if d.Delim != 0 {
			delim = string(d.Delim)
		}
		onServer[name] = true
		skip := false
		var role mailbusv1.MailboxRole
		for _, at := range d.Attrs {
			switch at {
			case imap.MailboxAttrNoSelect, imap.MailboxAttrNonExistent:
				skip = true
			}
			if r, ok := roles[at]; ok {
				role = r
			}
		}
		if skip || !w.wanted(name, delim) {
			continue
		}
		if err := mailboxname.CheckLimits(name, delim); err != nil {
			// The store refuses such a name, and with it the whole
			// list: the folder is left out, the rest syncs. It stays
			// in onServer, so a copy the store has is not deleted.
			if !w.overLimit[name] {
				w.overLimit[name] = true
				w.log.Warn("folder not synced: its name is beyond the store's limits", "folder", name, "reason", err)
			}
			continue
		}
		ups = append(ups, &mailbusv1.UpstreamMailbox{Name: name, Delimiter: delim, Role: role})
	}

	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	cur, err := w.st.ingest.ListMailboxSyncStates(sctx, &mailbusv1.ListMailboxSyncStatesRequest{AccountId: w.a.Id})
	if err != nil {
		return fmt.Errorf("imapsync: list mailboxes: %w", err)
	}
	inStore := map[string]*mailbusv1.MailboxSyncState{}
	var gone []*mailbusv1.MailboxSyncState
	for _, m := range cur.Mailboxes {
		inStore[m.Mailbox.Name] = m
		if !onServer[m.Mailbox.Name] && !m.Mailbox.LocalOnly && m.Uidvalidity != 0 && m.Mailbox.Role != mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX {
			gone = append(gone, m)
		}
	}
	if len(gone) > 0 {
		pending, err := w.st.ingest.ListPendingWriteBacks(sctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: w.a.Id, Max: 1})
		if err != nil {
			return fmt.Errorf("imapsync: pending write-backs: %w", err)
		}
		if len(pending.Writebacks) > 0 {
			gone = nil
			w.relist = true
		}
	}
	var changes []*mailbusv1.UpstreamChange
	for _, g := range gone {
		renamed := ""
		for _, u := range ups {
			if inStore[u.Name] != nil {
				continue
			}
			uv, err := w.work.UIDValidity(ctx, u.Name)
			if err != nil && !imapconn.IsNo(err) {
				return fmt.Errorf("imapsync: folder list: %w", err)
			}
			if err == nil && uv == g.Uidvalidity {
				renamed = u.Name
				break
			}
		}
		if renamed != "" {
			w.log.Info("folder renamed upstream", "from", g.Mailbox.Name, "to", renamed)
			changes = append(changes, &mailbusv1.UpstreamChange{Change: &mailbusv1.UpstreamChange_MailboxRename{MailboxRename: &mailbusv1.UpstreamMailboxRename{MailboxId: g.Mailbox.Id, NewName: renamed}}})
			inStore[renamed] = g
			continue
		}
		w.log.Info("folder deleted upstream", "folder", g.Mailbox.Name)
		changes = append(changes, &mailbusv1.UpstreamChange{Change: &mailbusv1.UpstreamChange_MailboxDelete{MailboxDelete: &mailbusv1.UpstreamMailboxDelete{MailboxId: g.Mailbox.Id}}})
	}
	if len(changes) > 0 {
		if _, err := w.st.ingest.ApplyUpstreamChanges(sctx, &mailbusv1.ApplyUpstreamChangesRequest{AccountId: w.a.Id, Changes: changes, LeaseToken: w.token}); err != nil {
			return fmt.Errorf("imapsync: apply folder changes: %w", err)
		}
	}
	resp, err := w.st.ingest.UpsertMailboxes(sctx, &mailbusv1.UpsertMailboxesRequest{AccountId: w.a.Id, Mailboxes: ups, LeaseToken: w.token})
	if err != nil {
		return fmt.Errorf("imapsync: upsert mailboxes: %w", err)
	}
	old := w.folders
	w.folders = map[string]*folder{}
	for _, m := range resp.Mailboxes {
		f := &folder{name: m.Mailbox.Name, id: m.Mailbox.Id, role: m.Mailbox.Role, st: m}
		if o := old[f.name]; o != nil && o.id == f.id {
			f.known, f.recheck, f.absent = o.known, o.recheck, o.absent
		}
		w.folders[f.name] = f
	}
	w.fresh.setFolders(w.folderNames())
	return nil
}

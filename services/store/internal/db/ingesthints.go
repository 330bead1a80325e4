package db

import (
	"context"
	"fmt"
	"strconv"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// ingestHints are read once per ingest batch, in its transaction after its
// accounts are locked, so that each message skips the lookups that would
// find nothing: a few queries per batch instead of three per message
// (round trips on PostgreSQL, statement runs on SQLite). They only ever
// say "certainly not there"; anything else is looked up as before.
type ingestHints struct {
	// absent are the upstream identities (identityKey) stored neither as
	// a message nor as a POP3 tombstone when the batch began, and not
	// inserted by it since.
	absent map[string]bool
	// echoes are, per mailbox, those of the batch's body hashes that
	// belong to messages that may be waiting for their upstream echo (a
	// mailbox not in the map: not read). Ingest only removes messages from
	// these sets, never adds to them.
	echoes map[int64]map[string]bool
	// mailboxAccount caches the account of each mailbox the batch names,
	// inbox the inbox of each POP3 account.
	mailboxAccount map[int64]string
	inbox          map[int64]int64
}

// consumeAbsent reports whether the identity was absent when the batch
// began, and forgets it: once a message of the batch had it, it may exist.
func (h *ingestHints) consumeAbsent(key string) bool {
	if h == nil || !h.absent[key] {
		return false
	}
	delete(h.absent, key)
	return true
}

// mailboxAccount returns the account id of a mailbox.
func (t *tx) mailboxAccount(ctx context.Context, h *ingestHints, mailbox int64) (string, error) {
	if h != nil {
		if acct, ok := h.mailboxAccount[mailbox]; ok {
			return acct, nil
		}
	}
	mb, err := t.mailboxByID(ctx, mailbox)
	if err != nil {
		return "", err
	}
	if h != nil {
		h.mailboxAccount[mailbox] = mb.Mailbox.AccountId
	}
	return mb.Mailbox.AccountId, nil
}

// pop3Inbox returns the inbox of a POP3 account.
func (t *tx) pop3Inbox(ctx context.Context, h *ingestHints, acct int64) (int64, error) {
	if h != nil {
		if id, ok := h.inbox[acct]; ok {
			return id, nil
		}
	}
	var id int64
	if err := t.queryRow(ctx, `SELECT id FROM mailboxes WHERE account_id = ? AND role = ?`, acct, int(mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX)).Scan(&id); err != nil {
		return 0, fmt.Errorf("db: POP3 account %d has no inbox: %w", acct, err)
	}
	if h != nil {
		h.inbox[acct] = id
	}
	return id, nil
}

// The lookups by IMAP identity of ingest. "uid > 0" lets SQLite use the
// partial index messages_imap_identity (see messageByUpstreamQuery).
const ingestIdentityQuery = `SELECT id FROM messages WHERE up_mailbox_id = ? AND uidvalidity = ? AND uid = ? AND uid > 0`

func ingestIdentitiesQuery(n int) string {
	return `SELECT uid FROM messages WHERE up_mailbox_id = ? AND uidvalidity = ? AND uid IN (` + placeholders(n) + `) AND uid > 0`
}

func imapKey(mailbox int64, uidvalidity, uid uint32) string {
	return "i" + strconv.FormatInt(mailbox, 10) + "/" + strconv.FormatUint(uint64(uidvalidity), 10) + "/" + strconv.FormatUint(uint64(uid), 10)
}

func pop3Key(acct int64, uidl string) string {
	return "p" + strconv.FormatInt(acct, 10) + "/" + uidl
}

// readIngestHints locks the batch's accounts and reads which upstream
// identities of the batch are absent.
func (t *tx) readIngestHints(ctx context.Context, preps []*prepared) (*ingestHints, error) {
	h := &ingestHints{absent: map[string]bool{}, echoes: map[int64]map[string]bool{}, mailboxAccount: map[int64]string{}, inbox: map[int64]int64{}}
	type imapGroup struct {
		mailbox     int64
		uidvalidity uint32
	}
	imapUIDs := map[imapGroup][]any{}
	imapHashes := map[int64][]any{}
	pop3UIDLs := map[int64][]any{}
	for _, p := range preps {
		if p == nil {
			continue
		}
		acct, err := parseID("meta.account_id", p.item.Meta.AccountId)
		if err != nil {
			continue
		}
		a, err := t.lock(ctx, acct)
		if err != nil {
			// Reported per message by ingestOne.
			continue
		}
		up := p.item.Meta.Upstream
		switch a.protocol {
		case mailbusv1.Protocol_PROTOCOL_POP3:
			if up.GetUidl() != "" {
				pop3UIDLs[acct] = append(pop3UIDLs[acct], up.GetUidl())
			}
		default:
			mb, err := strconv.ParseInt(up.GetMailboxId(), 10, 64)
			if err != nil || up.GetUid() == 0 || up.GetUidvalidity() == 0 {
				continue
			}
			g := imapGroup{mb, up.GetUidvalidity()}
			imapUIDs[g] = append(imapUIDs[g], int64(up.GetUid()))
			imapHashes[mb] = append(imapHashes[mb], p.hash)
		}
	}
	for g, uids := range imapUIDs {
		present, err := t.presentStrings(ctx, ingestIdentitiesQuery(len(uids)), append([]any{g.mailbox, int64(g.uidvalidity)}, uids...))
		if err != nil {
			return nil, err
		}
		for _, u := range uids {
			if s := strconv.FormatInt(u.(int64), 10); !present[s] {
				h.absent[imapKey(g.mailbox, g.uidvalidity, uint32(u.(int64)))] = true
			}
		}
	}
	for mb, hashes := range imapHashes {
		set, err := t.presentStrings(ctx, echoCandidatesQuery(len(hashes)), append(hashes, mb))
		if err != nil {
			return nil, err
		}
		h.echoes[mb] = set
	}
	for acct, uidls := range pop3UIDLs {
		args := append([]any{acct}, uidls...)
		present, err := t.presentStrings(ctx, `SELECT uidl FROM messages WHERE account_id = ? AND uidl IN (`+placeholders(len(uidls))+`)`, args)
		if err != nil {
			return nil, err
		}
		gone, err := t.presentStrings(ctx, `SELECT uidl FROM uidl_tombstones WHERE account_id = ? AND uidl IN (`+placeholders(len(uidls))+`)`, args)
		if err != nil {
			return nil, err
		}
		for _, u := range uidls {
			if s := u.(string); !present[s] && !gone[s] {
				h.absent[pop3Key(acct, s)] = true
			}
		}
	}
	return h, nil
}

// presentStrings runs a one-column query and returns its values as a set.
func (t *tx) presentStrings(ctx context.Context, q string, args []any) (map[string]bool, error) {
	rows, err := t.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("db: ingest lookup: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("db: ingest lookup: %w", err)
		}
		out[s] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: ingest lookup: %w", err)
	}
	return out, nil
}

// echoCandidatesQuery finds, among n body hashes, those of messages of a
// mailbox that may be waiting for their upstream echo, by the blob index:
// a mailbox may hold many messages, a batch has few hashes. The unary plus
// keeps SQLite (which has no statistics) from choosing the mailbox index.
func echoCandidatesQuery(n int) string {
	return `SELECT blob_hash FROM messages WHERE blob_hash IN (` + placeholders(n) + `) AND +mailbox_id = ? AND (pending_writebacks > 0 OR awaiting_placement = 1) AND (uid = 0 OR up_mailbox_id <> mailbox_id)`
}

// mayBeEcho reports whether a message of the mailbox with this body may be
// the upstream echo of a device's move or append: true unless the batch's
// hints say it is not.
func (h *ingestHints) mayBeEcho(mailbox int64, hash string) bool {
	if h == nil {
		return true
	}
	set, ok := h.echoes[mailbox]
	return !ok || set[hash]
}

package imapsync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// rebind runs when a folder's UIDVALIDITY changed: it matches the server's
// messages to the stored ones by (Message-ID, RFC822.SIZE, INTERNALDATE),
// fetching only those headers, and gives each match its new identity with
// RebindMessages (no event, no body fetched). Only keys unique on both
// sides count, and only messages with a Message-ID; the rest is fetched
// by the resync and the unmatched stored messages are expunged at its end
// (decision 0006).
func (w *account) rebind(ctx context.Context, f *folder, sel *imap.SelectData) error {
	if sel.NumMessages == 0 {
		return nil
	}
	// Every store call (the listing stream, each page, each chunk of
	// placements) has a deadline of its own: a big folder takes many.
	lctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	stream, err := w.st.ingest.ListUpstreamIds(lctx, &mailbusv1.ListUpstreamIdsRequest{AccountId: w.a.Id, MailboxId: f.id})
	if err != nil {
		return fmt.Errorf("imapsync: list upstream ids: %w", err)
	}
	old := map[string]bool{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("imapsync: list upstream ids: %w", err)
		}
		for _, m := range resp.Messages {
			if m.GetUpstream().GetUidvalidity() != sel.UIDValidity {
				old[m.MessageId] = true
			}
		}
	}
	if len(old) == 0 {
		return nil
	}
	stored := map[string][]string{} // key -> message ids
	token := ""
	for {
		pctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		resp, err := w.st.mailboxes.ListMessages(pctx, &mailbusv1.ListMessagesRequest{MailboxId: f.id, PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			return fmt.Errorf("imapsync: list messages: %w", err)
		}
		for _, m := range resp.Messages {
			id := normMessageID(m.GetEnvelope().GetMessageId())
			if !old[m.Id] || id == "" || m.InternalDate == nil {
				continue
			}
			k := matchKey(id, int64(m.Size), m.InternalDate.AsTime().Unix())
			stored[k] = append(stored[k], m.Id)
		}
		if resp.NextPageToken == "" {
			break
		}
		token = resp.NextPageToken
	}
	server := map[string][]uint32{}
	err = w.work.FetchHeaderFields(ctx, f.name, []string{"Message-ID"}, func(m imapconn.HeaderFields) {
		id := normMessageID(headerMessageID(m.Header))
		if id == "" || m.UID == 0 {
			return
		}
		k := matchKey(id, m.Size, m.InternalDate.Unix())
		server[k] = append(server[k], m.UID)
	})
	if err != nil {
		return fmt.Errorf("imapsync: rebind: %w", err)
	}
	var pls []*mailbusv1.UpstreamPlacement
	for k, ids := range stored {
		uids := server[k]
		if len(ids) != 1 || len(uids) != 1 {
			continue
		}
		pls = append(pls, &mailbusv1.UpstreamPlacement{MessageId: ids[0], Upstream: &mailbusv1.UpstreamId{MailboxId: f.id, Uidvalidity: sel.UIDValidity, Uid: uids[0]}})
	}
	var n uint32
	for len(pls) > 0 {
		c := min(len(pls), w.s.cfg.RebindChunk)
		rctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		resp, err := w.st.ingest.RebindMessages(rctx, &mailbusv1.RebindMessagesRequest{AccountId: w.a.Id, Placements: pls[:c], LeaseToken: w.token})
		cancel()
		if err != nil {
			return fmt.Errorf("imapsync: rebind messages: %w", err)
		}
		n += resp.Rebound
		pls = pls[c:]
	}
	w.log.Info("messages matched after the UIDVALIDITY change", "folder", f.name, "rebound", n, "stored", len(old))
	return nil
}

func matchKey(messageID string, size, unix int64) string {
	return fmt.Sprintf("%s\x00%d\x00%d", messageID, size, unix)
}

func normMessageID(s string) string {
	return strings.Trim(strings.TrimSpace(s), "<>")
}

func headerMessageID(b []byte) string {
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(b, '\r', '\n')))).ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return ""
	}
	return h.Get("Message-Id")
}

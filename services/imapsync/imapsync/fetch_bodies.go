package imapsync

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ingest"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// fetchIngest fetches batches of UIDs of f on the work connection and
// streams them into the store (fetchBodies); onBatch runs, in order, once
// the store has committed a batch (the cursor moves only over durable
// messages). Then it records what the store answered in f.
func (w *account) fetchIngest(ctx context.Context, f *folder, batches [][]uint32, kind string, onBatch func([]uint32) error) error {
	if len(batches) == 0 {
		return nil
	}
	ref := mailboxRef{id: f.id, name: f.name, uidvalidity: f.st.Uidvalidity}
	results, sentFlags, err := w.fetchBodies(ctx, w.work, ref, batches, kind, onBatch, func(n int, bytes int64) bool { w.fetched(ctx, n, bytes); return true })
	if err != nil {
		return err
	}
	for _, r := range results {
		if r.Error != "" {
			w.log.Warn("store refused a message; left on the server", "folder", f.name, "uid", r.GetUpstream().GetUid(), "err", r.Error)
			if r.GetUpstream().GetUidvalidity() == f.st.Uidvalidity {
				f.markAbsent(r.GetUpstream().GetUid())
			}
			continue
		}
		if f.known != nil && r.GetUpstream().GetUidvalidity() == f.st.Uidvalidity {
			u := r.GetUpstream().GetUid()
			f.known[u] = &known{id: r.MessageId, flags: sentFlags[u]}
			if !r.Created {
				// Stored before (the copy of a device's move or append,
				// adopted while that change is in flight): the store kept
				// its own flags, not these. The delta reads them again and
				// sends them.
				// In an initial sync the copy may be older than the
				// cursor: until then a new session reads every flag.
				held := f.st.SyncedHighestmodseq
				if !f.st.InitialSyncDone {
					held = 0
				}
				f.addRecheck(u, held)
			}
		}
	}
	return nil
}

// mailboxRef names a mailbox for fetchBodies.
type mailboxRef struct {
	id, name    string
	uidvalidity uint32
}

// fetchBodies fetches batches of UIDs (BODY.PEEK[], FLAGS, INTERNALDATE,
// RFC822.SIZE) of the mailbox selected on c and streams each body into
// the store as it arrives (pkg/ingest), while the store commits the
// previous batch. onBatch (may be nil) runs, in order, in the stream's
// receiver once the store has committed a batch; fetched runs after each
// batch is sent, and false from it ends the fetch there (the batches
// sent are committed, the others left). It returns the store's results and the flags sent, by
// UID. It touches no account or folder state: the prefetcher runs it on
// its own connection.
func (w *account) fetchBodies(ctx context.Context, c *imapconn.Conn, mb mailboxRef, batches [][]uint32, kind string, onBatch func([]uint32) error, fetched func(n int, bytes int64) bool) ([]*mailbusv1.IngestResult, map[uint32][]string, error) {
	type boundary struct {
		count int // messages sent up to the end of the batch
		uids  []uint32
	}
	var (
		mu        sync.Mutex
		bounds    []boundary
		acked     int
		sentFlags = map[uint32][]string{}
	)
	// The stream's receiver moves the cursor as batches are committed.
	onResults := func(rs []*mailbusv1.IngestResult) error {
		mu.Lock()
		acked += len(rs)
		var due []boundary
		for len(bounds) > 0 && bounds[0].count <= acked {
			due = append(due, bounds[0])
			bounds = bounds[1:]
		}
		mu.Unlock()
		for _, b := range due {
			if onBatch == nil {
				continue
			}
			if err := onBatch(b.uids); err != nil {
				return err
			}
		}
		return nil
	}
	ing, err := w.st.stream.Open(ctx, ingest.Options{OnResults: onResults})
	if err != nil {
		return nil, nil, fmt.Errorf("imapsync: %w", err)
	}
	defer ing.Close()
	body := &imap.FetchItemBodySection{Peek: true}
	opts := &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{body}}
	err = c.Do(ctx, func(g *imapconn.Guard) error {
		for _, b := range batches {
			var batchBytes int64
			err := c.FetchEach(g, imapconn.UIDs(b), opts, func(m *imapclient.FetchMessageData) error {
				fm := fetchedMessage{mb: mb, token: w.token, account: w.a.Id, flags: normFlags(flagStrings(nil))}
				n, sent, err := fm.ingest(g, m, ing, w.s.cfg.MaxMessageSize)
				if err != nil || !sent {
					return err
				}
				w.s.metrics.messages.WithLabelValues(kind).Inc()
				w.s.metrics.bytes.Add(float64(n))
				batchBytes += n
				mu.Lock()
				sentFlags[fm.uid] = fm.flags
				mu.Unlock()
				return nil
			})
			if err != nil {
				return err
			}
			mu.Lock()
			bounds = append(bounds, boundary{count: ing.Ended(), uids: b})
			mu.Unlock()
			if err := ing.Flush(); err != nil {
				return err
			}
			if !fetched(len(b), batchBytes) {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("imapsync: fetch %s: %w", mb.name, err)
	}
	if err := ing.Finish(); err != nil {
		return nil, nil, fmt.Errorf("imapsync: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bounds) != 0 {
		return nil, nil, fmt.Errorf("imapsync: ingest: %d of %d messages acknowledged", acked, ing.Ended())
	}
	return ing.Take(), sentFlags, nil
}

// fetchedMessage is one message of a FETCH response on its way to the
// store.
type fetchedMessage struct {
	mb      mailboxRef
	account string
	token   uint64

	uid   uint32
	flags []string
	date  *timestamppb.Timestamp
	size  int64
	seen  metaItems // the items UID, FLAGS, INTERNALDATE seen
}

// metaItems is a set of the FETCH items a message's meta needs: the body
// streams only once all three came, whatever else (a repeated item) did.
type metaItems uint8

const (
	seenUID metaItems = 1 << iota
	seenFlags
	seenDate
	seenMeta = seenUID | seenFlags | seenDate
)

// ingest reads one message of a FETCH response and sends it on the
// stream. The body goes to the store as it arrives when the server sent
// UID, FLAGS and INTERNALDATE before it (Dovecot, and servers generally,
// do); a body that comes before them is held until the message's items
// end. It returns the body's size and whether a message was sent (not for
// a response without UID or body).
func (fm *fetchedMessage) ingest(g *imapconn.Guard, m *imapclient.FetchMessageData, ing *ingest.Stream, limit int64) (int64, bool, error) {
	var (
		held []byte
		got  bool
		n    int64
	)
	for it := m.Next(); it != nil; it = m.Next() {
		switch it := it.(type) {
		case imapclient.FetchItemDataUID:
			fm.uid = uint32(it.UID)
			fm.seen |= seenUID
		case imapclient.FetchItemDataFlags:
			fm.flags = normFlags(flagStrings(it.Flags))
			fm.seen |= seenFlags
		case imapclient.FetchItemDataInternalDate:
			fm.date = timestamppb.New(it.Time)
			fm.seen |= seenDate
		case imapclient.FetchItemDataRFC822Size:
			fm.size = it.Size
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil || got {
				continue
			}
			r, err := imapconn.Literal(g, it.Literal, it.Literal.Size(), limit)
			if err != nil {
				return 0, false, err
			}
			fm.size = max(fm.size, it.Literal.Size())
			got = true
			if fm.uid == 0 || fm.seen != seenMeta {
				if held, err = io.ReadAll(r); err != nil {
					return 0, false, err
				}
				continue
			}
			if n, err = ing.Send(fm.meta(), r); err != nil {
				return n, false, err
			}
			return n, true, drain(g, m, limit)
		}
	}
	if fm.uid == 0 || !got {
		return 0, false, nil
	}
	n, err := ing.Send(fm.meta(), bytes.NewReader(held))
	return n, err == nil, err
}

// drain reads the items after a message's body (none, from servers that
// send the body last); another literal is bounded as the body is.
func drain(g *imapconn.Guard, m *imapclient.FetchMessageData, limit int64) error {
	for it := m.Next(); it != nil; it = m.Next() {
		if bs, ok := it.(imapclient.FetchItemDataBodySection); ok && bs.Literal != nil {
			r, err := imapconn.Literal(g, bs.Literal, bs.Literal.Size(), limit)
			if err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (fm *fetchedMessage) meta() *mailbusv1.IngestMeta {
	return &mailbusv1.IngestMeta{
		AccountId: fm.account, Upstream: &mailbusv1.UpstreamId{MailboxId: fm.mb.id, Uidvalidity: fm.mb.uidvalidity, Uid: fm.uid},
		Flags: fm.flags, InternalDate: fm.date, Size: uint64(max(fm.size, 0)), LeaseToken: fm.token,
	}
}

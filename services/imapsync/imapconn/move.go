package imapconn

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2"
)

// MoveResult is what the server said of a move's copies (COPYUID, RFC
// 4315): the destination's UIDVALIDITY (0: it said nothing) and the UIDs
// of the source messages and of their copies, in the same order.
type MoveResult struct {
	UIDValidity  uint32
	Source, Dest imap.UIDSet
}

// UIDPair is a moved message's UID in the source and in the destination.
type UIDPair struct{ Source, Dest uint32 }

// Pairs maps the source UIDs to the destination's, in order; nil when
// the server gave no COPYUID or sets that do not pair up.
func (r *MoveResult) Pairs() []UIDPair {
	if r == nil || r.UIDValidity == 0 {
		return nil
	}
	src, _ := r.Source.Nums()
	dst, _ := r.Dest.Nums()
	if len(src) != len(dst) {
		return nil
	}
	out := make([]UIDPair, len(src))
	for i := range src {
		out[i] = UIDPair{uint32(src[i]), uint32(dst[i])}
	}
	return out
}

// AfterCopyError is a failure of the \Deleted STORE or the EXPUNGE of a
// move without MOVE: the COPY has reached the destination, and the
// messages are on the server twice.
type AfterCopyError struct{ Err error }

func (e *AfterCopyError) Error() string { return "after COPY: " + e.Err.Error() }
func (e *AfterCopyError) Unwrap() error { return e.Err }

// MoveUIDs moves the messages uids of the selected mailbox to the
// mailbox to with MOVE (RFC 6851), or without it with UID COPY and, only
// once the COPY is answered OK, UID STORE +FLAGS.SILENT \Deleted and UID
// EXPUNGE of exactly those UIDs (go-imap's own fallback pipelines the
// three commands without waiting for COPY, so a refused COPY would still
// expunge the messages). Without UIDPLUS a plain EXPUNGE is the only way
// to remove them. A failure after the COPY is an *AfterCopyError, and the
// result is then the COPY's.
func (c *Conn) MoveUIDs(ctx context.Context, uids []uint32, to string) (*MoveResult, error) {
	var r *MoveResult
	err := c.Do(ctx, func(*Guard) error {
		var err error
		r, err = c.move(UIDs(uids), to)
		return err
	})
	if err != nil {
		return r, fmt.Errorf("imapconn: move to %s: %w", to, err)
	}
	return r, nil
}

func (c *Conn) move(uids imap.UIDSet, to string) (*MoveResult, error) {
	if c.caps.Has(imap.CapMove) {
		d, err := c.c.Move(uids, to).Wait()
		if d == nil {
			return nil, err
		}
		r := &MoveResult{UIDValidity: d.UIDValidity}
		r.Source, _ = d.SourceUIDs.(imap.UIDSet)
		r.Dest, _ = d.DestUIDs.(imap.UIDSet)
		return r, err
	}
	d, err := c.c.Copy(uids, to).Wait()
	if err != nil {
		return nil, err
	}
	var r *MoveResult
	if d != nil {
		r = &MoveResult{UIDValidity: d.UIDValidity, Source: d.SourceUIDs, Dest: d.DestUIDs}
	}
	if err := c.expunge(uids); err != nil {
		return r, &AfterCopyError{Err: err}
	}
	return r, nil
}

// CanUndoCopy reports whether UndoCopy can remove the copies of r: the
// server named them (COPYUID) and expunges by UID (UIDPLUS).
func (c *Conn) CanUndoCopy(r *MoveResult) bool {
	return r != nil && len(r.Dest) > 0 && r.UIDValidity != 0 && c.caps.Has(imap.CapUIDPlus)
}

// UndoCopy removes the copies a move left in the mailbox to (see
// AfterCopyError): it selects to and, if its UIDVALIDITY is still the
// copies' (else a NO, as IsNo sees it), expunges exactly their UIDs.
// Call it only when CanUndoCopy says so. The mailbox to stays selected.
func (c *Conn) UndoCopy(ctx context.Context, to string, r *MoveResult) error {
	err := c.Do(ctx, func(*Guard) error {
		sel, err := c.c.Select(to, nil).Wait()
		if err != nil {
			return err
		}
		if sel.UIDValidity != r.UIDValidity {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "UIDVALIDITY of " + to + " changed"}
		}
		if err := c.c.Store(r.Dest, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			return err
		}
		return c.c.UIDExpunge(r.Dest).Close()
	})
	if err != nil {
		return fmt.Errorf("imapconn: remove the copies in %s: %w", to, err)
	}
	return nil
}

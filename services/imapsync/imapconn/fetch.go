package imapconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// SearchUIDs runs UID SEARCH on the selected mailbox.
func (c *Conn) SearchUIDs(ctx context.Context, criteria *imap.SearchCriteria) ([]uint32, error) {
	var uids []uint32
	err := c.Do(ctx, func(*Guard) error {
		d, err := c.c.UIDSearch(criteria, nil).Wait()
		if err != nil {
			return err
		}
		for _, u := range d.AllUIDs() {
			uids = append(uids, uint32(u))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("imapconn: UID SEARCH: %w", err)
	}
	return uids, nil
}

// ListUIDs lists, with UID FETCH (UID RFC822.SIZE), the UIDs from lo to
// hi (0: the last) of the selected mailbox (name is for errors), leaving
// out those skip says and, apart, those larger than limit: their bodies
// need never be fetched.
func (c *Conn) ListUIDs(ctx context.Context, name string, lo, hi uint32, skip func(uint32) bool, limit int64) (uids, large []uint32, err error) {
	err = c.Do(ctx, func(g *Guard) error {
		cmd := c.c.Fetch(imap.UIDSet{{Start: imap.UID(lo), Stop: imap.UID(hi)}}, &imap.FetchOptions{UID: true, RFC822Size: true})
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			g.Touch()
			b, err := m.Collect()
			if err != nil {
				cmd.Close()
				return err
			}
			u := uint32(b.UID)
			switch {
			case u == 0 || skip(u):
			case b.RFC822Size > limit:
				large = append(large, u)
			default:
				uids = append(uids, u)
			}
		}
		return cmd.Close()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("imapconn: UID FETCH RFC822.SIZE %s: %w", name, err)
	}
	return uids, large, nil
}

// FetchFlags reads the flags of the UIDs in set of the selected mailbox
// (name is for errors), only those changed since the mod-sequence
// changedSince when it is not 0 (CONDSTORE's CHANGEDSINCE), and calls
// each with every message's.
func (c *Conn) FetchFlags(ctx context.Context, name string, set imap.UIDSet, changedSince uint64, each func(uid uint32, flags []imap.Flag)) error {
	opts := &imap.FetchOptions{Flags: true, UID: true, ChangedSince: changedSince}
	err := c.Do(ctx, func(g *Guard) error {
		cmd := c.c.Fetch(set, opts)
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			g.Touch()
			b, err := m.Collect()
			if err != nil {
				cmd.Close()
				return err
			}
			each(uint32(b.UID), b.Flags)
		}
		return cmd.Close()
	})
	if err != nil {
		return fmt.Errorf("imapconn: FETCH FLAGS %s: %w", name, err)
	}
	return nil
}

// ErrLiteralTooLarge is a message literal above the size limit, announced
// by a server whose RFC822.SIZE said less (or sent beyond its announced
// size): it is not read.
var ErrLiteralTooLarge = errors.New("the server sent a message larger than the size limit, though its RFC822.SIZE was within it")

// minLiteralProgress is what a message literal must bring per timeout.
const minLiteralProgress = 1 << 10

// Literal returns a reader of a message literal of the announced size
// that moves the guard's deadline on as the literal arrives and fails
// with ErrLiteralTooLarge past limit. A literal that ends before its
// announced size (the server closed the connection in its middle: go-imap
// reads it through an io.LimitReader, which then reports io.EOF) fails
// with io.ErrUnexpectedEOF, so that a reader never takes a truncated body
// for a complete message. It holds nothing: the caller reads it in
// chunks.
func Literal(g *Guard, r io.Reader, size, limit int64) (io.Reader, error) {
	if size > limit {
		return nil, fmt.Errorf("imapconn: %w (%d bytes announced, limit %d)", ErrLiteralTooLarge, size, limit)
	}
	return &literalReader{g: g, r: r, size: size, limit: limit}, nil
}

type literalReader struct {
	g              *Guard
	r              io.Reader
	n, size, limit int64
	sinceTouch     int
}

func (l *literalReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if l.n += int64(n); l.n > l.limit {
		return 0, fmt.Errorf("imapconn: %w (more than %d bytes)", ErrLiteralTooLarge, l.limit)
	}
	// The deadline moves on per KiB, not per read: a server that drips
	// a few octets at a time times out as a silent one does.
	if l.sinceTouch += n; l.sinceTouch >= minLiteralProgress {
		l.g.Touch()
		l.sinceTouch = 0
	}
	if err == io.EOF && l.n < l.size {
		return n, fmt.Errorf("imapconn: message literal ended after %d of %d bytes: %w", l.n, l.size, io.ErrUnexpectedEOF)
	}
	return n, err
}

// HeaderFields is what FetchHeaderFields reads of a message.
type HeaderFields struct {
	UID          uint32
	Size         int64 // RFC822.SIZE
	InternalDate time.Time
	// Header holds the fields asked for, as the server sent them.
	Header []byte
}

// FetchHeaderFields reads the header fields named (BODY.PEEK[HEADER.FIELDS
// (...)]), with UID, RFC822.SIZE and INTERNALDATE, of every message of
// the selected mailbox (name is for errors), and calls each with every
// message's.
func (c *Conn) FetchHeaderFields(ctx context.Context, name string, fields []string, each func(HeaderFields)) error {
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: fields, Peek: true}
	err := c.Do(ctx, func(g *Guard) error {
		cmd := c.c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, RFC822Size: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{hdr}})
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			g.Touch()
			b, err := m.Collect()
			if err != nil {
				cmd.Close()
				return err
			}
			each(HeaderFields{UID: uint32(b.UID), Size: b.RFC822Size, InternalDate: b.InternalDate, Header: b.FindBodySection(hdr)})
		}
		return cmd.Close()
	})
	if err != nil {
		return fmt.Errorf("imapconn: FETCH header fields of %s: %w", name, err)
	}
	return nil
}

// FetchEach runs one UID FETCH of set on the selected mailbox within an
// operation (g is its guard, see Do) and calls each with every message
// as it arrives, moving the deadline on. One FETCH at a time: Dovecot
// runs pipelined FETCHes in parallel and interleaves their responses,
// and go-imap hands each message to its command's channel, so a second
// FETCH in flight could stall the reader behind the first. An error from
// each abandons the connection (Abandon: the rest of the response is not
// read) and is returned.
func (c *Conn) FetchEach(g *Guard, set imap.UIDSet, opts *imap.FetchOptions, each func(*imapclient.FetchMessageData) error) error {
	cmd := c.c.Fetch(set, opts)
	for m := cmd.Next(); m != nil; m = cmd.Next() {
		g.Touch()
		if err := each(m); err != nil {
			c.Abandon()
			return err
		}
	}
	return cmd.Close()
}

package pop3fetcher

import (
	"context"
	"errors"

	"github.com/mailbus/mailbus/pkg/pop3"
)

// syncWithoutUIDL identifies the messages of a server that has no UIDL
// (docs/decisions/0005-pop3-without-uidl.md):
//
//   - keep mode: by a hash of each message's header block (TOP n 0),
//     leaving out the fields mbox servers rewrite; one TOP per message and
//     pass, no body is downloaded for a known message;
//   - delete mode, or keep mode on a server without TOP either: by a hash
//     of the whole message, which is therefore downloaded (to a spool file)
//     before the fetcher knows whether the store has it. A collision means
//     identical content, so deleting "the stored one" never loses a byte.
//
// Repeated ids within one listing are numbered in server order (id, id-2,
// id-3 ...), so that copies of one message are stored as separate messages.
func (p *pass) syncWithoutUIDL(ctx context.Context, list []pop3.ListEntry) error {
	if !p.deleteMode() {
		ok, err := p.headerIDs(ctx, list)
		if err != nil {
			return err
		}
		if ok {
			p.res.Identity = IdentityHeaders
			return p.fetch(ctx)
		}
		p.log.Warn("server has neither UIDL nor TOP: every message is downloaded on every pass to tell new ones by content hash")
	}
	p.res.Identity = IdentityContent
	for _, e := range list {
		if e.Size > p.f.cfg.MaxMessageSize {
			p.tooLarge(e.Number, "", e.Size)
			continue
		}
		p.jobs = append(p.jobs, job{idx: len(p.jobs), num: e.Number, size: e.Size, listed: e.Size})
	}
	return p.fetch(ctx)
}

// headerIDs computes the header-hash id of every message. It returns false
// (and no error) when the server refuses TOP for the first message: it has
// no TOP.
func (p *pass) headerIDs(ctx context.Context, list []pop3.ListEntry) (bool, error) {
	p.step = "TOP"
	for i, e := range list {
		r, err := p.c.Top(ctx, e.Number, 0)
		if err != nil {
			var pe *pop3.Error
			if i == 0 && errors.As(err, &pe) && !pe.Temporary() {
				return false, nil
			}
			return false, err
		}
		base, err := headerID(r)
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, err
		}
		id := p.occ.id(base)
		if _, ok := p.known[id]; ok {
			p.res.Known++
			continue
		}
		if p.admit(e.Number, id, e.Size) {
			p.jobs = append(p.jobs, job{idx: len(p.jobs), num: e.Number, uidl: id, size: e.Size, listed: e.Size})
		}
	}
	return true, nil
}

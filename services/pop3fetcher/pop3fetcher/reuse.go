package pop3fetcher

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
)

// A UIDL the store already has is not proof that the server's message is
// the stored one: RFC 1939 (section 7) lets a server give a unique-id to a
// new message once the message that had it is gone, and in delete mode
// every fetched message is gone. docs/decisions/0013-pop3-uidl-reuse.md
// explains the rule this file implements:
//
//   - keep mode: a known UIDL is the stored message when the stored size
//     matches the LIST size (sameSize), or when a message stored under a
//     derived id of that UIDL matches it, or when the UIDL is a tombstone
//     (the message was deleted in the store). Otherwise the message is
//     downloaded and compared with the stored content hash.
//   - delete mode: a known UIDL not acknowledged in this pass is DELE'd
//     only when its downloaded octets hash to the content hash the store
//     has for it (or for its derived id). A size is no proof: messages
//     from one template often have the same size.
//
// A message that is not the stored one is stored under a derived id
// (derivedID), deterministic, so that a retried pass stores it once.

// storedID is what the store has under an upstream id (ListUpstreamIds).
type storedID struct {
	size int64
	hash string // SHA-256 of the stored octets, lowercase hex
	gone bool   // a tombstone: the message was deleted in the store
}

// derivedSep separates a UIDL from the content hash in a derived id.
const derivedSep = "#"

// derivedHashLen is how many hex digits of the SHA-256 a derived id keeps.
const derivedHashLen = 16

// maxUIDL is the store's limit on the length of a UIDL.
const maxUIDL = 70

// derivedID is the id of a message found under a UIDL (stored as id) that
// the store already has for another message: id, "#" and the first 16 hex
// digits of the SHA-256 of the message as retrieved (before any trimming,
// so that it does not depend on the configuration). An id too long for
// that (the store takes at most 70 octets) is first replaced by
// "x-uidl-" and its hash, as storeUIDL does for long UIDLs.
func derivedID(id string, sum [32]byte) string {
	return derivedBase(id) + derivedSep + hex.EncodeToString(sum[:])[:derivedHashLen]
}

func derivedBase(id string) string {
	if len(id)+len(derivedSep)+derivedHashLen > maxUIDL {
		return longUIDLPrefix + hashID(sha256.Sum256([]byte(id)))
	}
	return id
}

// splitDerived returns the base of a derived id, or false if id is not one
// (a server UIDL may look like one; that only matters in keep mode, see
// reusedKnown).
func splitDerived(id string) (string, bool) {
	i := len(id) - derivedHashLen - len(derivedSep)
	if i < 1 || id[i:i+len(derivedSep)] != derivedSep {
		return "", false
	}
	for _, c := range []byte(id[i+len(derivedSep):]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return id[:i], true
}

// sameSize reports whether a stored message of stored octets can be the
// server's message of LIST size listed. What the fetcher stores is the
// RETR body (the wire form with dot-stuffing undone): with a server whose
// LIST sizes are exact, that is listed octets, or listed+2 when the
// message has no final line break and the server appended CRLF. When the
// fetcher trims that CRLF (trimming), it stores listed octets in both
// cases, so only that size matches. A server with inexact sizes matches
// neither: its messages are checked by content.
func sameSize(stored, listed int64, trimming bool) bool {
	if stored == listed {
		return true
	}
	return !trimming && stored == listed+2
}

// reusedKnown reports, in keep mode, whether a message whose UIDL (id) the
// store has as rec is known without downloading it.
func (p *pass) reusedKnown(id string, rec storedID, listed int64) bool {
	if rec.gone {
		// Deleted in the store; in keep mode the message is normally still
		// on the server, and must not come back.
		return true
	}
	trimming := p.trimming()
	if sameSize(rec.size, listed, trimming) {
		return true
	}
	if p.mem.sameAs[id] == listed {
		return true // checked by content in an earlier pass
	}
	for _, d := range p.derived[derivedBase(id)] {
		if !d.gone && sameSize(d.size, listed, trimming) {
			return true
		}
	}
	return false
}

// checkReused reads a message whose UIDL the store has (job.reused) into
// the spool and decides what it is. It returns true when the message is
// the stored one (or one stored before under its derived id): it is then
// counted as known and, in delete mode, marked for DELE. Otherwise j.uidl
// becomes the derived id, j.size the octets read, and the message is to be
// stored from the spool.
func (p *pass) checkReused(j *job, r io.Reader) (known bool, err error) {
	sum, n, err := p.spoolOne(r)
	if err != nil {
		return false, err
	}
	rec := j.reused
	same := false
	if !rec.gone && rec.hash != "" {
		same = hex.EncodeToString(sum[:]) == rec.hash
		if !same {
			// Stored with the server's appended CRLF trimmed?
			trimmed, terr := p.spool.sumWithout2(n)
			if terr != nil {
				return false, terr
			}
			same = trimmed == rec.hash
		}
	}
	id := j.uidl
	if !same {
		j.uidl = derivedID(id, sum)
		_, same = p.known[j.uidl]
	}
	j.size = n
	if !same {
		p.log.Warn("the server reused a UIDL the store has for another message; storing the new message under a derived id",
			"number", j.num, "uidl", id, "id", j.uidl)
		return false, nil
	}
	if !p.deleteMode() {
		p.mem.sameAs[id] = j.listed
	}
	return true, nil
}

// sumWithout2 returns the SHA-256 (hex) of the spooled message of n octets
// without its last two octets when they are CRLF, or "" otherwise. The file
// is rewound.
func (s *spool) sumWithout2(n int64) (string, error) {
	if n < 2 {
		return "", nil
	}
	tail := make([]byte, 2)
	if _, err := s.f.ReadAt(tail, n-2); err != nil {
		return "", err
	}
	if !bytes.Equal(tail, []byte("\r\n")) {
		return "", nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.CopyN(h, s.f, n-2); err != nil {
		return "", err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

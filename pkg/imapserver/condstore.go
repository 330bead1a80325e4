package imapserver

// CONDSTORE and QRESYNC (RFC 7162 sections 3.1 and 3.2): added by mailbus to its fork of
// go-imap v2.0.0-beta.8's imapserver (see README.md).

import (
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/mailbus/mailbus/pkg/imapserver/internal/imapwire"
)

// SessionCondStore is a Session that offers CONDSTORE (RFC 7162 section
// 3.1). With it, and imap.CapCondStore in Options.Caps, the server
// announces CONDSTORE, accepts ENABLE CONDSTORE, SELECT/EXAMINE
// (CONDSTORE), the FETCH item MODSEQ and modifier (CHANGEDSINCE n), STORE
// (UNCHANGEDSINCE n), the SEARCH key MODSEQ and the STATUS item
// HIGHESTMODSEQ, and hands them to the session in the options. The
// session then:
//   - sets SelectData.HighestModSeq (0 announces NOMODSEQ: the mailbox has
//     no mod-sequences);
//   - in Fetch, writes MODSEQ (FetchResponseWriter.WriteModSeq) when
//     FetchOptions.ModSeq is set, and with a nonzero
//     FetchOptions.ChangedSince leaves out the messages whose mod-sequence
//     is not above it (the server sets ModSeq then too);
//   - in Search, matches SearchCriteria.ModSeq (mod-sequence at least the
//     value) and sets SearchData.ModSeq to the highest mod-sequence of
//     the messages found when the criteria have a MODSEQ key;
//   - in Status, fills StatusData.HighestModSeq;
//   - once CondStoreEnabled reports true, writes MODSEQ with UID in every
//     untagged FETCH it writes for a flag change: STORE's (also without
//     UNCHANGEDSINCE) and unsolicited ones
//     (UpdateWriter.WriteMessageFlagsModSeq).
type SessionCondStore interface {
	Session

	// StoreUnchangedSince is Store with (UNCHANGEDSINCE unchangedSince):
	// the messages whose mod-sequence is above unchangedSince are left as
	// they are and returned (sequence numbers or UIDs, as numSet has),
	// for the [MODIFIED] response code; the others are changed as Store
	// changes them. 0 is a valid unchangedSince (every message fails).
	StoreUnchangedSince(w *FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, unchangedSince uint64) (modified imap.NumSet, err error)
}

// condStoreAvailable reports whether the connection offers CONDSTORE.
func (c *Conn) condStoreAvailable() bool {
	_, ok := c.session.(SessionCondStore)
	return ok && c.server.options.caps().Has(imap.CapCondStore)
}

// enableCondStore records a CONDSTORE enabling command (RFC 7162 section
// 3.1: ENABLE CONDSTORE, SELECT/EXAMINE (CONDSTORE), FETCH MODSEQ or
// CHANGEDSINCE, STORE UNCHANGEDSINCE, SEARCH MODSEQ, STATUS
// HIGHESTMODSEQ).
func (c *Conn) enableCondStore() {
	c.mutex.Lock()
	c.enabled[imap.CapCondStore] = struct{}{}
	c.mutex.Unlock()
}

// CondStoreEnabled reports whether the client issued a CONDSTORE enabling
// command on this connection: from then on every untagged FETCH of a flag
// change carries UID and MODSEQ.
func (c *Conn) CondStoreEnabled() bool {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	_, ok := c.enabled[imap.CapCondStore]
	return ok
}

// errCondStoreParam is the answer to a CONDSTORE parameter on a
// connection without CONDSTORE.
var errCondStoreParam = newClientBugError("CONDSTORE is not supported")

// readSelectParams reads SELECT/EXAMINE's optional parameter list (RFC
// 4466): CONDSTORE, and QRESYNC (...) once QRESYNC is enabled.
func (c *Conn) readSelectParams(dec *imapwire.Decoder, options *imap.SelectOptions) (*qresyncParams, error) {
	if !dec.SP() {
		return nil, nil
	}
	var qresync *qresyncParams
	seen := map[string]bool{}
	err := dec.ExpectList(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		up := strings.ToUpper(name)
		if seen[up] {
			return newClientBugError("Duplicate SELECT parameter")
		}
		seen[up] = true
		switch {
		case strings.EqualFold(name, "CONDSTORE"):
			if !c.condStoreAvailable() {
				return errCondStoreParam
			}
			options.CondStore = true
			return nil
		case strings.EqualFold(name, "QRESYNC"):
			if !c.qresyncAvailable() || !c.QResyncEnabled() {
				return newClientBugError("QRESYNC is not enabled")
			}
			p, err := readQResyncParams(dec)
			qresync = p
			return err
		}
		return newClientBugError("Unknown SELECT parameter")
	})
	return qresync, err
}

// readFetchModifiers reads FETCH's optional modifier list (RFC 4466):
// CHANGEDSINCE, and VANISHED once QRESYNC is enabled (the caller checks
// that it comes with CHANGEDSINCE in a UID FETCH).
func (c *Conn) readFetchModifiers(dec *imapwire.Decoder, options *imap.FetchOptions) (vanished bool, err error) {
	if !dec.SP() {
		return false, nil
	}
	seen := map[string]bool{}
	err = dec.ExpectList(func() error {
		var name string
		if !dec.ExpectAtom(&name) {
			return dec.Err()
		}
		up := strings.ToUpper(name)
		if seen[up] {
			return newClientBugError("Duplicate FETCH modifier")
		}
		seen[up] = true
		if strings.EqualFold(name, "VANISHED") {
			if !c.qresyncAvailable() || !c.QResyncEnabled() {
				return newClientBugError("QRESYNC is not enabled")
			}
			vanished = true
			return nil
		}
		if !strings.EqualFold(name, "CHANGEDSINCE") {
			return newClientBugError("Unknown FETCH modifier")
		}
		if !c.condStoreAvailable() {
			return errCondStoreParam
		}
		var modSeq uint64
		if !dec.ExpectSP() || !dec.ExpectModSeq(&modSeq) {
			return dec.Err()
		}
		if modSeq == 0 {
			return newClientBugError("CHANGEDSINCE needs a nonzero mod-sequence")
		}
		options.ChangedSince = modSeq
		options.ModSeq = true
		return nil
	})
	return vanished, err
}

// readStoreModifiers reads STORE's optional modifier list (RFC 4466):
// only UNCHANGEDSINCE is known; ok is false without it.
func (c *Conn) readStoreModifiers(dec *imapwire.Decoder) (unchangedSince uint64, ok bool, err error) {
	if !dec.Special('(') {
		return 0, false, nil
	}
	var name string
	if !dec.ExpectAtom(&name) {
		return 0, false, dec.Err()
	}
	if !strings.EqualFold(name, "UNCHANGEDSINCE") {
		return 0, false, newClientBugError("Unknown STORE modifier")
	}
	if !c.condStoreAvailable() {
		return 0, false, errCondStoreParam
	}
	if !dec.ExpectSP() || !dec.ExpectModSeq(&unchangedSince) || !dec.ExpectSpecial(')') || !dec.ExpectSP() {
		return 0, false, dec.Err()
	}
	return unchangedSince, true, nil
}

// readSearchModSeq reads the arguments of the SEARCH key MODSEQ:
// [entry-name entry-type-req] mod-sequence-valzer.
func readSearchModSeq(dec *imapwire.Decoder) (*imap.SearchCriteriaModSeq, error) {
	var out imap.SearchCriteriaModSeq
	if !dec.ExpectSP() {
		return nil, dec.Err()
	}
	var name string
	if dec.Quoted(&name) {
		var typ string
		if !dec.ExpectSP() || !dec.ExpectAtom(&typ) || !dec.ExpectSP() {
			return nil, dec.Err()
		}
		switch t := imap.SearchCriteriaMetadataType(strings.ToLower(typ)); t {
		case imap.SearchCriteriaMetadataAll, imap.SearchCriteriaMetadataPrivate, imap.SearchCriteriaMetadataShared:
			out.MetadataName, out.MetadataType = name, t
		default:
			return nil, newClientBugError("Unknown MODSEQ entry type")
		}
	}
	if !dec.ExpectModSeq(&out.ModSeq) {
		return nil, dec.Err()
	}
	return &out, nil
}

// hasModSeqKey reports whether search criteria have a MODSEQ key anywhere.
func hasModSeqKey(c *imap.SearchCriteria) bool {
	if c.ModSeq != nil {
		return true
	}
	for i := range c.Not {
		if hasModSeqKey(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if hasModSeqKey(&c.Or[i][0]) || hasModSeqKey(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// modifiedResponse is the tagged OK [MODIFIED set] of a STORE with
// UNCHANGEDSINCE that left messages unchanged (RFC 7162 section 3.1.3).
func modifiedResponse(modified imap.NumSet) error {
	return &imap.Error{
		Type: imap.StatusResponseTypeOK,
		Code: imap.ResponseCode("MODIFIED " + modified.String()),
		Text: "Conditional STORE failed",
	}
}

// WriteModSeq writes the MODSEQ item (RFC 7162 section 3.1.4).
func (w *FetchResponseWriter) WriteModSeq(modSeq uint64) {
	w.writeItemSep()
	w.enc.Atom("MODSEQ").SP().Special('(').ModSeq(modSeq).Special(')')
}

// WriteMessageFlagsModSeq writes a FETCH response with UID, FLAGS and,
// when CONDSTORE is enabled on the connection, MODSEQ: the unsolicited
// FETCH of a flag change (RFC 7162 section 3.1).
func (w *UpdateWriter) WriteMessageFlagsModSeq(seqNum uint32, uid imap.UID, flags []imap.Flag, modSeq uint64) error {
	fetchWriter := &FetchWriter{conn: w.conn}
	respWriter := fetchWriter.CreateMessage(seqNum)
	if uid != 0 {
		respWriter.WriteUID(uid)
	}
	respWriter.WriteFlags(flags)
	if modSeq != 0 && w.conn.CondStoreEnabled() {
		respWriter.WriteModSeq(modSeq)
	}
	return respWriter.Close()
}

// WriteHighestModSeq writes an untagged `* OK [HIGHESTMODSEQ n]` (nothing
// for 0 or before CONDSTORE is enabled). A session writes it before the
// tagged response of a command whose responses carried a MODSEQ above
// the state up to which it has told the client every change: RFC 7162
// section 6 has the client adopt the highest MODSEQ it saw unless a
// HIGHESTMODSEQ came with the command, which it then MUST use. Also
// after EXPUNGE and MOVE (section 3.2.7's example), whose expunges raise
// the mailbox's HIGHESTMODSEQ without any MODSEQ the client could see.
func (w *UpdateWriter) WriteHighestModSeq(modSeq uint64) error {
	if modSeq == 0 || !w.conn.CondStoreEnabled() {
		return nil
	}
	return w.conn.writeHighestModSeq(modSeq)
}

// writeHighestModSeq writes SELECT's HIGHESTMODSEQ, or NOMODSEQ for 0
// (RFC 7162 section 3.1.2).
func (c *Conn) writeHighestModSeq(modSeq uint64) error {
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("OK").SP()
	if modSeq == 0 {
		enc.Special('[').Atom("NOMODSEQ").Special(']').SP().Text("No mod-sequences in this mailbox")
	} else {
		enc.Special('[').Atom("HIGHESTMODSEQ").SP().ModSeq(modSeq).Special(']').SP().Text("Highest")
	}
	return enc.CRLF()
}

// SessionQResync is a SessionCondStore that offers QRESYNC (RFC 7162
// section 3.2). With it, and imap.CapQResync in Options.Caps, the server
// announces QRESYNC and accepts ENABLE QRESYNC (which enables CONDSTORE
// too); once it is enabled, SELECT/EXAMINE (QRESYNC (...)) and UID FETCH
// (CHANGEDSINCE n VANISHED). The session then:
//   - reports every expunge with the writers' WriteExpungeUID, which
//     writes VANISHED instead of EXPUNGE once QRESYNC is enabled;
//   - answers Vanished: the UIDs of a set whose messages were expunged
//     since a mod-sequence. It may include UIDs expunged earlier, or
//     never used, below the mailbox's UIDNEXT (RFC 7162 section 3.2.6:
//     the client ignores the UIDs it does not know).
//
// After a SELECT with QRESYNC parameters whose UIDVALIDITY is the
// mailbox's, the server writes VANISHED (EARLIER) of Vanished and the
// FETCH (UID FLAGS MODSEQ) of Fetch with ChangedSince for the client's
// known UIDs.
type SessionQResync interface {
	SessionCondStore

	Vanished(uids imap.UIDSet, since uint64) (imap.UIDSet, error)
}

// qresyncParams are SELECT's QRESYNC parameters.
type qresyncParams struct {
	uidValidity uint32
	modSeq      uint64
	knownUIDs   imap.UIDSet // nil: all
}

// qresyncAvailable reports whether the connection offers QRESYNC.
func (c *Conn) qresyncAvailable() bool {
	_, ok := c.session.(SessionQResync)
	return ok && c.server.options.caps().Has(imap.CapQResync)
}

// QResyncEnabled reports whether the client enabled QRESYNC on this
// connection: from then on expunges are told as VANISHED.
func (c *Conn) QResyncEnabled() bool {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	_, ok := c.enabled[imap.CapQResync]
	return ok
}

// readQResyncParams reads the list after SELECT's QRESYNC:
// (uidvalidity mod-sequence-value [known-uids [seq-match-data]]). The
// seq-match-data is read and not used: the session's Vanished answers
// from the mailbox as it is.
func readQResyncParams(dec *imapwire.Decoder) (*qresyncParams, error) {
	var p qresyncParams
	if !dec.ExpectSP() || !dec.ExpectSpecial('(') || !dec.ExpectNumber(&p.uidValidity) || !dec.ExpectSP() || !dec.ExpectModSeq(&p.modSeq) {
		return nil, dec.Err()
	}
	if p.uidValidity == 0 || p.modSeq == 0 {
		return nil, newClientBugError("QRESYNC needs a nonzero UIDVALIDITY and mod-sequence")
	}
	if dec.SP() {
		var known imap.UIDSet
		if !dec.ExpectUIDSet(&known) {
			return nil, dec.Err()
		}
		p.knownUIDs = known
		if dec.SP() {
			var seqs, uids imap.NumSet
			if !dec.ExpectSpecial('(') || !dec.ExpectNumSet(imapwire.NumKindSeq, &seqs) || !dec.ExpectSP() || !dec.ExpectNumSet(imapwire.NumKindUID, &uids) || !dec.ExpectSpecial(')') {
				return nil, dec.Err()
			}
		}
	}
	if !dec.ExpectSpecial(')') {
		return nil, dec.Err()
	}
	return &p, nil
}

// writeVanished writes VANISHED, with (EARLIER) for a resynchronization
// (RFC 7162 section 3.2.10); nothing for an empty set.
func (c *Conn) writeVanished(uids imap.UIDSet, earlier bool) error {
	if len(uids) == 0 {
		return nil
	}
	enc := newResponseEncoder(c)
	defer enc.end()
	enc.Atom("*").SP().Atom("VANISHED").SP()
	if earlier {
		enc.Atom("(EARLIER)").SP()
	}
	enc.NumSet(uids)
	return enc.CRLF()
}

// writeExpungeUID writes EXPUNGE, or VANISHED once QRESYNC is enabled.
func (c *Conn) writeExpungeUID(seqNum uint32, uid imap.UID) error {
	if c.QResyncEnabled() {
		return c.writeVanished(imap.UIDSetNum(uid), false)
	}
	return c.writeExpunge(seqNum)
}

// WriteExpungeUID writes an EXPUNGE response, or VANISHED uid once QRESYNC
// is enabled.
func (w *UpdateWriter) WriteExpungeUID(seqNum uint32, uid imap.UID) error {
	if !w.allowExpunge {
		return fmt.Errorf("imapserver: EXPUNGE updates are not allowed in this context")
	}
	return w.conn.writeExpungeUID(seqNum, uid)
}

// WriteExpungeUID writes an EXPUNGE response, or VANISHED uid once QRESYNC
// is enabled (nothing for CLOSE).
func (w *ExpungeWriter) WriteExpungeUID(seqNum uint32, uid imap.UID) error {
	if w.conn == nil {
		return nil
	}
	return w.conn.writeExpungeUID(seqNum, uid)
}

// WriteExpungeUID writes an EXPUNGE response, or VANISHED uid once QRESYNC
// is enabled.
func (w *MoveWriter) WriteExpungeUID(seqNum uint32, uid imap.UID) error {
	return w.conn.writeExpungeUID(seqNum, uid)
}

// qresyncSelect writes what changed since the client's state after a
// SELECT with QRESYNC parameters (RFC 7162 section 3.2.5): VANISHED
// (EARLIER), then FETCH (UID FLAGS MODSEQ) of the messages changed.
func (c *Conn) qresyncSelect(p *qresyncParams) error {
	session := c.session.(SessionQResync)
	known := p.knownUIDs
	if known == nil {
		known = imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
	}
	vanished, err := session.Vanished(known, p.modSeq)
	if err != nil {
		return err
	}
	if err := c.writeVanished(vanished, true); err != nil {
		return err
	}
	w := &FetchWriter{conn: c}
	return session.Fetch(w, known, &imap.FetchOptions{UID: true, Flags: true, ModSeq: true, ChangedSince: p.modSeq})
}

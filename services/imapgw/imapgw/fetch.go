package imapgw

import (
	"bufio"
	"bytes"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/mailbus/mailbus/pkg/imapserver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// needsRaw reports whether a FETCH needs the message's bytes.
func needsRaw(o *imap.FetchOptions) bool {
	return o.Envelope || o.BodyStructure != nil || len(o.BodySection) > 0 || len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

// setsSeen reports whether a FETCH sets \Seen (a BODY[] or BINARY[]
// without .PEEK).
func setsSeen(o *imap.FetchOptions) bool {
	return slices.ContainsFunc(o.BodySection, func(b *imap.FetchItemBodySection) bool { return !b.Peek }) ||
		slices.ContainsFunc(o.BinarySection, func(b *imap.FetchItemBinarySection) bool { return !b.Peek })
}

// Fetch implements imapserver.Session: metadata from the view, content
// from GetRawMessage, parsed by imapserver's helpers.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, o *imap.FetchOptions) error {
	msgs := s.sel.resolve(numSet)
	if o.ChangedSince != 0 {
		// (CHANGEDSINCE n): only the messages changed after n (RFC 7162
		// section 3.1.4.1).
		msgs = slices.DeleteFunc(msgs, func(m *message) bool { return m.modSeq() <= o.ChangedSince })
	}
	if setsSeen(o) && !s.sel.readOnly {
		if err := s.markSeen(msgs); err != nil {
			return err
		}
	}
	var reads *prefetch
	if needsRaw(o) {
		reads = s.prefetch(msgs)
		defer reads.stop()
	}
	for i, m := range msgs {
		var raw []byte
		if reads != nil {
			var err error
			if raw, err = reads.get(i); err != nil {
				if isGone(err) {
					// Deleted meanwhile: the EXPUNGE follows from the events.
					continue
				}
				return err
			}
		}
		if err := s.fetchOne(w, m, raw, o); err != nil {
			return err
		}
	}
	return nil
}

// Read-ahead of FETCH: up to prefetchCount messages, prefetchBytes in
// all, are read from the store while earlier ones are written to the
// client, so that a pull (mbsync, a client's first sync) does not wait a
// store round trip per message.
const (
	prefetchCount = 8
	prefetchBytes = 16 << 20
)

// prefetch reads messages' bytes ahead of the writer, in order.
type prefetch struct {
	s      *session
	msgs   []*message
	slots  []chan rawResult
	next   int   // the next message to start reading
	budget int64 // bytes that may still be in flight
	cancel context.CancelFunc
	ctx    context.Context
	sizes  []int64
}

type rawResult struct {
	raw []byte
	err error
}

func (s *session) prefetch(msgs []*message) *prefetch {
	ctx, cancel := context.WithCancel(s.ctx)
	p := &prefetch{s: s, msgs: msgs, slots: make([]chan rawResult, len(msgs)), budget: prefetchBytes, ctx: ctx, cancel: cancel, sizes: make([]int64, len(msgs))}
	return p
}

// fill starts reads until prefetchCount are ahead of i or the byte budget
// is spent (one read always runs, whatever its size).
func (p *prefetch) fill(i int) {
	for p.next < len(p.msgs) && p.next < i+prefetchCount {
		size := int64(p.msgs[p.next].size)
		if p.next > i && size > p.budget {
			return
		}
		p.budget -= size
		p.sizes[p.next] = size
		ch := make(chan rawResult, 1)
		p.slots[p.next] = ch
		m := *p.msgs[p.next] // a copy: the view may not change meanwhile, but stay safe
		go func() {
			raw, err := p.s.rawContext(p.ctx, &m)
			ch <- rawResult{raw, err}
		}()
		p.next++
	}
}

// get returns message i's bytes.
func (p *prefetch) get(i int) ([]byte, error) {
	p.fill(i)
	r := <-p.slots[i]
	p.budget += p.sizes[i]
	p.slots[i] = nil
	return r.raw, r.err
}

// stop ends the reads not yet collected.
func (p *prefetch) stop() { p.cancel() }

func (s *session) fetchOne(w *imapserver.FetchWriter, m *message, raw []byte, o *imap.FetchOptions) error {
	rw := w.CreateMessage(s.sel.seqOf(m))
	// A FETCH that sets \Seen tells the flags; once CONDSTORE is enabled
	// with UID and MODSEQ (RFC 7162 section 3.1).
	seen := setsSeen(o) && !s.sel.readOnly
	seenModSeq := seen && s.conn.CondStoreEnabled()
	modSeq := o.ModSeq || seenModSeq
	if o.UID || seenModSeq {
		rw.WriteUID(imap.UID(m.uid))
	}
	if o.Flags || seen {
		rw.WriteFlags(imapFlags(m.flags))
	}
	if modSeq {
		rw.WriteModSeq(m.modSeq())
		s.sel.tellModSeq(m.modSeq())
	}
	if o.InternalDate {
		rw.WriteInternalDate(m.internalDate())
	}
	if o.RFC822Size {
		size := int64(m.size)
		if raw != nil {
			size = int64(len(raw))
		}
		rw.WriteRFC822Size(size)
	}
	if o.Envelope {
		rw.WriteEnvelope(envelope(raw))
	}
	if o.BodyStructure != nil {
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(raw)))
	}
	for _, sec := range o.BodySection {
		var b []byte
		if len(sec.Part) == 0 && sec.Specifier == imap.PartSpecifierNone && len(sec.HeaderFields) == 0 && len(sec.HeaderFieldsNot) == 0 {
			// BODY[]: the bytes as stored, exactly.
			b = partial(raw, sec.Partial)
		} else {
			b = imapserver.ExtractBodySection(bytes.NewReader(raw), sec)
		}
		wc := rw.WriteBodySection(sec, int64(len(b)))
		if _, err := wc.Write(b); err != nil {
			return err
		}
		if err := wc.Close(); err != nil {
			return err
		}
	}
	for _, sec := range o.BinarySection {
		b := imapserver.ExtractBinarySection(bytes.NewReader(raw), sec)
		wc := rw.WriteBinarySection(sec, int64(len(b)))
		if _, err := wc.Write(b); err != nil {
			return err
		}
		if err := wc.Close(); err != nil {
			return err
		}
	}
	for _, sec := range o.BinarySectionSize {
		rw.WriteBinarySectionSize(sec, imapserver.ExtractBinarySectionSize(bytes.NewReader(raw), sec))
	}
	return rw.Close()
}

func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset >= int64(len(b)) {
		return nil
	}
	end := int64(len(b))
	if p.Size >= 0 && p.Offset+p.Size < end {
		end = p.Offset + p.Size
	}
	return b[p.Offset:end]
}

func header(raw []byte) textproto.Header {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return textproto.Header{}
	}
	return h
}

func envelope(raw []byte) *imap.Envelope {
	return imapserver.ExtractEnvelope(header(raw))
}

// markSeen adds \Seen to the messages that lack it, as BODY[] does.
func (s *session) markSeen(msgs []*message) error {
	var ids []string
	for _, m := range msgs {
		if !slices.Contains(m.flags, string(imap.FlagSeen)) {
			ids = append(ids, m.id)
		}
	}
	for chunk := range slices.Chunk(ids, batch) {
		// The messages another device deleted meanwhile are left out.
		var changed []*mailbusv1.MessageSummary
		_, err := eachExisting(chunk, func(ids []string) error {
			ctx, cancel := s.call()
			defer cancel()
			resp, err := s.mailboxes().UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: s.account.Id, MessageIds: ids, Add: []string{string(imap.FlagSeen)}, DeviceId: s.device}, s.creds)
			if err == nil {
				changed = append(changed, resp.Messages...)
			}
			return err
		})
		if status.Code(err) == codes.NotFound {
			continue // all of them gone
		}
		if err != nil {
			return imapError(err, "set \\Seen")
		}
		for _, after := range changed {
			if m := s.sel.findSummary(after); m != nil {
				m.flags = s.sel.flags.intern(after.Flags)
				m.state = max(m.state, after.State)
			}
		}
	}
	return nil
}

// Search implements imapserver.Session: flags, sizes, dates and numbers
// from the view; header and text criteria read the messages.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, _ *imap.SearchOptions) (*imap.SearchData, error) {
	data := &imap.SearchData{}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for i := range s.sel.msgs {
		m := &s.sel.msgs[i]
		c := &candidate{s: s, m: m, seq: uint32(i + 1)}
		ok, err := c.match(criteria)
		if isGone(err) {
			// Deleted meanwhile: no match (its EXPUNGE follows from the
			// events).
			continue
		}
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		num := c.seq
		if kind == imapserver.NumKindUID {
			num = m.uid
			uids.AddNum(imap.UID(m.uid))
		} else {
			seqs.AddNum(c.seq)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
		data.Count++
		// The highest MODSEQ of the messages found (imapserver writes it
		// only when the criteria have a MODSEQ key).
		data.ModSeq = max(data.ModSeq, m.modSeq())
	}
	s.sel.tellModSeq(data.ModSeq)
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	return data, nil
}

// candidate is one message being searched, its bytes read when a
// criterion needs them.
type candidate struct {
	s   *session
	m   *message
	seq uint32
	raw []byte
}

func (c *candidate) bytes() ([]byte, error) {
	if c.raw == nil {
		raw, err := c.s.raw(c.m)
		if err != nil {
			return nil, err
		}
		c.raw = raw
	}
	return c.raw, nil
}

func (c *candidate) match(cr *imap.SearchCriteria) (bool, error) {
	n := uint32(len(c.s.sel.msgs))
	for _, set := range cr.SeqNum {
		if !seqContains(set, c.seq, n) {
			return false, nil
		}
	}
	for _, set := range cr.UID {
		if !uidContains(set, c.m.uid, c.s.sel.msgs[n-1].uid) {
			return false, nil
		}
	}
	day := func(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }
	if !cr.Since.IsZero() && day(c.m.internalDate()).Before(day(cr.Since)) {
		return false, nil
	}
	if !cr.Before.IsZero() && !day(c.m.internalDate()).Before(day(cr.Before)) {
		return false, nil
	}
	for _, f := range cr.Flag {
		if !containsFold(c.m.flags, string(f)) {
			return false, nil
		}
	}
	for _, f := range cr.NotFlag {
		if containsFold(c.m.flags, string(f)) {
			return false, nil
		}
	}
	if cr.Larger > 0 && int64(c.m.size) <= cr.Larger {
		return false, nil
	}
	if cr.Smaller > 0 && int64(c.m.size) >= cr.Smaller {
		return false, nil
	}
	// MODSEQ: one mod-sequence per message, so the entry name and type
	// are ignored (RFC 7162 section 3.1.5).
	if cr.ModSeq != nil && c.m.modSeq() < cr.ModSeq.ModSeq {
		return false, nil
	}
	if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() || len(cr.Header) > 0 || len(cr.Body) > 0 || len(cr.Text) > 0 {
		raw, err := c.bytes()
		if err != nil {
			return false, err
		}
		if ok := matchContent(raw, cr); !ok {
			return false, nil
		}
	}
	for i := range cr.Not {
		ok, err := c.match(&cr.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for _, or := range cr.Or {
		a, err := c.match(&or[0])
		if err != nil {
			return false, err
		}
		if !a {
			b, err := c.match(&or[1])
			if err != nil || !b {
				return false, err
			}
		}
	}
	return true, nil
}

// matchContent applies the criteria that read the message: substrings,
// case-insensitive, of the undecoded header fields and text (no MIME
// decoding: a base64 body is not searched as text).
func matchContent(raw []byte, cr *imap.SearchCriteria) bool {
	h := header(raw)
	if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		mh := mail.Header{Header: gomessage.Header{Header: h}}
		t, err := mh.Date()
		if err != nil {
			return false
		}
		d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		if !cr.SentSince.IsZero() && d.Before(cr.SentSince) {
			return false
		}
		if !cr.SentBefore.IsZero() && !d.Before(cr.SentBefore) {
			return false
		}
	}
	for _, f := range cr.Header {
		if !h.Has(f.Key) {
			return false
		}
		if f.Value == "" {
			continue
		}
		found := false
		for _, v := range h.Values(f.Key) {
			if containsFoldSub(v, f.Value) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	body := raw
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		body = raw[i+4:]
	}
	for _, b := range cr.Body {
		if !containsFoldSub(string(body), b) {
			return false
		}
	}
	for _, t := range cr.Text {
		if !containsFoldSub(string(raw), t) {
			return false
		}
	}
	return true
}

func containsFoldSub(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

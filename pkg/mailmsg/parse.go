package mailmsg

import (
	"fmt"
	"net/mail"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Defaults for the zero values of [Options].
const (
	DefaultMaxDepth     = 32
	DefaultMaxParts     = 1000
	DefaultPreviewLen   = 256
	DefaultMaxBodyBytes = 1 << 20
)

// maxErrors bounds Parsed.Errors, so that a message made of garbage does not
// produce a list as long as itself.
const maxErrors = 100

// Options bound the work done by [Parse]. A nil *Options, and any field
// that is zero or negative, means the default.
type Options struct {
	// MaxDepth is how deep multiparts and embedded messages are followed;
	// a part nested deeper is kept as an opaque leaf. Default 32.
	MaxDepth int
	// MaxParts is how many MIME parts are parsed in all; the rest of the
	// message is not split further. Default 1000.
	MaxParts int
	// PreviewLen is the length of Parsed.Preview in runes. Default 256.
	PreviewLen int
	// MaxBodyBytes is how many bytes of UTF-8 are kept of each of
	// TextBody and HTMLBody. Default 1 MiB.
	MaxBodyBytes int
	// NoBodies leaves Parsed.TextBody and Parsed.HTMLBody empty, for a
	// caller that wants the rest only (the store's summary): everything
	// else, Preview and Errors included, is as without it, but a text
	// part is not copied whole to get its preview.
	NoBodies bool
}

// withDefaults returns a copy of o with defaults filled in.
func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.MaxDepth <= 0 {
		r.MaxDepth = DefaultMaxDepth
	}
	if r.MaxParts <= 0 {
		r.MaxParts = DefaultMaxParts
	}
	if r.PreviewLen <= 0 {
		r.PreviewLen = DefaultPreviewLen
	}
	if r.MaxBodyBytes <= 0 {
		r.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return r
}

// Parsed is the derived view of a raw message. All strings are valid UTF-8.
type Parsed struct {
	// Envelope summarises the top-level header. Never nil.
	Envelope *mailbusv1.Envelope
	// Structure is the MIME tree; see the package documentation for the
	// part numbering. Never nil.
	Structure *mailbusv1.MimePart
	// TextBody is the text/plain body: the inline text/plain parts outside
	// attachments, joined, or the text/plain alternative of a
	// multipart/alternative.
	TextBody string
	// HTMLBody is the text/html body, chosen the same way.
	HTMLBody string
	// Attachments lists the parts that are not a body, in message order:
	// every leaf that is not body text (inline images too, with Inline
	// set), and attached messages as one attachment each. Another text
	// rendering of a multipart/alternative (text/enriched, say) is
	// neither body nor attachment.
	Attachments []*mailbusv1.Attachment
	// HasAttachments is true when some attachment is not inline: an
	// inline part is one with Content-Disposition inline, or without a
	// disposition inside a multipart/related (an HTML body's image).
	HasAttachments bool
	// Preview is the start of the text body (or of the text of the HTML
	// body when there is no text body), white space collapsed.
	Preview string
	// Errors describes the problems met while parsing, in order; empty for
	// a well-formed message.
	Errors []string
}

// Parse parses a raw message. It never fails: see the package
// documentation. opts may be nil.
func Parse(raw []byte, opts *Options) *Parsed {
	b := &builder{opts: opts.withDefaults()}
	if len(raw) == 0 {
		b.errf("message: empty")
	}
	root := b.message(raw, "", 0)
	p := &Parsed{
		Envelope:  b.envelope(root),
		Structure: root.mimePart(),
	}
	c := &collector{b: b}
	c.walk(root, false)
	if b.opts.NoBodies {
		p.Preview = c.preview()
	} else {
		p.TextBody = c.joined(c.texts, "text")
		p.HTMLBody = c.joined(c.htmls, "html")
		p.Preview = preview(p.TextBody, p.HTMLBody, b.opts.PreviewLen)
	}
	p.Attachments = c.atts
	for _, a := range c.atts {
		if !a.GetInline() {
			p.HasAttachments = true
		}
	}
	p.Errors = b.errs
	return p
}

// builder holds the state of one Parse or OpenPart call.
type builder struct {
	opts  Options
	parts int
	errs  []string
	// quiet suppresses error collection (OpenPart does not report them).
	quiet bool
	// addrParser reads address lists with this package's charsets; it
	// notes the first charset problem of a list in wordErr.
	addrParser *mail.AddressParser
	wordErr    error
}

// errf records a problem.
func (b *builder) errf(format string, args ...any) {
	if b.quiet {
		return
	}
	switch {
	case len(b.errs) < maxErrors:
		b.errs = append(b.errs, fmt.Sprintf(format, args...))
	case len(b.errs) == maxErrors:
		b.errs = append(b.errs, "too many problems; the rest are not listed")
	}
}

// where names a part in an error message.
func where(id string) string {
	if id == "" {
		return "message"
	}
	return "part " + id
}

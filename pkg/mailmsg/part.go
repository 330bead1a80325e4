package mailmsg

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// ErrNoSuchPart is returned (wrapped) by [OpenPart] for a part id that the
// message does not have.
var ErrNoSuchPart = errors.New("no such part")

// OpenPart returns the content of the part with the id of the message raw,
// with the transfer encoding undone but not converted from its charset,
// and the part's description. Part ids are those of Parsed.Structure with
// default Options; "" always names the top-level part (the same as "1" for
// a message that is not multipart). For a multipart the content is its
// encoded body; for an attached message it is the message.
//
// A damaged transfer encoding (bad base64, say) is decoded as far as it
// goes, as Parse does, without an error: the content is best effort, the
// raw message is the truth. The only error is for an unknown part id, and
// it wraps [ErrNoSuchPart].
func OpenPart(raw []byte, partID string) (io.Reader, *mailbusv1.MimePart, error) {
	b := &builder{opts: (*Options)(nil).withDefaults(), quiet: true}
	root := b.message(raw, "", 0)
	e := root
	if partID != "" {
		e = root.find(partID)
	}
	if e == nil {
		return nil, nil, fmt.Errorf("mailmsg: open part %q: %w", partID, ErrNoSuchPart)
	}
	content := e.body
	if !e.isMultipart() {
		content, _ = decodeTransfer(e.cte, e.body)
	}
	return bytes.NewReader(content), e.mimePart(), nil
}

// find returns the entity with the part id in the tree under e, or nil.
func (e *entity) find(id string) *entity {
	if e.id == id {
		return e
	}
	for _, c := range e.children {
		if f := c.find(id); f != nil {
			return f
		}
	}
	return nil
}

// mimePart converts the tree under e to its protobuf form.
func (e *entity) mimePart() *mailbusv1.MimePart {
	p := &mailbusv1.MimePart{
		PartId:           e.id,
		ContentType:      e.mediaType,
		Charset:          e.charset,
		Disposition:      e.disposition,
		Filename:         e.filename,
		ContentId:        e.contentID,
		TransferEncoding: e.cte,
		Size:             uint64(len(e.body)),
	}
	for _, c := range e.children {
		p.Parts = append(p.Parts, c.mimePart())
	}
	return p
}

// attachment describes e as an attachment.
func (e *entity) attachment(inline bool) *mailbusv1.Attachment {
	return &mailbusv1.Attachment{
		PartId:      e.id,
		Filename:    e.filename,
		ContentType: e.mediaType,
		Size:        uint64(len(e.body)),
		ContentId:   e.contentID,
		Inline:      inline,
	}
}

// Package mailmsg parses raw RFC 5322 / MIME messages, best effort, for the
// store: the envelope, the MIME structure, the text and HTML bodies, the
// attachments and a preview.
//
// # Contract
//
// Parsing never fails. The raw message is the truth and is always kept
// byte-exact by the caller; what this package returns is a derived view of
// it. A malformed message (bad base64, a missing boundary, an unknown
// charset, header lines without a colon, no blank line between header and
// body, 8-bit bytes in header fields, bare LF line endings, empty input)
// still yields a [Parsed] with everything that could be read, and each
// problem met is described in [Parsed.Errors]. No input makes Parse panic,
// and the work done is bounded by [Options] (nesting depth, number of parts,
// bytes of body text kept).
//
// # What is decoded
//
// Every string returned is valid UTF-8, as protobuf requires:
//   - header fields: RFC 2047 encoded words are decoded (also inside quoted
//     strings and parameter values, where senders put them against the
//     rules), raw 8-bit bytes are read as UTF-8 when valid and otherwise in
//     the part's charset or windows-1252;
//   - parameters: RFC 2231 continuations and charsets are decoded (file
//     names);
//   - TextBody and HTMLBody: the transfer encoding is undone and the charset
//     converted to UTF-8; line endings are normalised to "\n".
//
// Charsets are looked up in the WHATWG encoding index (golang.org/x/text
// htmlindex: ISO-8859-x, windows-125x, KOI8-R/U, GBK/GB2312/GB18030, Big5,
// Shift_JIS, EUC-JP, ISO-2022-JP, EUC-KR, UTF-16, ...) and then in the IANA
// index. A text in an unknown charset keeps its bytes (invalid UTF-8
// replaced by U+FFFD) and the problem is noted.
//
// [OpenPart] returns the content of one part with only the transfer
// encoding undone, for downloads.
//
// # Part numbering
//
// Part ids are IMAP section numbers (RFC 3501 section 6.4.5), so that they
// also work in an IMAP FETCH BODY[...]:
//   - a multipart message's root has part id "" and its children are "1",
//     "2", ...; the children of a nested multipart at "2" are "2.1", "2.2";
//   - a non-multipart message consists of a single part, numbered "1"; the
//     Structure root then has part id "1";
//   - a message/rfc822 part "3" has exactly one child, the root of the
//     embedded message: "3.1" when that message is not multipart, or
//     "3.TEXT" when it is (IMAP gives that multipart no number of its own;
//     BODY[3.TEXT] is its body), whose children are "3.1", "3.2", ...
//
// Every part id in Structure is unique and accepted by OpenPart, and the
// part id of an [mailbusv1.Attachment] is the id of its node in Structure.
package mailmsg

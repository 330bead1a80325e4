package pop3fetcher

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
)

// How a pass identifies messages (PassResult.Identity). See
// docs/decisions/0005-pop3-without-uidl.md.
const (
	// IdentityUIDL: the server's UIDL.
	IdentityUIDL = "uidl"
	// IdentityHeaders: no UIDL, keep mode: a hash of the header block as
	// TOP n 0 returns it, minus the fields mbox servers rewrite.
	IdentityHeaders = "headers"
	// IdentityContent: no UIDL, delete mode (or no TOP either): a hash of
	// the whole message.
	IdentityContent = "content"
)

// Prefixes of synthetic ids. Each stays within the store's 70-octet limit
// on UIDLs, suffix included.
const (
	headerIDPrefix  = "x-hdr-"    // + 43 base64url characters of SHA-256
	contentIDPrefix = "x-sha256-" // + 43 base64url characters of SHA-256
	longUIDLPrefix  = "x-uidl-"   // + 43: a server UIDL that the store cannot take as it is
)

// storeUIDL returns the id under which a server UIDL is stored: the UIDL
// itself when it is what RFC 1939 allows (1 to 70 printable ASCII
// characters), else a hash of it.
func storeUIDL(uid string) string {
	ok := len(uid) >= 1 && len(uid) <= 70
	for i := 0; ok && i < len(uid); i++ {
		ok = uid[i] >= 0x21 && uid[i] <= 0x7e
	}
	if ok {
		return uid
	}
	return longUIDLPrefix + hashID(sha256.Sum256([]byte(uid)))
}

func hashID(sum [32]byte) string { return base64.RawURLEncoding.EncodeToString(sum[:]) }

// occurrences numbers repeated synthetic ids within one listing, in server
// order: the first keeps the id, the k-th gets "-k" appended, so that two
// copies of the same message are two messages.
type occurrences map[string]int

func (o occurrences) id(base string) string {
	o[base]++
	if n := o[base]; n > 1 {
		return base + "-" + strconv.Itoa(n)
	}
	return base
}

// volatileHeaders are header fields that mbox-based POP3 servers (the kind
// that lacks UIDL) add or rewrite when a message is read, so they must not
// change its identity.
var volatileHeaders = []string{"status", "x-status", "x-uid", "x-uidl", "x-keywords", "x-imap", "x-imapbase", "content-length", "lines"}

// maxHeaderHash bounds how much of a header block is hashed.
const maxHeaderHash = 1 << 20

// headerID hashes a header block (TOP n 0) into an id, leaving out the
// volatile fields (with their continuation lines).
func headerID(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, maxHeaderHash))
	h := sha256.New()
	skipping, atLineStart := false, true
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if atLineStart && line[0] != ' ' && line[0] != '\t' {
				skipping = isVolatile(line)
			}
			if !skipping {
				h.Write(line)
			}
			atLineStart = line[len(line)-1] == '\n'
		}
		switch {
		case err == nil, err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
		default:
			return "", err
		}
		break
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return headerIDPrefix + hashID(sum), nil
}

func isVolatile(line []byte) bool {
	name, _, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return false
	}
	n := strings.ToLower(strings.TrimSpace(string(name)))
	for _, v := range volatileHeaders {
		if n == v {
			return true
		}
	}
	return false
}

// spool is a temporary file holding one message at a time, for the
// content-hash mode: the id is known only after the whole message has been
// read, and it must go in the ingest meta, before the data.
type spool struct {
	f *os.File
	h hash.Hash
}

func newSpool(dir string) (*spool, error) {
	f, err := os.CreateTemp(dir, "mailbus-pop3-*.eml")
	if err != nil {
		return nil, err
	}
	return &spool{f: f, h: sha256.New()}, nil
}

// fill copies a message into the spool and returns its SHA-256 and its
// size. The file is rewound for reading.
func (s *spool) fill(r io.Reader) (sum [32]byte, n int64, err error) {
	if err := s.f.Truncate(0); err != nil {
		return sum, 0, err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return sum, 0, err
	}
	s.h.Reset()
	n, err = io.Copy(io.MultiWriter(s.f, s.h), r)
	if err != nil {
		return sum, n, &bodyError{err}
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return sum, n, err
	}
	s.h.Sum(sum[:0])
	return sum, n, nil
}

func (s *spool) Read(p []byte) (int, error) { return s.f.Read(p) }

func (s *spool) close() {
	s.f.Close()
	os.Remove(s.f.Name())
}

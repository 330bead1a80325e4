package syncbench

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/mailbus/mailbus/pkg/dovecottest"
)

// The mailbox users of the corpus: imapUser holds the large corpus in
// folders, smallUser the first messages of it in the same folders, and
// pop3User the large corpus all in INBOX (a POP3 maildrop).
const (
	imapUser  = "bench"
	smallUser = "small"
	pop3User  = "pop"
	password  = "bench-pw"
)

// folders splits an IMAP account as BenchmarkInitialSync in
// services/imapsync does: 40% INBOX, 30% Archive, 15% Sent, 10%
// Work/Projects, 5% Lists.
var folders = []struct {
	name    string
	percent int
}{{"INBOX", 40}, {"Archive", 30}, {"Sent", 15}, {"Work/Projects", 10}, {"Lists", 5}}

// folderOf is the folder of message i of an n-message account: the
// messages fill the folders in order.
func folderOf(i, n int) string {
	upTo := 0
	for _, f := range folders {
		upTo += n * f.percent / 100
		if i < upTo {
			return f.name
		}
	}
	return folders[0].name
}

// corpusMessage is message i of the corpus: headers and a base64 body of
// random octets, CRLF line ends, about size octets in all. The same i
// gives the same octets for every user, so every case reads the same mail.
func corpusMessage(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 11))
	size := messageSize(r)
	var b strings.Builder
	b.Grow(size + 512)
	fmt.Fprintf(&b, "From: sender%d@example.org\r\nTo: alice@example.org\r\nSubject: syncbench %d\r\nMessage-ID: <syncbench%d@example.org>\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n", i%97, i, i)
	raw := make([]byte, size*3/4)
	var seed [32]byte
	for j := range seed {
		seed[j] = byte(r.Uint32())
	}
	_, _ = rand.NewChaCha8(seed).Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 0 {
		n := min(len(enc), 76)
		b.WriteString(enc[:n])
		b.WriteString("\r\n")
		enc = enc[n:]
	}
	return []byte(b.String())
}

// messageSize: 70% 10–60 KB, 25% 60–200 KB, 5% 200–600 KB (about 80 KB
// on average, as in BenchmarkInitialSync).
func messageSize(r *rand.Rand) int {
	switch p := r.IntN(100); {
	case p < 70:
		return 10<<10 + r.IntN(50<<10)
	case p < 95:
		return 60<<10 + r.IntN(140<<10)
	default:
		return 200<<10 + r.IntN(400<<10)
	}
}

// corpusStats is what was delivered to one user.
type corpusStats struct {
	messages int
	octets   int64
}

// deliverCorpus writes n messages for imapUser (in folders) and pop3User
// (INBOX) and the first small ones for smallUser (in folders) into
// Dovecot's Maildirs. A user with no case to run gets nothing.
func deliverCorpus(s *dovecottest.Server, n, small int, imap, pop3 bool) (big, smallStats corpusStats, err error) {
	// Every folder exists, even one too small to get a message.
	for _, f := range folders[1:] {
		for _, user := range []string{imapUser, smallUser} {
			if err := s.CreateMailbox(user, f.name); err != nil {
				return big, smallStats, fmt.Errorf("create %s of %s: %w", f.name, user, err)
			}
		}
	}
	for i := range n {
		m := corpusMessage(i)
		if imap {
			if err := s.Deliver(imapUser, folderOf(i, n), m); err != nil {
				return big, smallStats, fmt.Errorf("deliver %d to %s: %w", i, imapUser, err)
			}
		}
		if pop3 {
			if err := s.Deliver(pop3User, "INBOX", m); err != nil {
				return big, smallStats, fmt.Errorf("deliver %d to %s: %w", i, pop3User, err)
			}
		}
		big.messages++
		big.octets += int64(len(m))
		if i < small {
			if err := s.Deliver(smallUser, folderOf(i, small), m); err != nil {
				return big, smallStats, fmt.Errorf("deliver %d to %s: %w", i, smallUser, err)
			}
			smallStats.messages++
			smallStats.octets += int64(len(m))
		}
	}
	return big, smallStats, nil
}

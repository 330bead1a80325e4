package dovecottest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrNotFound is matched (errors.Is) by a DoveadmError for an unknown user
// or mailbox.
var ErrNotFound = errors.New("dovecottest: not found")

// doveadm exit codes (sysexits.h, as used by doveadm).
const (
	exitNoUser   = 67 // EX_NOUSER: user doesn't exist
	exitNotFound = 68 // DOVEADM_EX_NOTFOUND: mailbox or message doesn't exist
)

// DoveadmError is a failed doveadm run.
type DoveadmError struct {
	Args     []string // arguments after "doveadm -c <conf>"
	ExitCode int      // -1 if doveadm did not exit normally
	Stderr   string
	Err      error // the underlying exec error
}

func (e *DoveadmError) Error() string {
	return fmt.Sprintf("dovecottest: doveadm %s: exit %d: %s", strings.Join(e.Args, " "), e.ExitCode, strings.TrimSpace(e.Stderr))
}

// Is reports ErrNotFound for the exit codes of an unknown user or mailbox.
func (e *DoveadmError) Is(target error) bool {
	return target == ErrNotFound && (e.ExitCode == exitNoUser || e.ExitCode == exitNotFound)
}

func (e *DoveadmError) Unwrap() error { return e.Err }

// Doveadm runs doveadm against this instance ("doveadm -c <conf> args...")
// and returns its standard output. Errors are *DoveadmError.
func (s *Server) Doveadm(args ...string) (string, error) {
	return s.DoveadmContext(context.Background(), args...)
}

// DoveadmContext is Doveadm bounded by ctx (and by 30 s in any case).
func (s *Server) DoveadmContext(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, doveadmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.doveadmBin, append([]string{"-c", s.ConfigPath}, args...)...)
	cmd.Dir = s.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		code := -1
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		}
		return stdout.String(), &DoveadmError{Args: args, ExitCode: code, Stderr: stderr.String(), Err: err}
	}
	return stdout.String(), nil
}

// doveadmTab runs doveadm with the tab formatter and returns one map per
// output row, keyed by the header line.
func (s *Server) doveadmTab(args ...string) ([]map[string]string, error) {
	out, err := s.Doveadm(append([]string{"-f", "tab"}, args...)...)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 {
		return nil, nil
	}
	header := strings.Split(lines[0], "\t")
	rows := make([]map[string]string, 0, len(lines)-1)
	for _, line := range lines[1:] {
		vals := strings.Split(line, "\t")
		row := make(map[string]string, len(header))
		for i, h := range header {
			if i < len(vals) {
				row[h] = vals[i]
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// MailboxStatus is what doveadm mailbox status reports.
type MailboxStatus struct {
	Messages      int
	Unseen        int
	UIDNext       uint32
	UIDValidity   uint32
	HighestModSeq uint64
}

// Status returns the status of a mailbox.
func (s *Server) Status(user, mailbox string) (MailboxStatus, error) {
	rows, err := s.doveadmTab("mailbox", "status", "-u", normUser(user),
		"messages unseen uidnext uidvalidity highestmodseq", mailbox)
	if err != nil {
		return MailboxStatus{}, err
	}
	if len(rows) != 1 {
		return MailboxStatus{}, fmt.Errorf("dovecottest: mailbox status %s/%s: %d rows", user, mailbox, len(rows))
	}
	r := rows[0]
	var st MailboxStatus
	var errs []error
	num := func(key string, bits int) uint64 {
		v, err := strconv.ParseUint(r[key], 10, bits)
		errs = append(errs, err)
		return v
	}
	st.Messages = int(num("messages", 32))
	st.Unseen = int(num("unseen", 32))
	st.UIDNext = uint32(num("uidnext", 32))
	st.UIDValidity = uint32(num("uidvalidity", 32))
	st.HighestModSeq = num("highestmodseq", 64)
	if err := errors.Join(errs...); err != nil {
		return MailboxStatus{}, fmt.Errorf("dovecottest: mailbox status %s/%s: %w", user, mailbox, err)
	}
	return st, nil
}

// MessageCount returns the number of messages in a mailbox.
func (s *Server) MessageCount(user, mailbox string) (int, error) {
	st, err := s.Status(user, mailbox)
	return st.Messages, err
}

// UIDValidity returns the UIDVALIDITY of a mailbox.
func (s *Server) UIDValidity(user, mailbox string) (uint32, error) {
	st, err := s.Status(user, mailbox)
	return st.UIDValidity, err
}

// ListUIDs returns the UIDs of a mailbox in ascending order.
func (s *Server) ListUIDs(user, mailbox string) ([]uint32, error) {
	rows, err := s.doveadmTab("fetch", "-u", normUser(user), "uid", "mailbox", mailbox, "all")
	if err != nil {
		return nil, err
	}
	uids := make([]uint32, 0, len(rows))
	for _, r := range rows {
		v, err := strconv.ParseUint(r["uid"], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("dovecottest: fetch uid: %w", err)
		}
		uids = append(uids, uint32(v))
	}
	return uids, nil
}

// Flags returns the flags and keywords of one message (without \Recent,
// which only describes doveadm's own session).
func (s *Server) Flags(user, mailbox string, uid uint32) ([]string, error) {
	rows, err := s.doveadmTab("fetch", "-u", normUser(user), "flags", "mailbox", mailbox, "uid", strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil, err
	}
	if len(rows) != 1 {
		return nil, fmt.Errorf("dovecottest: %s/%s uid %d: %w", user, mailbox, uid, ErrNotFound)
	}
	flags := strings.Fields(rows[0]["flags"])
	return slices.DeleteFunc(flags, func(f string) bool { return strings.EqualFold(f, `\Recent`) }), nil
}

// SetFlags replaces the flags and keywords of a message.
func (s *Server) SetFlags(user, mailbox string, uid uint32, flags ...string) error {
	return s.flags("replace", user, mailbox, uid, flags)
}

// AddFlags adds flags or keywords to a message.
func (s *Server) AddFlags(user, mailbox string, uid uint32, flags ...string) error {
	return s.flags("add", user, mailbox, uid, flags)
}

// RemoveFlags removes flags or keywords from a message.
func (s *Server) RemoveFlags(user, mailbox string, uid uint32, flags ...string) error {
	return s.flags("remove", user, mailbox, uid, flags)
}

func (s *Server) flags(op, user, mailbox string, uid uint32, flags []string) error {
	if op != "replace" && len(flags) == 0 {
		return nil
	}
	_, err := s.Doveadm("flags", op, "-u", normUser(user), strings.Join(flags, " "),
		"mailbox", mailbox, "uid", strconv.FormatUint(uint64(uid), 10))
	return err
}

// Expunge removes messages by UID.
func (s *Server) Expunge(user, mailbox string, uids ...uint32) error {
	if len(uids) == 0 {
		return nil
	}
	set := make([]string, len(uids))
	for i, u := range uids {
		set[i] = strconv.FormatUint(uint64(u), 10)
	}
	_, err := s.Doveadm("expunge", "-u", normUser(user), "mailbox", mailbox, "uid", strings.Join(set, ","))
	return err
}

// CreateMailbox creates a mailbox ("a/b" creates a child of "a").
func (s *Server) CreateMailbox(user, mailbox string) error {
	_, err := s.Doveadm("mailbox", "create", "-u", normUser(user), mailbox)
	return err
}

// SetUIDValidity sets the UIDVALIDITY of a mailbox. Message UIDs stay as
// they are; IMAP sessions that have the mailbox selected are disconnected
// by Dovecot.
func (s *Server) SetUIDValidity(user, mailbox string, uidValidity uint32) error {
	_, err := s.Doveadm("mailbox", "update", "-u", normUser(user),
		"--uid-validity", strconv.FormatUint(uint64(uidValidity), 10), mailbox)
	return err
}

// ChangeUIDValidity gives a mailbox a new, higher UIDVALIDITY and returns
// it. The messages keep their UIDs, so a client that ignores UIDVALIDITY
// would not notice anything else: combine with Expunge/Deliver to also
// change the UIDs.
func (s *Server) ChangeUIDValidity(user, mailbox string) (uint32, error) {
	old, err := s.UIDValidity(user, mailbox)
	if err != nil {
		return 0, err
	}
	v := old + 1
	if v == 0 {
		v = 1
	}
	if err := s.SetUIDValidity(user, mailbox, v); err != nil {
		return 0, err
	}
	return v, nil
}

// maildirFlags maps IMAP system flags to maildir info letters.
var maildirFlags = map[string]byte{
	`\draft`:    'D',
	`\flagged`:  'F',
	`\answered`: 'R',
	`\seen`:     'S',
	`\deleted`:  'T',
}

// Deliver puts a message into a mailbox by writing it straight into the
// Maildir, without IMAP or LMTP; the mailbox is created if needed. raw is
// stored byte for byte, so use CRLF line endings for messages that must
// come back byte-exact over IMAP/POP3. flags may be IMAP system flags
// (\Seen, \Answered, \Flagged, \Deleted, \Draft); use SetFlags for
// keywords. Messages delivered one after the other get increasing UIDs
// when Dovecot next syncs the mailbox.
func (s *Server) Deliver(user, mailbox string, raw []byte, flags ...string) error {
	info, err := infoSuffix(flags)
	if err != nil {
		return err
	}
	dir, err := s.maildir(normUser(user), mailbox)
	if err != nil {
		return err
	}
	name := s.uniqueName()
	tmp := filepath.Join(dir, "tmp", name)
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("dovecottest: deliver: %w", err)
	}
	if err := s.chown(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	final := filepath.Join(dir, "new", name)
	if info != "" {
		final = filepath.Join(dir, "cur", name+info)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("dovecottest: deliver: %w", err)
	}
	return nil
}

// infoSuffix returns the maildir ":2,<flags>" suffix for flags, "" for none.
func infoSuffix(flags []string) (string, error) {
	if len(flags) == 0 {
		return "", nil
	}
	var letters []byte
	for _, f := range flags {
		l, ok := maildirFlags[strings.ToLower(f)]
		if !ok {
			return "", fmt.Errorf("dovecottest: deliver: flag %q: only system flags (\\Seen \\Answered \\Flagged \\Deleted \\Draft); set keywords with SetFlags", f)
		}
		if !slices.Contains(letters, l) {
			letters = append(letters, l)
		}
	}
	slices.Sort(letters) // maildir wants the letters in ASCII order
	return ":2," + string(letters), nil
}

// uniqueName returns a maildir base name "<sec>.M<usec>P<pid>Q<n>.dovecottest"
// whose timestamp strictly increases, so Dovecot (which orders new files
// by name) assigns UIDs in delivery order.
func (s *Server) uniqueName() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	us := time.Now().UnixMicro()
	if us <= s.lastTS {
		us = s.lastTS + 1
	}
	s.lastTS = us
	s.seq++
	return fmt.Sprintf("%d.M%dP%dQ%d.dovecottest", us/1e6, us%1e6, os.Getpid(), s.seq)
}

// maildir returns the Maildir directory of a mailbox, asking Dovecot for
// the path and creating the mailbox on first use.
func (s *Server) maildir(user, mailbox string) (string, error) {
	key := user + "\x00" + mailbox
	s.mu.Lock()
	dir, ok := s.paths[key]
	s.mu.Unlock()
	if ok && isDir(filepath.Join(dir, "cur")) {
		return dir, nil
	}
	out, err := s.Doveadm("mailbox", "path", "-u", user, mailbox)
	if err != nil {
		return "", err
	}
	dir = strings.TrimSpace(out)
	if !filepath.IsAbs(dir) {
		return "", fmt.Errorf("dovecottest: mailbox path %s/%s: %q", user, mailbox, dir)
	}
	if !isDir(filepath.Join(dir, "cur")) {
		// Opening INBOX or an auto-created special-use mailbox creates it
		// on disk; any other mailbox has to be created.
		_, err := s.Doveadm("mailbox", "status", "-u", user, "messages", mailbox)
		if errors.Is(err, ErrNotFound) {
			err = s.CreateMailbox(user, mailbox)
		}
		if err != nil && !isDir(filepath.Join(dir, "cur")) {
			// (A concurrent Deliver may have created it meanwhile.)
			return "", err
		}
		if !isDir(filepath.Join(dir, "cur")) {
			return "", fmt.Errorf("dovecottest: mailbox %s/%s: no maildir at %s", user, mailbox, dir)
		}
	}
	s.mu.Lock()
	s.paths[key] = dir
	s.mu.Unlock()
	return dir, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// LoginMethods counts the logins in the server's log by SASL mechanism
// ("method=OAUTHBEARER" gives OAUTHBEARER), for tests that check which
// mechanism a client chose.
func (s *Server) LoginMethods() (map[string]int, error) {
	log, err := os.ReadFile(s.LogPath)
	if err != nil {
		return nil, fmt.Errorf("dovecottest: read the log: %w", err)
	}
	methods := map[string]int{}
	for _, field := range strings.Fields(string(log)) {
		if m, ok := strings.CutPrefix(strings.TrimSuffix(field, ","), "method="); ok && m != "" {
			methods[m]++
		}
	}
	return methods, nil
}

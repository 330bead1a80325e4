package imapgw

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailbus/mailbus/pkg/imapserver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// callTimeout bounds one call to the store.
const callTimeout = 2 * time.Minute

// copyBytes is the most message bytes COPY holds at once: it reads that
// much before appending any.
const copyBytes = 256 << 20

// batch is the most message ids one UpdateFlags, MoveMessages or
// DeleteMessages takes.
const batch = 1000

// session is one IMAP connection.
type session struct {
	g      *Gateway
	conn   *imapserver.Conn
	ctx    context.Context
	cancel context.CancelFunc

	// Set by Login.
	token    string
	tokenID  string
	device   string
	readOnly bool
	account  *mailbusv1.Account
	creds    grpc.CallOption
	counted  bool

	// addr is the remote address's key (addrKey); preAuth is true while
	// the connection counts among its connections not logged in.
	addr    string
	preAuth bool

	sel *selected

	// mailboxesState is the account state of the last ListMailboxes:
	// STATUS and LIST-STATUS announce it as HIGHESTMODSEQ (decision 43).
	mailboxesState uint64

	// idleMu is held while updates are written during IDLE (idle.go) and
	// by Close and Poll.
	idleMu sync.Mutex
}

var (
	_ imapserver.SessionIMAP4rev2      = (*session)(nil)
	_ imapserver.SessionAppendLimit    = (*session)(nil)
	_ imapserver.SessionCondStore      = (*session)(nil)
	_ imapserver.SessionIdleWatch      = (*session)(nil)
	_ imapserver.SessionUnauthenticate = (*session)(nil)
)

func (g *Gateway) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	addr := addrKey(c.NetConn().RemoteAddr())
	if !g.preAuth.acquire(addr) {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Code: imap.ResponseCodeUnavailable,
			Text: fmt.Sprintf("Too many connections from your address that have not logged in (%d)", g.cfg.MaxPreAuthConnsPerAddress)}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &session{g: g, conn: c, ctx: ctx, cancel: cancel, addr: addr, preAuth: true}, nil, nil
}

// loggedIn takes the connection out of its address's connections not
// logged in.
func (s *session) loggedIn() {
	if s.preAuth {
		s.preAuth = false
		s.g.preAuth.release(s.addr)
	}
}

func (s *session) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, callTimeout)
}

func (s *session) mailboxes() mailbusv1.MailboxServiceClient {
	return mailbusv1.NewMailboxServiceClient(s.g.cfg.StoreConn)
}

// Close implements imapserver.Session.
func (s *session) Close() error {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	s.unselect()
	s.logout()
	s.loggedIn()
	s.cancel()
	return nil
}

func (s *session) logout() {
	if s.counted {
		s.g.release(s.tokenID, s)
		s.counted = false
	}
	s.token, s.tokenID, s.device, s.account, s.creds = "", "", "", nil, nil
}

// Unauthenticate implements imapserver.SessionUnauthenticate.
func (s *session) Unauthenticate() error {
	s.unselect()
	s.logout()
	return nil
}

var errLoginFailed = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed,
	Text: "Authentication failed: the user name is an account's name (or its upstream user name), the password a device API token of that account"}

// Login implements imapserver.Session: the user name names an account, the
// password is an API token that reaches it.
func (s *session) Login(username, password string) (err error) {
	remote := s.conn.NetConn().RemoteAddr()
	if _, isTLS := s.conn.NetConn().(*tls.Conn); !isTLS && !isLoopback(remote) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodePrivacyRequired, Text: "Log in after STARTTLS or over implicit TLS"}
	}
	if !s.g.logins.begin(s.addr, username) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Too many failed logins from your address: try again later"}
	}
	failed := false
	defer func() {
		s.g.logins.end(s.addr, username, failed)
		if err == nil {
			s.loggedIn()
		}
	}()
	fail := func() error {
		failed = true
		return errLoginFailed
	}
	if apitoken.Check(password) != nil {
		return fail()
	}
	creds := grpc.PerRPCCredentials(apitoken.Credentials(password))
	ctx, cancel := s.call()
	defer cancel()
	me, err := mailbusv1.NewTokenServiceClient(s.g.cfg.StoreConn).GetCallerToken(ctx, &mailbusv1.GetCallerTokenRequest{}, creds)
	if status.Code(err) == codes.Unauthenticated || status.Code(err) == codes.PermissionDenied {
		return fail()
	}
	if err != nil {
		return imapError(err, "check the token")
	}
	acct, err := findAccount(ctx, mailbusv1.NewAccountServiceClient(s.g.cfg.StoreConn), username, creds)
	if err != nil {
		return imapError(err, "list the accounts")
	}
	if acct == nil {
		return fail()
	}
	tok := me.GetToken()
	if tok.GetRole() != mailbusv1.TokenRole_TOKEN_ROLE_DEVICE {
		// An admin or service token is no mail client's password: it
		// would give an IMAP client (and a leaked IMAP password) every
		// account.
		return fail()
	}
	if !s.g.acquire(tok.GetId(), password, s) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: fmt.Sprintf("This token has %d connections open already", s.g.cfg.MaxConnsPerToken)}
	}
	s.counted = true
	s.token, s.tokenID, s.creds = password, tok.GetId(), creds
	s.device = "imap:" + tok.GetId()
	s.readOnly = tok.GetReadOnly()
	s.account = acct
	s.g.log.Debug("imap login", "account", acct.Id, "token", tok.GetId(), "read_only", s.readOnly, "remote", remote.String())
	return nil
}

// findAccount returns the account the token reaches whose name, or
// upstream user name, is username (case-insensitive); nil when none.
func findAccount(ctx context.Context, c mailbusv1.AccountServiceClient, username string, creds grpc.CallOption) (*mailbusv1.Account, error) {
	var byUser *mailbusv1.Account
	page := ""
	for {
		resp, err := c.ListAccounts(ctx, &mailbusv1.ListAccountsRequest{PageSize: 100, PageToken: page}, creds)
		if err != nil {
			return nil, err
		}
		for _, a := range resp.Accounts {
			if strings.EqualFold(a.Name, username) {
				return a, nil
			}
			if byUser == nil && strings.EqualFold(a.Username, username) {
				byUser = a
			}
		}
		if page = resp.NextPageToken; page == "" {
			return byUser, nil
		}
	}
}

func remoteHost(a net.Addr) string {
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

func isLoopback(a net.Addr) bool {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.IsLoopback()
	}
	ip := net.ParseIP(remoteHost(a))
	return ip != nil && ip.IsLoopback()
}

// AppendLimit implements imapserver.SessionAppendLimit: the store's
// largest message, or the gateway's APPEND budget if that is smaller.
func (s *session) AppendLimit() uint32 { return uint32(s.appendLimitBytes()) }

// appendLimitBytes is AppendLimit as an int64.
func (s *session) appendLimitBytes() int64 {
	return min(s.g.cfg.MaxMessageSize, s.g.cfg.MaxAppendBytes)
}

// errReadOnly answers changes through a read-only token.
var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNoPerm, Text: "Read-only: this token may not change the mailbox"}

// checkWrite refuses changes through a read-only token: CREATE, DELETE,
// RENAME, APPEND and COPY, which EXAMINE does not restrict.
func (s *session) checkWrite() error {
	if s.readOnly {
		return errReadOnly
	}
	return nil
}

// checkSelWrite refuses changes of the selected mailbox's messages (STORE,
// EXPUNGE, MOVE) through a read-only token or selection (EXAMINE).
func (s *session) checkSelWrite() error {
	if s.readOnly || (s.sel != nil && s.sel.readOnly) {
		return errReadOnly
	}
	return nil
}

// imapError turns a store error into an IMAP NO with the store's reason.
func imapError(err error, what string) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return err
	}
	st := status.Convert(err)
	e := &imap.Error{Type: imap.StatusResponseTypeNo, Text: fmt.Sprintf("Cannot %s: %s", what, st.Message())}
	switch st.Code() {
	case codes.NotFound:
		e.Code = imap.ResponseCodeNonExistent
	case codes.PermissionDenied:
		e.Code = imap.ResponseCodeNoPerm
	case codes.AlreadyExists:
		e.Code = imap.ResponseCodeAlreadyExists
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		e.Code = imap.ResponseCodeCannot
	case codes.ResourceExhausted:
		e.Code = imap.ResponseCodeLimit
	case codes.Unauthenticated:
		e.Code = imap.ResponseCodeAuthorizationFailed
		e.Text = "The store no longer accepts this token (revoked or expired)"
	default:
		// Unavailable, Unknown, DeadlineExceeded, Internal...: the text is
		// gRPC's or the store's internals (dial errors name internal
		// addresses), not for the client.
		e.Code = imap.ResponseCodeUnavailable
		e.Text = fmt.Sprintf("Cannot %s: the store is unavailable, try again later", what)
	}
	return e
}

// listMailboxes reads the account's mailboxes.
func (s *session) listMailboxes() ([]*mailbusv1.Mailbox, error) {
	ctx, cancel := s.call()
	defer cancel()
	resp, err := s.mailboxes().ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: s.account.Id}, s.creds)
	if err != nil {
		return nil, imapError(err, "list the mailboxes")
	}
	s.mailboxesState = resp.State
	return resp.Mailboxes, nil
}

// imapName is the name a mailbox has over IMAP: INBOX for the inbox.
func imapName(m *mailbusv1.Mailbox) string {
	if m.Role == mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX {
		return "INBOX"
	}
	return m.Name
}

// delimiter is the account's hierarchy delimiter: the store's default "/"
// while only the inbox (which has none) exists.
func delimiter(mbs []*mailbusv1.Mailbox) rune {
	for _, m := range mbs {
		if m.Delimiter != "" {
			return []rune(m.Delimiter)[0]
		}
	}
	return '/'
}

var errNoMailbox = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}

// findMailbox returns the mailbox with an IMAP name ("INBOX" in any case
// is the inbox).
func (s *session) findMailbox(name string) (*mailbusv1.Mailbox, []*mailbusv1.Mailbox, error) {
	mbs, err := s.listMailboxes()
	if err != nil {
		return nil, nil, err
	}
	if d := delimiter(mbs); d != 0 {
		name = strings.TrimSuffix(name, string(d))
	}
	for _, m := range mbs {
		if n := imapName(m); n == name || (n == "INBOX" && strings.EqualFold(name, "INBOX")) {
			return m, mbs, nil
		}
	}
	return nil, mbs, errNoMailbox
}

// specialUse maps a mailbox role to its RFC 6154 attribute.
var specialUse = map[mailbusv1.MailboxRole]imap.MailboxAttr{
	mailbusv1.MailboxRole_MAILBOX_ROLE_SENT:    imap.MailboxAttrSent,
	mailbusv1.MailboxRole_MAILBOX_ROLE_DRAFTS:  imap.MailboxAttrDrafts,
	mailbusv1.MailboxRole_MAILBOX_ROLE_TRASH:   imap.MailboxAttrTrash,
	mailbusv1.MailboxRole_MAILBOX_ROLE_JUNK:    imap.MailboxAttrJunk,
	mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE: imap.MailboxAttrArchive,
	mailbusv1.MailboxRole_MAILBOX_ROLE_ALL:     imap.MailboxAttrAll,
	mailbusv1.MailboxRole_MAILBOX_ROLE_FLAGGED: imap.MailboxAttrFlagged,
}

// List implements imapserver.Session. Every mailbox counts as subscribed:
// the store has no subscriptions.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	mbs, err := s.listMailboxes()
	if err != nil {
		return err
	}
	delim := delimiter(mbs)
	if len(patterns) == 0 || (len(patterns) == 1 && patterns[0] == "") {
		// The hierarchy delimiter and root (RFC 3501 section 6.3.8).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	names := make([]string, len(mbs))
	for i, m := range mbs {
		names[i] = imapName(m)
	}
	match := func(name string) bool {
		return slices.ContainsFunc(patterns, func(p string) bool { return imapserver.MatchList(name, delim, ref, p) })
	}
	for i, m := range mbs {
		name := names[i]
		if !match(name) {
			continue
		}
		attr, special := specialUse[m.Role]
		if options.SelectSpecialUse && !special {
			continue
		}
		data := &imap.ListData{Delim: delim, Mailbox: name}
		if delim != 0 {
			prefix := name + string(delim)
			if slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, prefix) }) {
				data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
			} else {
				data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
			}
		}
		if special {
			data.Attrs = append(data.Attrs, attr)
		}
		if options.ReturnSubscribed || options.SelectSubscribed {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if options.ReturnStatus != nil {
			data.Status = s.statusData(m, name, options.ReturnStatus)
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	if delim == 0 || options.SelectSpecialUse || options.SelectSubscribed {
		return nil
	}
	// The levels above a mailbox that the store has no mailbox for (a
	// server's "Archive" of "Archive/2026"): \Noselect, so that a client
	// shows the hierarchy (RFC 3501 section 6.3.8).
	for _, p := range missingParents(names, delim) {
		if !match(p) {
			continue
		}
		if err := w.WriteList(&imap.ListData{Delim: delim, Mailbox: p, Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren}}); err != nil {
			return err
		}
	}
	return nil
}

// missingParents returns the hierarchy levels above names that are not
// names themselves, sorted.
func missingParents(names []string, delim rune) []string {
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[n] = true
	}
	var out []string
	for _, n := range names {
		for i, r := range n {
			if r != delim || i == 0 {
				continue
			}
			if p := n[:i]; !have[p] {
				have[p] = true
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (s *session) statusData(m *mailbusv1.Mailbox, name string, options *imap.StatusOptions) *imap.StatusData {
	d := &imap.StatusData{Mailbox: name}
	if options.NumMessages {
		n := m.TotalMessages
		d.NumMessages = &n
	}
	if options.NumRecent {
		var zero uint32
		d.NumRecent = &zero
	}
	if options.UIDNext {
		d.UIDNext = imap.UID(max(m.ImapUidnext, 1))
	}
	if options.UIDValidity {
		d.UIDValidity = m.ImapUidvalidity
	}
	if options.NumUnseen {
		n := m.UnreadMessages
		d.NumUnseen = &n
	}
	if options.AppendLimit {
		n := s.AppendLimit()
		d.AppendLimit = &n
	}
	if options.HighestModSeq {
		d.HighestModSeq = max(s.mailboxesState, 1)
	}
	return d
}

// Status implements imapserver.Session.
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	m, _, err := s.findMailbox(name)
	if err != nil {
		return nil, err
	}
	if options.NumDeleted || options.Size || options.DeletedStorage {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "STATUS item not supported"}
	}
	return s.statusData(m, imapName(m), options), nil
}

// Namespace implements imapserver.SessionNamespace: one personal
// namespace.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	mbs, err := s.listMailboxes()
	if err != nil {
		return nil, err
	}
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Delim: delimiter(mbs)}}}, nil
}

// Subscribe implements imapserver.Session: every mailbox is subscribed.
func (s *session) Subscribe(string) error { return nil }

// Unsubscribe implements imapserver.Session: a no-op, every mailbox stays
// subscribed (the store keeps no subscriptions).
func (s *session) Unsubscribe(string) error { return nil }

// Create implements imapserver.Session.
func (s *session) Create(name string, _ *imap.CreateOptions) error {
	if err := s.checkWrite(); err != nil {
		return err
	}
	mbs, err := s.listMailboxes()
	if err != nil {
		return err
	}
	if d := delimiter(mbs); d != 0 {
		name = strings.TrimSuffix(name, string(d))
	}
	if strings.EqualFold(name, "INBOX") {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "INBOX exists"}
	}
	ctx, cancel := s.call()
	defer cancel()
	_, err = s.mailboxes().CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: s.account.Id, Name: name, DeviceId: s.device}, s.creds)
	if err != nil {
		return imapError(err, "create the mailbox")
	}
	return nil
}

// Delete implements imapserver.Session.
func (s *session) Delete(name string) error {
	if err := s.checkWrite(); err != nil {
		return err
	}
	m, _, err := s.findMailbox(name)
	if err != nil {
		return err
	}
	ctx, cancel := s.call()
	defer cancel()
	if _, err := s.mailboxes().DeleteMailbox(ctx, &mailbusv1.DeleteMailboxRequest{MailboxId: m.Id, DeviceId: s.device}, s.creds); err != nil {
		return imapError(err, "delete the mailbox")
	}
	return nil
}

// Rename implements imapserver.Session.
func (s *session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	if err := s.checkWrite(); err != nil {
		return err
	}
	m, mbs, err := s.findMailbox(oldName)
	if err != nil {
		return err
	}
	if d := delimiter(mbs); d != 0 {
		newName = strings.TrimSuffix(newName, string(d))
	}
	ctx, cancel := s.call()
	defer cancel()
	if _, err := s.mailboxes().RenameMailbox(ctx, &mailbusv1.RenameMailboxRequest{MailboxId: m.Id, NewName: newName, DeviceId: s.device}, s.creds); err != nil {
		return imapError(err, "rename the mailbox")
	}
	return nil
}

// storeFlags are the flags a client may set: \Recent is the server's.
func storeFlags(flags []imap.Flag) []string {
	var out []string
	for _, f := range flags {
		if strings.EqualFold(string(f), `\Recent`) {
			continue
		}
		out = append(out, string(f))
	}
	return out
}

// Append implements imapserver.Session.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if err := s.checkWrite(); err != nil {
		return nil, err
	}
	m, _, err := s.findMailbox(name)
	if errors.Is(err, errNoMailbox) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	if err != nil {
		return nil, err
	}
	// The literal's announced size is held from the gateway-wide budget
	// until the store has answered; imapserver refused one above
	// AppendLimit (NO [TOOBIG]) already.
	size := r.Size()
	if size > s.appendLimitBytes() {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig,
			Text: fmt.Sprintf("Literals are limited to %d bytes for this command", s.appendLimitBytes())}
	}
	if err := s.g.appends.acquire(s.ctx, size); err != nil {
		return nil, err
	}
	defer s.g.appends.release(size)
	raw, err := readLiteral(r, size)
	if err != nil {
		return nil, fmt.Errorf("imapgw: read the APPEND literal: %w", err)
	}
	req := &mailbusv1.AppendMessageRequest{MailboxId: m.Id, Raw: raw, Flags: storeFlags(options.Flags), DeviceId: s.device}
	if !options.Time.IsZero() {
		req.InternalDate = timestamppb.New(options.Time)
	}
	ctx, cancel := s.call()
	defer cancel()
	resp, err := s.mailboxes().AppendMessage(ctx, req, s.creds)
	if err != nil {
		return nil, imapError(err, "append the message")
	}
	if m.ImapUidvalidity == 0 || resp.GetMessage().GetImapUid() == 0 {
		return nil, nil
	}
	return &imap.AppendData{UID: imap.UID(resp.Message.ImapUid), UIDValidity: m.ImapUidvalidity}, nil
}

// Select implements imapserver.Session.
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.unselect()
	m, _, err := s.findMailbox(name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.call()
	defer cancel()
	// Subscribed before listing: every change after the list is delivered.
	sub, err := s.g.hub.subscribe(ctx, s.account.Id, m.Id, s.token)
	if err != nil {
		return nil, imapError(err, "watch the account")
	}
	msgs, state, err := listAll(ctx, s.mailboxes(), m.Id, s.creds, s.g.flags)
	if err != nil {
		s.g.hub.unsubscribe(s.account.Id, sub)
		return nil, imapError(err, "list the mailbox")
	}
	// A read-only token's SELECT is answered [READ-ONLY], like EXAMINE.
	options.ReadOnly = options.ReadOnly || s.readOnly
	sel := newSelected(m, msgs, options.ReadOnly, sub, s.g.flags)
	sel.highestModSeq = max(state, 1)
	sel.delivered = sel.highestModSeq
	s.sel = sel
	data := &imap.SelectData{
		Flags:         []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft},
		NumMessages:   uint32(len(msgs)),
		UIDNext:       imap.UID(sel.uidNext()),
		UIDValidity:   m.ImapUidvalidity,
		HighestModSeq: sel.highestModSeq,
	}
	if !sel.readOnly {
		// A read-only token's SELECT still ends in [READ-WRITE] (imapserver
		// writes it from the command); no PERMANENTFLAGS tells the client
		// that nothing can be changed.
		data.PermanentFlags = append(slices.Clone(data.Flags), imap.FlagWildcard)
	}
	for i, msg := range msgs {
		if !slices.Contains(msg.flags, string(imap.FlagSeen)) {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data, nil
}

func (s *session) unselect() {
	if s.sel != nil {
		s.g.hub.unsubscribe(s.account.Id, s.sel.sub)
		s.sel = nil
	}
}

// Unselect implements imapserver.Session.
func (s *session) Unselect() error {
	s.unselect()
	return nil
}

// Poll implements imapserver.Session: the changes of the selected mailbox
// since the client was last told.
// It takes idleMu: when the connection breaks during IDLE, imapserver
// polls without waiting for Idle to return.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	return s.poll(w, allowExpunge)
}

// poll is Poll with idleMu held.
func (s *session) poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	ctx, cancel := s.call()
	defer cancel()
	if s.sel.expunged && allowExpunge && s.sel.ownRemoval > s.sel.delivered && s.conn.CondStoreEnabled() {
		// The HIGHESTMODSEQ after EXPUNGE or MOVE passes the expunge
		// once its events (and every earlier change) are applied.
		wctx, wcancel := context.WithTimeout(ctx, ownEventWait)
		s.sel.sub.waitSeen(wctx, s.sel.ownRemoval)
		wcancel()
	}
	if err := s.sel.poll(ctx, s, w, allowExpunge); err != nil {
		return err
	}
	return s.sel.tellHighestModSeq(w)
}

// ownEventWait is how long the poll after EXPUNGE or MOVE waits for the
// events of the session's own change (usually milliseconds): without
// them the HIGHESTMODSEQ it tells stays below the expunge, which is
// correct but has the client's next QRESYNC ask for more.
const ownEventWait = 2 * time.Second

// Idle implements imapserver.Session (imapserver calls IdleWatch
// instead; see idle.go).
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	end, err := s.IdleWatch(w)
	<-stop
	if stopErr := end(); err == nil {
		err = stopErr
	}
	return err
}

// Expunge implements imapserver.Session: deletes the messages flagged
// \Deleted (of uids, when given) in the store.
func (s *session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if err := s.checkSelWrite(); err != nil {
		if *w == (imapserver.ExpungeWriter{}) {
			// CLOSE (imapserver's writer for it writes nothing): on a
			// read-only selection it removes nothing and succeeds (RFC
			// 3501 section 6.4.2).
			return nil
		}
		return err
	}
	s.sel.expunged = true
	var ids []string
	var last uint32
	if n := len(s.sel.msgs); n > 0 {
		last = s.sel.msgs[n-1].uid
	}
	for _, m := range s.sel.msgs {
		if !slices.Contains(m.flags, string(imap.FlagDeleted)) {
			continue
		}
		if uids != nil && !uidContains(*uids, m.uid, last) {
			continue
		}
		ids = append(ids, m.id)
	}
	for chunk := range slices.Chunk(ids, batch) {
		// The messages another device deleted meanwhile are expunged too.
		_, err := eachExisting(chunk, func(ids []string) error {
			ctx, cancel := s.call()
			defer cancel()
			resp, err := s.mailboxes().DeleteMessages(ctx, &mailbusv1.DeleteMessagesRequest{AccountId: s.account.Id, MessageIds: ids, DeviceId: s.device}, s.creds)
			s.sel.ownRemoval = max(s.sel.ownRemoval, resp.GetState())
			return err
		})
		if err != nil && status.Code(err) != codes.NotFound {
			return imapError(err, "expunge")
		}
		if err := s.removeAndTell(chunk, w.WriteExpungeUID); err != nil {
			return err
		}
	}
	return nil
}

// eachExisting calls call with ids. When the store answers NotFound (it
// refuses the whole call when one message is gone: another device deleted
// it since the client was told), it halves the ids and calls again for
// each half, so that the messages still there are done; it returns the ids
// found gone (those refused alone). The events of their deletion expunge
// them from the view later. When every id is gone, the NotFound is
// returned: it may be about something else (a deleted destination).
func eachExisting(ids []string, call func([]string) error) (gone []string, err error) {
	var notFound error
	var run func([]string) error
	run = func(ids []string) error {
		err := call(ids)
		if status.Code(err) != codes.NotFound {
			return err
		}
		notFound = err
		if len(ids) == 1 {
			gone = append(gone, ids[0])
			return nil
		}
		h := len(ids) / 2
		if err := run(ids[:h]); err != nil {
			return err
		}
		return run(ids[h:])
	}
	if err := run(ids); err != nil {
		return gone, err
	}
	if len(ids) > 0 && len(gone) == len(ids) {
		return gone, notFound
	}
	return gone, nil
}

// isGone reports whether an error says that a message is not in the
// store (any more).
func isGone(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Code == imap.ResponseCodeNonExistent
}

// removeAndTell takes messages out of the view, telling the client each
// sequence number from the highest down (each stays valid that way): one
// pass over the view and one compaction, whatever the number of ids.
func (s *session) removeAndTell(ids []string, write func(seq uint32, uid imap.UID) error) error {
	return removeAndTell(s.sel, ids, write)
}

func removeAndTell(sel *selected, ids []string, write func(seq uint32, uid imap.UID) error) error {
	if len(ids) == 0 {
		return nil
	}
	set := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		set[id] = struct{}{}
	}
	type removed struct {
		seq uint32
		uid imap.UID
	}
	var gone []removed
	kept := sel.msgs[:0]
	for i, m := range sel.msgs {
		if _, ok := set[m.id]; ok {
			gone = append(gone, removed{uint32(i + 1), imap.UID(m.uid)})
			continue
		}
		kept = append(kept, m)
	}
	clear(sel.msgs[len(kept):]) // drop the references of the removed
	sel.msgs = kept
	if write == nil {
		return nil
	}
	for _, r := range slices.Backward(gone) {
		if err := write(r.seq, r.uid); err != nil {
			return err
		}
	}
	return nil
}

// Store implements imapserver.Session with UpdateFlags.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	if err := s.checkSelWrite(); err != nil {
		return err
	}
	_, err := s.store(w, s.sel.resolve(numSet), flags, nil)
	return err
}

// StoreUnchangedSince implements imapserver.SessionCondStore: STORE
// (UNCHANGEDSINCE n). The condition goes to the store with the change
// (UpdateFlagsRequest.unchanged_since), which compares each message's
// state with n in the change's transaction (RFC 7162 section 3.1.3: the
// check and the change are one operation, decision 43): a message whose
// mod-sequence is above n, also through another device's change the view
// has not heard of yet or one committed while the command runs, is left
// as it is and named in [MODIFIED]; the others are changed.
func (s *session) StoreUnchangedSince(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, unchangedSince uint64) (imap.NumSet, error) {
	if err := s.checkSelWrite(); err != nil {
		return nil, err
	}
	modified, err := s.store(w, s.sel.resolve(numSet), flags, &unchangedSince)
	if err != nil {
		return nil, err
	}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for _, m := range modified {
		seqs.AddNum(s.sel.seqOf(m))
		uids.AddNum(imap.UID(m.uid))
	}
	if _, ok := numSet.(imap.UIDSet); ok {
		return uids, nil
	}
	return seqs, nil
}

// unchangedSinceRead splits messages of the view by the store's current
// mod-sequences for a conditional STORE that changes nothing (the store
// refuses an empty change, and a STORE that writes nothing has nothing to
// make atomic): the ones at most n are kept, the others are modified; the
// ones deleted meanwhile are in neither (their EXPUNGE follows from the
// events).
func (s *session) unchangedSinceRead(msgs []*message, n uint64) (keep, modified []*message, err error) {
	current, err := s.currentModSeqs(msgs)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range msgs {
		modSeq, ok := current[m.uid]
		switch {
		case !ok:
		case modSeq > n:
			modified = append(modified, m)
		default:
			keep = append(keep, m)
		}
	}
	return keep, modified, nil
}

// currentModSeqs reads the store's current mod-sequences of messages of
// the view (in UID order), by UID: the mailbox is listed from the first
// one's UID until past the last one's. A message not in the answer is
// gone from the mailbox.
func (s *session) currentModSeqs(msgs []*message) (map[uint32]uint64, error) {
	out := make(map[uint32]uint64, len(msgs))
	if len(msgs) == 0 {
		return out, nil
	}
	want := make(map[uint32]string, len(msgs))
	for _, m := range msgs {
		want[m.uid] = m.id
	}
	first, last := msgs[0].uid, msgs[len(msgs)-1].uid
	token := ""
	for {
		ctx, cancel := s.call()
		resp, err := s.mailboxes().ListMessages(ctx, &mailbusv1.ListMessagesRequest{
			// Pages sized by the UIDs' span, not by their count: a set like
			// 1,100000 would otherwise be listed two messages a call.
			MailboxId: s.sel.mbox.Id, PageSize: uint32(min(uint64(last-first)+1, 1000)), PageToken: token,
			Order: mailbusv1.MessageOrder_MESSAGE_ORDER_IMAP_UID, MinImapUid: first,
		}, s.creds)
		cancel()
		if err != nil {
			return nil, imapError(err, "read the messages' mod-sequences")
		}
		for _, m := range resp.Messages {
			if m.ImapUid > last {
				return out, nil
			}
			if id, ok := want[m.ImapUid]; ok && id == m.Id {
				out[m.ImapUid] = max(m.State, 1)
			}
		}
		if len(out) == len(want) {
			return out, nil
		}
		if token = resp.NextPageToken; token == "" {
			return out, nil
		}
	}
}

// writeFlagsFetch writes the untagged FETCH of a message STORE changed:
// UID and FLAGS (not with .SILENT), and MODSEQ once CONDSTORE is enabled
// (RFC 7162 section 3.1.3: also with .SILENT, so that the client learns
// the new mod-sequence).
func (s *session) writeFlagsFetch(w *imapserver.FetchWriter, m *message, silent bool) error {
	condStore := s.conn.CondStoreEnabled()
	if silent && !condStore {
		return nil
	}
	rw := w.CreateMessage(s.sel.seqOf(m))
	rw.WriteUID(imap.UID(m.uid))
	if !silent {
		rw.WriteFlags(imapFlags(m.flags))
	}
	if condStore {
		rw.WriteModSeq(m.modSeq())
		s.sel.tellModSeq(m.modSeq())
	}
	return rw.Close()
}

// store changes the flags of messages of the view. With unchangedSince,
// only of the ones whose mod-sequence in the store is at most
// *unchangedSince, checked by the store in the change's transaction; the
// others are returned as modified.
func (s *session) store(w *imapserver.FetchWriter, msgs []*message, flags *imap.StoreFlags, unchangedSince *uint64) (modified []*message, err error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	want := storeFlags(flags.Flags)
	var add, remove []string
	switch flags.Op {
	case imap.StoreFlagsAdd:
		add = want
	case imap.StoreFlagsDel:
		remove = want
	case imap.StoreFlagsSet:
		// (current ∪ want) − (all current flags − want) = want.
		add = want
		for _, m := range msgs {
			for _, f := range m.flags {
				if !containsFold(want, f) && !slices.Contains(remove, f) {
					remove = append(remove, f)
				}
			}
		}
	}
	if len(add) == 0 && len(remove) == 0 {
		// Nothing to change (FLAGS () of messages without flags, or only
		// \Recent): the store refuses an empty change; the client gets
		// the flags as they are.
		if unchangedSince != nil {
			if msgs, modified, err = s.unchangedSinceRead(msgs, *unchangedSince); err != nil {
				return nil, err
			}
		}
		if flags.Silent {
			return modified, nil
		}
		for _, m := range msgs {
			if err := s.writeFlagsFetch(w, m, false); err != nil {
				return nil, err
			}
		}
		return modified, nil
	}
	for chunk := range slices.Chunk(msgs, batch) {
		ids := make([]string, len(chunk))
		for i, m := range chunk {
			ids[i] = m.id
		}
		// The messages another device deleted meanwhile are left out (no
		// FETCH for them; their EXPUNGE follows from the events).
		var changed []*mailbusv1.MessageSummary
		var modifiedIDs []string
		_, err := eachExisting(ids, func(ids []string) error {
			ctx, cancel := s.call()
			defer cancel()
			resp, err := s.mailboxes().UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: s.account.Id, MessageIds: ids, Add: add, Remove: remove, DeviceId: s.device, UnchangedSince: unchangedSince}, s.creds)
			if err == nil {
				changed = append(changed, resp.Messages...)
				modifiedIDs = append(modifiedIDs, resp.ModifiedMessageIds...)
			}
			return err
		})
		if err != nil {
			return nil, imapError(err, "store the flags")
		}
		if len(modifiedIDs) > 0 {
			byID := make(map[string]*message, len(chunk))
			for _, m := range chunk {
				byID[m.id] = m
			}
			for _, id := range modifiedIDs {
				if m := byID[id]; m != nil {
					modified = append(modified, m)
				}
			}
		}
		for _, after := range changed {
			m := s.sel.findSummary(after)
			if m == nil {
				continue
			}
			m.flags = s.sel.flags.intern(after.Flags)
			m.state = max(m.state, after.State)
			if err := s.writeFlagsFetch(w, m, flags.Silent); err != nil {
				return nil, err
			}
		}
	}
	return modified, nil
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}

// destination finds the target of COPY and MOVE; MOVE may not name the
// selected mailbox (COPY may: RFC 3501 section 6.4.7).
func (s *session) destination(name string, move bool) (*mailbusv1.Mailbox, error) {
	dest, _, err := s.findMailbox(name)
	if errors.Is(err, errNoMailbox) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}
	}
	if err != nil {
		return nil, err
	}
	if move && dest.Id == s.sel.mbox.Id {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Source and destination mailboxes are the same"}
	}
	return dest, nil
}

// Copy implements imapserver.Session: the store has no copy call, so each
// message is read (GetRawMessage) and appended (AppendMessage) with its
// flags and internal date.
func (s *session) Copy(numSet imap.NumSet, destName string) (*imap.CopyData, error) {
	if err := s.checkWrite(); err != nil {
		return nil, err
	}
	dest, err := s.destination(destName, false)
	if err != nil {
		return nil, err
	}
	var src, dst imap.UIDSet
	// Every message is read before any is appended, so that a failed read
	// leaves the destination unchanged (RFC 3501 section 6.4.7), in groups
	// of up to copyBytes; a message another device deleted meanwhile is
	// left out (not in COPYUID).
	msgs := s.sel.resolve(numSet)
	for len(msgs) > 0 {
		n, size := 0, int64(0)
		for n < len(msgs) && (n == 0 || size+int64(msgs[n].size) <= copyBytes) {
			size += int64(msgs[n].size)
			n++
		}
		group := msgs[:n]
		msgs = msgs[n:]
		raws := make([][]byte, len(group))
		for i, m := range group {
			raw, err := s.raw(m)
			if isGone(err) {
				continue
			}
			if err != nil {
				return nil, err
			}
			raws[i] = raw
		}
		for i, m := range group {
			if raws[i] == nil {
				continue
			}
			ctx, cancel := s.call()
			resp, err := s.mailboxes().AppendMessage(ctx, &mailbusv1.AppendMessageRequest{
				MailboxId: dest.Id, Raw: raws[i], Flags: m.flags, InternalDate: timestamppb.New(m.internalDate()), DeviceId: s.device,
			}, s.creds)
			cancel()
			raws[i] = nil
			if err != nil {
				return nil, imapError(err, "copy the message")
			}
			src.AddNum(imap.UID(m.uid))
			dst.AddNum(imap.UID(resp.GetMessage().GetImapUid()))
		}
	}
	if dest.ImapUidvalidity == 0 || len(src) == 0 {
		return nil, nil
	}
	return &imap.CopyData{UIDValidity: dest.ImapUidvalidity, SourceUIDs: src, DestUIDs: dst}, nil
}

// Move implements imapserver.SessionMove with MoveMessages: the messages
// get new UIDs in the destination (COPYUID).
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, destName string) error {
	if err := s.checkSelWrite(); err != nil {
		return err
	}
	dest, err := s.destination(destName, true)
	if err != nil {
		return err
	}
	s.sel.expunged = true
	msgs := s.sel.resolve(numSet)
	var src, dst imap.UIDSet
	var moved []string
	uidOf := make(map[string]uint32, len(msgs))
	for _, m := range msgs {
		uidOf[m.id] = m.uid
	}
	for chunk := range slices.Chunk(msgs, batch) {
		ids := make([]string, len(chunk))
		for i, m := range chunk {
			ids[i] = m.id
		}
		// The messages another device deleted meanwhile are left out (not
		// in COPYUID; their EXPUNGE follows from the events).
		_, err := eachExisting(ids, func(ids []string) error {
			ctx, cancel := s.call()
			defer cancel()
			resp, err := s.mailboxes().MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: s.account.Id, MessageIds: ids, ToMailboxId: dest.Id, DeviceId: s.device}, s.creds)
			if err != nil {
				return err
			}
			s.sel.ownRemoval = max(s.sel.ownRemoval, resp.State)
			for i, after := range resp.Messages {
				src.AddNum(imap.UID(uidOf[ids[i]]))
				dst.AddNum(imap.UID(after.ImapUid))
			}
			moved = append(moved, ids...)
			return nil
		})
		if err != nil {
			if len(moved) > 0 {
				// Tell what did move before failing.
				if err := s.removeAndTell(moved, w.WriteExpungeUID); err != nil {
					return err
				}
			}
			return imapError(err, "move the messages")
		}
	}
	if len(moved) > 0 && dest.ImapUidvalidity != 0 {
		if err := w.WriteCopyData(&imap.CopyData{UIDValidity: dest.ImapUidvalidity, SourceUIDs: src, DestUIDs: dst}); err != nil {
			return err
		}
	}
	return s.removeAndTell(moved, w.WriteExpungeUID)
}

// raw reads a message's raw bytes.
func (s *session) raw(m *message) ([]byte, error) {
	return s.rawContext(s.ctx, m)
}

// rawContext is raw under ctx (which the call's timeout shortens).
func (s *session) rawContext(ctx context.Context, m *message) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	stream, err := s.mailboxes().GetRawMessage(ctx, &mailbusv1.GetRawMessageRequest{MessageId: m.id}, s.creds)
	if err != nil {
		return nil, imapError(err, "read the message")
	}
	buf := make([]byte, 0, m.size)
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, imapError(err, "read the message")
		}
		buf = append(buf, chunk.Data...)
	}
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/privatefile"
)

// connectTimeout bounds one connection attempt to the store, so that an
// unreachable address fails within seconds, not after gRPC's 20 s default.
const connectTimeout = 3 * time.Second

// client is a connection to the store with the services' clients.
type client struct {
	app       *app
	conn      *grpc.ClientConn
	accounts  mailbusv1.AccountServiceClient
	mailboxes mailbusv1.MailboxServiceClient
	sync      mailbusv1.SyncServiceClient
	tokens    mailbusv1.TokenServiceClient
}

// dial connects to the store lazily; the first request reports an
// unreachable store.
func (a *app) dial() (*client, error) {
	if strings.TrimSpace(a.server) == "" {
		return nil, usagef("--server is empty: give the store's host:port (default %s)", DefaultServer)
	}
	token, err := a.resolveToken()
	if err != nil {
		return nil, err
	}
	conn, err := a.connect(a.server, "--server", token)
	if err != nil {
		return nil, err
	}
	return &client{
		tokens:    mailbusv1.NewTokenServiceClient(conn),
		app:       a,
		conn:      conn,
		accounts:  mailbusv1.NewAccountServiceClient(conn),
		mailboxes: mailbusv1.NewMailboxServiceClient(conn),
		sync:      mailbusv1.NewSyncServiceClient(conn),
	}, nil
}

// connect makes a lazy connection to a mailbus gRPC server at addr
// (named by flag in errors), with the API token and the transport
// security of the global flags.
func (a *app) connect(addr, flag, token string) (*grpc.ClientConn, error) {
	target := strings.TrimPrefix(strings.TrimPrefix(addr, "grpc://"), "http://")
	bo := backoff.DefaultConfig
	bo.MaxDelay = 5 * time.Second
	transport, err := a.tls.DialOption()
	if err != nil {
		return nil, fmt.Errorf("the connection to %s: %w", addr, err)
	}
	conn, err := grpc.NewClient(target,
		transport,
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: connectTimeout}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)),
		apitoken.DialOption(token),
	)
	if err != nil {
		return nil, usagef("%s %q: %v", flag, addr, err)
	}
	return conn, nil
}

func (c *client) Close() { c.conn.Close() }

// call returns a context for one unary request: the --timeout deadline and
// the device id.
func (c *client) call(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = metadata.AppendToOutgoingContext(ctx, "mailbus-device-id", c.app.device)
	return context.WithTimeout(ctx, c.app.timeout)
}

// explain turns a gRPC error into one a person can act on; other errors
// are returned as they are.
func (a *app) explain(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.Unknown {
		return err
	}
	// The store's own words, after the context the command wrapped around
	// them ("add account work: ..."), without gRPC's "rpc error: code =".
	msg := st.Message()
	prefix := ""
	var inner interface{ GRPCStatus() *status.Status }
	if errors.As(err, &inner) {
		ist := inner.GRPCStatus()
		msg = ist.Message()
		if full, innerText := err.Error(), inner.(error).Error(); strings.HasSuffix(full, innerText) {
			prefix = strings.TrimSuffix(full, innerText)
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		if tlsFailure(msg) || (a.tls.Enabled() && a.tls.CertFile == "" && closedByPeer(msg)) {
			return fmt.Errorf("the TLS handshake with the mailbus store at %s failed (%s).\n"+
				"  --tls-ca (MAILBUS_TLS_CA) must name the CA of the store's certificate, and a store that\n"+
				"  requires client certificates needs --tls-cert and --tls-key", a.server, dialReason(msg))
		}
		if a.tls.Enabled() && strings.Contains(msg, "first record does not look like a TLS handshake") {
			return fmt.Errorf("the mailbus store at %s does not speak TLS: drop --tls-ca (MAILBUS_TLS_CA)", a.server)
		}
		hint := ""
		if !a.tls.Enabled() && !strings.Contains(msg, "connection refused") {
			hint = "\n  A store that serves TLS needs --tls-ca (MAILBUS_TLS_CA)"
		}
		return fmt.Errorf("cannot reach the mailbus store at %s (%s).\n"+
			"  Start one with `mailbus serve` (or `mailbus demo` to try mailbus out),\n"+
			"  or point --server / MAILBUS_SERVER at a running store%s", a.server, dialReason(msg), hint)
	case codes.DeadlineExceeded:
		return fmt.Errorf("the mailbus store at %s did not answer within %s.\n"+
			"  Is it running and reachable? (--timeout sets the deadline)", a.server, a.timeout)
	case codes.Canceled:
		return context.Canceled
	case codes.Unauthenticated:
		return fmt.Errorf("%sthe store at %s refused the API token (%s; %s).\n"+
			"  Give a token with --token, MAILBUS_TOKEN or --token-file: `mailbus serve` writes its\n"+
			"  admin token to <data>/admin.token (read from %s by default), and\n"+
			"  `mailbus token create` makes device tokens", prefix, a.server, msg, a.tokenSource, defaultTokenFile)
	case codes.PermissionDenied:
		return fmt.Errorf("%sthe API token (%s) may not do this: %s.\n"+
			"  Use an admin token (<data>/admin.token of `mailbus serve`) or one made with\n"+
			"  `mailbus token create` for this; `mailbus token list` shows the tokens", prefix, a.tokenSource, msg)
	case codes.Unimplemented:
		return fmt.Errorf("the server at %s is not a mailbus store, or an older one (%s)", a.server, msg)
	case codes.InvalidArgument:
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
				var parts []string
				for _, v := range br.FieldViolations {
					parts = append(parts, v.Field+": "+v.Description)
				}
				return fmt.Errorf("%sthe store refused the request: %s", prefix, strings.Join(parts, "; "))
			}
		}
		return fmt.Errorf("%sthe store refused the request: %s", prefix, msg)
	case codes.OutOfRange:
		return fmt.Errorf("%s%s (list the account again, then follow changes from the state the list prints)", prefix, msg)
	case codes.Internal:
		return fmt.Errorf("%sthe store failed: %s", prefix, msg)
	}
	return errors.New(prefix + msg)
}

// tlsFailure reports a transport error from the TLS handshake.
func tlsFailure(msg string) bool {
	for _, s := range []string{"x509:", "tls: ", "authentication handshake failed"} {
		if strings.Contains(msg, s) && !strings.Contains(msg, "first record does not look like a TLS handshake") {
			return true
		}
	}
	return false
}

// closedByPeer reports a connection the server closed during the
// handshake, as a TLS 1.3 server does to a client without the certificate
// it requires.
func closedByPeer(msg string) bool {
	for _, s := range []string{"broken pipe", "connection reset by peer", "EOF", "certificate required"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// dialReason shortens gRPC's transport error to its cause.
func dialReason(msg string) string {
	if strings.Contains(msg, "server preface") || strings.Contains(msg, "deadline exceeded") {
		return fmt.Sprintf("no gRPC answer within %s", connectTimeout)
	}
	for _, cause := range []string{"connection refused", "no such host", "i/o timeout", "network is unreachable", "connection reset by peer"} {
		if strings.Contains(msg, cause) {
			return cause
		}
	}
	if i := strings.LastIndex(msg, "desc = "); i >= 0 {
		msg = strings.Trim(msg[i+len("desc = "):], `"`)
	}
	return msg
}

// isNotFound reports a NOT_FOUND status.
func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// account finds an account by id or name.
func (c *client) account(ctx context.Context, ref string) (*mailbusv1.Account, error) {
	if strings.TrimSpace(ref) == "" {
		return nil, usagef("missing account: give its name or id")
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	if isID(ref) {
		resp, err := c.accounts.GetAccount(cctx, &mailbusv1.GetAccountRequest{AccountId: ref})
		if err == nil {
			return resp.Account, nil
		}
		if !isNotFound(err) {
			return nil, err
		}
	}
	resp, err := c.accounts.GetAccount(cctx, &mailbusv1.GetAccountRequest{Name: ref})
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("no account %q: `mailbus account list` shows the accounts", ref)
		}
		return nil, err
	}
	return resp.Account, nil
}

// allAccounts lists every account.
func (c *client) allAccounts(ctx context.Context) ([]*mailbusv1.Account, error) {
	var out []*mailbusv1.Account
	token := ""
	for {
		cctx, cancel := c.call(ctx)
		resp, err := c.accounts.ListAccounts(cctx, &mailbusv1.ListAccountsRequest{PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Accounts...)
		if resp.NextPageToken == "" {
			return out, nil
		}
		token = resp.NextPageToken
	}
}

// mailboxes lists an account's mailboxes.
func (c *client) mailboxList(ctx context.Context, accountID string) ([]*mailbusv1.Mailbox, uint64, error) {
	cctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := c.mailboxes.ListMailboxes(cctx, &mailbusv1.ListMailboxesRequest{AccountId: accountID})
	if err != nil {
		return nil, 0, err
	}
	return resp.Mailboxes, resp.State, nil
}

// mailbox finds a mailbox of an account by name (INBOX in any case) or id.
func (c *client) mailbox(ctx context.Context, acct *mailbusv1.Account, ref string) (*mailbusv1.Mailbox, error) {
	boxes, _, err := c.mailboxList(ctx, acct.Id)
	if err != nil {
		return nil, err
	}
	return findMailbox(boxes, acct, ref)
}

func findMailbox(boxes []*mailbusv1.Mailbox, acct *mailbusv1.Account, ref string) (*mailbusv1.Mailbox, error) {
	for _, m := range boxes {
		if m.Name == ref {
			return m, nil
		}
	}
	for _, m := range boxes {
		if strings.EqualFold(ref, "INBOX") && strings.EqualFold(m.Name, "INBOX") {
			return m, nil
		}
		if m.Id == ref && isID(ref) {
			return m, nil
		}
	}
	var folded []*mailbusv1.Mailbox
	for _, m := range boxes {
		if strings.EqualFold(m.Name, ref) {
			folded = append(folded, m)
		}
	}
	if len(folded) == 1 {
		return folded[0], nil
	}
	var names []string
	for _, m := range boxes {
		names = append(names, m.Name)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("account %s has no mailbox %q (it has none yet: is it still syncing? see `mailbus status`)", acct.Name, ref)
	}
	return nil, fmt.Errorf("account %s has no mailbox %q; it has: %s", acct.Name, ref, strings.Join(names, ", "))
}

// isID reports whether s looks like a store id (decimal digits).
func isID(s string) bool {
	if s == "" || len(s) > 19 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// defaultTokenFile is the admin token of a `mailbus serve` started in the
// current directory with its default --data.
const defaultTokenFile = "./mailbus-data/admin.token"

// resolveToken picks the API token: --token, else --token-file
// (MAILBUS_TOKEN_FILE), else MAILBUS_TOKEN, else the admin token file of a
// local `mailbus serve` ($MAILBUS_DATA/admin.token or
// ./mailbus-data/admin.token) when it exists and can be read.
func (a *app) resolveToken() (string, error) {
	a.tokenSource = "no token given"
	tok, err := apitoken.Resolve(a.token, a.tokenFile, a.env)
	switch {
	case err != nil:
		return "", usagef("API token: %v", err)
	case tok != "":
		switch {
		case strings.TrimSpace(a.token) != "":
			a.tokenSource = "from --token"
		case a.tokenFile != "":
			a.tokenSource = "from " + a.tokenFile
		default:
			a.tokenSource = "from " + apitoken.EnvToken
		}
		return tok, nil
	}
	path := defaultTokenFile
	if dir, ok := a.env("MAILBUS_DATA"); ok && dir != "" {
		path = filepath.Join(dir, "admin.token")
	}
	tok, err = apitoken.ReadFile(path)
	switch {
	case err == nil:
		a.tokenSource = "from " + path
		return tok, nil
	case errors.Is(err, privatefile.ErrNotPrivate):
		return "", usagef("API token: %v", err)
	}
	a.tokenSource = "no token given, and no readable " + path
	return "", nil
}

// sameFile reports whether two paths name the same file (both absent
// counts as different).
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

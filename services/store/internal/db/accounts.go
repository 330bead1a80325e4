package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/accountfield"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// DefaultPollInterval applies when an account does not set one.
const DefaultPollInterval = 60 * time.Second

// accountColumns is what scanAccount reads.
const accountColumns = `id, name, protocol, config, secret IS NOT NULL, status, modseq, generation, created_at, updated_at, oauth_expires_at`

// ValidateAccount checks an account's configuration and fills defaults. It
// names the offending field in its error.
func ValidateAccount(a *mailbusv1.Account) error {
	a.Name = strings.TrimSpace(a.Name)
	switch {
	case a.Name == "":
		return invalid("account.name", "required")
	case len(a.Name) > 200:
		return invalid("account.name", "longer than 200 characters")
	}
	if err := accountfield.CheckName(a.Name); err != nil {
		return fieldInvalid(err)
	}
	switch a.Protocol {
	case mailbusv1.Protocol_PROTOCOL_IMAP, mailbusv1.Protocol_PROTOCOL_POP3:
	default:
		return invalid("account.protocol", "must be PROTOCOL_IMAP or PROTOCOL_POP3")
	}
	a.Host = strings.TrimSpace(a.Host)
	if err := accountfield.CheckHost(a.Host); err != nil {
		return fieldInvalid(err)
	}
	if a.Port == 0 || a.Port > 65535 {
		return invalid("account.port", "must be 1 to 65535")
	}
	switch a.Security {
	case mailbusv1.Security_SECURITY_TLS, mailbusv1.Security_SECURITY_STARTTLS, mailbusv1.Security_SECURITY_NONE:
	default:
		return invalid("account.security", "must be SECURITY_TLS, SECURITY_STARTTLS or SECURITY_NONE (plaintext only when asked for)")
	}
	if a.Username == "" {
		return invalid("account.username", "required")
	}
	if err := accountfield.CheckText("username", a.Username); err != nil {
		return fieldInvalid(err)
	}
	if err := validateOAuth2(a); err != nil {
		return err
	}
	if a.AuthMethod == mailbusv1.AuthMethod_AUTH_METHOD_UNSPECIFIED {
		a.AuthMethod = mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD
	}
	if a.AuthMethod != mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD && a.AuthMethod != mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2 {
		return invalid("account.auth_method", "unknown method %d", a.AuthMethod)
	}
	if a.Protocol == mailbusv1.Protocol_PROTOCOL_POP3 {
		if a.Pop3Mode == mailbusv1.Pop3Mode_POP3_MODE_UNSPECIFIED {
			a.Pop3Mode = mailbusv1.Pop3Mode_POP3_MODE_KEEP
		}
		if a.Pop3Mode != mailbusv1.Pop3Mode_POP3_MODE_KEEP && a.Pop3Mode != mailbusv1.Pop3Mode_POP3_MODE_DELETE {
			return invalid("account.pop3_mode", "unknown mode %d", a.Pop3Mode)
		}
		if len(a.FolderInclude)+len(a.FolderExclude)+len(a.IdleFolders) > 0 {
			return invalid("account.folder_include", "POP3 accounts have no folders")
		}
	} else if a.Pop3Mode != mailbusv1.Pop3Mode_POP3_MODE_UNSPECIFIED {
		return invalid("account.pop3_mode", "only for POP3 accounts")
	}
	if a.PollInterval == nil {
		a.PollInterval = durationpb.New(DefaultPollInterval)
	}
	if err := a.PollInterval.CheckValid(); err != nil || a.PollInterval.AsDuration() < time.Second {
		return invalid("account.poll_interval", "must be at least 1s")
	}
	for _, list := range []struct {
		field string
		v     []string
	}{{"account.folder_include", a.FolderInclude}, {"account.folder_exclude", a.FolderExclude}, {"account.idle_folders", a.IdleFolders}} {
		if len(list.v) > 100 {
			return invalid(list.field, "more than 100 entries")
		}
		for _, p := range list.v {
			if p == "" || len(p) > 1000 || strings.ContainsAny(p, "\x00\r\n") {
				return invalid(list.field, "entry %q is not a valid folder pattern", p)
			}
		}
	}
	if len(a.Secret) > 16<<10 {
		return invalid("account.secret", "longer than 16 KiB")
	}
	return nil
}

// fieldInvalid turns an accountfield error into the store's field error.
func fieldInvalid(err error) error {
	var fe *accountfield.Error
	if errors.As(err, &fe) {
		return invalid("account."+fe.Field, "%s", fe.Reason)
	}
	return err
}

// secretRequired refuses an account, or an update of its secret, without
// a secret: no fetcher can log in without one.
func secretRequired() error {
	return invalid("account.secret", "required: the password or token for the server")
}

// configOf is what is kept in accounts.config: the account minus secret,
// status and the columns of its own.
func configOf(a *mailbusv1.Account) ([]byte, error) {
	c := proto.Clone(a).(*mailbusv1.Account)
	c.Id, c.Secret, c.Status, c.Generation, c.State, c.CreateTime, c.UpdateTime = "", "", nil, 0, 0, nil, nil
	if c.Oauth2 != nil {
		c.Oauth2.ClientSecret, c.Oauth2.RefreshToken, c.Oauth2.AccessTokenExpireTime = "", "", nil
	}
	return proto.Marshal(c)
}

// CreateAccount stores a new account and returns it without its secret.
func (d *DB) CreateAccount(ctx context.Context, a *mailbusv1.Account) (*mailbusv1.Account, error) {
	if a == nil {
		return nil, invalid("account", "required")
	}
	a = proto.Clone(a).(*mailbusv1.Account)
	if err := ValidateAccount(a); err != nil {
		return nil, err
	}
	if a.Oauth2 != nil && a.Oauth2.RefreshToken == "" {
		return nil, refreshTokenRequired()
	}
	if a.Secret == "" && a.Oauth2 == nil {
		return nil, secretRequired()
	}
	config, err := configOf(a)
	if err != nil {
		return nil, fmt.Errorf("db: account config: %w", err)
	}
	var id int64
	err = d.inTx(ctx, nil, func(t *tx) error {
		var n int
		if err := t.queryRow(ctx, `SELECT COUNT(*) FROM accounts WHERE name = ?`, a.Name).Scan(&n); err != nil {
			return fmt.Errorf("db: create account: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("account name %q: %w", a.Name, ErrConflict)
		}
		now := t.d.nowMicros()
		if err := t.queryRow(ctx, `INSERT INTO accounts (name, protocol, config, created_at, updated_at) VALUES (?, ?, ?, ?, ?) RETURNING id`,
			a.Name, int(a.Protocol), config, now, now).Scan(&id); err != nil {
			return fmt.Errorf("db: create account: %w", err)
		}
		if a.Oauth2 != nil {
			if err := t.setOAuthSecret(ctx, id, &oauthSecret{ClientSecret: a.Oauth2.ClientSecret, RefreshToken: a.Oauth2.RefreshToken}, true); err != nil {
				return err
			}
		} else if a.Secret != "" {
			if err := t.setSecret(ctx, id, a.Secret); err != nil {
				return err
			}
		}
		// Every account has an inbox from the start.
		if _, err := t.createMailbox(ctx, id, "INBOX", "", mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX, false); err != nil {
			return err
		}
		return t.notifyAccountChanged(ctx, id, a.Protocol)
	})
	if err != nil {
		return nil, err
	}
	return d.GetAccount(ctx, formatID(id))
}

func (t *tx) setSecret(ctx context.Context, accountID int64, secret string) error {
	sealed, err := t.d.secrets.Seal([]byte(secret), "account/"+formatID(accountID))
	if err != nil {
		return fmt.Errorf("db: seal secret: %w", err)
	}
	if _, err := t.exec(ctx, `UPDATE accounts SET secret = ? WHERE id = ?`, sealed, accountID); err != nil {
		return fmt.Errorf("db: store secret: %w", err)
	}
	return nil
}

// GetAccount returns an account by id.
func (d *DB) GetAccount(ctx context.Context, id string) (*mailbusv1.Account, error) {
	n, err := parseID("account_id", id)
	if err != nil {
		return nil, err
	}
	row := d.r.QueryRowContext(ctx, d.rebind(`SELECT `+accountColumns+` FROM accounts WHERE id = ?`), n)
	a, err := scanAccount(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("account", id)
	}
	return a, err
}

// GetAccountByName returns an account by name.
func (d *DB) GetAccountByName(ctx context.Context, name string) (*mailbusv1.Account, error) {
	if name == "" {
		return nil, invalid("name", "required")
	}
	row := d.r.QueryRowContext(ctx, d.rebind(`SELECT `+accountColumns+` FROM accounts WHERE name = ?`), name)
	a, err := scanAccount(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("account", name)
	}
	return a, err
}

type scanner interface{ Scan(...any) error }

func scanAccount(s scanner) (*mailbusv1.Account, error) {
	var (
		id, modseq, generation, created, updated int64
		oauthExpiry                              int64
		name                                     string
		protocol                                 int
		config, status                           []byte
		hasSecret                                bool
	)
	if err := s.Scan(&id, &name, &protocol, &config, &hasSecret, &status, &modseq, &generation, &created, &updated, &oauthExpiry); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
		return nil, fmt.Errorf("db: read account: %w", err)
	}
	a := &mailbusv1.Account{}
	if err := proto.Unmarshal(config, a); err != nil {
		return nil, fmt.Errorf("db: account %d config: %w", id, err)
	}
	a.Id, a.Name, a.Protocol = formatID(id), name, mailbusv1.Protocol(protocol)
	a.Generation, a.State = uint64(generation), uint64(modseq)
	a.CreateTime = timestamppb.New(time.UnixMicro(created))
	a.UpdateTime = timestamppb.New(time.UnixMicro(updated))
	if a.Oauth2 != nil && oauthExpiry > 0 {
		a.Oauth2.AccessTokenExpireTime = timestamppb.New(time.UnixMicro(oauthExpiry))
	}
	a.Status = &mailbusv1.AccountStatus{}
	if len(status) > 0 {
		if err := proto.Unmarshal(status, a.Status); err != nil {
			return nil, fmt.Errorf("db: account %d status: %w", id, err)
		}
	}
	return a, nil
}

// ListAccounts returns up to limit accounts with ids above after, ordered by
// id; protocol filters when set.
func (d *DB) ListAccounts(ctx context.Context, after int64, limit int, protocol mailbusv1.Protocol) ([]*mailbusv1.Account, error) {
	q := `SELECT ` + accountColumns + ` FROM accounts WHERE id > ?`
	args := []any{after}
	if protocol != mailbusv1.Protocol_PROTOCOL_UNSPECIFIED {
		q += ` AND protocol = ?`
		args = append(args, int(protocol))
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit)
	rows, err := d.r.QueryContext(ctx, d.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("db: list accounts: %w", err)
	}
	defer rows.Close()
	var out []*mailbusv1.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: list accounts: %w", err)
	}
	return out, nil
}

// updatable maps update-mask paths to what they copy.
var updatable = map[string]func(dst, src *mailbusv1.Account){
	"name":                 func(d, s *mailbusv1.Account) { d.Name = s.Name },
	"host":                 func(d, s *mailbusv1.Account) { d.Host = s.Host },
	"port":                 func(d, s *mailbusv1.Account) { d.Port = s.Port },
	"security":             func(d, s *mailbusv1.Account) { d.Security = s.Security },
	"insecure_skip_verify": func(d, s *mailbusv1.Account) { d.InsecureSkipVerify = s.InsecureSkipVerify },
	"username":             func(d, s *mailbusv1.Account) { d.Username = s.Username },
	"auth_method":          func(d, s *mailbusv1.Account) { d.AuthMethod = s.AuthMethod },
	"secret":               func(d, s *mailbusv1.Account) { d.Secret = s.Secret },
	"pop3_mode":            func(d, s *mailbusv1.Account) { d.Pop3Mode = s.Pop3Mode },
	"poll_interval":        func(d, s *mailbusv1.Account) { d.PollInterval = s.PollInterval },
	"folder_include":       func(d, s *mailbusv1.Account) { d.FolderInclude = s.FolderInclude },
	"folder_exclude":       func(d, s *mailbusv1.Account) { d.FolderExclude = s.FolderExclude },
	"idle_folders":         func(d, s *mailbusv1.Account) { d.IdleFolders = s.IdleFolders },
	"oauth2":               func(d, s *mailbusv1.Account) { d.Oauth2 = proto.Clone(s.GetOauth2()).(*mailbusv1.Oauth2Credentials) },
	// The sealed parts of oauth2 alone (oauthUpdate); the config keeps the
	// rest.
	"oauth2.refresh_token": func(d, s *mailbusv1.Account) {},
	"oauth2.client_secret": func(d, s *mailbusv1.Account) {},
}

// secretClearedReason is the status reason of an account whose secret
// UpdateAccount cleared.
func secretClearedReason(a *mailbusv1.Account) string {
	if a.Oauth2 != nil {
		return fmt.Sprintf("the server's host, port or security changed, so the stored OAuth credentials were cleared (they are never sent to a server they were not given for): give them again with `mailbus account update %s --reauthorize --client-secret-file FILE` (or --refresh-token-file FILE --client-secret-file FILE)", a.Name)
	}
	name := a.Name
	return fmt.Sprintf("the server's host, port or security changed, so the stored password was cleared (it is never sent to a server it was not given for): set it again with `mailbus account update %s --password`", name)
}

// endpointChanged reports whether an update points an account at another
// server: the host (case aside), port or security changed. (The protocol
// cannot change.) Turning insecure_skip_verify on is not a change of
// server: it is what a parked account with a self-signed certificate is
// told to do.
func endpointChanged(before, after *mailbusv1.Account) bool {
	return !strings.EqualFold(before.Host, after.Host) || before.Port != after.Port || before.Security != after.Security
}

// UpdateAccount copies the fields named in paths from a onto the stored
// account, increases its generation and un-parks it. An update that
// changes where the secret goes (endpointChanged) without a new secret
// clears the stored one and parks the account with the reason:
// otherwise whoever may update accounts could send the password to a
// server of their choosing (issue 16, decision 0023).
func (d *DB) UpdateAccount(ctx context.Context, a *mailbusv1.Account, paths []string) (*mailbusv1.Account, error) {
	if a == nil {
		return nil, invalid("account", "required")
	}
	id, err := parseID("account.id", a.Id)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, invalid("update_mask", "names no field")
	}
	if containsPath(paths, "secret") && a.Secret == "" {
		return nil, secretRequired()
	}
	// givesSecret: the update brings what a fetcher logs in with.
	givesSecret := containsPath(paths, "secret") || (containsPath(paths, "oauth2") && a.GetOauth2() != nil) || containsPath(paths, "oauth2.refresh_token")
	for _, p := range paths {
		if _, ok := updatable[p]; !ok {
			if p == "protocol" {
				return nil, invalid("update_mask", "protocol cannot change: delete the account and add it again")
			}
			return nil, invalid("update_mask", "unknown or read-only field %q", p)
		}
	}
	err = d.inTx(ctx, nil, func(t *tx) error {
		if _, err := t.lock(ctx, id); err != nil {
			return err
		}
		cur, err := scanAccount(t.queryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = ?`, id))
		if err != nil {
			return fmt.Errorf("db: update account: %w", err)
		}
		cur.Secret = ""
		before := proto.Clone(cur).(*mailbusv1.Account)
		for _, p := range paths {
			updatable[p](cur, a)
		}
		if before.Oauth2 == nil && cur.Oauth2 == nil && (containsPath(paths, "oauth2.refresh_token") || containsPath(paths, "oauth2.client_secret")) {
			return invalid("update_mask", "the account has no oauth2 credentials: set all of them with the path \"oauth2\"")
		}
		if before.Oauth2 != nil && cur.Oauth2 == nil && !containsPath(paths, "secret") {
			return invalid("account.secret", "required when oauth2 is removed: the password or token for the server")
		}
		oauth, err := t.oauthUpdate(ctx, id, a, paths)
		if err != nil {
			return err
		}
		clearSecret := !givesSecret && endpointChanged(before, cur)
		// An account whose secret was cleared stays parked until an update
		// gives it one: un-parking it would let a fetcher log in without
		// the password.
		noSecret := clearSecret
		if !noSecret && !givesSecret {
			var missing int
			if err := t.queryRow(ctx, `SELECT CASE WHEN secret IS NULL THEN 1 ELSE 0 END FROM accounts WHERE id = ?`, id).Scan(&missing); err != nil {
				return fmt.Errorf("db: update account: %w", err)
			}
			noSecret = missing == 1
		}
		if err := ValidateAccount(cur); err != nil {
			return err
		}
		if containsPath(paths, "name") {
			var n int
			if err := t.queryRow(ctx, `SELECT COUNT(*) FROM accounts WHERE name = ? AND id <> ?`, cur.Name, id).Scan(&n); err != nil {
				return fmt.Errorf("db: update account: %w", err)
			}
			if n > 0 {
				return fmt.Errorf("account name %q: %w", cur.Name, ErrConflict)
			}
		}
		config, err := configOf(cur)
		if err != nil {
			return fmt.Errorf("db: account config: %w", err)
		}
		// Any update un-parks the account: the fetcher tries again with the
		// new configuration; one without a secret (cleared now or before)
		// is parked until it gets a new one.
		status := cur.Status
		changed := false
		switch {
		case noSecret:
			if status.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED || clearSecret {
				status = &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_PARKED, Reason: secretClearedReason(cur), UpdateTime: timestamppb.New(t.d.now())}
				changed = true
			}
		case status.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED:
			status = &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_UNSPECIFIED, Reason: "account updated; waiting for the fetcher", UpdateTime: timestamppb.New(t.d.now())}
			changed = true
		}
		statusBytes, err := proto.Marshal(status)
		if err != nil {
			return fmt.Errorf("db: account status: %w", err)
		}
		if _, err := t.exec(ctx, `UPDATE accounts SET name = ?, config = ?, status = ?, generation = generation + 1, updated_at = ? WHERE id = ?`,
			cur.Name, config, statusBytes, t.d.nowMicros(), id); err != nil {
			return fmt.Errorf("db: update account: %w", err)
		}
		t.accounts[id].name = cur.Name // for the events that follow
		if err := t.notifyAccountChanged(ctx, id, cur.Protocol); err != nil {
			return err
		}
		if changed {
			a := t.accounts[id]
			if err := t.emit(ctx, id, a.modseq, 0, &mailbusv1.Event{Payload: &mailbusv1.Event_AccountStatus{AccountStatus: &mailbusv1.AccountStatusChanged{Status: status}}}); err != nil {
				return err
			}
		}
		if clearSecret {
			if _, err := t.exec(ctx, `UPDATE accounts SET secret = NULL WHERE id = ?`, id); err != nil {
				return fmt.Errorf("db: clear secret: %w", err)
			}
			return nil
		}
		if oauth != nil {
			// A refresh under way with the same refresh token keeps its
			// claim: another replica refreshing with that token meanwhile
			// would spend it twice on a server that rotates.
			newGrant := containsPath(paths, "oauth2") || containsPath(paths, "oauth2.refresh_token")
			return t.setOAuthSecret(ctx, id, oauth, newGrant)
		}
		if containsPath(paths, "secret") {
			if _, err := t.exec(ctx, `UPDATE accounts SET oauth_expires_at = 0, oauth_refresh_until = 0, reauth_needed = 0 WHERE id = ?`, id); err != nil {
				return fmt.Errorf("db: update account: %w", err)
			}
			return t.setSecret(ctx, id, a.Secret)
		}
		// Any update tries again: an account parked for re-authorization
		// asks the token endpoint once more.
		if _, err := t.exec(ctx, `UPDATE accounts SET reauth_needed = 0 WHERE id = ?`, id); err != nil {
			return fmt.Errorf("db: update account: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d.GetAccount(ctx, a.Id)
}

func containsPath(paths []string, p string) bool {
	for _, x := range paths {
		if x == p {
			return true
		}
	}
	return false
}

// DeleteAccount removes an account and everything it holds. Events already
// in the outbox still go out; no new per-message events are written, the
// deletion itself is the signal (an account.status event with reason
// "account deleted").
func (d *DB) DeleteAccount(ctx context.Context, id string) error {
	n, err := parseID("account_id", id)
	if err != nil {
		return err
	}
	return d.inTx(ctx, &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_SYSTEM}, func(t *tx) error {
		a, err := t.lock(ctx, n)
		if err != nil {
			return err
		}
		if err := t.emit(ctx, n, a.modseq, 0, &mailbusv1.Event{Payload: &mailbusv1.Event_AccountStatus{AccountStatus: &mailbusv1.AccountStatusChanged{
			Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_PARKED, Reason: "account deleted", UpdateTime: timestamppb.New(t.d.now())},
		}}}); err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM messages WHERE account_id = ?`,
			`DELETE FROM writebacks WHERE account_id = ?`,
			`DELETE FROM mailboxes WHERE account_id = ?`,
			`DELETE FROM accounts WHERE id = ?`,
		} {
			if _, err := t.exec(ctx, q, n); err != nil {
				return fmt.Errorf("db: delete account: %w", err)
			}
		}
		delete(t.accounts, n)
		// Its protocol is gone with it: every watcher hears of it.
		return t.notifyAccountChanged(ctx, n, mailbusv1.Protocol_PROTOCOL_UNSPECIFIED)
	})
}

// AccountSecret returns the decrypted secret and the generation. It is
// fenced like a fetcher write: the lease token of a WithLeaseToken view
// (0 for d itself) smaller than the largest one accepted for the account
// fails with ErrStaleLease, so that a replica whose lease has moved on
// does not read the password any more. Unlike a write it never raises the
// stored token: the new owner claims (ClaimAccount) before it reads.
func (d *DB) AccountSecret(ctx context.Context, id string) (string, uint64, error) {
	sec, err := d.LoginSecret(ctx, id, false)
	return sec.Secret, sec.Generation, err
}

// LoginSecret is AccountSecret with the expiry of an OAuth 2.0 access
// token. For an account with OAuth 2.0 credentials it returns an access
// token renewed when it is about to expire, or at once when refresh is
// set (the server refused the one returned before); it fails with
// ErrReauthorization when the authorization server refused the refresh
// token (the account is parked), and with ErrTokenEndpoint when the token
// endpoint failed (temporary).
func (d *DB) LoginSecret(ctx context.Context, id string, refresh bool) (Secret, error) {
	n, err := parseID("account_id", id)
	if err != nil {
		return Secret{}, err
	}
	var sealed, config []byte
	var gen int64
	var protocol int
	err = d.r.QueryRowContext(ctx, d.rebind(`SELECT secret, generation, protocol, config FROM accounts WHERE id = ?`), n).Scan(&sealed, &gen, &protocol, &config)
	if errors.Is(err, sql.ErrNoRows) {
		return Secret{}, notFound("account", id)
	}
	if err != nil {
		return Secret{}, fmt.Errorf("db: read secret: %w", err)
	}
	if err := d.checkLeaseToken(ctx, n, mailbusv1.Protocol(protocol)); err != nil {
		return Secret{}, err
	}
	cfg := &mailbusv1.Account{}
	if err := proto.Unmarshal(config, cfg); err != nil {
		return Secret{}, fmt.Errorf("db: account %d config: %w", n, err)
	}
	if cfg.Oauth2 != nil {
		return d.accessToken(ctx, n, refresh)
	}
	if sealed == nil {
		return Secret{Generation: uint64(gen)}, nil
	}
	plain, err := d.openSecret(sealed, n)
	if err != nil {
		return Secret{}, err
	}
	return Secret{Secret: string(plain), Generation: uint64(gen)}, nil
}

// ErrStaleGeneration means a fetcher reported the status of an account
// generation other than the current one: the account was updated since
// the fetcher read it, and the report describes the old configuration.
var ErrStaleGeneration = errors.New("stale account generation")

// ReportStatus records an account's status and writes an account.status
// event when it differs from the stored one (update_time aside). It checks
// no generation; see ReportGenerationStatus.
func (d *DB) ReportStatus(ctx context.Context, id string, st *mailbusv1.AccountStatus) error {
	return d.ReportGenerationStatus(ctx, id, 0, st)
}

// ReportGenerationStatus is ReportStatus from a fetcher working generation
// generation of the account (0: unknown). It fails with ErrStaleGeneration
// and records nothing when the account has another generation: a failure
// of a pass that read the account before an update (a login with the old
// password still in flight) must not park the updated account, whose new
// worker would then find it parked and never poll. The check and the write
// are one transaction under the account lock, which UpdateAccount takes
// too.
func (d *DB) ReportGenerationStatus(ctx context.Context, id string, generation uint64, st *mailbusv1.AccountStatus) error {
	n, err := parseID("account_id", id)
	if err != nil {
		return err
	}
	if st == nil {
		return invalid("status", "required")
	}
	st = proto.Clone(st).(*mailbusv1.AccountStatus)
	st.UpdateTime = nil
	st.Reason = truncate(st.Reason, 2000)
	return d.inTx(ctx, &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM}, func(t *tx) error {
		a, err := t.lock(ctx, n)
		if err != nil {
			return err
		}
		if err := t.fence(ctx, a, d.leaseToken); err != nil {
			return err
		}
		var old []byte
		var current int64
		var reauth int
		if err := t.queryRow(ctx, `SELECT status, generation, reauth_needed FROM accounts WHERE id = ?`, n).Scan(&old, &current, &reauth); err != nil {
			return fmt.Errorf("db: read status: %w", err)
		}
		if generation != 0 && generation != uint64(current) {
			return fmt.Errorf("account %d: status of generation %d, the account has generation %d: %w", n, generation, current, ErrStaleGeneration)
		}
		if reauth != 0 {
			// Parked by the store for re-authorization (invalid_grant)
			// until an update: what a fetcher reports meanwhile (it could
			// not get a token) must not hide the reason.
			return nil
		}
		prev := &mailbusv1.AccountStatus{}
		if len(old) > 0 {
			if err := proto.Unmarshal(old, prev); err != nil {
				return fmt.Errorf("db: read status: %w", err)
			}
		}
		prev.UpdateTime = nil
		if st.LastSuccessTime == nil {
			st.LastSuccessTime = prev.LastSuccessTime
		}
		if proto.Equal(prev, st) {
			return nil
		}
		// A pass that only moves last_success_time is recorded (GetAccount
		// shows it) but announced to nobody: an idle account polled every
		// minute would otherwise make an event a minute.
		onlyTime := proto.Equal(withoutSuccessTime(prev), withoutSuccessTime(st))
		st.UpdateTime = timestamppb.New(t.d.now())
		b, err := proto.Marshal(st)
		if err != nil {
			return fmt.Errorf("db: status: %w", err)
		}
		if _, err := t.exec(ctx, `UPDATE accounts SET status = ? WHERE id = ?`, b, n); err != nil {
			return fmt.Errorf("db: write status: %w", err)
		}
		if onlyTime {
			return nil
		}
		return t.emit(ctx, n, a.modseq, 0, &mailbusv1.Event{Payload: &mailbusv1.Event_AccountStatus{AccountStatus: &mailbusv1.AccountStatusChanged{Status: st}}})
	})
}

func withoutSuccessTime(st *mailbusv1.AccountStatus) *mailbusv1.AccountStatus {
	c := proto.Clone(st).(*mailbusv1.AccountStatus)
	c.LastSuccessTime, c.UpdateTime = nil, nil
	return c
}

// AccountState returns the account's current state and the lowest state
// from which changes can still be calculated.
func (d *DB) AccountState(ctx context.Context, id string) (state, minState uint64, err error) {
	n, err := parseID("account_id", id)
	if err != nil {
		return 0, 0, err
	}
	var s, m int64
	err = d.r.QueryRowContext(ctx, d.rebind(`SELECT modseq, min_state FROM accounts WHERE id = ?`), n).Scan(&s, &m)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, notFound("account", id)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("db: account state: %w", err)
	}
	return uint64(s), uint64(m), nil
}

// accountProtocol returns an account's protocol (read path).
func (d *DB) accountProtocol(ctx context.Context, id int64) (mailbusv1.Protocol, error) {
	var p int
	err := d.r.QueryRowContext(ctx, d.rebind(`SELECT protocol FROM accounts WHERE id = ?`), id).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, notFound("account", strconv.FormatInt(id, 10))
	}
	if err != nil {
		return 0, fmt.Errorf("db: account: %w", err)
	}
	return mailbusv1.Protocol(p), nil
}

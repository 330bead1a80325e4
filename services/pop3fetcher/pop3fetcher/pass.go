package pop3fetcher

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailbus/mailbus/pkg/accountfield"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ingest"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/pkg/pop3"
)

// PassResult is what one poll pass did.
type PassResult struct {
	// Messages is how many messages the maildrop held.
	Messages int
	// Known is how many of them the store already had.
	Known int
	// New is how many were new to the store and retrieved.
	New int
	// Reused is how many of the New messages came under a UIDL the store
	// already had for another message (a server may reuse a UIDL once its
	// message is gone); they are stored under a derived id.
	Reused int
	// Fetched is how many of those the store acknowledged (durably stored)
	// in this pass; Bytes is their octets.
	Fetched int
	Bytes   int64
	// Deleted is how many messages the server deleted at QUIT (delete
	// mode).
	Deleted int
	// Skipped lists the messages left alone, and why.
	Skipped []Skipped
	// Identity says how messages were identified: IdentityUIDL,
	// IdentityHeaders or IdentityContent.
	Identity string
}

// Skipped is a message a pass did not store.
type Skipped struct {
	Number int    // message number in the session
	UIDL   string // its id
	Size   int64  // octets, as LIST reports them
	Reason string
}

// accountMemory is what the fetcher remembers of an account between the
// passes of one generation (a new generation, after any update of the
// account, starts afresh).
type accountMemory struct {
	generation uint64
	// loginDelay is the server's LOGIN-DELAY, a lower bound on the wait
	// between passes.
	loginDelay time.Duration
	// utf8Warned: a refused UTF8 was logged as a warning.
	utf8Warned bool
	// succeeded: a pass of this generation succeeded.
	succeeded bool
	// refused maps the ids the store refused to its reason: they are not
	// downloaded again in this generation.
	refused map[string]string
	// tooLarge holds the ids already counted in the too_large metric.
	tooLarge map[string]bool
	// oversized maps the ids of messages found too large while reading
	// them (the server's LIST size was too low) to the octets read: they
	// are not downloaded again in this generation.
	oversized map[string]int64
	// gone holds UIDLs the store acknowledged as deleted in the store
	// (IngestResult without message_id) although ListUpstreamIds did not
	// list them: treated as tombstones.
	gone map[string]bool
	// sameAs maps the UIDLs whose message a keep-mode pass found, by
	// content, to be the stored one to the LIST size it had then (a
	// server with inexact LIST sizes): not downloaded again for that.
	sameAs map[string]int64
	// last is the last status reported, at lastAt.
	last   *mailbusv1.AccountStatus
	lastAt time.Time
}

// job is a message to retrieve.
type job struct {
	idx  int
	num  int
	uidl string // "" in content mode until the message has been read
	size int64  // LIST size; the actual size once sent
	// listed is the LIST size.
	listed int64
	// reused: the store has uidl, but this may be another message (see
	// reuse.go); it is read into the spool and compared first.
	reused *storedID
}

// pass is one poll pass of one account.
type pass struct {
	f    *Fetcher
	acct *mailbusv1.Account
	mem  *accountMemory
	log  *slog.Logger
	res  *PassResult
	step string

	c *pop3.Client
	// grace is the context of the work that may go on after the pass's
	// context ends (withGrace): committing the messages sent in full,
	// DELE and QUIT. It ends Config.ShutdownGrace after the pass's
	// context, once for the whole pass.
	grace context.Context
	token uint64 // the lease's fencing token, sent with every store write
	// staleLease: the store refused a status report for a stale token
	// (set by the progress reporter too).
	staleLease atomic.Bool
	stale      bool // the store has a newer generation of the account
	initial    bool // the account has never had a successful pass
	known      map[string]storedID
	derived    map[string][]storedID // stored derived ids by base (reuse.go)
	jobs       []job
	dele       []int // messages to DELE (delete mode): stored before or acknowledged now
	occ        occurrences
	spool      *spool

	// staleGeneration: the store refused a status report because the
	// account was updated since the pass began (set by the progress
	// reporter too).
	staleGeneration atomic.Bool

	// progress
	done, total         uint64
	doneBytes, allBytes uint64
	lastProgress        time.Time
	progress            chan *mailbusv1.AccountStatus // to the reporter (status.go)
	progressDone        chan struct{}
}

// Poll runs one poll pass of an account, as its worker does between two
// waits, and reports the account's status to the store: SYNCING (or
// INITIAL_SYNC on the first pass) with progress while it downloads, IDLE
// with last_success_time when it succeeds, RETRYING or PARKED with a
// reason when it fails. A failure is returned as *PassError; a pass cut
// short by ctx returns an error wrapping ctx's and reports nothing, and so
// does a pass of an account the store has since updated (a newer
// generation): it ends before it connects (a temporary *PassError).
//
// One pass: read the account's secret; connect as the account's security
// says; authenticate; STAT; UIDL (or a fallback, see Identity*); LIST;
// diff with the ids the store has (ListUpstreamIds); retrieve the new
// messages in server order (pipelined when the server offers PIPELINING)
// and stream each into IngestMessages; in delete mode DELE every message
// the store has acknowledged in this pass or had before; QUIT.
func (f *Fetcher) Poll(ctx context.Context, acct *mailbusv1.Account) (*PassResult, error) {
	mem := f.memory(acct)
	p := &pass{
		f: f, acct: acct, mem: mem, res: &PassResult{Identity: IdentityUIDL},
		log:     f.log.With("account", acct.Id, "name", acct.Name),
		initial: !mem.succeeded && acct.GetStatus().GetLastSuccessTime() == nil,
		occ:     occurrences{},
		token:   ownership.TokenFromContext(ctx),
	}
	grace, stopGrace := withGrace(ctx, f.cfg.ShutdownGrace)
	defer stopGrace()
	p.grace = grace
	start := time.Now()
	err := p.run(ctx)
	if p.spool != nil {
		p.spool.close()
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	f.metrics.duration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if ctx.Err() != nil && err != nil {
		p.log.Info("pass interrupted", "fetched", p.res.Fetched, "err", err)
		return p.res, fmt.Errorf("pop3fetcher: pass interrupted: %w", context.Cause(ctx))
	}
	if ownership.IsStaleLease(err) || p.staleLease.Load() {
		return p.res, p.staleLeaseError(err)
	}
	if errors.Is(err, errAccountChanged) {
		p.log.Info("account changed; pass skipped until its worker restarts", "generation", acct.Generation)
		return p.res, classify(p.step, err)
	}
	if err != nil {
		pe := classify(p.step, err)
		f.metrics.errors.WithLabelValues(pe.Kind).Inc()
		p.reportFailure(ctx, pe)
		if p.staleGeneration.Load() {
			// Not the account's state any more: the worker waits for its
			// restart with the new generation instead of parking.
			return p.res, &PassError{Kind: pe.Kind, Err: fmt.Errorf("%w: %w", errAccountChanged, pe),
				Reason: pe.Reason + " (the account has been updated since the pass began: not recorded)"}
		}
		return p.res, pe
	}
	mem.succeeded = true
	p.reportSuccess(ctx)
	if p.staleLease.Load() {
		return p.res, p.staleLeaseError(nil)
	}
	return p.res, nil
}

// staleLeaseError is the outcome of a pass in which the store refused a
// write (err, or a status report) because another replica has claimed the
// account since: that replica reports the status now.
func (p *pass) staleLeaseError(err error) error {
	p.log.Warn("the store refused a write: another replica works the account now", "fetched", p.res.Fetched, "err", err)
	if err == nil {
		return fmt.Errorf("%w (status report refused)", errStaleLease)
	}
	return fmt.Errorf("%w: %w", errStaleLease, err)
}

func (p *pass) run(ctx context.Context) error {
	p.step = "read account secret"
	secret, err := p.secret(ctx, false)
	if err != nil {
		return err
	}
	opts, err := p.options()
	if err != nil {
		return err
	}
	// A database may hold a host or username stored before the store
	// checked them (accountfield): never send one, park the account.
	if err := accountfield.CheckConnect(p.acct.Host, p.acct.Username); err != nil {
		return &configError{err.Error() + ": the account needs updating"}
	}
	p.step = "wait for a connection slot"
	release, err := p.f.hosts.Acquire(ctx, p.acct.Host)
	if err != nil {
		return err
	}
	defer release()
	p.step = "connect"
	addr := net.JoinHostPort(p.acct.Host, strconv.Itoa(int(p.acct.Port)))
	c, err := pop3.Dial(ctx, addr, opts)
	if err != nil {
		return err
	}
	p.c = c
	defer c.Close()
	p.step = "CAPA"
	caps, err := c.Capabilities(ctx)
	if err != nil {
		return err
	}
	p.noteLoginDelay(caps)
	utf8, _ := caps.UTF8()
	var utf8Refused *pop3.Error
	if utf8 {
		p.step = "UTF8"
		if utf8Refused, err = p.utf8(ctx); err != nil {
			return err
		}
	}
	p.step = "login"
	if err := p.login(ctx, caps, secret); err != nil {
		return err
	}
	if utf8Refused != nil {
		p.step = "UTF8"
		if utf8Refused, err = p.utf8(ctx); err != nil {
			return err
		}
		if utf8Refused != nil {
			p.noteUTF8Refused(utf8Refused)
		}
	}
	if _, perUser, ok := caps.LoginDelay(); ok && perUser {
		if caps, err := c.Capabilities(ctx); err == nil {
			p.noteLoginDelay(caps)
		}
	}
	p.step = "STAT"
	count, _, err := c.Stat(ctx)
	if err != nil {
		return err
	}
	p.res.Messages = count
	var syncErr error
	if count > 0 {
		syncErr = p.sync(ctx)
	}
	return p.end(syncErr)
}

// secret reads the account's secret from the store (for an OAuth 2.0
// account an access token valid for a few minutes more, renewed by the
// store; refresh asks for a new one now). An account the store has
// updated since the pass began, or one without a secret, is an error.
func (p *pass) secret(ctx context.Context, refresh bool) (string, error) {
	sctx, cancel := context.WithTimeout(ctx, p.f.cfg.StoreTimeout)
	sec, err := p.f.ingest.GetAccountSecret(sctx, &mailbusv1.GetAccountSecretRequest{AccountId: p.acct.Id, LeaseToken: p.token, Refresh: refresh})
	cancel()
	if err != nil {
		return "", storeErr("get account secret", err)
	}
	if sec.Generation != p.acct.Generation {
		// The account was updated since this worker got it: the secret is
		// the new one, the host, port and security may be the old ones.
		// Never send a new secret to an old host; the supervisor restarts
		// the worker with the new configuration.
		p.stale = true
		return "", &PassError{Kind: KindConfig, Err: errAccountChanged, Reason: fmt.Sprintf(
			"the account changed (generation %d, this pass has %d): not logging in until its worker restarts with the new configuration", sec.Generation, p.acct.Generation)}
	}
	if sec.Secret == "" {
		// Cleared by an update that moved the account to another server
		// (or never set): never log in without the password the account
		// was given for this server.
		return "", &PassError{Kind: KindConfig, Permanent: true, Err: errNoSecret, Reason: errNoSecret.Error()}
	}
	return sec.Secret, nil
}

// login authenticates. If the server refuses the access token of an OAuth
// 2.0 account as bad credentials (it may have ended the token before the
// expiry the store knows, or the store's clock is off), the store is asked
// for a new token (refresh) and the login is tried once more on the same
// session, which a refused AUTH leaves in the AUTHORIZATION state
// (decision 0037). A second refusal is a credential failure and parks the
// account; the store's answer that the grant itself is refused
// (REAUTHORIZATION_NEEDED) parks it without a report.
func (p *pass) login(ctx context.Context, caps pop3.Capabilities, secret string) error {
	creds, mech := credentials(p.acct, caps, p.c.Greeting(), secret)
	err := p.c.Login(ctx, creds, mech)
	if err == nil || !errors.Is(err, pop3.ErrAuthFailed) || !oauthAccount(p.acct) {
		return err
	}
	p.log.Info("the server refused the access token; asking the store for a new one and logging in once more", "mechanism", string(mech), "err", err)
	p.step = "renew access token"
	if creds.Token, err = p.secret(ctx, true); err != nil {
		return err
	}
	p.step = "login"
	return p.c.Login(ctx, creds, mech)
}

// oauthAccount reports whether the store renews the account's access token
// (it has OAuth 2.0 credentials): only then can a refused token be
// replaced by another.
func oauthAccount(a *mailbusv1.Account) bool {
	return a.AuthMethod == mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2 && a.GetOauth2() != nil
}

// options are the POP3 client options of the account.
func (p *pass) options() (*pop3.Options, error) {
	o := &pop3.Options{
		Timeout:        p.f.cfg.Timeout,
		MaxMessageSize: p.f.cfg.MaxMessageSize,
		PipelineWindow: p.f.cfg.PipelineWindow,
		Logger:         p.log,
		TLSConfig: &tls.Config{
			ServerName:         p.acct.Host,
			RootCAs:            p.f.cfg.RootCAs,
			InsecureSkipVerify: p.acct.InsecureSkipVerify, //nolint:gosec // per-account opt-out, logged as a warning
			MinVersion:         tls.VersionTLS12,
		},
	}
	switch p.acct.Security {
	case mailbusv1.Security_SECURITY_TLS:
		o.Security = pop3.SecurityTLS
	case mailbusv1.Security_SECURITY_STARTTLS:
		o.Security = pop3.SecuritySTARTTLS
	case mailbusv1.Security_SECURITY_NONE:
		o.Security = pop3.SecurityNone
	default:
		return nil, &configError{fmt.Sprintf("account security %v is not supported", p.acct.Security)}
	}
	return o, nil
}

// credentials chooses how to log in. XOAUTH2 accounts (an OAuth 2.0
// access token) use SASL OAUTHBEARER when CAPA offers it, else XOAUTH2
// (pop3.TokenMechanism, decision 0037), with the secret as the bearer
// token. Password accounts use SASL PLAIN
// when CAPA lists it (one round trip, and the server's preferred way);
// else APOP when CAPA lists neither USER nor PLAIN but the greeting
// carries an APOP timestamp; else USER/PASS. A refused login is never
// retried with another mechanism within a pass: that would only double the
// failed attempts the server counts.
func credentials(a *mailbusv1.Account, caps pop3.Capabilities, g pop3.Greeting, secret string) (pop3.Credentials, pop3.Mechanism) {
	if a.AuthMethod == mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2 {
		return pop3.Credentials{Username: a.Username, Token: secret}, pop3.TokenMechanism(caps)
	}
	creds := pop3.Credentials{Username: a.Username, Password: secret}
	switch {
	case caps.HasSASL("PLAIN"):
		return creds, pop3.MechanismPlain
	case len(caps) > 0 && !caps.Has("USER") && g.Timestamp != "":
		return creds, pop3.MechanismAPOP
	}
	return creds, pop3.MechanismUser
}

// utf8 asks for UTF-8 mode (RFC 6856), so that a server holding mail with
// raw UTF-8 sends it as it holds it instead of rewriting it. The pass
// sends UTF8 before authentication, where RFC 6856 makes it valid (and
// where it must be for the USER argument's UTF-8 credentials), and once
// more after authentication if the server refused it before: servers
// differ in the state they take it in. A refusal is returned, not failed.
func (p *pass) utf8(ctx context.Context) (refused *pop3.Error, err error) {
	err = p.c.UTF8(ctx)
	if errors.As(err, &refused) {
		return refused, nil
	}
	return nil, err
}

// noteUTF8Refused logs that the server refused UTF8 before and after
// authentication: the pass goes on, and mail with raw UTF-8 may be stored
// as the server rewrites it. Logged as a warning once per generation.
func (p *pass) noteUTF8Refused(answer *pop3.Error) {
	log := p.log.Debug
	if !p.mem.utf8Warned {
		p.mem.utf8Warned = true
		log = p.log.Warn
	}
	log("the server offers UTF8 but refuses it; going on without: it may rewrite mail with raw UTF-8 (RFC 6856)", "answer", answer.Error())
}

func (p *pass) noteLoginDelay(caps pop3.Capabilities) {
	if d, _, ok := caps.LoginDelay(); ok {
		p.mem.loginDelay = d
	}
}

func (p *pass) deleteMode() bool { return p.acct.Pop3Mode == mailbusv1.Pop3Mode_POP3_MODE_DELETE }

// sync lists the maildrop, diffs it with the store and retrieves what is
// new.
func (p *pass) sync(ctx context.Context) error {
	p.step = "LIST"
	list, err := p.c.List(ctx)
	if err != nil {
		return err
	}
	p.step = "list stored messages"
	if p.known, p.derived, err = p.f.knownIDs(ctx, p.acct.Id); err != nil {
		return err
	}
	for id := range p.mem.gone {
		if _, ok := p.known[id]; !ok {
			p.known[id] = storedID{gone: true}
		}
	}
	p.step = "UIDL"
	uidls, err := p.c.Uidl(ctx)
	switch {
	case errors.Is(err, pop3.ErrUIDLUnsupported):
		return p.syncWithoutUIDL(ctx, list)
	case err != nil:
		return err
	}
	sizes := make(map[int]int64, len(list))
	for _, e := range list {
		sizes[e.Number] = e.Size
	}
	count := map[string]int{}
	for _, e := range uidls {
		count[e.UID]++
	}
	fetching := map[string]bool{}
	for _, e := range uidls {
		id := storeUIDL(e.UID)
		size, listed := sizes[e.Number]
		if !listed {
			continue // not in LIST: marked deleted, or gone
		}
		dup := count[e.UID] > 1
		if rec, ok := p.known[id]; ok {
			if dup || !p.deleteMode() && p.reusedKnown(id, rec, size) {
				// The stored message (never deleted when the UIDL is
				// repeated in the listing).
				p.res.Known++
				continue
			}
			// Delete mode, or keep mode and the size differs: compare the
			// message with the stored one (reuse.go) before any DELE.
			if p.admit(e.Number, id, size) {
				p.jobs = append(p.jobs, job{idx: len(p.jobs), num: e.Number, uidl: id, size: size, listed: size, reused: &rec})
			}
			continue
		}
		if dup && fetching[id] {
			p.skip(e.Number, id, size, "another message of the maildrop has the same UIDL; only the first is stored, and none of them is deleted")
			continue
		}
		if p.admit(e.Number, id, size) {
			fetching[id] = true
			p.jobs = append(p.jobs, job{idx: len(p.jobs), num: e.Number, uidl: id, size: size, listed: size})
		}
	}
	return p.fetch(ctx)
}

// admit reports whether a new message is to be retrieved; if not, it is
// recorded as skipped.
func (p *pass) admit(num int, id string, size int64) bool {
	if reason, ok := p.mem.refused[id]; ok {
		p.skip(num, id, size, reason)
		return false
	}
	if n, ok := p.mem.oversized[id]; ok {
		size = max(size, n)
	}
	if size > p.f.cfg.MaxMessageSize {
		p.tooLarge(num, id, size)
		return false
	}
	return true
}

func (p *pass) tooLarge(num int, id string, size int64) {
	what := fmt.Sprintf("%d octets", size)
	if p.mem.oversized[id] == size {
		what = "more octets than LIST said"
	}
	p.skip(num, id, size, fmt.Sprintf("%s, more than the limit of %d", what, p.f.cfg.MaxMessageSize))
	if !p.mem.tooLarge[id] {
		p.mem.tooLarge[id] = true
		p.f.metrics.errors.WithLabelValues(KindTooLarge).Inc()
		p.log.Warn("message larger than the limit; skipped and left on the server", "number", num, "uidl", id, "size", size, "limit", p.f.cfg.MaxMessageSize)
	}
}

func (p *pass) skip(num int, id string, size int64, reason string) {
	p.res.Skipped = append(p.res.Skipped, Skipped{Number: num, UIDL: id, Size: size, Reason: reason})
}

// knownIDs returns the ids the store has for an account, with the stored
// size and content hash (a message deleted in the store is a tombstone,
// without them), and the derived ids (reuse.go) by their base.
//
// A store that sends nothing for Config.StoreTimeout (at the start or
// between two batches) fails the listing.
func (f *Fetcher) knownIDs(ctx context.Context, accountID string) (map[string]storedID, map[string][]storedID, error) {
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	silent := fmt.Errorf("the store answered nothing for %v", f.cfg.StoreTimeout)
	timer := time.AfterFunc(f.cfg.StoreTimeout, func() { cancel(silent) })
	defer timer.Stop()
	fail := func(err error) error {
		if context.Cause(lctx) == silent {
			err = fmt.Errorf("%w: %w", silent, err)
		}
		return storeErr("list upstream ids", err)
	}
	stream, err := f.ingest.ListUpstreamIds(lctx, &mailbusv1.ListUpstreamIdsRequest{AccountId: accountID})
	if err != nil {
		return nil, nil, fail(err)
	}
	known := map[string]storedID{}
	derived := map[string][]storedID{}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return known, derived, nil
		}
		if err != nil {
			return nil, nil, fail(err)
		}
		timer.Reset(f.cfg.StoreTimeout)
		for _, m := range resp.Messages {
			u := m.GetUpstream().GetUidl()
			if u == "" {
				continue
			}
			rec := storedID{size: int64(m.GetSize()), hash: m.GetContentHash(), gone: m.GetMessageId() == ""}
			known[u] = rec
			if base, ok := splitDerived(u); ok {
				derived[base] = append(derived[base], rec)
			}
		}
	}
}

// fetch retrieves the jobs and streams them into the store.
func (p *pass) fetch(ctx context.Context) error {
	if len(p.jobs) == 0 {
		return nil
	}
	p.total = uint64(len(p.jobs))
	for _, j := range p.jobs {
		p.allBytes += uint64(max(j.size, 0))
	}
	p.startProgress(ctx)
	defer p.stopProgress()
	p.reportProgress(true)
	p.step = "open ingest stream"
	ing, err := p.f.openIngest(p.grace)
	if err != nil {
		return err
	}
	// ing is nil after a failed reopen (one): the old stream is then
	// already abandoned and closed.
	defer func() {
		if ing != nil {
			ing.Close()
		}
	}()
	nums := make([]int, len(p.jobs))
	for i, j := range p.jobs {
		nums[i] = j.num
	}
	p.step = "RETR"
	next := 0
	err = p.c.RetrPipelined(ctx, nums, func(n int, r io.Reader) error {
		j := &p.jobs[next]
		next++
		return p.one(ctx, &ing, j, r)
	})
	if err != nil || ctx.Err() != nil {
		if ing != nil {
			ing.Abandon(p.grace)
			p.collect(ing)
		}
		if err == nil {
			err = ctx.Err()
		}
		return p.refusedRetr(err)
	}
	p.step = "store messages"
	err = ing.Finish()
	p.collect(ing)
	return ingestErr("ingest", err)
}

// one stores one retrieved message.
func (p *pass) one(ctx context.Context, ing **ingest.Stream, j *job, r io.Reader) error {
	body := r
	switch {
	case j.uidl == "":
		sum, size, err := p.spoolOne(r)
		if err != nil {
			if errors.Is(err, pop3.ErrTooLarge) {
				p.tooLarge(j.num, "", j.size)
				return nil
			}
			return err
		}
		j.uidl, j.size, body = p.occ.id(contentIDPrefix+hashID(sum)), size, p.spool
		if _, ok := p.known[j.uidl]; ok {
			p.knownAfterRead(j)
			return nil
		}
		if !p.admit(j.num, j.uidl, size) {
			return nil
		}
	case j.reused != nil:
		id := j.uidl
		known, err := p.checkReused(j, r)
		if err != nil {
			if errors.Is(err, pop3.ErrTooLarge) {
				n := p.f.cfg.MaxMessageSize + 1
				p.mem.oversized[id] = n
				p.tooLarge(j.num, id, n)
				return nil
			}
			return err
		}
		if known {
			p.knownAfterRead(j)
			return nil
		}
		if !p.admit(j.num, j.uidl, j.size) {
			return nil
		}
		body = p.spool
		p.res.Reused++
	}
	if p.trimming() {
		body = pop3.TrimAddedCRLF(body, j.listed)
	}
	p.res.New++
	meta := &mailbusv1.IngestMeta{
		AccountId:  p.acct.Id,
		LeaseToken: p.token,
		Upstream:   &mailbusv1.UpstreamId{Uidl: j.uidl},
		Ref:        strconv.Itoa(j.idx),
		Size:       uint64(max(j.size, 0)),
	}
	n, err := (*ing).Send(meta, body)
	if err != nil {
		if errors.Is(err, pop3.ErrTooLarge) {
			// The server sent more than LIST announced, and more than the
			// limit: drop the partial message (the stream must be cut for
			// that, after the complete ones are committed) and go on with
			// a new stream.
			p.res.New--
			n = p.f.cfg.MaxMessageSize + 1 // read up to the limit, and then more
			p.mem.oversized[j.uidl] = n
			p.tooLarge(j.num, j.uidl, n)
			(*ing).Abandon(p.grace)
			p.collect(*ing)
			(*ing).Close()
			if err := ctx.Err(); err != nil {
				*ing = nil // fetch knows the old one is done
				return err
			}
			next, err := p.f.openIngest(p.grace)
			*ing = next // nil on failure: fetch knows the old one is done
			return err
		}
		return ingestErr("send message", err)
	}
	j.size = n
	p.collect(*ing)
	p.reportProgress(false)
	return nil
}

// knownAfterRead counts a message read to identify it (content mode, or a
// known UIDL compared by content) that the store has: known and, in
// delete mode, marked for DELE: the store has these very octets.
func (p *pass) knownAfterRead(j *job) {
	p.res.Known++
	p.done++
	if p.deleteMode() {
		p.dele = append(p.dele, j.num)
	}
}

func (p *pass) spoolOne(r io.Reader) ([32]byte, int64, error) {
	if p.spool == nil {
		s, err := newSpool(p.f.cfg.SpoolDir)
		if err != nil {
			return [32]byte{}, 0, fmt.Errorf("spool: %w", err)
		}
		p.spool = s
	}
	return p.spool.fill(r)
}

// trimming reports whether the fetcher drops the CRLF a server appends to
// a message without a final line break: only for a server known to report
// exact LIST sizes (Config.ExactListSizes).
func (p *pass) trimming() bool { return p.f.cfg.exactListSizes(p.acct.Host) }

// collect records the store's answers: an acknowledged message counts as
// fetched (and, in delete mode, may now be deleted); a refused one is
// skipped, and not downloaded again in this generation.
func (p *pass) collect(ing *ingest.Stream) {
	for _, r := range ing.Take() {
		idx, err := strconv.Atoi(r.Ref)
		if err != nil || idx < 0 || idx >= len(p.jobs) {
			p.log.Error("store answered an unknown reference", "ref", r.Ref)
			continue
		}
		j := p.jobs[idx]
		if r.Error != "" {
			p.mem.refused[j.uidl] = "refused by the store: " + r.Error
			p.skip(j.num, j.uidl, j.size, "refused by the store: "+r.Error)
			p.f.metrics.errors.WithLabelValues(KindRefused).Inc()
			p.log.Warn("store refused a message; it stays on the server", "number", j.num, "uidl", j.uidl, "err", r.Error)
			continue
		}
		if r.MessageId == "" && p.deleteMode() && j.reused == nil && p.res.Identity == IdentityUIDL {
			// The store had this UIDL as deleted (a tombstone) without
			// listing it: the message may be a new one under a reused
			// UIDL, which the store did not store. Not deleted; the next
			// pass treats the UIDL as a tombstone (reuse.go).
			p.mem.gone[j.uidl] = true
			p.done++
			p.log.Warn("the store has this UIDL as deleted but did not list it; the message stays on the server and is checked on the next pass", "number", j.num, "uidl", j.uidl)
			continue
		}
		p.res.Fetched++
		p.res.Bytes += j.size
		p.done++
		p.doneBytes += uint64(j.size)
		p.f.metrics.fetched.Inc()
		p.f.metrics.bytes.Add(float64(j.size))
		if p.deleteMode() {
			p.dele = append(p.dele, j.num)
		}
	}
}

// withGrace returns the grace context of a pass: it is not cancelled with
// ctx, but ends grace after ctx ends (or when stop is called). The grace
// deadline is fixed once, when ctx ends, and everything done after that
// (the store's commit, DELE, QUIT) shares it: together they never take
// longer than grace, which under ownership must fit in the lease's safety
// margin.
func withGrace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	gctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	var (
		mu    sync.Mutex
		timer *time.Timer
		done  bool
	)
	over := fmt.Errorf("pop3fetcher: the shutdown grace of %v after the pass's end is over", grace)
	stopAfter := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			timer = time.AfterFunc(grace, func() { cancel(over) })
		}
	})
	return gctx, func() {
		stopAfter()
		mu.Lock()
		done = true
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel(context.Canceled)
	}
}

// end finishes the session after the sync (which failed with syncErr, or
// not): in delete mode it marks the stored messages with DELE, then it
// sends QUIT, as long as the session is still usable. It is always safe to
// QUIT: DELE is only ever sent for messages the store has durably, so the
// deletions QUIT commits lose nothing, even after a failure or when ctx
// has ended.
func (p *pass) end(syncErr error) error {
	ectx := p.grace
	errStep := p.step // the step that failed, for the status reason
	deleErr := error(nil)
	if p.deleteMode() && len(p.dele) > 0 {
		p.step = "DELE"
		deleErr = p.c.DeleMany(ectx, p.dele)
		if deleErr != nil && syncErr == nil {
			syncErr, errStep = deleErr, "DELE"
		}
	}
	if errors.Is(deleErr, pop3.ErrClosed) || errors.Is(syncErr, pop3.ErrClosed) {
		p.step = errStep
		return syncErr
	}
	if syncErr != nil {
		p.step = "QUIT"
		err := p.c.Quit(ectx)
		if err == nil && p.deleteMode() && deleErr == nil {
			p.res.Deleted = len(p.dele)
		}
		if err != nil && !errors.Is(err, pop3.ErrClosed) {
			p.log.Debug("QUIT after a failure failed", "err", err)
		}
		p.step = errStep
		return syncErr
	}
	p.step = "QUIT"
	err := p.c.Quit(ectx)
	switch {
	case err == nil:
		if p.deleteMode() {
			p.res.Deleted = len(p.dele)
		}
		return nil
	case p.deleteMode() && len(p.dele) > 0:
		return &PassError{Kind: KindQuit, Err: err, Reason: fmt.Sprintf(
			"QUIT failed, so the server may not have deleted the %d stored messages marked for deletion (they are deleted on a later pass): %v", len(p.dele), err)}
	default:
		p.f.metrics.errors.WithLabelValues(KindQuit).Inc()
		p.log.Warn("QUIT failed (keep mode: nothing to commit)", "err", err)
		return nil
	}
}

// refusedRetr handles a RETR the server answered with a permanent "-ERR"
// (no response code, or [SYS/PERM]; a corrupt message, say). Parking the
// account for it would stop every message behind it, and retrying it
// forever would too: the message is remembered as refused (not retrieved
// again in this generation, named in the status), and the pass fails as a
// temporary error, so the next pass, after a short backoff, goes on with
// the rest.
func (p *pass) refusedRetr(err error) error {
	var pe *pop3.Error
	if !errors.As(err, &pe) || pe.Temporary() || !strings.HasPrefix(pe.Command, "RETR ") {
		return err
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(pe.Command, "RETR "))
	for _, j := range p.jobs {
		if j.num == n && j.uidl != "" {
			p.mem.refused[j.uidl] = "the server refused to send it: " + pe.Error()
			p.log.Warn("server refused RETR; the message is skipped from now on", "number", n, "uidl", j.uidl, "err", pe)
			return &PassError{Kind: KindServer, Err: err, Reason: fmt.Sprintf(
				"RETR: the server refused message %d (uidl %s), which is skipped from the next pass on: %v", n, j.uidl, pe)}
		}
	}
	return err
}

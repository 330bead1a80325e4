package pop3fetcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/mailbus/mailbus/pkg/backoff"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ownership"
)

// work runs one account until ctx ends (accountrun's Work): a poll pass,
// then a wait of the poll interval (jittered, at least the server's
// LOGIN-DELAY), again and again. After a temporary error it waits a
// backoff delay instead; after a permanent one the account is parked and
// the worker only waits for ctx: the supervisor restarts it when the
// account is updated (a new generation).
func (f *Fetcher) work(ctx context.Context, acct *mailbusv1.Account) {
	log := f.log.With("account", acct.Id, "name", acct.Name)
	mem := f.memory(acct)
	defer f.forget(acct)
	state := stateActive
	f.metrics.accounts.WithLabelValues(state).Inc()
	setState := func(s string) {
		if s != state {
			f.metrics.accounts.WithLabelValues(state).Dec()
			f.metrics.accounts.WithLabelValues(s).Inc()
			state = s
		}
	}
	defer func() { f.metrics.accounts.WithLabelValues(state).Dec() }()

	if acct.GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
		setState(stateParked)
		log.Warn("account is parked; not polling until it is updated", "reason", acct.GetStatus().GetReason())
		<-ctx.Done()
		return
	}
	if acct.InsecureSkipVerify {
		log.Warn("TLS certificate verification is OFF for this account (insecure_skip_verify)", "host", acct.Host)
	}
	if err := f.claim(ctx, acct, log); err != nil {
		if errors.Is(err, errStaleLease) {
			f.stopStale(ctx, log)
		}
		return
	}
	log.Info("polling", "host", acct.Host, "port", acct.Port, "security", acct.Security.String(),
		"mode", acct.Pop3Mode.String(), "interval", acct.GetPollInterval().AsDuration().String())
	bo := backoff.Backoff{Min: f.cfg.RetryMin, Max: f.cfg.RetryMax}
	for {
		res, err := f.Poll(ctx, acct)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		var pe *PassError
		switch {
		case err == nil:
			setState(stateActive)
			bo.Reset()
			wait = f.jitter(pollInterval(acct))
			log.Debug("pass done", "new", res.New, "fetched", res.Fetched, "deleted", res.Deleted, "next", wait.String())
		case errors.Is(err, errStaleLease):
			f.stopStale(ctx, log)
			return
		case errors.Is(err, errAccountChanged):
			// The supervisor restarts this worker with the new generation
			// (within Config.Refresh); until then, look again after a
			// backoff delay, without logging in.
			wait = bo.Next()
			if f.cfg.Jitter != nil {
				wait = f.cfg.Jitter(wait)
			}
			log.Info("account changed; waiting for its worker to restart", "in", wait.String())
		case errors.As(err, &pe) && pe.Permanent:
			setState(stateParked)
			if errors.Is(err, errAccountGone) {
				log.Info("account is gone; worker idle until the supervisor stops it")
			} else {
				log.Error("account parked until it is updated", "kind", pe.Kind, "reason", pe.Reason)
			}
			<-ctx.Done()
			return
		default:
			setState(stateRetrying)
			wait = bo.Next()
			if f.cfg.Jitter != nil {
				wait = f.cfg.Jitter(wait)
			}
			kind := KindNetwork
			if pe != nil {
				kind = pe.Kind
			}
			log.Warn("pass failed; retrying", "kind", kind, "err", err, "in", wait.String())
		}
		wait = max(wait, mem.loginDelay)
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

// claim tells the store that this worker's lease works the account now
// (ClaimAccount with its fencing token), before anything touches the
// server, so that the store refuses the late writes of an earlier owner.
// It retries a failing store with backoff; it returns ctx's error if ctx
// ends, or one wrapping errStaleLease if the store refuses the token (then
// the account must not be worked).
func (f *Fetcher) claim(ctx context.Context, acct *mailbusv1.Account, log *slog.Logger) error {
	bo := backoff.Backoff{Min: min(f.cfg.RetryMin, time.Second), Max: f.cfg.RetryMax}
	for {
		err := f.claimOnce(ctx, acct)
		switch {
		case err == nil:
			log.Debug("account claimed", "token", ownership.TokenFromContext(ctx))
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errStaleLease):
			return err
		}
		wait := bo.Next()
		log.Warn("cannot claim the account in the store; retrying", "err", err, "in", wait.String())
		if !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// claimOnce makes one ClaimAccount call with the token of ctx's lease (0
// without one); a refused token is returned wrapping errStaleLease.
func (f *Fetcher) claimOnce(ctx context.Context, acct *mailbusv1.Account) error {
	cctx, cancel := context.WithTimeout(ctx, f.cfg.StoreTimeout)
	defer cancel()
	_, err := f.ingest.ClaimAccount(cctx, &mailbusv1.ClaimAccountRequest{AccountId: acct.Id, LeaseToken: ownership.TokenFromContext(ctx)})
	if ownership.IsStaleLease(err) {
		return fmt.Errorf("%w: %w", errStaleLease, err)
	}
	if err != nil {
		return storeErr("claim account", err)
	}
	return nil
}

// stopStale stops working an account that another replica has claimed
// (the store refused a write as stale). Under ownership the lease is gone
// too: its context ends at the next renewal at the latest, and the
// ownership wrapper waits to take the lease again. If the lease is still
// current, the store's token comes from elsewhere (a bucket created anew
// on a clock behind, another deployment): that is logged as an error an
// operator must act on. Without ownership (token 0) the account was
// worked with ownership before: only a process with ownership can work it
// now.
func (f *Fetcher) stopStale(ctx context.Context, log *slog.Logger) {
	f.metrics.staleLeases.Inc()
	switch l := ownership.FromContext(ctx); {
	case l == nil:
		log.Error("the store refuses this process's writes: the account was worked by replicas with ownership (--ownership), and only they can work it now")
	case l.Current(ctx):
		log.Error("the store refuses the token of this replica's current lease; account not worked", "token", l.Token(), "help", ownership.TokenMismatchHelp)
	default:
		log.Warn("another replica works the account now; stopping")
	}
	<-ctx.Done()
}

// pollInterval is the account's poll interval (60 s when unset).
func pollInterval(a *mailbusv1.Account) time.Duration {
	if d := a.GetPollInterval().AsDuration(); d > 0 {
		return d
	}
	return 60 * time.Second
}

// jitter spreads a poll interval d uniformly over [0.9 d, 1.1 d], so that
// accounts added together do not poll together forever.
func (f *Fetcher) jitter(d time.Duration) time.Duration {
	if f.cfg.Jitter != nil {
		return f.cfg.Jitter(d)
	}
	spread := int64(d / 5)
	if spread <= 0 {
		return d
	}
	return d - d/10 + time.Duration(rand.Int64N(spread+1))
}

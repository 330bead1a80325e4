package ownership

import (
	"context"
	"time"

	"github.com/mailbus/mailbus/pkg/accountrun"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Filter is an accountrun.Config.Filter: true for the accounts rendezvous
// hashing gives this replica over the current member set.
func (m *Manager) Filter(a *mailbusv1.Account) bool { return m.Owns(a.Id) }

// Wrap turns an accountrun worker into one that works the account only
// while holding its lease: it acquires the lease (waiting while another
// replica holds it), runs work with the lease's context (cancelled when
// the lease is lost, before another replica can take it, or when ctx
// ends), and releases the lease once work has returned. If the lease was
// lost while ctx still runs, it waits to take it again (the supervisor
// cancels ctx if the account is no longer this replica's).
func (m *Manager) Wrap(work func(ctx context.Context, a *mailbusv1.Account)) func(ctx context.Context, a *mailbusv1.Account) {
	return func(ctx context.Context, a *mailbusv1.Account) {
		for ctx.Err() == nil {
			l, err := m.Acquire(ctx, a.Id)
			if err != nil {
				return
			}
			work(l.Context(), a)
			lost := l.Err()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := l.Release(rctx); err != nil {
				m.log.Warn("cannot release lease; it expires on its own", "account", a.Id, "err", err)
			}
			cancel()
			if lost == nil {
				return // work ended on its own, or ctx ended
			}
		}
	}
}

// Supervise returns an accountrun.Supervisor for cfg that runs only this
// replica's accounts, each under its lease: cfg.Filter (if any) is
// combined with Filter, cfg.Work is wrapped with Wrap, and a change of the
// member set kicks the supervisor. Run the Manager and the Supervisor on
// the same context.
func (m *Manager) Supervise(cfg accountrun.Config) *accountrun.Supervisor {
	if f := cfg.Filter; f != nil {
		cfg.Filter = func(a *mailbusv1.Account) bool { return f(a) && m.Filter(a) }
	} else {
		cfg.Filter = m.Filter
	}
	cfg.Work = m.Wrap(cfg.Work)
	s := accountrun.New(cfg)
	m.OnChange(s.Kick)
	return s
}

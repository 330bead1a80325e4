package pop3fetcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/accountrun"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ownership"
)

// maxReason keeps a status reason within what the store keeps (2000).
const maxReason = 1900

// startProgress starts the goroutine that sends progress reports, so that
// a slow store never holds up the download: reportProgress hands it the
// latest progress, replacing one not yet sent.
func (p *pass) startProgress(ctx context.Context) {
	p.progress = make(chan *mailbusv1.AccountStatus, 1)
	p.progressDone = make(chan struct{})
	go func() {
		defer close(p.progressDone)
		for st := range p.progress {
			p.report(ctx, st)
		}
	}()
}

// stopProgress drops a progress report not yet sent and waits for the one
// being sent (bounded by Config.StoreTimeout), so that no progress report
// reaches the store after the pass's final status.
func (p *pass) stopProgress() {
	select {
	case <-p.progress:
	default:
	}
	close(p.progress)
	<-p.progressDone
}

// reportProgress reports SYNCING (INITIAL_SYNC on the first pass) with
// the progress, at most every Config.ProgressEvery unless forced. It never
// waits for the store.
func (p *pass) reportProgress(force bool) {
	if !force && time.Since(p.lastProgress) < p.f.cfg.ProgressEvery {
		return
	}
	p.lastProgress = time.Now()
	state := mailbusv1.SyncState_SYNC_STATE_SYNCING
	if p.initial {
		state = mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC
	}
	st := &mailbusv1.AccountStatus{State: state, Progress: &mailbusv1.SyncProgress{
		MessagesDone: p.done, MessagesTotal: p.total, BytesDone: p.doneBytes, BytesTotal: p.allBytes,
	}}
	for {
		select {
		case p.progress <- st:
			return
		default:
		}
		select {
		case <-p.progress: // stale: replaced by st
		default:
		}
	}
}

// reportSuccess reports IDLE with last_success_time and, as the reason, the
// messages left on the server (too large, refused). An idle status equal
// to the last one is sent again only after Config.StatusHeartbeat (every
// pass by default), unless the pass stored messages.
func (p *pass) reportSuccess(ctx context.Context) {
	st := &mailbusv1.AccountStatus{
		State:           mailbusv1.SyncState_SYNC_STATE_IDLE,
		Reason:          skippedReason(p.res.Skipped),
		LastSuccessTime: timestamppb.Now(),
	}
	last := p.mem.last
	unchanged := last != nil && last.State == st.State && last.Reason == st.Reason &&
		p.res.Fetched == 0 && time.Since(p.mem.lastAt) < p.f.cfg.StatusHeartbeat
	if unchanged {
		return
	}
	p.report(ctx, st)
}

// reportFailure reports RETRYING or PARKED with the reason. A pass of an
// account that has since been updated (the store has a newer generation)
// reports nothing: its configuration is old, and its worker is about to be
// replaced. Every report names the pass's generation, and the store
// refuses one of an older generation (the update may land while the pass
// runs, such as during a login with the old password), so a failure of the
// old configuration never parks the new one.
//
// Nor does a pass that the store answered REAUTHORIZATION_NEEDED: the store
// parked the account itself, with the reason and the command that fixes
// it, which a report of the fetcher's must not replace.
func (p *pass) reportFailure(ctx context.Context, pe *PassError) {
	if p.stale || errors.Is(pe, errAccountGone) || errors.Is(pe, errReauthorization) {
		return
	}
	st := &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_RETRYING, Reason: pe.Reason + " (retrying with backoff)"}
	if pe.Permanent {
		st = &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_PARKED, Reason: pe.Reason + " (parked: not polled again until the account is updated)"}
	}
	p.report(ctx, st)
}

func (p *pass) report(ctx context.Context, st *mailbusv1.AccountStatus) {
	if len(st.Reason) > maxReason {
		st.Reason = st.Reason[:maxReason] + "..."
	}
	if ctx.Err() != nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, p.f.cfg.StoreTimeout)
	defer cancel()
	req := &mailbusv1.ReportAccountStatusRequest{AccountId: p.acct.Id, Status: st, LeaseToken: p.token, Generation: p.acct.Generation}
	if _, err := p.f.ingest.ReportAccountStatus(rctx, req); err != nil {
		if accountrun.IsStaleGeneration(err) {
			// The account was updated while this pass ran: the store keeps
			// the new generation's status (a failure of this pass must
			// not park it), and this worker is about to be replaced.
			p.staleGeneration.Store(true)
			p.log.Info("the account was updated during the pass; its status is not recorded", "state", st.State.String(), "generation", p.acct.Generation)
			return
		}
		if ownership.IsStaleLease(err) {
			p.staleLease.Store(true)
		}
		p.log.Warn("cannot report the account status", "state", st.State.String(), "err", err)
		return
	}
	p.mem.last = proto.Clone(st).(*mailbusv1.AccountStatus)
	p.mem.lastAt = time.Now()
}

// skippedReason describes the messages left on the server, in server
// order; the text stays the same from pass to pass while they stay.
func skippedReason(skipped []Skipped) string {
	if len(skipped) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d message(s) left on the server and not stored:", len(skipped))
	for i, s := range skipped {
		if b.Len() > maxReason-100 {
			fmt.Fprintf(&b, " and %d more", len(skipped)-i)
			break
		}
		if s.UIDL != "" {
			fmt.Fprintf(&b, " [uidl %s: %s]", s.UIDL, s.Reason)
		} else {
			fmt.Fprintf(&b, " [message %d: %s]", s.Number, s.Reason)
		}
	}
	return b.String()
}

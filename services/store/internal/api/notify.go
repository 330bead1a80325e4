package api

import "sync"

// Notifier wakes up the WatchChanges streams of one account when events of
// it may have been committed: by this replica (the database's commit hook)
// or by another one (its events seen on NATS). A wake-up only means "look
// again"; the database is the truth, and watchers also look on a timer.
type Notifier struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

// NewNotifier returns a Notifier.
func NewNotifier() *Notifier { return &Notifier{chans: map[string]chan struct{}{}} }

// Kick wakes the current waiters of an account. It never blocks.
func (n *Notifier) Kick(accountID string) {
	n.mu.Lock()
	if ch, ok := n.chans[accountID]; ok {
		close(ch)
		delete(n.chans, accountID)
	}
	n.mu.Unlock()
}

// Wait returns a channel closed at the account's next Kick.
func (n *Notifier) Wait(accountID string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.chans[accountID]
	if !ok {
		ch = make(chan struct{})
		n.chans[accountID] = ch
	}
	return ch
}

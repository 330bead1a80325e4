package api

import "sync"

// Notifier wakes up WatchChanges streams when events may have been
// committed: by this replica (the database's commit hook) or by another
// one (its events seen on NATS). A wake-up only means "look again"; the
// database is the truth, and watchers also look on a timer.
type Notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewNotifier returns a Notifier.
func NewNotifier() *Notifier { return &Notifier{ch: make(chan struct{})} }

// Kick wakes every current waiter. It never blocks.
func (n *Notifier) Kick() {
	n.mu.Lock()
	close(n.ch)
	n.ch = make(chan struct{})
	n.mu.Unlock()
}

// Wait returns a channel closed at the next Kick.
func (n *Notifier) Wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

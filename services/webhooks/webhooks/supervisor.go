package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// supervisor runs one worker per endpoint of the endpoints bucket, as the
// bucket's watch announces them.
type supervisor struct {
	s       *Service
	workers map[string]*worker
	wg      sync.WaitGroup
}

// run watches the bucket until ctx ends, then stops every worker.
func (sup *supervisor) run(ctx context.Context) error {
	defer func() {
		for _, w := range sup.workers {
			w.stop()
		}
		sup.wg.Wait()
		sup.s.metrics.endpoints.Set(0)
	}()
	for ctx.Err() == nil {
		err := sup.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		sup.s.log.Warn("endpoint watch ended; watching again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

// watch follows the bucket; it returns when the watch fails or ctx ends.
func (sup *supervisor) watch(ctx context.Context) error {
	w, err := sup.s.endpoints.kv.Watch(ctx, endpointKeyPrefix+"*")
	if err != nil {
		return fmt.Errorf("webhooks: watch endpoints: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("webhooks: endpoint watch closed")
			}
			if e == nil {
				continue // the initial values are all in
			}
			sup.apply(ctx, e)
		}
	}
}

// apply starts, updates or stops the worker of one endpoint.
func (sup *supervisor) apply(ctx context.Context, e jetstream.KeyValueEntry) {
	id := strings.TrimPrefix(e.Key(), endpointKeyPrefix)
	w := sup.workers[id]
	if e.Operation() != jetstream.KeyValuePut {
		if w != nil {
			w.stop()
			delete(sup.workers, id)
			sup.s.metrics.endpoints.Set(float64(len(sup.workers)))
		}
		return
	}
	var rec endpointRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		sup.s.log.Error("undecodable endpoint; skipped", "endpoint", id, "err", err)
		return
	}
	if w != nil {
		w.update(&rec)
		return
	}
	w = newWorker(sup.s, &rec)
	sup.workers[id] = w
	sup.s.metrics.endpoints.Set(float64(len(sup.workers)))
	sup.wg.Go(func() { w.run(ctx) })
}

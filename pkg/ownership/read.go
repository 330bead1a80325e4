package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// readLease reads the current entry of a lease key from the stream's
// leader, through the JetStream STREAM.MSG.GET API. kv.Get uses a direct
// get, which any replica of a replicated bucket may answer, from a copy
// that can lag behind the last acknowledged write; a fencing check or a
// decision to delete a key must not act on such a stale read. It returns
// jetstream.ErrKeyNotFound when the key has no live entry (never written,
// deleted, or expired).
func readLease(ctx context.Context, js jetstream.JetStream, bucket, key string) (leaseValue, uint64, error) {
	o := js.Options()
	prefix := jetstream.DefaultAPIPrefix
	switch {
	case o.Domain != "":
		prefix = "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		prefix = strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	req, _ := json.Marshal(struct {
		LastBySubject string `json:"last_by_subj"`
	}{"$KV." + bucket + "." + key})
	msg, err := js.Conn().RequestWithContext(ctx, prefix+"STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return leaseValue{}, 0, fmt.Errorf("ownership: read lease %s: %w", key, err)
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Sequence uint64 `json:"seq"`
			Header   []byte `json:"hdrs"`
			Data     []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return leaseValue{}, 0, fmt.Errorf("ownership: read lease %s: %w", key, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return leaseValue{}, 0, jetstream.ErrKeyNotFound
		}
		return leaseValue{}, 0, fmt.Errorf("ownership: read lease %s: %w", key, resp.Error)
	}
	if resp.Message == nil {
		return leaseValue{}, 0, fmt.Errorf("ownership: read lease %s: empty answer", key)
	}
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return leaseValue{}, 0, fmt.Errorf("ownership: read lease %s: %w", key, err)
		}
		if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return leaseValue{}, 0, jetstream.ErrKeyNotFound
		}
	}
	var v leaseValue
	if err := json.Unmarshal(resp.Message.Data, &v); err != nil {
		return leaseValue{}, 0, fmt.Errorf("ownership: lease %s: %w", key, err)
	}
	return v, resp.Message.Sequence, nil
}

// Holder is who holds one account's lease, as the lease bucket says.
type Holder struct {
	// Owner is the holding replica's id.
	Owner string
	// Token is the lease's fencing token (Lease.Token of its holder).
	Token uint64
}

// Holders reads every lease of a service from its lease bucket (for
// operators' tools and tests; replicas never decide on it): account id →
// holder. A bucket that does not exist yet holds no lease. Reads are
// direct gets, which a lagging replica of a replicated bucket may answer.
func Holders(ctx context.Context, js jetstream.JetStream, service string) (map[string]Holder, error) {
	kv, err := js.KeyValue(ctx, LeaseBucket(service))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return map[string]Holder{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ownership: lease bucket of %s: %w", service, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("ownership: leases of %s: %w", service, err)
	}
	out := map[string]Holder{}
	for k := range keys.Keys() {
		entry, err := kv.Get(ctx, k)
		if err != nil {
			continue // released or expired meanwhile
		}
		var v leaseValue
		if err := json.Unmarshal(entry.Value(), &v); err != nil {
			return nil, fmt.Errorf("ownership: lease %s of %s: %w", k, service, err)
		}
		if v.Token == 0 { // not renewed yet: the bucket's epoch plus the creating revision
			v.Token = v.Epoch + entry.Revision()
		}
		out[k] = Holder{Owner: v.Owner, Token: v.Token}
	}
	return out, nil
}

package ownership

import (
	"context"
	"encoding/json"
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

// Package ownershiptest helps tests of fetchers that run under
// pkg/ownership: Audit watches a fetcher's calls to the store and records
// every write sent without a fencing token.
package ownershiptest

import (
	"context"
	"sync"

	"google.golang.org/grpc"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Audit records the fenced store calls (requests with a lease_token
// field: every write, and GetAccountSecret since decision 0023) that a
// fetcher sends, and those among them whose lease_token is 0. Dial
// the store with DialOptions and give the fetcher that connection. Safe
// for concurrent use.
type Audit struct {
	mu      sync.Mutex
	writes  map[string]int
	missing map[string]int
}

// NewAudit returns an empty Audit.
func NewAudit() *Audit {
	return &Audit{writes: map[string]int{}, missing: map[string]int{}}
}

// DialOptions are the client interceptors that feed the audit.
func (a *Audit) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			a.observe(method, req)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, err
			}
			return &auditStream{ClientStream: s, a: a, method: method}, nil
		}),
	}
}

type auditStream struct {
	grpc.ClientStream
	a      *Audit
	method string
}

func (s *auditStream) SendMsg(m any) error {
	if r, ok := m.(*mailbusv1.IngestMessagesRequest); ok && r.Meta != nil {
		s.a.observe(s.method, r.Meta)
	}
	return s.ClientStream.SendMsg(m)
}

func (a *Audit) observe(method string, req any) {
	t, ok := req.(interface{ GetLeaseToken() uint64 })
	if !ok {
		return // a read
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writes[method]++
	if t.GetLeaseToken() == 0 {
		a.missing[method]++
	}
}

// Writes returns how many writes were seen, by gRPC method (an ingested
// message counts as one write of IngestMessages).
func (a *Audit) Writes() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.writes))
	for k, v := range a.writes {
		out[k] = v
	}
	return out
}

// Missing returns the writes sent with lease token 0, by gRPC method.
func (a *Audit) Missing() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]int, len(a.missing))
	for k, v := range a.missing {
		out[k] = v
	}
	return out
}

package api

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/discover"
	"github.com/mailbus/mailbus/pkg/discover/discoverpb"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// discoverBudget bounds one DiscoverSettings call whatever the client's
// deadline: five lookups (two autoconfig URLs, two SRV names, the MX) of
// discover.DefaultTimeout each at most, and 10 s to spare: 60 s.
const discoverBudget = 5*discover.DefaultTimeout + 10*time.Second

// DiscoverSettings implements AccountService (decision 0038).
func (s *Accounts) DiscoverSettings(ctx context.Context, req *mailbusv1.DiscoverSettingsRequest) (*mailbusv1.DiscoverSettingsResponse, error) {
	p, ok := discoverpb.Protocol(req.Protocol)
	if !ok {
		return nil, invalidArg("protocol", "unknown protocol %d", req.Protocol)
	}
	if _, err := discover.ParseAddress(req.Email); err != nil {
		var ae *discover.AddressError
		if errors.As(err, &ae) {
			return nil, invalidArg("email", "%s", ae.Reason)
		}
		return nil, invalidArg("email", "%v", err)
	}
	d := s.Discoverer
	if d == nil {
		d = discover.New(discover.Config{})
	}
	ctx, cancel := context.WithTimeout(ctx, discoverBudget)
	defer cancel()
	r, err := d.Discover(ctx, req.Email, p)
	if err != nil {
		switch {
		case errors.Is(err, discover.ErrNotFound), errors.Is(err, discover.ErrNotOffered):
			return nil, status.Error(codes.NotFound, err.Error())
		case errors.Is(err, discover.ErrInvalidAddress):
			return nil, invalidArg("email", "%v", err)
		}
		return nil, toStatus(ctx, s.Log, err)
	}
	// The address is the admin's input and the answer is about a domain:
	// neither is a secret, and the log says what the store looked up.
	s.Log.InfoContext(ctx, "settings discovered", "protocol", p.String(), "source", r.Source.String(), "host", r.Host, "guess", r.Guess)
	return discoverpb.Response(r), nil
}

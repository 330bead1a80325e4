package discover

import (
	"context"
	"errors"
	"fmt"
)

// mx looks at the domain's MX hosts (lowest preference first, as the Go
// resolver sorts them). An MX of a provider with a preset (Google
// Workspace, Microsoft 365, Fastmail, Yandex, Zoho) gives that provider's
// settings; otherwise the MX host itself, on the implicit TLS port, is
// returned as a guess: many small providers receive and serve mail on
// one host, but nothing says so, so the Result is marked Guess and the
// CLI says to check it. A null MX (RFC 7505, target ".") gives nothing.
func (d *Discoverer) mx(ctx context.Context, addr Address, p Protocol) (*Result, []Attempt, error) {
	name := addr.Domain
	fail := func(err error) (*Result, []Attempt, error) {
		return nil, []Attempt{{Source: SourceMX, Where: name, Err: err}}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	records, err := d.resolver.LookupMX(lctx, addr.Domain+".")
	if err != nil && len(records) == 0 {
		return fail(dnsErr(err))
	}
	for _, rec := range records {
		if rec.Host == "." || rec.Host == "" {
			continue // null MX: the domain takes no mail
		}
		host, err := hostnameOf(rec.Host)
		if err != nil {
			continue
		}
		if ps := presetForMX(host); ps != nil {
			r, err := ps.result(addr, p, SourceMX, fmt.Sprintf("MX %s (hosted by %s)", host, ps.name))
			if err != nil {
				return nil, []Attempt{{Source: SourceMX, Where: name, Err: err}}, err
			}
			return r, nil, nil
		}
		return &Result{
			Protocol: p, Host: host, Port: defaultPort(p, TLS), Security: TLS,
			Username: addr.Email, Auth: AuthPassword, Source: SourceMX,
			Where: "MX " + host + " (a guess: the mail exchanger taken for the " + p.String() + " host)", Guess: true,
		}, nil, nil
	}
	return fail(errors.New("no usable MX host (none, or a null MX)"))
}

package discover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// srvService is one RFC 6186 service name and the security it means.
type srvService struct {
	name     string
	security Security
}

// srvServices are asked in order: implicit TLS first (RFC 8314 section
// 5.1 prefers it whatever the records' priorities across the two names),
// then the plain port with STARTTLS, which discovery always requires.
func srvServices(p Protocol) []srvService {
	if p == POP3 {
		return []srvService{{"pop3s", TLS}, {"pop3", STARTTLS}}
	}
	return []srvService{{"imaps", TLS}, {"imap", STARTTLS}}
}

// srv looks for RFC 6186 SRV records. Within a name the Go resolver has
// sorted the records by priority and shuffled them by weight (RFC 2782);
// the first usable one is taken. A lone record with target "." says the
// service is decidedly not offered; when both names say so the search
// ends with ErrNotOffered rather than guess from the MX.
func (d *Discoverer) srv(ctx context.Context, addr Address, p Protocol) (*Result, []Attempt, error) {
	var tried []Attempt
	notOffered := 0
	services := srvServices(p)
	for _, svc := range services {
		name := "_" + svc.name + "._tcp." + addr.Domain
		r, err := d.srvOne(ctx, svc, addr, p)
		if err == nil {
			r.Where = name
			return r, tried, nil
		}
		if errors.Is(err, ErrNotOffered) {
			notOffered++
		}
		tried = append(tried, Attempt{Source: SourceSRV, Where: name, Err: err})
		if ctx.Err() != nil {
			return nil, tried, nil
		}
	}
	if notOffered == len(services) {
		return nil, tried, fmt.Errorf("%s publishes SRV target \".\" for %s: the domain offers no %s: %w",
			addr.Domain, services[0].name+" and "+services[1].name, strings.ToUpper(p.String()), ErrNotOffered)
	}
	return nil, tried, nil
}

// srvOne asks one service name.
func (d *Discoverer) srvOne(ctx context.Context, svc srvService, addr Address, p Protocol) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	_, records, err := d.resolver.LookupSRV(ctx, svc.name, "tcp", addr.Domain+".")
	if err != nil && len(records) == 0 {
		return nil, dnsErr(err)
	}
	if len(records) == 1 && (records[0].Target == "." || records[0].Target == "") {
		return nil, fmt.Errorf("target \".\": %w", ErrNotOffered)
	}
	var reasons []string
	for _, rec := range records {
		if rec.Target == "." || rec.Port == 0 {
			continue
		}
		host, err := hostnameOf(rec.Target)
		if err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		return &Result{
			Protocol: p, Host: host, Port: int(rec.Port), Security: svc.security,
			Username: addr.Email, Auth: AuthPassword, OAuth2Provider: providerOfHost(host), Source: SourceSRV,
		}, nil
	}
	if len(reasons) > 0 {
		return nil, fmt.Errorf("no usable record: %s", strings.Join(reasons, "; "))
	}
	return nil, errors.New("no usable record")
}

// dnsErr shortens the resolver's errors for the Attempt list: the name
// is there already.
func dnsErr(err error) error {
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsNotFound:
			return errors.New("no such record")
		case de.IsTimeout:
			return errors.New("DNS timeout")
		}
		return fmt.Errorf("DNS: %s", de.Err)
	}
	return err
}

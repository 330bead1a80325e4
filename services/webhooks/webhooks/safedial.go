package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
)

// ErrPrivateAddress is returned for a webhook URL whose host is, or
// resolves to, an address that is not public (see publicAddr).
var ErrPrivateAddress = errors.New("webhooks: address is loopback, private, link-local or otherwise not public (allow private webhooks to use it)")

// sharedAddressSpace is 100.64.0.0/10 (RFC 6598, carrier-grade NAT),
// which netip does not count as private but which is not public either.
var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// publicAddr reports whether a webhook may be sent to ip: not loopback,
// private (RFC 1918, RFC 4193), link-local (where cloud metadata services
// live), shared (RFC 6598), unspecified or multicast. An IPv4-mapped IPv6
// address is judged as its IPv4 address.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid(), ip.IsLoopback(), ip.IsPrivate(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(),
		ip.IsInterfaceLocalMulticast(), ip.IsMulticast(), ip.IsUnspecified(), sharedAddressSpace.Contains(ip):
		return false
	}
	return true
}

// checkURL validates a webhook URL: absolute http or https with a host,
// no user information. With allowPrivate false it also resolves the host
// and refuses it when any of its addresses is not public (dialing checks
// again, against DNS rebinding: see dialControl).
func checkURL(ctx context.Context, raw string, allowPrivate bool, resolver *net.Resolver) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("webhooks: url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("webhooks: url %q: scheme must be http or https", raw)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("webhooks: url %q has no host", raw)
	}
	if u.User != nil {
		return fmt.Errorf("webhooks: url %q: user information is not allowed (put a token in the path or query)", u.Redacted())
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		if !publicAddr(ip) {
			return fmt.Errorf("webhooks: url %q: %s: %w", raw, ip, ErrPrivateAddress)
		}
		return nil
	}
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	addrs, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("webhooks: url %q: resolve %s: %w", raw, host, err)
	}
	for _, ip := range addrs {
		if !publicAddr(ip) {
			return fmt.Errorf("webhooks: url %q: %s resolves to %s: %w", raw, host, ip, ErrPrivateAddress)
		}
	}
	return nil
}

// dialControl is the net.Dialer Control function that refuses a
// connection to an address that is not public: it runs after name
// resolution, on the very address dialed, so a name that resolved to a
// public address when the endpoint was created and to a private one now
// (DNS rebinding) is refused too.
func dialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhooks: dial %s: %w", address, err)
	}
	if !publicAddr(ap.Addr()) {
		return fmt.Errorf("webhooks: dial %s: %w", address, ErrPrivateAddress)
	}
	return nil
}

// Package replicaflag defines the command-line flags with which a fetcher
// (pop3fetcher, imapsync) runs as one of several replicas: ownership of
// accounts through leases in NATS JetStream KV (pkg/ownership) and the
// pacing and budget of new upstream connections per host
// (pkg/hostlimit). Each flag also reads a MAILBUS_* environment variable,
// as with pkg/envflag.
package replicaflag

import (
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/pkg/ownership"
)

// Flags are the parsed values; read them with Ownership and HostLimit
// after the flag set is parsed.
type Flags struct {
	ownership    *bool
	replicaID    *string
	leaseTTL     *time.Duration
	safetyMargin *time.Duration
	kvReplicas   *int64
	hostRate     *int64
	hostBurst    *int64
	hostMaxConns *int64
}

// Define defines the flags on fs.
func Define(fs *pflag.FlagSet) *Flags {
	return &Flags{
		ownership: envflag.Bool(fs, "ownership", "MAILBUS_OWNERSHIP", false,
			"share the accounts with the other replicas of this service: each account is worked by one replica at a time, under a lease in NATS JetStream KV (needs --nats); off, this process works every account"),
		replicaID: envflag.String(fs, "replica-id", "MAILBUS_REPLICA_ID", "",
			"this replica's id among the replicas of the service (letters, digits, - _ = . /); empty: the host name plus a random suffix"),
		leaseTTL: envflag.Duration(fs, "lease-ttl", "MAILBUS_LEASE_TTL", ownership.DefaultLeaseTTL,
			"how long an account lease and a replica's heartbeat live after their last renewal; the longest a crashed replica's accounts wait. Every replica of the service must use the same value"),
		safetyMargin: envflag.Duration(fs, "lease-safety-margin", "MAILBUS_LEASE_SAFETY_MARGIN", 0,
			"a replica stops working an account this long before its lease could expire unrenewed; 0: 5s or a sixth of --lease-ttl, whichever is smaller"),
		kvReplicas: envflag.Int64(fs, "kv-replicas", "MAILBUS_KV_REPLICAS", 1,
			"replicas of the ownership KV buckets: 3 on a 3-node NATS cluster"),
		hostRate: envflag.Int64(fs, "host-rate", "MAILBUS_HOST_RATE", int64(hostlimit.DefaultRate),
			"new upstream connections per second per host, so that many accounts on one server do not connect at once (ramp-up); negative: unpaced"),
		hostBurst: envflag.Int64(fs, "host-burst", "MAILBUS_HOST_BURST", hostlimit.DefaultBurst,
			"new upstream connections that may start at once per host after a quiet period"),
		hostMaxConns: envflag.Int64(fs, "host-max-conns", "MAILBUS_HOST_MAX_CONNS", 0,
			"upstream connections open at once per host (a budget; servers limit sessions per client address); 0: no budget"),
	}
}

// Ownership returns the ownership configuration the flags ask for, or nil
// when --ownership is off. JetStream and Service are left to the service;
// the other settings are checked by ownership.New.
func (f *Flags) Ownership() (*ownership.Config, error) {
	if !*f.ownership {
		return nil, nil
	}
	if *f.kvReplicas < 1 || *f.kvReplicas > 5 {
		return nil, errors.New("--kv-replicas must be 1 to 5")
	}
	if *f.leaseTTL <= 0 {
		return nil, errors.New("--lease-ttl must be positive")
	}
	return &ownership.Config{
		ReplicaID:    *f.replicaID,
		LeaseTTL:     *f.leaseTTL,
		SafetyMargin: *f.safetyMargin,
		Replicas:     int(*f.kvReplicas),
	}, nil
}

// HostLimit returns the per-host connection limits.
func (f *Flags) HostLimit() (hostlimit.Config, error) {
	if *f.hostBurst < 1 {
		return hostlimit.Config{}, errors.New("--host-burst must be at least 1")
	}
	if *f.hostMaxConns < 0 {
		return hostlimit.Config{}, errors.New("--host-max-conns must not be negative")
	}
	rate := float64(*f.hostRate)
	if rate == 0 {
		return hostlimit.Config{}, errors.New("--host-rate must not be 0 (negative: unpaced)")
	}
	return hostlimit.Config{Rate: rate, Burst: int(*f.hostBurst), MaxConns: int(*f.hostMaxConns)}, nil
}

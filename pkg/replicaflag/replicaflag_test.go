package replicaflag

import (
	"io"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/mailbus/mailbus/pkg/hostlimit"
)

func TestFlags(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		ownership bool
		replica   string
		ttl       time.Duration
		limit     hostlimit.Config
		wantErr   bool
	}{
		{name: "defaults", limit: hostlimit.Config{Rate: 10, Burst: 5}},
		{name: "ownership on", args: []string{"--ownership", "--replica-id", "r1", "--lease-ttl", "6s", "--host-max-conns", "20"},
			ownership: true, replica: "r1", ttl: 6 * time.Second, limit: hostlimit.Config{Rate: 10, Burst: 5, MaxConns: 20}},
		{name: "from the environment", env: map[string]string{"MAILBUS_OWNERSHIP": "true", "MAILBUS_REPLICA_ID": "r2", "MAILBUS_HOST_RATE": "-1"},
			ownership: true, replica: "r2", ttl: 30 * time.Second, limit: hostlimit.Config{Rate: -1, Burst: 5}},
		{name: "zero rate", args: []string{"--host-rate", "0"}, wantErr: true},
		{name: "bad kv replicas", args: []string{"--ownership", "--kv-replicas", "0"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f := Define(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			own, err1 := f.Ownership()
			limit, err2 := f.HostLimit()
			if tt.wantErr {
				if err1 == nil && err2 == nil {
					t.Fatal("no error")
				}
				return
			}
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if (own != nil) != tt.ownership {
				t.Fatalf("ownership %v, want %v", own != nil, tt.ownership)
			}
			if own != nil && (own.ReplicaID != tt.replica || own.LeaseTTL != tt.ttl || own.Replicas != 1) {
				t.Fatalf("ownership config %+v", own)
			}
			if limit != tt.limit {
				t.Fatalf("host limit %+v, want %+v", limit, tt.limit)
			}
		})
	}
}

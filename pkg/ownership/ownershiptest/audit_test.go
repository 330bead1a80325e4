package ownershiptest

import (
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func TestAuditObserve(t *testing.T) {
	a := NewAudit()
	a.observe("/mailbus.v1.IngestService/ReportAccountStatus", &mailbusv1.ReportAccountStatusRequest{LeaseToken: 3})
	a.observe("/mailbus.v1.IngestService/ReportAccountStatus", &mailbusv1.ReportAccountStatusRequest{})
	a.observe("/mailbus.v1.IngestService/IngestMessages", &mailbusv1.IngestMeta{LeaseToken: 4})
	// GetAccountSecret is fenced too (decision 0023): a secret read
	// without the lease token is reported like a write without it.
	a.observe("/mailbus.v1.IngestService/GetAccountSecret", &mailbusv1.GetAccountSecretRequest{})
	// A request without a lease_token field is not fenced: not counted.
	a.observe("/mailbus.v1.IngestService/ListUpstreamIds", &mailbusv1.ListUpstreamIdsRequest{})
	w, m := a.Writes(), a.Missing()
	if len(w) != 3 || w["/mailbus.v1.IngestService/ReportAccountStatus"] != 2 || w["/mailbus.v1.IngestService/IngestMessages"] != 1 || w["/mailbus.v1.IngestService/GetAccountSecret"] != 1 {
		t.Errorf("writes %v", w)
	}
	if len(m) != 2 || m["/mailbus.v1.IngestService/ReportAccountStatus"] != 1 || m["/mailbus.v1.IngestService/GetAccountSecret"] != 1 {
		t.Errorf("missing %v", m)
	}
}

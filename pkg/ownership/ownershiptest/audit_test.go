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
	a.observe("/mailbus.v1.IngestService/GetAccountSecret", &mailbusv1.GetAccountSecretRequest{})
	w, m := a.Writes(), a.Missing()
	if len(w) != 2 || w["/mailbus.v1.IngestService/ReportAccountStatus"] != 2 || w["/mailbus.v1.IngestService/IngestMessages"] != 1 {
		t.Errorf("writes %v", w)
	}
	if len(m) != 1 || m["/mailbus.v1.IngestService/ReportAccountStatus"] != 1 {
		t.Errorf("missing %v", m)
	}
}

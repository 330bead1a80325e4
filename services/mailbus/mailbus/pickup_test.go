package mailbus_test

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/accountrun/accountruntest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// TestServePicksUpAccountsAtOnce: in mailbus serve, with the fetchers'
// account list read once an hour, accounts added one after another are
// polled at once: the in-process fetchers follow the store's announcements
// as the separate services do (decision 0028; the fetchers' own tests
// prove the path by refusing every list).
func TestServePicksUpAccountsAtOnce(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox("a", "pw"), pop3test.WithMailbox("b", "pw"))
	tap := accountruntest.StartTap(t, srv.Addr())
	r := start(t, mailbus.Config{DataDir: filepath.Join(t.TempDir(), "data"), AccountRefresh: time.Hour})
	accounts := mailbusv1.NewAccountServiceClient(dial(t, r.info))
	host, port, _ := net.SplitHostPort(tap.Addr())
	p, _ := strconv.Atoi(port)
	for _, user := range []string{"a", "b"} {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		_, err := accounts.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
			Name: user, Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: host, Port: uint32(p),
			Security: mailbusv1.Security_SECURITY_NONE, Username: user, Secret: "pw",
			Pop3Mode: mailbusv1.Pop3Mode_POP3_MODE_KEEP, PollInterval: durationpb.New(time.Hour),
		}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		tap.WaitFirstCommand(t, waitLong)
	}
}

package store_test

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// objs are the objects of one account a request can name.
type objs struct {
	account, name, mailbox, message string
}

// missing names objects that do not exist.
var missing = objs{account: "999999", name: "no-such-account", mailbox: "999999", message: "999999"}

// access is what a method needs, as the tests expect it.
type access int

const (
	read access = iota + 1
	write
	admin
	service
)

// rpcCase is how to call one method on the objects of an account.
type rpcCase struct {
	access access
	// scoped methods name an account (directly or through a mailbox or
	// message); the others (ListAccounts, CreateAccount, TokenService,
	// IngestService) do not depend on a device token's scope.
	scoped bool
	req    func(o objs) proto.Message
}

// rpcCases has a case for every method of every mailbus.v1 service; the
// test fails for a method without one, so a new RPC is tested too. Device
// mutations carry no device_id: a token that is let through then fails
// validation (INVALID_ARGUMENT) and changes nothing.
var rpcCases = map[string]rpcCase{
	mailbusv1.AccountService_CreateAccount_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.CreateAccountRequest{Account: pop3Account("created-" + o.name)}
	}},
	mailbusv1.AccountService_GetAccount_FullMethodName: {read, true, func(o objs) proto.Message {
		return &mailbusv1.GetAccountRequest{AccountId: o.account}
	}},
	mailbusv1.AccountService_ListAccounts_FullMethodName: {read, false, func(o objs) proto.Message {
		return &mailbusv1.ListAccountsRequest{}
	}},
	mailbusv1.AccountService_UpdateAccount_FullMethodName: {admin, true, func(o objs) proto.Message {
		return &mailbusv1.UpdateAccountRequest{Account: &mailbusv1.Account{Id: o.account, Host: "other.example.com"}}
	}},
	mailbusv1.AccountService_DeleteAccount_FullMethodName: {admin, true, func(o objs) proto.Message {
		return &mailbusv1.DeleteAccountRequest{AccountId: o.account}
	}},
	// A preset's address: the admin's call makes no network lookup.
	mailbusv1.AccountService_DiscoverSettings_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.DiscoverSettingsRequest{Email: "alice@gmail.com"}
	}},
	mailbusv1.MailboxService_ListMailboxes_FullMethodName: {read, true, func(o objs) proto.Message {
		return &mailbusv1.ListMailboxesRequest{AccountId: o.account}
	}},
	mailbusv1.MailboxService_CreateMailbox_FullMethodName: {write, true, func(o objs) proto.Message {
		return &mailbusv1.CreateMailboxRequest{AccountId: o.account, Name: "New"}
	}},
	mailbusv1.MailboxService_RenameMailbox_FullMethodName: {write, true, func(o objs) proto.Message {
		return &mailbusv1.RenameMailboxRequest{MailboxId: o.mailbox, NewName: "Renamed"}
	}},
	mailbusv1.MailboxService_DeleteMailbox_FullMethodName: {write, true, func(o objs) proto.Message {
		return &mailbusv1.DeleteMailboxRequest{MailboxId: o.mailbox}
	}},
	mailbusv1.MailboxService_ListMessages_FullMethodName: {read, true, func(o objs) proto.Message {
		return &mailbusv1.ListMessagesRequest{MailboxId: o.mailbox}
	}},
	mailbusv1.MailboxService_GetMessage_FullMethodName: {read, true, func(o objs) proto.Message {
		return &mailbusv1.GetMessageRequest{MessageId: o.message}
	}},
	mailbusv1.MailboxService_GetRawMessage_FullMethodName: {read, true, func(o objs) proto.Message {
		return &mailbusv1.GetRawMessageRequest{MessageId: o.message}
	}},
	mailbusv1.MailboxService_GetAttachment_FullMethodName: {read, true, func(o objs) proto.Message {
		return &mailbusv1.GetAttachmentRequest{MessageId: o.message, PartId: "1"}
	}},
	mailbusv1.MailboxService_UpdateFlags_FullMethodName: {write, true, func(o objs) proto.Message {
		return &mailbusv1.UpdateFlagsRequest{AccountId: o.account, MessageIds: []string{o.message}, Add: []string{"\\Seen"}}
	}},
	mailbusv1.MailboxService_MoveMessages_FullMethodName: {write, true, func(o objs) proto.Message {
		return &mailbusv1.MoveMessagesRequest{AccountId: o.account, MessageIds: []string{o.message}, ToMailboxId: o.mailbox}
	}},
	mailbusv1.MailboxService_DeleteMessages_FullMethodName: {write, true, func(o objs) proto.Message {
		return &mailbusv1.DeleteMessagesRequest{AccountId: o.account, MessageIds: []string{o.message}}
	}},
	mailbusv1.MailboxService_AppendMessage_FullMethodName: {write, true, func(o objs) proto.Message {
		return &mailbusv1.AppendMessageRequest{MailboxId: o.mailbox, Raw: testMessage(99)}
	}},
	mailbusv1.SyncService_GetState_FullMethodName: {read, true, func(o objs) proto.Message {
		return &mailbusv1.GetStateRequest{AccountId: o.account}
	}},
	mailbusv1.SyncService_GetChanges_FullMethodName: {read, true, func(o objs) proto.Message {
		return &mailbusv1.GetChangesRequest{AccountId: o.account}
	}},
	mailbusv1.SyncService_WatchChanges_FullMethodName: {read, true, func(o objs) proto.Message {
		return &mailbusv1.WatchChangesRequest{AccountId: o.account}
	}},
	mailbusv1.IngestService_ClaimAccount_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.ClaimAccountRequest{AccountId: o.account}
	}},
	mailbusv1.IngestService_GetAccountSecret_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.GetAccountSecretRequest{AccountId: o.account}
	}},
	mailbusv1.IngestService_ReportAccountStatus_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.ReportAccountStatusRequest{AccountId: o.account, Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_IDLE}}
	}},
	mailbusv1.IngestService_UpsertMailboxes_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.UpsertMailboxesRequest{AccountId: o.account}
	}},
	mailbusv1.IngestService_ListMailboxSyncStates_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.ListMailboxSyncStatesRequest{AccountId: o.account}
	}},
	mailbusv1.IngestService_SetMailboxSyncState_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.SetMailboxSyncStateRequest{MailboxId: o.mailbox}
	}},
	mailbusv1.IngestService_IngestMessages_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.IngestMessagesRequest{Flush: true}
	}},
	mailbusv1.IngestService_WatchAccounts_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.WatchAccountsRequest{}
	}},
	mailbusv1.IngestService_ListUpstreamIds_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.ListUpstreamIdsRequest{AccountId: o.account}
	}},
	mailbusv1.IngestService_ApplyUpstreamChanges_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.ApplyUpstreamChangesRequest{AccountId: o.account}
	}},
	mailbusv1.IngestService_ListPendingWriteBacks_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.ListPendingWriteBacksRequest{AccountId: o.account}
	}},
	mailbusv1.IngestService_AckWriteBack_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.AckWriteBackRequest{WritebackId: "999999"}
	}},
	mailbusv1.IngestService_RebindMessages_FullMethodName: {service, false, func(o objs) proto.Message {
		return &mailbusv1.RebindMessagesRequest{AccountId: o.account}
	}},
	mailbusv1.TokenService_CreateToken_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{Name: "made-by-test", Role: mailbusv1.TokenRole_TOKEN_ROLE_ADMIN}}
	}},
	mailbusv1.TokenService_ListTokens_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.ListTokensRequest{}
	}},
	mailbusv1.TokenService_RevokeToken_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.RevokeTokenRequest{TokenId: "0000000000000000"}
	}},
	mailbusv1.TokenService_GetCallerToken_FullMethodName: {read, false, func(o objs) proto.Message {
		return &mailbusv1.GetCallerTokenRequest{}
	}},
	// WebhookService is not served by the store (mailbus-webhooks serves
	// it): an admin token is let through to UNIMPLEMENTED, every other
	// token is refused first.
	mailbusv1.WebhookService_CreateEndpoint_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.CreateEndpointRequest{Endpoint: &mailbusv1.WebhookEndpoint{Url: "https://example.com/hook", AccountIds: []string{o.account}}}
	}},
	mailbusv1.WebhookService_ListEndpoints_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.ListEndpointsRequest{}
	}},
	mailbusv1.WebhookService_GetEndpoint_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.GetEndpointRequest{EndpointId: "0000000000000000"}
	}},
	mailbusv1.WebhookService_UpdateEndpoint_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.UpdateEndpointRequest{Endpoint: &mailbusv1.WebhookEndpoint{Id: "0000000000000000"}}
	}},
	mailbusv1.WebhookService_DeleteEndpoint_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.DeleteEndpointRequest{EndpointId: "0000000000000000"}
	}},
	mailbusv1.WebhookService_SendTestEvent_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.SendTestEventRequest{EndpointId: "0000000000000000"}
	}},
	mailbusv1.WebhookService_ListDeliveries_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.ListDeliveriesRequest{EndpointId: "0000000000000000"}
	}},
	mailbusv1.WebhookService_Redeliver_FullMethodName: {admin, false, func(o objs) proto.Message {
		return &mailbusv1.RedeliverRequest{EndpointId: "0000000000000000", DeliveryId: "0"}
	}},
}

// apiMethods returns every method of every service of package mailbus.v1.
func apiMethods(t *testing.T) []protoreflect.MethodDescriptor {
	t.Helper()
	var out []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("mailbus.v1", func(f protoreflect.FileDescriptor) bool {
		for i := 0; i < f.Services().Len(); i++ {
			s := f.Services().Get(i)
			for j := 0; j < s.Methods().Len(); j++ {
				out = append(out, s.Methods().Get(j))
			}
		}
		return true
	})
	if len(out) < 30 {
		t.Fatalf("found only %d methods in mailbus.v1: are the generated packages linked?", len(out))
	}
	return out
}

func fullMethod(m protoreflect.MethodDescriptor) string {
	return "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
}

// invoke calls any method with a request and returns the call's status
// error: for a stream, that of the first message or the end.
func invoke(ctx context.Context, conn grpc.ClientConnInterface, m protoreflect.MethodDescriptor, req proto.Message) error {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Output().FullName())
	if err != nil {
		return err
	}
	out := mt.New().Interface()
	if !m.IsStreamingClient() && !m.IsStreamingServer() {
		return conn.Invoke(ctx, fullMethod(m), req, out)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: m.IsStreamingServer(), ClientStreams: m.IsStreamingClient()}, fullMethod(m))
	if err != nil {
		return err
	}
	// As a generated client does: io.EOF from SendMsg means "the call is
	// over, RecvMsg tells its status" only on a method whose client
	// streams; on the others (server streaming) any error of SendMsg
	// fails the call, so a transport must give the status on RecvMsg
	// instead (grpc-go's SendMsg returns nil there).
	if err := cs.SendMsg(req); err != nil && (!m.IsStreamingClient() || !errors.Is(err, io.EOF)) {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	if err := cs.RecvMsg(out); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// authFixture is a store with accounts A and B, a message in each, and
// tokens.
type authFixture struct {
	e                *env
	a, b             objs
	scratch          objs // for admin and service calls that change things
	deviceA          string
	readOnlyA        string
	deviceAReadOnlyB string
}

func newAuthFixture(t *testing.T, backend dbtest.Backend) *authFixture {
	t.Helper()
	return newAuthFixtureOn(t, backend, false)
}

// newAuthFixtureOn is newAuthFixture on a store with an in-process
// channel when inProcess is set (then env.connect uses it).
func newAuthFixtureOn(t *testing.T, backend dbtest.Backend, inProcess bool) *authFixture {
	t.Helper()
	e := startStore(t, backend, storeOpts{inProcess: inProcess})
	f := &authFixture{e: e}
	mk := func(name string) objs {
		acct := e.createAccount(t, imapAccount(name))
		inbox := e.inbox(t, acct.Id)
		res := e.mustIngest(t, imapItem(acct.Id, inbox.Id, 1, 1, testMessage(len(name))))
		return objs{account: acct.Id, name: name, mailbox: inbox.Id, message: res[0].MessageId}
	}
	f.a, f.b, f.scratch = mk("a"), mk("b"), mk("scratch")
	f.deviceA = f.token(t, "phone", false, f.a.account)
	f.readOnlyA = f.token(t, "archiver", true, f.a.account)
	return f
}

func (f *authFixture) token(t *testing.T, name string, readOnly bool, accounts ...string) string {
	t.Helper()
	resp, err := mailbusv1.NewTokenServiceClient(f.e.conn).CreateToken(callCtx(t), &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
		Name: name, Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: accounts, ReadOnly: readOnly,
	}})
	if err != nil {
		t.Fatalf("CreateToken %s: %v", name, err)
	}
	if resp.Secret == "" || resp.Token.Id == "" || !slices.Equal(resp.Token.AccountIds, accounts) {
		t.Fatalf("CreateToken %s: %v", name, resp)
	}
	return resp.Secret
}

// authCode is true for the codes a refused call gets.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
		return true
	}
	return false
}

func TestEveryMethodHasACase(t *testing.T) {
	for _, m := range apiMethods(t) {
		if _, ok := rpcCases[fullMethod(m)]; !ok {
			t.Errorf("%s has no case in rpcCases: add one (and a rule in internal/auth)", fullMethod(m))
		}
	}
}

// TestAuthEveryRPC calls every method with no token, an unknown token,
// account A's device tokens (on A's objects, B's objects and objects that
// do not exist), the service token and the admin token, and checks that
// each is refused or let through as the method's access says: on the
// store's port, and on its in-process channel (mailbus serve's fetchers,
// decision 0045).
func TestAuthEveryRPC(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		eachTransport(t, func(t *testing.T, inProcess bool) { authEveryRPC(t, b, inProcess) })
	})
}

func authEveryRPC(t *testing.T, b dbtest.Backend, inProcess bool) {
	f := newAuthFixtureOn(t, b, inProcess)
	e := f.e
	conns := map[string]grpc.ClientConnInterface{
		"none":      e.connect(t, ""),
		"unknown":   e.connect(t, "mbt_0123456789abcdef_bm90IGEgcmVhbCB0b2tlbiBhdCBhbGwsIHNvcnJ5IQ"),
		"garbage":   e.connect(t, "not-a-token"),
		"deviceA":   e.connect(t, f.deviceA),
		"readOnlyA": e.connect(t, f.readOnlyA),
		"service":   e.connect(t, e.serviceToken),
		"admin":     e.connect(t, e.adminToken),
	}
	for _, m := range apiMethods(t) {
		c, ok := rpcCases[fullMethod(m)]
		if !ok {
			continue
		}
		t.Run(string(m.Parent().Name())+"."+string(m.Name()), func(t *testing.T) {
			call := func(who string, o objs) error {
				return invoke(callCtx(t), conns[who], m, c.req(o))
			}
			for _, who := range []string{"none", "unknown", "garbage"} {
				if err := call(who, f.a); status.Code(err) != codes.Unauthenticated {
					t.Errorf("%s token: got %v, want Unauthenticated", who, err)
				}
			}
			for _, who := range []string{"deviceA", "readOnlyA"} {
				// Another account's objects look exactly like objects
				// that do not exist.
				errB, errMissing := call(who, f.b), call(who, missing)
				if status.Code(errB) != status.Code(errMissing) {
					t.Errorf("%s on B: %v; on a missing object: %v (existence leaks)", who, errB, errMissing)
				}
				switch {
				case c.access == service || (!c.scoped && c.access == admin):
					if status.Code(errB) != codes.PermissionDenied {
						t.Errorf("%s on B: got %v, want PermissionDenied", who, errB)
					}
				case c.scoped:
					if status.Code(errB) != codes.NotFound {
						t.Errorf("%s on B: got %v, want NotFound", who, errB)
					}
				}
				// Its own account: reads pass, mutations only for a
				// read-write token, admin and service methods never.
				errA := call(who, f.a)
				wantRefused := c.access == admin || c.access == service || (c.access == write && who == "readOnlyA")
				if wantRefused {
					if status.Code(errA) != codes.PermissionDenied {
						t.Errorf("%s on A: got %v, want PermissionDenied", who, errA)
					}
				} else if refused(errA) || status.Code(errA) == codes.NotFound {
					t.Errorf("%s on A: got %v, want it let through", who, errA)
				}
			}
			// The service token reads everything and ingests; the admin
			// does everything but ingest. They act on the scratch
			// account, which they may change.
			errS := call("service", f.scratch)
			if want := c.access == read || c.access == service; want == refused(errS) {
				t.Errorf("service token: got %v, let through: %v", errS, want)
			}
			errAdm := call("admin", f.scratch)
			if want := c.access != service; want == refused(errAdm) {
				t.Errorf("admin token: got %v, let through: %v", errAdm, want)
			}
		})
	}
}

func TestDeviceTokenListsOnlyItsAccounts(t *testing.T) {
	f := newAuthFixture(t, dbtest.Backends()[0])
	accounts := mailbusv1.NewAccountServiceClient(f.e.dial(t, f.deviceA))
	resp, err := accounts.ListAccounts(callCtx(t), &mailbusv1.ListAccountsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Accounts) != 1 || resp.Accounts[0].Id != f.a.account {
		t.Errorf("ListAccounts with A's token: %v, want only account %s", resp.Accounts, f.a.account)
	}
	if _, err := accounts.GetAccount(callCtx(t), &mailbusv1.GetAccountRequest{Name: f.b.name}); status.Code(err) != codes.NotFound {
		t.Errorf("GetAccount of B by name: %v, want NotFound", err)
	}
	got, err := accounts.GetAccount(callCtx(t), &mailbusv1.GetAccountRequest{Name: f.a.name})
	if err != nil || got.Account.Id != f.a.account {
		t.Errorf("GetAccount of A by name: %v %v", got, err)
	}
	// Both accounts in scope: both listed, paged.
	both := mailbusv1.NewAccountServiceClient(f.e.dial(t, f.token(t, "both", true, f.a.account, f.b.account)))
	var ids []string
	tok := ""
	for {
		resp, err := both.ListAccounts(callCtx(t), &mailbusv1.ListAccountsRequest{PageSize: 1, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range resp.Accounts {
			ids = append(ids, a.Id)
		}
		if tok = resp.NextPageToken; tok == "" {
			break
		}
	}
	if !slices.Equal(ids, []string{f.a.account, f.b.account}) {
		t.Errorf("ListAccounts pages with A+B's token: %v", ids)
	}
}

// TestGetCallerToken: every token describes itself, scope and read-only
// included, and nothing more.
func TestGetCallerToken(t *testing.T) {
	f := newAuthFixture(t, dbtest.Backends()[0])
	tests := []struct {
		name     string
		token    string
		role     mailbusv1.TokenRole
		accounts []string
		readOnly bool
	}{
		{"device", f.deviceA, mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, []string{f.a.account}, false},
		{"read-only device", f.readOnlyA, mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, []string{f.a.account}, true},
		{"two accounts", f.token(t, "both", false, f.a.account, f.b.account), mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, []string{f.a.account, f.b.account}, false},
		{"service", f.e.serviceToken, mailbusv1.TokenRole_TOKEN_ROLE_SERVICE, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := mailbusv1.NewTokenServiceClient(f.e.dial(t, tt.token)).GetCallerToken(callCtx(t), &mailbusv1.GetCallerTokenRequest{})
			if err != nil {
				t.Fatal(err)
			}
			got := resp.Token
			if got.Role != tt.role || got.ReadOnly != tt.readOnly || !slices.Equal(got.AccountIds, tt.accounts) || got.Id == "" {
				t.Errorf("GetCallerToken: %v, want role %v, accounts %v, read-only %v", got, tt.role, tt.accounts, tt.readOnly)
			}
			// The in-memory service token is "internal"; API tokens carry
			// their public id.
			if pub, err := apitoken.ID(tt.token); tt.role == mailbusv1.TokenRole_TOKEN_ROLE_DEVICE && (err != nil || got.Id != pub) {
				t.Errorf("GetCallerToken id %q, want %q", got.Id, pub)
			}
		})
	}
}

// TestRevokedTokenStopsOpenStream: a watch open with a token ends with
// UNAUTHENTICATED once the token is revoked, and new calls are refused:
// on the store's port and on its in-process channel.
func TestRevokedTokenStopsOpenStream(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		eachTransport(t, func(t *testing.T, inProcess bool) { revokedTokenStopsOpenStream(t, b, inProcess) })
	})
}

func revokedTokenStopsOpenStream(t *testing.T, b dbtest.Backend, inProcess bool) {
	f := newAuthFixtureOn(t, b, inProcess)
	conn := f.e.connect(t, f.deviceA)
	ctx := callCtx(t)
	stream, err := mailbusv1.NewSyncServiceClient(conn).WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: f.a.account})
	if err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch before revoke: %v", err)
		}
		if resp.CaughtUp {
			break
		}
	}
	tokens := mailbusv1.NewTokenServiceClient(f.e.conn)
	list, err := tokens.ListTokens(callCtx(t), &mailbusv1.ListTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, tok := range list.Tokens {
		if tok.Name == "phone" {
			id = tok.Id
		}
	}
	if _, err := tokens.RevokeToken(callCtx(t), &mailbusv1.RevokeTokenRequest{TokenId: id}); err != nil {
		t.Fatal(err)
	}
	// The stream ends (callCtx bounds the wait) with UNAUTHENTICATED.
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("watch after revoke ended with %v, want Unauthenticated", err)
		}
		break
	}
	if _, err := mailbusv1.NewSyncServiceClient(conn).GetState(callCtx(t), &mailbusv1.GetStateRequest{AccountId: f.a.account}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("call after revoke: %v, want Unauthenticated", err)
	}
	all, err := tokens.ListTokens(callCtx(t), &mailbusv1.ListTokensRequest{IncludeRevoked: true})
	if err != nil {
		t.Fatal(err)
	}
	revoked := 0
	for _, tok := range all.Tokens {
		if tok.RevokeTime != nil {
			revoked++
		}
	}
	if revoked != 1 || len(all.Tokens) != len(list.Tokens) {
		t.Errorf("ListTokens with revoked: %d tokens, %d revoked; without: %d", len(all.Tokens), revoked, len(list.Tokens))
	}
}

func TestTokenValidation(t *testing.T) {
	f := newAuthFixture(t, dbtest.Backends()[0])
	tokens := mailbusv1.NewTokenServiceClient(f.e.conn)
	for _, tc := range []struct {
		name  string
		token *mailbusv1.Token
		code  codes.Code
	}{
		{"no token", nil, codes.InvalidArgument},
		{"no name", &mailbusv1.Token{Role: mailbusv1.TokenRole_TOKEN_ROLE_ADMIN}, codes.InvalidArgument},
		{"no role", &mailbusv1.Token{Name: "x"}, codes.InvalidArgument},
		{"device without accounts", &mailbusv1.Token{Name: "x", Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE}, codes.InvalidArgument},
		{"device of a missing account", &mailbusv1.Token{Name: "x", Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: []string{missing.account}}, codes.NotFound},
		{"admin with accounts", &mailbusv1.Token{Name: "x", Role: mailbusv1.TokenRole_TOKEN_ROLE_ADMIN, AccountIds: []string{f.a.account}}, codes.InvalidArgument},
		{"read-only service", &mailbusv1.Token{Name: "x", Role: mailbusv1.TokenRole_TOKEN_ROLE_SERVICE, ReadOnly: true}, codes.InvalidArgument},
		{"service", &mailbusv1.Token{Name: "x", Role: mailbusv1.TokenRole_TOKEN_ROLE_SERVICE}, codes.PermissionDenied},
		{"expired", &mailbusv1.Token{Name: "x", Role: mailbusv1.TokenRole_TOKEN_ROLE_ADMIN, ExpireTime: timestamppb.New(time.Now().Add(-time.Minute))}, codes.InvalidArgument},
		{"bad expiry", &mailbusv1.Token{Name: "x", Role: mailbusv1.TokenRole_TOKEN_ROLE_ADMIN, ExpireTime: &timestamppb.Timestamp{Nanos: -1}}, codes.InvalidArgument},
	} {
		_, err := tokens.CreateToken(callCtx(t), &mailbusv1.CreateTokenRequest{Token: tc.token})
		if status.Code(err) != tc.code {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.code)
		}
	}
	if _, err := tokens.RevokeToken(callCtx(t), &mailbusv1.RevokeTokenRequest{TokenId: "0000000000000000"}); status.Code(err) != codes.NotFound {
		t.Errorf("revoke a missing token: %v, want NotFound", err)
	}
}

// TestAdminTokenFile: the store creates the admin token file (mode 0600)
// on first start and keeps using it; a revoked bootstrap token stays
// revoked after a restart.
func TestAdminTokenFile(t *testing.T) {
	b := dbtest.Backends()[0]
	dbCfg := b.Config(t)
	e := startStore(t, b, storeOpts{dbConfig: &dbCfg})
	fi, err := os.Stat(e.adminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin token file mode %v, want 0600", fi.Mode().Perm())
	}
	tok, err := apitoken.ReadFile(e.adminTokenFile)
	if err != nil || tok != e.adminToken {
		t.Fatalf("admin token file: %q %v", tok, err)
	}
	tokens := mailbusv1.NewTokenServiceClient(e.conn)
	list, err := tokens.ListTokens(callCtx(t), &mailbusv1.ListTokensRequest{})
	if err != nil || len(list.Tokens) != 1 || list.Tokens[0].Role != mailbusv1.TokenRole_TOKEN_ROLE_ADMIN {
		t.Fatalf("tokens after first start: %v %v", list, err)
	}
	// A restart on the same database and file: the same token works.
	e.stop()
	e2 := startStore(t, b, storeOpts{dbConfig: &dbCfg, adminTokenFile: e.adminTokenFile})
	if e2.adminToken != e.adminToken {
		t.Fatal("the second start made a new admin token")
	}
	if _, err := mailbusv1.NewTokenServiceClient(e2.conn).RevokeToken(callCtx(t), &mailbusv1.RevokeTokenRequest{TokenId: list.Tokens[0].Id}); err != nil {
		t.Fatal(err)
	}
	e2.stop()
	e3 := startStore(t, b, storeOpts{dbConfig: &dbCfg, adminTokenFile: e.adminTokenFile})
	if _, err := mailbusv1.NewTokenServiceClient(e3.conn).ListTokens(callCtx(t), &mailbusv1.ListTokensRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the revoked admin token after a restart: %v, want Unauthenticated", err)
	}
}

// TestRevokeReachesOtherReplica: a token revoked on one store replica
// ends a watch open on another replica of the same PostgreSQL (the lookup
// cache expires; the stream re-checks its token).
func TestRevokeReachesOtherReplica(t *testing.T) {
	pg := dbtest.Backends()[1]
	cfg := pg.Config(t)
	ns := runNATS(t, -1, t.TempDir())
	a := startStore(t, pg, storeOpts{natsURL: ns.ClientURL(), dbConfig: &cfg})
	b := startStore(t, pg, storeOpts{natsURL: ns.ClientURL(), dbConfig: &cfg})
	acct := a.createAccount(t, pop3Account("replicated"))
	created, err := mailbusv1.NewTokenServiceClient(a.conn).CreateToken(callCtx(t), &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
		Name: "phone", Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: []string{acct.Id},
	}})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := mailbusv1.NewSyncServiceClient(b.dial(t, created.Secret)).WatchChanges(callCtx(t), &mailbusv1.WatchChangesRequest{AccountId: acct.Id})
	if err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch on replica b: %v", err)
		}
		if resp.CaughtUp {
			break
		}
	}
	if _, err := mailbusv1.NewTokenServiceClient(a.conn).RevokeToken(callCtx(t), &mailbusv1.RevokeTokenRequest{TokenId: created.Token.Id}); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("watch on replica b after a revoke on a: %v, want Unauthenticated", err)
			}
			return
		}
	}
}

package auth

import (
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// access is what a method needs.
type access int

const (
	// read: device tokens in scope, admin and service tokens.
	accessRead access = iota + 1
	// write: read-write device tokens in scope, admin tokens.
	accessWrite
	// admin: admin tokens only.
	accessAdmin
	// service: service tokens only.
	accessService
)

// refKind says how a request names the account it touches.
type refKind int

const (
	refAccount refKind = iota + 1
	refAccountName
	refMailbox
	refMessage
)

// ref is one object a request touches, named by field.
type ref struct {
	kind  refKind
	field string
	id    string
}

// rule is the authorisation of one method: what it needs, and for device
// tokens the objects whose account must be in scope. A method without
// targets and with read access (ListAccounts) filters its result itself.
type rule struct {
	access  access
	targets func(req any) []ref
}

func account(field, id string) []ref { return []ref{{refAccount, field, id}} }

// rules holds every method of the mailbus.v1 services. The test
// TestEveryMethodHasARule walks the service descriptors.
var rules = map[string]rule{
	mailbusv1.AccountService_CreateAccount_FullMethodName: {access: accessAdmin},
	mailbusv1.AccountService_GetAccount_FullMethodName: {access: accessRead, targets: func(r any) []ref {
		req := r.(*mailbusv1.GetAccountRequest)
		if req.AccountId == "" && req.Name != "" {
			return []ref{{refAccountName, "name", req.Name}}
		}
		return account("account_id", req.AccountId)
	}},
	mailbusv1.AccountService_ListAccounts_FullMethodName: {access: accessRead},
	mailbusv1.AccountService_UpdateAccount_FullMethodName: {access: accessAdmin, targets: func(r any) []ref {
		return account("account.id", r.(*mailbusv1.UpdateAccountRequest).GetAccount().GetId())
	}},
	mailbusv1.AccountService_DeleteAccount_FullMethodName: {access: accessAdmin, targets: func(r any) []ref {
		return account("account_id", r.(*mailbusv1.DeleteAccountRequest).AccountId)
	}},
	// DiscoverSettings makes the store fetch URLs and ask DNS about any
	// domain: admins only (decision 0038).
	mailbusv1.AccountService_DiscoverSettings_FullMethodName: {access: accessAdmin},

	mailbusv1.MailboxService_ListMailboxes_FullMethodName: {access: accessRead, targets: func(r any) []ref {
		return account("account_id", r.(*mailbusv1.ListMailboxesRequest).AccountId)
	}},
	mailbusv1.MailboxService_CreateMailbox_FullMethodName: {access: accessWrite, targets: func(r any) []ref {
		return account("account_id", r.(*mailbusv1.CreateMailboxRequest).AccountId)
	}},
	mailbusv1.MailboxService_RenameMailbox_FullMethodName: {access: accessWrite, targets: func(r any) []ref {
		return []ref{{refMailbox, "mailbox_id", r.(*mailbusv1.RenameMailboxRequest).MailboxId}}
	}},
	mailbusv1.MailboxService_DeleteMailbox_FullMethodName: {access: accessWrite, targets: func(r any) []ref {
		return []ref{{refMailbox, "mailbox_id", r.(*mailbusv1.DeleteMailboxRequest).MailboxId}}
	}},
	mailbusv1.MailboxService_ListMessages_FullMethodName: {access: accessRead, targets: func(r any) []ref {
		return []ref{{refMailbox, "mailbox_id", r.(*mailbusv1.ListMessagesRequest).MailboxId}}
	}},
	mailbusv1.MailboxService_GetMessage_FullMethodName: {access: accessRead, targets: func(r any) []ref {
		return []ref{{refMessage, "message_id", r.(*mailbusv1.GetMessageRequest).MessageId}}
	}},
	mailbusv1.MailboxService_GetRawMessage_FullMethodName: {access: accessRead, targets: func(r any) []ref {
		return []ref{{refMessage, "message_id", r.(*mailbusv1.GetRawMessageRequest).MessageId}}
	}},
	mailbusv1.MailboxService_GetAttachment_FullMethodName: {access: accessRead, targets: func(r any) []ref {
		return []ref{{refMessage, "message_id", r.(*mailbusv1.GetAttachmentRequest).MessageId}}
	}},
	// The message ids of UpdateFlags, MoveMessages and DeleteMessages are
	// checked against account_id by the database (a message of another
	// account is NOT_FOUND).
	mailbusv1.MailboxService_UpdateFlags_FullMethodName: {access: accessWrite, targets: func(r any) []ref {
		return account("account_id", r.(*mailbusv1.UpdateFlagsRequest).AccountId)
	}},
	mailbusv1.MailboxService_MoveMessages_FullMethodName: {access: accessWrite, targets: func(r any) []ref {
		req := r.(*mailbusv1.MoveMessagesRequest)
		return append(account("account_id", req.AccountId), ref{refMailbox, "to_mailbox_id", req.ToMailboxId})
	}},
	mailbusv1.MailboxService_DeleteMessages_FullMethodName: {access: accessWrite, targets: func(r any) []ref {
		return account("account_id", r.(*mailbusv1.DeleteMessagesRequest).AccountId)
	}},
	mailbusv1.MailboxService_AppendMessage_FullMethodName: {access: accessWrite, targets: func(r any) []ref {
		return []ref{{refMailbox, "mailbox_id", r.(*mailbusv1.AppendMessageRequest).MailboxId}}
	}},

	mailbusv1.SyncService_GetState_FullMethodName: {access: accessRead, targets: func(r any) []ref {
		return account("account_id", r.(*mailbusv1.GetStateRequest).AccountId)
	}},
	mailbusv1.SyncService_GetChanges_FullMethodName: {access: accessRead, targets: func(r any) []ref {
		return account("account_id", r.(*mailbusv1.GetChangesRequest).AccountId)
	}},
	mailbusv1.SyncService_WatchChanges_FullMethodName: {access: accessRead, targets: func(r any) []ref {
		return account("account_id", r.(*mailbusv1.WatchChangesRequest).AccountId)
	}},

	mailbusv1.IngestService_ClaimAccount_FullMethodName:          {access: accessService},
	mailbusv1.IngestService_WatchAccounts_FullMethodName:         {access: accessService},
	mailbusv1.IngestService_GetAccountSecret_FullMethodName:      {access: accessService},
	mailbusv1.IngestService_ReportAccountStatus_FullMethodName:   {access: accessService},
	mailbusv1.IngestService_UpsertMailboxes_FullMethodName:       {access: accessService},
	mailbusv1.IngestService_ListMailboxSyncStates_FullMethodName: {access: accessService},
	mailbusv1.IngestService_SetMailboxSyncState_FullMethodName:   {access: accessService},
	mailbusv1.IngestService_IngestMessages_FullMethodName:        {access: accessService},
	mailbusv1.IngestService_ListUpstreamIds_FullMethodName:       {access: accessService},
	mailbusv1.IngestService_ApplyUpstreamChanges_FullMethodName:  {access: accessService},
	mailbusv1.IngestService_ListPendingWriteBacks_FullMethodName: {access: accessService},
	mailbusv1.IngestService_AckWriteBack_FullMethodName:          {access: accessService},
	mailbusv1.IngestService_RebindMessages_FullMethodName:        {access: accessService},

	mailbusv1.TokenService_CreateToken_FullMethodName: {access: accessAdmin},
	mailbusv1.TokenService_ListTokens_FullMethodName:  {access: accessAdmin},
	mailbusv1.TokenService_RevokeToken_FullMethodName: {access: accessAdmin},
	// Every working token may describe itself; there is no target to scope.
	mailbusv1.TokenService_GetCallerToken_FullMethodName: {access: accessRead},

	// WebhookService is served by mailbus-webhooks (and inside mailbus
	// serve), not by the store; the rules say what it needs where a store
	// interceptor guards it: admin tokens only.
	mailbusv1.WebhookService_CreateEndpoint_FullMethodName: {access: accessAdmin},
	mailbusv1.WebhookService_ListEndpoints_FullMethodName:  {access: accessAdmin},
	mailbusv1.WebhookService_GetEndpoint_FullMethodName:    {access: accessAdmin},
	mailbusv1.WebhookService_UpdateEndpoint_FullMethodName: {access: accessAdmin},
	mailbusv1.WebhookService_DeleteEndpoint_FullMethodName: {access: accessAdmin},
	mailbusv1.WebhookService_SendTestEvent_FullMethodName:  {access: accessAdmin},
	mailbusv1.WebhookService_ListDeliveries_FullMethodName: {access: accessAdmin},
	mailbusv1.WebhookService_Redeliver_FullMethodName:      {access: accessAdmin},
}

// HasRule reports whether a full method name has a rule (for tests).
func HasRule(fullMethod string) bool {
	_, ok := rules[fullMethod]
	return ok
}

// Package api implements the store's gRPC services (AccountService,
// MailboxService, SyncService, IngestService) on top of package db. It
// validates requests (INVALID_ARGUMENT naming the field), maps database
// errors to gRPC codes, and takes each mutation's origin from the request's
// device_id or the "mailbus-device-id" metadata.
package api

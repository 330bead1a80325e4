// SPDX-License-Identifier: Apache-2.0

module github.com/mailbus/mailbus/examples/api-go

go 1.26.8

require (
	connectrpc.com/connect v1.19.1
	github.com/mailbus/mailbus/pkg v0.0.0
)

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/grpc v1.85.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace github.com/mailbus/mailbus/pkg => ../../pkg

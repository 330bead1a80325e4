package api

import (
	"context"
	"strings"
	"unicode"

	"google.golang.org/grpc/metadata"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// DeviceMetadataKey is the gRPC metadata key naming the device when a
// request's device_id field is empty.
const DeviceMetadataKey = "mailbus-device-id"

// deviceOrigin returns the origin of a device's mutation, from the request
// field or the metadata; a mutation that names no device is refused.
func deviceOrigin(ctx context.Context, field, deviceID string) (*mailbusv1.Origin, error) {
	if deviceID == "" {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(DeviceMetadataKey); len(v) > 0 {
				deviceID = v[0]
			}
		}
	}
	deviceID = strings.TrimSpace(deviceID)
	if deviceID == "" {
		return nil, invalidArg(field, "required: name the device making the change (or send metadata %q)", DeviceMetadataKey)
	}
	if len(deviceID) > 200 || strings.IndexFunc(deviceID, unicode.IsControl) >= 0 {
		return nil, invalidArg(field, "at most 200 printable characters")
	}
	return &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_DEVICE, DeviceId: deviceID}, nil
}

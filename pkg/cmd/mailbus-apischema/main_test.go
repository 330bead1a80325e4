package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// schemaOfGenerated runs the command on the descriptors compiled into
// pkg/gen (without comments: they carry no source info).
func schemaOfGenerated(t *testing.T) map[string]any {
	t.Helper()
	var schema map[string]any
	if err := json.Unmarshal(generatedOutput(t), &schema); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return schema
}

// generatedOutput is the command's output for the descriptors of pkg/gen.
func generatedOutput(t *testing.T) []byte {
	t.Helper()
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	protoregistry.GlobalFiles.RangeFilesByPackage(apiPackage, func(fd protoreflect.FileDescriptor) bool {
		add(fd)
		return true
	})
	raw, err := proto.Marshal(&set)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(bytes.NewReader(raw), &out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestSchemaIsStable: the same protos give the same bytes every time
// (make check-generate compares them).
func TestSchemaIsStable(t *testing.T) {
	first := generatedOutput(t)
	for range 10 {
		if !bytes.Equal(generatedOutput(t), first) {
			t.Fatal("two runs gave different schemas")
		}
	}
}

// TestSchemaCoversTheAPI: every RPC of every service is listed with its
// path, every reference resolves, and the JSON that protojson writes for
// an Event uses only the properties the schema names.
func TestSchemaCoversTheAPI(t *testing.T) {
	schema := schemaOfGenerated(t)
	services := schema["x-services"].(map[string]any)
	defs := schema["$defs"].(map[string]any)
	rpcs := 0
	protoregistry.GlobalFiles.RangeFilesByPackage(apiPackage, func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			svc, ok := services[string(sd.FullName())].(map[string]any)
			if !ok {
				t.Errorf("service %s missing", sd.FullName())
				continue
			}
			methods := svc["methods"].(map[string]any)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				rpcs++
				m, ok := methods[string(md.Name())].(map[string]any)
				if !ok || m["path"] != "/"+string(sd.FullName())+"/"+string(md.Name()) || m["kind"] != methodKind(md) {
					t.Errorf("%s: %v", md.FullName(), m)
				}
			}
		}
		return true
	})
	if rpcs == 0 {
		t.Fatal("no RPCs in the registry")
	}
	out, _ := json.Marshal(schema)
	for _, ref := range regexp.MustCompile(`"#/\$defs/([^"]+)"`).FindAllStringSubmatch(string(out), -1) {
		if _, ok := defs[ref[1]]; !ok {
			t.Errorf("reference to %s, which is not defined", ref[1])
		}
	}

	ev := &mailbusv1.Event{
		Id: "e1", AccountId: "1", State: 7, Time: timestamppb.New(time.Unix(0, 0)),
		Origin:  &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_DEVICE, DeviceId: "phone"},
		Payload: &mailbusv1.Event_MessageDeleted{MessageDeleted: &mailbusv1.MessageDeleted{MessageId: "9"}},
	}
	data, err := protojson.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	props := defs["mailbus.v1.Event"].(map[string]any)["properties"].(map[string]any)
	for k := range got {
		if _, ok := props[k]; !ok {
			t.Errorf("Event JSON has %q, which the schema does not name (%s)", k, data)
		}
	}
	if s := props["state"].(map[string]any); s["type"] != "string" {
		t.Errorf("Event.state: %v, want a string (uint64)", s)
	}
}

// Command mailbus-apischema writes the JSON form of the mailbus API as a
// JSON Schema (draft 2020-12): every message and enum of mailbus.v1 as it
// is written in Connect's JSON (the protobuf JSON mapping), and every RPC
// with its path and the schemas of its request and answer, with the
// comments of the .proto files as descriptions. It reads a buf image
// (buf build -o -, binary, with source info) on stdin and writes the
// schema on stdout; make generate runs it and make check-generate checks
// that the committed docs/api/mailbus.v1.schema.json is current.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// apiPackage is the package whose services and messages are described.
const apiPackage = "mailbus.v1"

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-apischema:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("read image: %w", err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return fmt.Errorf("read image: %w", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return fmt.Errorf("read image: %w", err)
	}
	schema, err := build(files)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(schema); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	_, err = out.Write(buf.Bytes())
	return err
}

// object is a JSON object whose keys keep their insertion order.
type object struct {
	keys   []string
	values map[string]any
}

func newObject() *object { return &object{values: map[string]any{}} }

func (o *object) set(k string, v any) *object {
	if _, ok := o.values[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.values[k] = v
	return o
}

// MarshalJSON writes the keys in insertion order.
func (o *object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kj, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b.Write(kj)
		b.WriteByte(':')
		var vb bytes.Buffer
		enc := json.NewEncoder(&vb)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(o.values[k]); err != nil {
			return nil, err
		}
		b.Write(bytes.TrimRight(vb.Bytes(), "\n"))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// build describes the services and messages of apiPackage.
func build(files *protoregistry.Files) (*object, error) {
	g := &generator{defs: map[string]*object{}}
	services := newObject()
	// In the order of their paths: the registry's own order changes from
	// run to run, and the output must not.
	var pkgFiles []protoreflect.FileDescriptor
	files.RangeFilesByPackage(apiPackage, func(fd protoreflect.FileDescriptor) bool {
		pkgFiles = append(pkgFiles, fd)
		return true
	})
	slices.SortFunc(pkgFiles, func(a, b protoreflect.FileDescriptor) int { return strings.Compare(a.Path(), b.Path()) })
	if len(pkgFiles) == 0 {
		return nil, fmt.Errorf("no files of package %s in the image", apiPackage)
	}
	for _, fd := range pkgFiles {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			methods := newObject()
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				m := newObject()
				if d := comment(md); d != "" {
					m.set("description", d)
				}
				m.set("path", "/"+string(sd.FullName())+"/"+string(md.Name()))
				m.set("kind", methodKind(md))
				m.set("request", g.ref(md.Input()))
				m.set("response", g.ref(md.Output()))
				methods.set(string(md.Name()), m)
			}
			svc := newObject()
			if d := comment(sd); d != "" {
				svc.set("description", d)
			}
			svc.set("methods", methods)
			services.set(string(sd.FullName()), svc)
		}
		// Every message and enum of the package, used by an RPC or not
		// (Event is published on NATS).
		for i := range fd.Messages().Len() {
			g.message(fd.Messages().Get(i))
		}
		for i := range fd.Enums().Len() {
			g.enum(fd.Enums().Get(i))
		}
	}
	names := make([]string, 0, len(g.defs))
	for name := range g.defs {
		names = append(names, name)
	}
	slices.Sort(names)
	defs := newObject()
	for _, name := range names {
		defs.set(name, g.defs[name])
	}
	return newObject().
		set("$schema", "https://json-schema.org/draft/2020-12/schema").
		set("$id", "https://github.com/mailbus/mailbus/docs/api/mailbus.v1.schema.json").
		set("title", "mailbus API v1, JSON form").
		set("description", "Generated from proto/ by pkg/cmd/mailbus-apischema (make generate); do not edit. "+
			"The JSON of every message of package mailbus.v1 as Connect's JSON (the protobuf JSON mapping) writes it: "+
			"field names in lowerCamelCase (the proto names are accepted too), 64-bit integers as decimal strings (numbers accepted), "+
			"enums as their names (numbers accepted), bytes as base64, Timestamp as RFC 3339 and Duration as seconds with an s; "+
			"fields at their zero value are left out of answers, and unknown fields in requests are ignored. "+
			"x-services lists every RPC: POST its path with Content-Type application/json for a unary call, "+
			"or application/connect+json, each message framed by 5 bytes, for a stream (see README, Device API)."+
			" Event is also the body of the events on NATS (protobuf there).").
		set("x-services", services).
		set("$defs", defs), nil
}

// methodKind names the streaming kind of an RPC.
func methodKind(md protoreflect.MethodDescriptor) string {
	switch {
	case md.IsStreamingClient() && md.IsStreamingServer():
		return "bidi-stream (HTTP/2 only)"
	case md.IsStreamingClient():
		return "client-stream (HTTP/2 only)"
	case md.IsStreamingServer():
		return "server-stream"
	}
	return "unary"
}

// comment is the leading comment of a declaration, without the comment
// markers' spaces.
func comment(d protoreflect.Descriptor) string {
	loc := d.ParentFile().SourceLocations().ByDescriptor(d)
	lines := strings.Split(strings.TrimSpace(loc.LeadingComments), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.TrimSpace(strings.Join(lines, " "))
}

// generator collects the definitions the package refers to.
type generator struct {
	defs map[string]*object
}

// ref is the schema of a message-typed value: a well-known type inline,
// else a reference to its definition (made on first use).
func (g *generator) ref(md protoreflect.MessageDescriptor) *object {
	if wk := wellKnown(md); wk != nil {
		return wk
	}
	g.message(md)
	return newObject().set("$ref", "#/$defs/"+string(md.FullName()))
}

func (g *generator) message(md protoreflect.MessageDescriptor) {
	name := string(md.FullName())
	if _, ok := g.defs[name]; ok || md.IsMapEntry() {
		return
	}
	def := newObject()
	g.defs[name] = def // before the fields: messages may refer to themselves
	if d := comment(md); d != "" {
		def.set("description", d)
	}
	def.set("type", "object")
	props := newObject()
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		s := g.field(fd)
		desc := comment(fd)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			desc = strings.TrimSpace(desc + " (oneof " + string(od.Name()) + ": at most one of its fields is set)")
		}
		if desc != "" {
			s.set("description", desc)
		}
		props.set(fd.JSONName(), s)
	}
	def.set("properties", props)
	for i := range md.Messages().Len() {
		g.message(md.Messages().Get(i))
	}
	for i := range md.Enums().Len() {
		g.enum(md.Enums().Get(i))
	}
}

func (g *generator) enum(ed protoreflect.EnumDescriptor) *object {
	name := string(ed.FullName())
	if _, ok := g.defs[name]; !ok {
		def := newObject()
		if d := comment(ed); d != "" {
			def.set("description", d)
		}
		values := make([]string, ed.Values().Len())
		for i := range values {
			values[i] = string(ed.Values().Get(i).Name())
		}
		def.set("type", "string").set("enum", values)
		g.defs[name] = def
	}
	return newObject().set("$ref", "#/$defs/"+name)
}

// field is the schema of a field's value.
func (g *generator) field(fd protoreflect.FieldDescriptor) *object {
	switch {
	case fd.IsMap():
		return newObject().set("type", "object").set("additionalProperties", g.single(fd.MapValue()))
	case fd.IsList():
		return newObject().set("type", "array").set("items", g.single(fd))
	}
	return g.single(fd)
}

// single is the schema of one value of a field's type.
func (g *generator) single(fd protoreflect.FieldDescriptor) *object {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return newObject().set("type", "boolean")
	case protoreflect.StringKind:
		return newObject().set("type", "string")
	case protoreflect.BytesKind:
		return newObject().set("type", "string").set("contentEncoding", "base64")
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return newObject().set("type", "integer").set("format", "int32")
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return newObject().set("type", "integer").set("format", "uint32").set("minimum", 0)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return newObject().set("type", "string").set("format", "int64").set("pattern", "^-?[0-9]+$")
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return newObject().set("type", "string").set("format", "uint64").set("pattern", "^[0-9]+$")
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return newObject().set("type", "number")
	case protoreflect.EnumKind:
		return g.enum(fd.Enum())
	default: // message, group
		return g.ref(fd.Message())
	}
}

// wellKnown is the JSON form of the google.protobuf types the API uses, or
// nil.
func wellKnown(md protoreflect.MessageDescriptor) *object {
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return newObject().set("type", "string").set("format", "date-time")
	case "google.protobuf.Duration":
		return newObject().set("type", "string").set("pattern", "^-?[0-9]+(\\.[0-9]+)?s$")
	case "google.protobuf.FieldMask":
		return newObject().set("type", "string").set("description", "comma-separated field paths in lowerCamelCase")
	case "google.protobuf.Empty":
		return newObject().set("type", "object")
	case "google.protobuf.Struct":
		return newObject().set("type", "object")
	case "google.protobuf.Value":
		return newObject()
	case "google.protobuf.BoolValue":
		return newObject().set("type", "boolean")
	case "google.protobuf.StringValue":
		return newObject().set("type", "string")
	}
	return nil
}

package pbjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pbjson"
)

// protojsonCompact is protojson's JSON of m without whitespace (protojson
// adds spaces at random to keep callers from depending on its bytes).
func protojsonCompact(t *testing.T, m proto.Message) []byte {
	t.Helper()
	want, err := protojson.Marshal(m)
	if err != nil {
		t.Fatalf("protojson: %v", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatalf("protojson wrote invalid JSON %q: %v", want, err)
	}
	return compact.Bytes()
}

// assertSameAsProtojson checks that Append writes exactly protojson's JSON
// of m, whitespace aside.
func assertSameAsProtojson(t *testing.T, m proto.Message) {
	t.Helper()
	got, err := pbjson.Append([]byte("prefix"), m.ProtoReflect())
	if err != nil {
		t.Fatalf("Append %s: %v", m.ProtoReflect().Descriptor().FullName(), err)
	}
	got, ok := bytes.CutPrefix(got, []byte("prefix"))
	if !ok {
		t.Fatalf("Append did not append to its buffer: %q", got)
	}
	if want := protojsonCompact(t, m); !bytes.Equal(got, want) {
		t.Errorf("Append %s:\n got %s\nwant %s", m.ProtoReflect().Descriptor().FullName(), got, want)
	}
}

// TestSameAsProtojson fills every message of the mailbus API with random
// values, many times over, and checks Append writes what protojson does.
func TestSameAsProtojson(t *testing.T) {
	var types []protoreflect.MessageType
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if mt.Descriptor().ParentFile().Package() == "mailbus.v1" {
			types = append(types, mt)
		}
		return true
	})
	// The registry has the API's messages once its package is linked.
	_ = mailbusv1.File_mailbus_v1_common_proto
	if len(types) < 20 {
		t.Fatalf("only %d mailbus.v1 messages registered", len(types))
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, mt := range types {
		t.Run(string(mt.Descriptor().Name()), func(t *testing.T) {
			// The empty message, then random ones.
			assertSameAsProtojson(t, mt.New().Interface())
			for range 50 {
				m := mt.New()
				fill(rnd, m, 3)
				assertSameAsProtojson(t, m.Interface())
			}
		})
	}
}

// fill sets each field of m, or leaves it unset, at random; depth bounds
// the nesting of messages.
func fill(rnd *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if rnd.IntN(4) == 0 || isLeftToProtojson(fd) {
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range rnd.IntN(4) {
				if fd.Kind() == protoreflect.MessageKind {
					if depth == 0 {
						break
					}
					e := l.NewElement()
					fill(rnd, e.Message(), depth-1)
					l.Append(e)
					continue
				}
				l.Append(randomScalar(rnd, fd))
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range rnd.IntN(4) {
				k := randomScalar(rnd, fd.MapKey()).MapKey()
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					if depth == 0 {
						break
					}
					v := mp.NewValue()
					fill(rnd, v.Message(), depth-1)
					mp.Set(k, v)
					continue
				}
				mp.Set(k, randomScalar(rnd, fd.MapValue()))
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth == 0 {
				continue
			}
			fill(rnd, m.Mutable(fd).Message(), depth-1)
		default:
			m.Set(fd, randomScalar(rnd, fd))
		}
	}
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp":
		fields := m.Descriptor().Fields()
		m.Set(fields.ByNumber(1), protoreflect.ValueOfInt64(rnd.Int64N(253402300799+62135596800)-62135596800))
		m.Set(fields.ByNumber(2), protoreflect.ValueOfInt32(randomNanos(rnd)))
	case "google.protobuf.Duration":
		fields := m.Descriptor().Fields()
		secs, nanos := rnd.Int64N(1e6), randomNanos(rnd)
		if rnd.IntN(2) == 0 {
			secs, nanos = -secs, -nanos
		}
		m.Set(fields.ByNumber(1), protoreflect.ValueOfInt64(secs))
		m.Set(fields.ByNumber(2), protoreflect.ValueOfInt32(nanos))
	}
}

// isLeftToProtojson says whether fd holds a well-known type that Append
// leaves to protojson (TestLeftToProtojson).
func isLeftToProtojson(fd protoreflect.FieldDescriptor) bool {
	md := fd.Message()
	if fd.IsMap() {
		md = fd.MapValue().Message()
	}
	if md == nil || md.ParentFile().Package() != "google.protobuf" {
		return false
	}
	return md.FullName() != "google.protobuf.Timestamp" && md.FullName() != "google.protobuf.Duration"
}

// randomNanos is a fraction of a second, often a round one (the cases of
// 0, 3 and 6 digits).
func randomNanos(rnd *rand.Rand) int32 {
	n := rnd.Int32N(1e9)
	switch rnd.IntN(4) {
	case 0:
		return 0
	case 1:
		return n / 1e6 * 1e6
	case 2:
		return n / 1e3 * 1e3
	}
	return n
}

// randomStrings are the strings fill picks from: escapes, DEL, non-ASCII,
// the separators JavaScript minds.
var randomStrings = []string{
	"", "a", "INBOX", "Ünïcödé 日本語 🙂", `quote " backslash \ slash /`,
	"control \x00\x01\x1f\b\f\n\r\t end", "del \x7f", "line sep \u2028 para sep \u2029",
	"<script>&amp;</script>", "\\Flagged",
}

func randomScalar(rnd *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rnd.IntN(2) == 0)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(rnd.Uint32()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(rnd.Uint32())
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(rnd.Uint64()))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(rnd.Uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(rnd.NormFloat64() * 1e3))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(rnd.NormFloat64() * 1e3)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(randomStrings[rnd.IntN(len(randomStrings))])
	case protoreflect.BytesKind:
		b := make([]byte, rnd.IntN(8))
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return protoreflect.ValueOfBytes(b)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if rnd.IntN(8) == 0 {
			return protoreflect.ValueOfEnum(999) // a number without a name
		}
		return protoreflect.ValueOfEnum(values.Get(rnd.IntN(values.Len())).Number())
	}
	panic("randomScalar: kind " + fd.Kind().String())
}

// TestWellKnownTimes checks Timestamp and Duration at their limits and
// with each number of fractional digits, and that values protojson
// refuses are left to it.
func TestWellKnownTimes(t *testing.T) {
	for _, m := range []proto.Message{
		&timestamppb.Timestamp{},
		&timestamppb.Timestamp{Seconds: -62135596800},
		&timestamppb.Timestamp{Seconds: 253402300799, Nanos: 999999999},
		&timestamppb.Timestamp{Seconds: 1767225600, Nanos: 1e6},
		&timestamppb.Timestamp{Seconds: 1767225600, Nanos: 1e3},
		&timestamppb.Timestamp{Seconds: 1767225600, Nanos: 1},
		&timestamppb.Timestamp{Seconds: -1, Nanos: 5e8},
		&durationpb.Duration{},
		&durationpb.Duration{Seconds: 315576000000},
		&durationpb.Duration{Seconds: -315576000000, Nanos: -999999999},
		&durationpb.Duration{Nanos: -5e8},
		&durationpb.Duration{Seconds: 3, Nanos: 120e6},
	} {
		assertSameAsProtojson(t, m)
	}
	for _, m := range []proto.Message{
		&timestamppb.Timestamp{Seconds: -62135596801},
		&timestamppb.Timestamp{Seconds: 253402300800},
		&timestamppb.Timestamp{Nanos: 1e9},
		&timestamppb.Timestamp{Nanos: -1},
		&durationpb.Duration{Seconds: 315576000001},
		&durationpb.Duration{Seconds: 1, Nanos: -1},
		&durationpb.Duration{Seconds: -1, Nanos: 1},
		&durationpb.Duration{Nanos: 1e9},
	} {
		assertLeftToProtojson(t, m)
	}
}

// assertLeftToProtojson checks that Append refuses m with ErrUnsupported
// and leaves its buffer as it was.
func assertLeftToProtojson(t *testing.T, m proto.Message) {
	t.Helper()
	got, err := pbjson.Append([]byte("prefix"), m.ProtoReflect())
	if !errors.Is(err, pbjson.ErrUnsupported) {
		t.Errorf("Append %v: error %v, want ErrUnsupported", m, err)
	}
	if string(got) != "prefix" {
		t.Errorf("Append %v changed the buffer to %q", m, got)
	}
}

// TestLeftToProtojson checks the messages and values Append does not
// write: the well-known types other than the times, and strings that are
// not UTF-8 (protojson refuses them).
// (FieldMask appears only in requests, which protojson reads.)
func TestLeftToProtojson(t *testing.T) {
	anyMsg, err := anypb.New(&mailbusv1.Account{Id: "1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []proto.Message{
		anyMsg,
		&structpb.Struct{},
		structpb.NewStringValue("x"),
		wrapperspb.String("x"),
		&mailbusv1.UpdateAccountRequest{UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}},
		&mailbusv1.Account{Id: "1", Name: "not \xff UTF-8"},
		&mailbusv1.ListMessagesResponse{Messages: []*mailbusv1.MessageSummary{{Id: "1"}, {Id: "2", Flags: []string{"\xc3"}}}},
	} {
		assertLeftToProtojson(t, m)
	}
}

// TestFloats compares floats with protojson's (through the wrappers,
// whose JSON is the bare number).
func TestFloats(t *testing.T) {
	doubles := []float64{0, math.Copysign(0, -1), 1, -1.5, 1e-6, 9.99e-7, 1e20, 1e21, 123456789.125, math.MaxFloat64,
		math.SmallestNonzeroFloat64, math.NaN(), math.Inf(1), math.Inf(-1), 1e-9}
	for _, d := range doubles {
		want := protojsonCompact(t, wrapperspb.Double(d))
		gotF := pbjson.AppendFloatForTest(nil, d, 64)
		if !bytes.Equal(gotF, want) {
			t.Errorf("double %v: %s, want %s", d, gotF, want)
		}
		want32 := protojsonCompact(t, wrapperspb.Float(float32(d)))
		if got32 := pbjson.AppendFloatForTest(nil, float64(float32(d)), 32); !bytes.Equal(got32, want32) {
			t.Errorf("float %v: %s, want %s", float32(d), got32, want32)
		}
	}
}

// BenchmarkListMessagesResponse writes a page of 50 message summaries
// with Append and with protojson; cpu-ns/op is the process's CPU time
// (getrusage), steadier than ns/op on a shared machine.
func BenchmarkListMessagesResponse(b *testing.B) {
	resp := &mailbusv1.ListMessagesResponse{}
	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range 50 {
		s := &mailbusv1.MessageSummary{}
		fill(rnd, s.ProtoReflect(), 3)
		s.Id = strings.Repeat("1", i%5+1)
		resp.Messages = append(resp.Messages, s)
	}
	b.Run("pbjson", func(b *testing.B) {
		defer reportCPU(b)()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = pbjson.Append(buf[:0], resp.ProtoReflect()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		defer reportCPU(b)()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = (protojson.MarshalOptions{}).MarshalAppend(buf[:0], resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// reportCPU starts counting the process's CPU time; the function it
// returns reports it per op as cpu-ns/op.
func reportCPU(b *testing.B) func() {
	start := processCPU(b)
	return func() {
		b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
	}
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

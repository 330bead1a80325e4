// Package pbjson writes protobuf messages in the proto3 JSON mapping, the
// same JSON as protojson.Marshal with its default options (lowerCamelCase
// names, fields at their zero value left out, 64-bit integers as strings,
// enums by name, Timestamp and Duration as strings), several times faster:
// it walks the message once and appends to one buffer, where protojson
// sorts each message's fields and writes through a general encoder.
//
// It serves the store's Connect JSON answers (decision 35). It covers what
// the mailbus API uses; a message it does not cover (google.protobuf.Any,
// Struct, Value, wrappers, FieldMask, Empty, messages with extensions or
// required fields) or
// a value protojson would refuse (a string that is not UTF-8, a Timestamp
// out of range) gives ErrUnsupported, and the caller writes that message
// with protojson instead, which gives protojson's answer or error.
package pbjson

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// ErrUnsupported is the error of a message or value Append leaves to
// protojson.
var ErrUnsupported = errors.New("pbjson: not supported; use protojson")

// Append appends the JSON of m to b. On error b is returned as it was,
// and the error wraps ErrUnsupported.
func Append(b []byte, m protoreflect.Message) ([]byte, error) {
	e := encoder{fields: make([]field, 0, 32)}
	out, err := e.appendMessage(b, m)
	if err != nil {
		return b, err
	}
	return out, nil
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}

func (e *encoder) appendMessage(b []byte, m protoreflect.Message) ([]byte, error) {
	md := m.Descriptor()
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return e.appendTimestamp(b, m)
	case "google.protobuf.Duration":
		return e.appendDuration(b, m)
	}
	if md.ParentFile().Package() == "google.protobuf" {
		return b, unsupported("well-known type %s", md.FullName())
	}
	if md.ExtensionRanges().Len() > 0 || md.RequiredNumbers().Len() > 0 {
		return b, unsupported("%s has extensions or required fields", md.FullName())
	}
	// The set fields, by Range (much cheaper than Has on every field),
	// then in the order of their declaration, as protojson writes them.
	// They go on the shared stack e.fields (nested messages push theirs
	// above, so the slice is indexed anew each time).
	start := len(e.fields)
	defer func() { e.fields = e.fields[:start] }()
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		e.fields = append(e.fields, field{fd, v})
		return true
	})
	set := e.fields[start:]
	for i := 1; i < len(set); i++ { // insertion sort: few, mostly ordered
		for j := i; j > 0 && set[j].fd.Index() < set[j-1].fd.Index(); j-- {
			set[j], set[j-1] = set[j-1], set[j]
		}
	}
	b = append(b, '{')
	for i := range len(set) {
		f := e.fields[start+i]
		if f.fd.IsExtension() {
			return b, unsupported("extension %s", f.fd.FullName())
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, f.fd.JSONName()...) // an identifier: nothing to escape
		b = append(b, '"', ':')
		var err error
		switch {
		case f.fd.IsList():
			b, err = e.appendList(b, f.fd, f.v.List())
		case f.fd.IsMap():
			b, err = e.appendMap(b, f.fd, f.v.Map())
		default:
			b, err = e.appendValue(b, f.fd, f.v)
		}
		if err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

// encoder holds the fields of the messages being written, outermost
// first.
type encoder struct {
	fields []field
}

// field is a set field of a message and its value.
type field struct {
	fd protoreflect.FieldDescriptor
	v  protoreflect.Value
}

func (e *encoder) appendList(b []byte, fd protoreflect.FieldDescriptor, l protoreflect.List) ([]byte, error) {
	b = append(b, '[')
	for i := range l.Len() {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = e.appendValue(b, fd, l.Get(i)); err != nil {
			return b, err
		}
	}
	return append(b, ']'), nil
}

// appendMap writes a map's entries ordered by key, as protojson does.
func (e *encoder) appendMap(b []byte, fd protoreflect.FieldDescriptor, m protoreflect.Map) ([]byte, error) {
	keys := make([]protoreflect.MapKey, 0, m.Len())
	m.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	slices.SortFunc(keys, compareMapKeys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendString(b, k.String()); err != nil {
			return b, err
		}
		b = append(b, ':')
		if b, err = e.appendValue(b, fd.MapValue(), m.Get(k)); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

// compareMapKeys orders map keys as protojson does (false before true,
// numbers by value, strings by bytes).
func compareMapKeys(x, y protoreflect.MapKey) int {
	switch xv := x.Interface().(type) {
	case bool:
		yv := y.Bool()
		switch {
		case xv == yv:
			return 0
		case !xv:
			return -1
		default:
			return 1
		}
	case int32, int64:
		return compareInts(x.Int(), y.Int())
	case uint32, uint64:
		return compareInts(x.Uint(), y.Uint())
	default:
		return strings.Compare(x.String(), y.String())
	}
}

func compareInts[T int64 | uint64](x, y T) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// appendValue writes one value of field fd (an element, for a list; the
// value, for a map's value descriptor).
func (e *encoder) appendValue(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) ([]byte, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.AppendInt(b, v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.AppendUint(b, v.Uint(), 10), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		b = append(b, '"')
		b = strconv.AppendInt(b, v.Int(), 10)
		return append(b, '"'), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		b = append(b, '"')
		b = strconv.AppendUint(b, v.Uint(), 10)
		return append(b, '"'), nil
	case protoreflect.FloatKind:
		return appendFloat(b, v.Float(), 32), nil
	case protoreflect.DoubleKind:
		return appendFloat(b, v.Float(), 64), nil
	case protoreflect.StringKind:
		return appendString(b, v.String())
	case protoreflect.BytesKind:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.Bytes())
		return append(b, '"'), nil
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ed.FullName() == "google.protobuf.NullValue" {
			return b, unsupported("google.protobuf.NullValue")
		}
		if ev := ed.Values().ByNumber(v.Enum()); ev != nil {
			b = append(b, '"')
			b = append(b, ev.Name()...) // an identifier: nothing to escape
			return append(b, '"'), nil
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return e.appendMessage(b, v.Message())
	}
	return b, unsupported("field %s of kind %v", fd.FullName(), fd.Kind())
}

// appendFloat writes a float as protojson does (its internal/encoding/json
// appendFloat, after encoding/json): NaN and the infinities as strings,
// exponent form outside [1e-6, 1e21), the shortest form that reads back.
func appendFloat(b []byte, n float64, bitSize int) []byte {
	switch {
	case math.IsNaN(n):
		return append(b, `"NaN"`...)
	case math.IsInf(n, +1):
		return append(b, `"Infinity"`...)
	case math.IsInf(n, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(n); abs != 0 {
		if bitSize == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bitSize == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, n, format, -1, bitSize)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString writes s as a JSON string with protojson's escapes: the
// quote, the backslash and the control characters; a string that is not
// UTF-8 is left to protojson (which refuses it).
func appendString(b []byte, s string) ([]byte, error) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return b, unsupported("string not UTF-8")
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, '\\')
		switch c {
		case '"', '\\':
			b = append(b, c)
		case '\b':
			b = append(b, 'b')
		case '\f':
			b = append(b, 'f')
		case '\n':
			b = append(b, 'n')
		case '\r':
			b = append(b, 'r')
		case '\t':
			b = append(b, 't')
		default:
			b = append(b, 'u')
			b = append(b, "0000"[1+(bits.Len32(uint32(c))-1)/4:]...)
			b = strconv.AppendUint(b, uint64(c), 16)
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"'), nil
}

// The limits of Timestamp and Duration in JSON (protojson's).
const (
	minTimestampSeconds = -62135596800 // 0001-01-01T00:00:00Z
	maxTimestampSeconds = 253402300799 // 9999-12-31T23:59:59Z
	maxDurationSeconds  = 315576000000 // 10,000 years
)

// secondsAndNanos reads the two fields of a Timestamp or a Duration.
func secondsAndNanos(m protoreflect.Message) (int64, int64) {
	fields := m.Descriptor().Fields()
	return m.Get(fields.ByNumber(1)).Int(), m.Get(fields.ByNumber(2)).Int()
}

// appendTimestamp writes an RFC 3339 time in UTC with 0, 3, 6 or 9
// fractional digits, as protojson does.
func (e *encoder) appendTimestamp(b []byte, m protoreflect.Message) ([]byte, error) {
	secs, nanos := secondsAndNanos(m)
	if secs < minTimestampSeconds || secs > maxTimestampSeconds || nanos < 0 || nanos >= 1e9 {
		return b, unsupported("Timestamp out of range")
	}
	t := time.Unix(secs, nanos).UTC()
	b = append(b, '"')
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	b = appendNanos(b, nanos)
	return append(b, 'Z', '"'), nil
}

// appendDuration writes seconds with 0, 3, 6 or 9 fractional digits and
// an "s", as protojson does.
func (e *encoder) appendDuration(b []byte, m protoreflect.Message) ([]byte, error) {
	secs, nanos := secondsAndNanos(m)
	if secs < -maxDurationSeconds || secs > maxDurationSeconds || nanos <= -1e9 || nanos >= 1e9 ||
		(secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
		return b, unsupported("Duration out of range")
	}
	b = append(b, '"')
	if secs < 0 || nanos < 0 {
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, uint64(max(secs, -secs)), 10)
	b = appendNanos(b, max(nanos, -nanos))
	return append(b, 's', '"'), nil
}

// appendNanos writes a fraction of a second (0 <= nanos < 1e9) as
// nothing, 3, 6 or 9 digits after a point.
func appendNanos(b []byte, nanos int64) []byte {
	if nanos == 0 {
		return b
	}
	var buf [10]byte
	digits := strconv.AppendInt(buf[:0], nanos+1e9, 10)[1:] // 9 digits
	switch {
	case nanos%1e6 == 0:
		digits = digits[:3]
	case nanos%1e3 == 0:
		digits = digits[:6]
	}
	b = append(b, '.')
	return append(b, digits...)
}

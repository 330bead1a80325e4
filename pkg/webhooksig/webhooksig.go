// Package webhooksig signs and verifies the Mailbus-Signature header of
// mailbus webhook requests.
//
// The header is
//
//	Mailbus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=<hex>]
//
// where each v1 is the HMAC-SHA256, keyed with one of the endpoint's
// secrets, of the string "<t>.<body>" (t as written in the header, the
// body byte for byte). While a rotated secret overlaps with the previous
// one the header carries one v1 per secret, the newest first; a receiver
// accepts the request when any v1 matches a secret it knows and t is
// recent. The scheme follows Stripe's, so that existing receivers need
// only the header name changed.
package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header is the HTTP header that carries the signature.
const Header = "Mailbus-Signature"

// DefaultTolerance is how far a signature's time may be from the
// receiver's clock in Verify when the caller passes 0: it bounds replays.
const DefaultTolerance = 5 * time.Minute

var (
	// ErrMalformed is returned for a header that is not t=...,v1=....
	ErrMalformed = errors.New("webhooksig: malformed signature header")
	// ErrNoMatch is returned when no v1 value matches the secret.
	ErrNoMatch = errors.New("webhooksig: no signature matches the secret")
	// ErrTooOld is returned when t is outside the tolerance.
	ErrTooOld = errors.New("webhooksig: signature time outside the tolerance")
)

// Sign returns the hex HMAC-SHA256 of "<t>.<body>" keyed with secret.
func Sign(secret []byte, t int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(t, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Value returns the header value for body signed at t with each secret,
// in order (the newest secret first).
func Value(t time.Time, body []byte, secrets ...[]byte) string {
	unix := t.Unix()
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(strconv.FormatInt(unix, 10))
	for _, s := range secrets {
		b.WriteString(",v1=")
		b.WriteString(Sign(s, unix, body))
	}
	return b.String()
}

// Parse splits a header value into its time and v1 signatures. Unknown
// schemes (such as a future v2) are skipped.
func Parse(value string) (t int64, v1 []string, err error) {
	seenT := false
	for part := range strings.SplitSeq(value, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return 0, nil, fmt.Errorf("%w: %q has no '='", ErrMalformed, part)
		}
		switch k {
		case "t":
			if seenT {
				return 0, nil, fmt.Errorf("%w: two t values", ErrMalformed)
			}
			t, err = strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, nil, fmt.Errorf("%w: t=%q", ErrMalformed, v)
			}
			seenT = true
		case "v1":
			v1 = append(v1, v)
		}
	}
	if !seenT || len(v1) == 0 {
		return 0, nil, fmt.Errorf("%w: needs t and at least one v1", ErrMalformed)
	}
	return t, v1, nil
}

// Verify checks a header value against body and secret: some v1 must be
// the signature made with secret, and t within tolerance of now (0 means
// DefaultTolerance). The comparison takes constant time.
func Verify(value string, body, secret []byte, now time.Time, tolerance time.Duration) error {
	t, sigs, err := Parse(value)
	if err != nil {
		return err
	}
	if tolerance == 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: t=%d, now %d", ErrTooOld, t, now.Unix())
	}
	want := []byte(Sign(secret, t, body))
	for _, s := range sigs {
		if hmac.Equal([]byte(s), want) {
			return nil
		}
	}
	return ErrNoMatch
}

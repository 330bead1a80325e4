package api

import (
	"context"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/services/store/internal/db"
)

// FuzzValidatorStatus: what the validators refuse reaches a client as
// INVALID_ARGUMENT with a BadRequest field violation naming the field
// (never INTERNAL), and page sizes are the default, within the maximum,
// or INVALID_ARGUMENT.
func FuzzValidatorStatus(f *testing.F) {
	for _, s := range []string{"INBOX", "a*b", "\xff", "", "a\r\nb", "Archive/2024"} {
		f.Add(s, uint32(0))
	}
	f.Add("x", uint32(1001))
	f.Add("x", uint32(4294967295))
	f.Fuzz(func(t *testing.T, name string, size uint32) {
		if err := db.ValidateMailboxName("name", name); err != nil {
			checkInvalid(t, toStatus(context.Background(), nil, err), "name")
		}
		n, err := pageSize("page_size", size, 100, 1000)
		switch {
		case err != nil:
			checkInvalid(t, err, "page_size")
		case size == 0 && n != 100, size != 0 && (n != int(size) || n > 1000):
			t.Fatalf("pageSize(%d) = %d", size, n)
		}
	})
}

func checkInvalid(t *testing.T, err error, field string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		t.Fatalf("error %v is not INVALID_ARGUMENT", err)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) == 1 && br.FieldViolations[0].Field == field {
			return
		}
	}
	t.Fatalf("error %v has no field violation for %s", err, field)
}

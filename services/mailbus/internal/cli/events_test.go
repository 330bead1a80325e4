package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestEventsDecode: events decode prints an event read as NATS carries it
// (protobuf) as protojson on one line; no input or other bytes fail.
func TestEventsDecode(t *testing.T) {
	ev := &mailbusv1.Event{Id: "ev-1", AccountId: "7", State: 42}
	raw, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	decode := func(in []byte) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), []string{"events", "decode"}, IO{In: bytes.NewReader(in), Out: &out, Err: &errb})
		return code, out.String(), errb.String()
	}
	code, out, errOut := decode(raw)
	if code != ExitOK || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"id":"ev-1"`) || !strings.Contains(out, `"accountId":"7"`) {
		t.Fatalf("decode: exit %d: %q %s", code, out, errOut)
	}
	if code, _, errOut := decode(nil); code != ExitError || !strings.Contains(errOut, "no event on standard input") {
		t.Fatalf("no input: exit %d: %s", code, errOut)
	}
	if code, _, _ := decode([]byte("{\"id\":\"x\"}")); code != ExitError {
		t.Fatalf("JSON input: exit %d, want %d", code, ExitError)
	}
}

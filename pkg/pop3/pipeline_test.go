package pop3_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// mixed returns message i of a maildrop of mixed sizes with dot lines.
func mixed(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject: %d\r\n\r\n", i)
	for j := range i % 37 {
		if j%3 == 0 {
			b.WriteString(".")
		}
		b.WriteString(strings.Repeat("m", (i*j)%300) + "\r\n")
	}
	if i%7 == 0 {
		b.WriteString("no final newline")
	}
	return b.String()
}

func TestRetrPipelinedEqualsSequential(t *testing.T) {
	const n = 1000
	msgs := messages(n, mixed)
	for _, pipelining := range []bool{true, false} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			opts := []pop3test.Option{pop3test.WithMailbox(user, pass, msgs...)}
			if !pipelining {
				opts = append(opts, pop3test.WithoutPipelining())
			}
			srv := pop3test.NewServer(t, opts...)
			c := login(t, srv, nil)

			sequential := make([][32]byte, n)
			for i := range n {
				sequential[i] = sum(retrAll(t, c, i+1))
			}
			before := srv.PipelinedCommands()
			var order []int
			err := c.RetrPipelined(context.Background(), seq(n), func(k int, r io.Reader) error {
				b, err := io.ReadAll(r)
				if err != nil {
					return err
				}
				if sum(b) != sequential[k-1] || sum(b) != sum(wire(msgs[k-1].Data)) {
					t.Errorf("message %d differs", k)
				}
				order = append(order, k)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(order, seq(n)) {
				t.Fatalf("delivered out of order or incompletely: %d messages", len(order))
			}
			pipelined := srv.PipelinedCommands() - before
			if pipelining && pipelined < n/2 {
				t.Errorf("only %d of %d RETRs were pipelined", pipelined, n)
			}
			if !pipelining && pipelined != 0 {
				t.Errorf("%d RETRs pipelined to a server without PIPELINING", pipelined)
			}
		})
	}
}

func TestRetrPipelinedStopsOnCallbackError(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(40, mixed)...))
	c := login(t, srv, nil)
	stop := errors.New("store unavailable")
	var got []int
	err := c.RetrPipelined(context.Background(), seq(40), func(n int, r io.Reader) error {
		got = append(got, n)
		if n == 5 {
			io.CopyN(io.Discard, r, 3) // leave most of it unread
			return stop
		}
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if !errors.Is(err, stop) {
		t.Fatalf("RetrPipelined = %v", err)
	}
	if !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("delivered %v", got)
	}
	// In-flight answers were drained: the session is in step.
	if n, _, err := c.Stat(context.Background()); err != nil || n != 40 {
		t.Fatalf("Stat after a stopped pipeline: %d %v", n, err)
	}
}

func TestRetrPipelinedErrAnswer(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(30, mixed)...),
		pop3test.WithFault(pop3test.Reply("RETR 7", "-ERR [SYS/TEMP] storage busy").Once()))
	c := login(t, srv, nil)
	var got []int
	err := c.RetrPipelined(context.Background(), seq(30), func(n int, r io.Reader) error {
		got = append(got, n)
		_, err := io.Copy(io.Discard, r)
		return err
	})
	var pe *pop3.Error
	if !errors.As(err, &pe) || pe.Command != "RETR 7" || !pop3.Temporary(err) {
		t.Fatalf("RetrPipelined = %v, want a temporary *Error for RETR 7", err)
	}
	if !slices.Equal(got, seq(6)) {
		t.Fatalf("delivered %v, want 1..6", got)
	}
	// Resume after the failure.
	got = nil
	if err := c.RetrPipelined(context.Background(), seq(30)[6:], func(n int, r io.Reader) error {
		got = append(got, n)
		return nil
	}); err != nil || len(got) != 24 {
		t.Fatalf("resume: %v, %d messages", err, len(got))
	}
}

func TestRetrPipelinedSkipsTooLarge(t *testing.T) {
	msgs := messages(20, simpleMessage)
	msgs[4].Data = []byte(strings.Repeat("big\r\n", 300))
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, msgs...))
	opts := plain()
	opts.MaxMessageSize = 1000
	c := login(t, srv, opts)
	var skipped []int
	delivered := 0
	err := c.RetrPipelined(context.Background(), seq(20), func(n int, r io.Reader) error {
		if _, err := io.Copy(io.Discard, r); errors.Is(err, pop3.ErrTooLarge) {
			skipped = append(skipped, n)
			return nil
		} else if err != nil {
			return err
		}
		delivered++
		return nil
	})
	if err != nil || !slices.Equal(skipped, []int{5}) || delivered != 19 {
		t.Fatalf("err %v, skipped %v, delivered %d", err, skipped, delivered)
	}
}

func TestRetrPipelinedDropMidMessage(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(20, mixed)...),
		pop3test.WithFault(pop3test.Drop("RETR 9", 100)))
	c := login(t, srv, nil)
	var got []int
	err := c.RetrPipelined(context.Background(), seq(20), func(n int, r io.Reader) error {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		got = append(got, n)
		return nil
	})
	if err == nil || !pop3.Temporary(err) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("RetrPipelined = %v, want a temporary unexpected EOF", err)
	}
	if !slices.Equal(got, seq(8)) {
		t.Fatalf("completed %v, want 1..8", got)
	}
}

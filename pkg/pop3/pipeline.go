package pop3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// RetrPipelined retrieves the messages nums in order and calls fn with
// each one's body as a stream, like Retr. When the server offers
// PIPELINING (RFC 2449) up to Options.PipelineWindow RETR commands are in
// flight at once, so a large fetch is not bound by round trips; otherwise
// the messages are retrieved one after another.
//
// The body passed to fn is valid only until fn returns; what fn leaves
// unread is discarded. A body longer than Options.MaxMessageSize fails to
// read with an error matching ErrTooLarge: fn may return nil to skip that
// message and go on, or return the error.
//
// RetrPipelined stops at the first failure: fn returning an error, or a
// "-ERR" to a RETR (returned as *Error whose Command names the message).
// Every message for which fn was called and returned nil was delivered
// completely. Answers to commands already in flight are read and
// discarded, so the session stays usable after such a failure.
func (c *Client) RetrPipelined(ctx context.Context, nums []int, fn func(n int, r io.Reader) error) error {
	p, stop, err := c.pipeline(ctx, "RETR", nums)
	if err != nil {
		return err
	}
	defer stop()
	var failed error
	for i, n := range nums {
		if failed == nil {
			p.fill(i)
		}
		if i >= p.sent {
			break
		}
		cmd := "RETR " + strconv.Itoa(n)
		if _, err := c.expectStatus(ctx, cmd); err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				return errors.Join(failed, err)
			}
			if failed == nil {
				failed = err
			}
			continue
		}
		m := c.body(ctx, cmd, nil)
		if failed == nil {
			if err := fn(n, struct{ io.Reader }{m}); err != nil {
				failed = err
			}
		}
		if err := m.Close(); err != nil {
			return errors.Join(failed, err)
		}
	}
	return errors.Join(failed, p.err(ctx))
}

// DeleMany marks the messages nums for deletion, pipelined like
// RetrPipelined when the server offers PIPELINING. Every number is sent;
// the "-ERR" answers, if any, are returned joined (each an *Error naming
// its message). As with Dele, nothing is deleted before Quit succeeds.
func (c *Client) DeleMany(ctx context.Context, nums []int) error {
	p, stop, err := c.pipeline(ctx, "DELE", nums)
	if err != nil {
		return err
	}
	defer stop()
	var errs []error
	for i, n := range nums {
		p.fill(i)
		if i >= p.sent {
			break
		}
		if _, err := c.expectStatus(ctx, "DELE "+strconv.Itoa(n)); err != nil {
			errs = append(errs, err)
			var pe *Error
			if !errors.As(err, &pe) {
				break
			}
		}
	}
	return errors.Join(append(errs, p.err(ctx))...)
}

// pipeliner keeps up to window commands "VERB n" in flight.
type pipeliner struct {
	c       *Client
	verb    string
	nums    []int
	window  int
	sent    int
	sendErr error
}

func (c *Client) pipeline(ctx context.Context, verb string, nums []int) (*pipeliner, func() bool, error) {
	if len(nums) == 0 {
		return &pipeliner{c: c}, func() bool { return true }, c.usable()
	}
	for _, n := range nums {
		if err := checkNumber(verb, n); err != nil {
			return nil, nil, err
		}
	}
	stop, err := c.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	caps, err := c.capabilities(ctx)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("pop3: pipelining: %w", err)
	}
	window := 1
	if caps.Has("PIPELINING") {
		window = c.opts.PipelineWindow
	}
	return &pipeliner{c: c, verb: verb, nums: nums, window: window}, stop, nil
}

// fill sends commands until window of them are unanswered, i being the
// index of the next answer to read. It waits until at most half the window
// is in flight, so that commands go out in batches: fewer writes for both
// sides, and never an empty pipe. A failed send is remembered, not
// returned: the answers to what did get through are read first, and the
// read error that follows says more than the write error.
func (p *pipeliner) fill(i int) {
	if p.sendErr != nil || p.sent-i > p.window/2 {
		return
	}
	wrote := false
	for p.sent < len(p.nums) && p.sent-i < p.window {
		line := p.verb + " " + strconv.Itoa(p.nums[p.sent])
		if p.c.log != nil {
			p.c.log.Debug("pop3 send", "cmd", line)
		}
		_, _ = p.c.bw.WriteString(line + "\r\n") // the error resurfaces in Flush
		p.sent++
		wrote = true
	}
	if wrote {
		p.sendErr = p.c.bw.Flush()
	}
}

// err reports a send failure that no read failure explained.
func (p *pipeliner) err(ctx context.Context) error {
	if p.sendErr == nil || p.c.err != nil {
		return nil
	}
	return p.c.ioError(ctx, p.verb, p.sendErr)
}

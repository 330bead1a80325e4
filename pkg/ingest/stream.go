package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Stream is one IngestMessages stream. Send, Flush, Take, Finish, Abandon
// and Close are called from one goroutine (the fetcher's); the stream's
// own goroutines send the queued requests, receive the results and watch
// for a stalled store.
type Stream struct {
	c      *Client
	opts   Options
	stream mailbusv1.IngestService_IngestMessagesClient
	cancel context.CancelCauseFunc
	// shared is set on a stream that passes its requests by reference
	// (the in-process channel of mailbus serve, pkg/inproc): the store
	// keeps a request's data as it is, so each chunk is a buffer of its
	// own, never reused; slots then bound the chunks queued, as the free
	// list does otherwise.
	shared  bool
	slots   chan struct{}
	scratch *[]byte // shared: where a body beyond its declared size is read
	// carry is the byte read past a body's declared size while looking
	// for its end (shared), and carryEOF says the body ended after it.
	carry    [1]byte
	carrying bool
	carryEOF bool

	// The caller's state.
	open       bool  // a message has started and not ended
	sinceFlush int   // messages ended since the last flush
	bytesFlush int64 // octets sent since the last flush
	allocated  int   // chunk buffers taken from the client
	qClosed    bool
	closed     bool

	q        chan item     // to the sender
	free     chan *[]byte  // chunk buffers back from the sender
	kick     chan struct{} // a result or the end arrived
	recvDone chan struct{}
	sendDone chan struct{}

	mu       sync.Mutex
	ended    int                       // messages ended (end_of_message queued)
	awaited  int                       // messages ended before the last flush or end sent
	received int                       // results received in all
	sending  bool                      // the sender is in Send
	lastSign time.Time                 // the last time the store took data or answered
	results  []*mailbusv1.IngestResult // received, not yet taken
	err      error                     // the stream's first failure
}

// errClosed is the error of a stream used after Finish, Abandon or
// Close.
var errClosed = errors.New("ingest: the stream is closed")

// item is a request queued for the sender; buf, when set, goes back to
// the free list once sent, and a slot is given back likewise.
type item struct {
	req   *mailbusv1.IngestMessagesRequest
	buf   *[]byte
	slot  bool
	ended int // for a flush: the messages ended before it
}

// Send streams one message: meta with the first chunk, the next chunks as
// body yields them, end_of_message with the last. It returns the octets
// read from body. A failure to read body is a *BodyError: the message
// stays half-sent and the stream can then only be abandoned. Other errors
// are the stream's (its gRPC status, or ErrStalled). The message is durable once its result
// arrives, not when Send returns.
func (s *Stream) Send(meta *mailbusv1.IngestMeta, body io.Reader) (int64, error) {
	if s.open {
		return 0, ErrOpenMessage
	}
	if s.qClosed {
		return 0, errClosed
	}
	if err := s.failure(); err != nil {
		return 0, err
	}
	s.open = true
	if s.shared {
		return s.sendShared(meta, body)
	}
	var total int64
	first := true
	for {
		buf, err := s.getBuf()
		if err != nil {
			return total, err
		}
		// The stream may have failed while getBuf waited: read no more
		// of the body for it.
		if err := s.failure(); err != nil {
			s.free <- buf
			return total, err
		}
		n, eof, err := fill(body, *buf)
		total += int64(n)
		if err != nil {
			s.free <- buf
			return total, &BodyError{err}
		}
		req := &mailbusv1.IngestMessagesRequest{Data: (*buf)[:n], EndOfMessage: eof}
		if first {
			req.Meta, first = meta, false
		}
		if eof {
			s.mu.Lock()
			s.ended++
			s.mu.Unlock()
		}
		if err := s.enqueue(item{req: req, buf: buf}); err != nil {
			return total, err
		}
		if eof {
			s.open = false
			s.sinceFlush++
			s.bytesFlush += total
			return total, s.autoFlush()
		}
	}
}

// sendShared is Send on a stream that passes requests by reference: each
// chunk is read into a buffer of its own, sized from what the meta
// declares is left of the body (IMAP's literal size, POP3's LIST size),
// and handed to the store, which keeps it: one copy from the protocol's
// reader to the store's file. Data beyond the declared size (or of a
// message declaring none) is read into the stream's scratch buffer and
// handed over as a copy of its own size.
func (s *Stream) sendShared(meta *mailbusv1.IngestMeta, body io.Reader) (int64, error) {
	s.carrying, s.carryEOF = false, false
	var total int64
	first := true
	for {
		// At most Config.QueueChunks chunks are queued; the sender
		// gives every slot back, sent or not, so this ends.
		s.slots <- struct{}{}
		if err := s.failure(); err != nil {
			<-s.slots
			return total, err
		}
		data, eof, err := s.readShared(body, int64(meta.GetSize())-total)
		total += int64(len(data))
		if err != nil {
			<-s.slots
			return total, &BodyError{err}
		}
		req := &mailbusv1.IngestMessagesRequest{Data: data, EndOfMessage: eof}
		if first {
			req.Meta, first = meta, false
		}
		if eof {
			s.mu.Lock()
			s.ended++
			s.mu.Unlock()
		}
		if err := s.enqueue(item{req: req, slot: true}); err != nil {
			return total, err
		}
		if eof {
			s.open = false
			s.sinceFlush++
			s.bytesFlush += total
			return total, s.autoFlush()
		}
	}
}

// readShared reads the next chunk of a body into a buffer the store may
// keep: one of the declared size left (up to a chunk), or, past it, a
// copy of what the scratch buffer got. A body that fills its declared
// size is read once more for its end, so that a message of the size it
// declared goes out as one request with its end_of_message (a byte found
// there instead starts the next chunk).
func (s *Stream) readShared(body io.Reader, declaredLeft int64) (data []byte, eof bool, err error) {
	if declaredLeft > 0 {
		buf := make([]byte, min(int64(s.c.cfg.ChunkSize), declaredLeft))
		n, eof, err := fill(body, buf)
		if err == nil && !eof && int64(n) == declaredLeft {
			eof, err = s.probeEnd(body)
		}
		return buf[:n], eof, err
	}
	if s.scratch == nil {
		s.scratch = s.c.bufs.Get().(*[]byte)
	}
	scratch := *s.scratch
	var n int
	if s.carrying {
		scratch[0], n, s.carrying = s.carry[0], 1, false
		if s.carryEOF {
			return bytes.Clone(scratch[:n]), true, nil
		}
	}
	k, eof, err := fill(body, scratch[n:])
	n += k
	if n == 0 {
		return nil, eof, err
	}
	return bytes.Clone(scratch[:n]), eof, err
}

// probeEnd reads one byte past a body's declared size: none means the
// body ended there; one is kept for the next chunk.
func (s *Stream) probeEnd(body io.Reader) (eof bool, err error) {
	for {
		k, err := body.Read(s.carry[:])
		if k == 1 {
			s.carrying, s.carryEOF = true, err == io.EOF
			if err == io.EOF {
				err = nil
			}
			return false, err
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// fill reads into buf until it is full or the body ends.
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

func (s *Stream) autoFlush() error {
	o := s.opts
	if (o.FlushMessages > 0 && s.sinceFlush >= o.FlushMessages) || (o.FlushBytes > 0 && s.bytesFlush >= o.FlushBytes) {
		return s.Flush()
	}
	return nil
}

// Flush asks the store to commit what it has and answer. It may be sent
// while a message is half-sent: the store commits the complete ones.
func (s *Stream) Flush() error {
	if s.qClosed {
		return errClosed
	}
	s.sinceFlush, s.bytesFlush = 0, 0
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	return s.enqueue(item{req: &mailbusv1.IngestMessagesRequest{Flush: true}, ended: ended})
}

// getBuf returns a free chunk buffer, waiting for one while
// Config.QueueChunks are queued.
func (s *Stream) getBuf() (*[]byte, error) {
	select {
	case b := <-s.free:
		return b, nil
	default:
	}
	if s.allocated < s.c.cfg.QueueChunks {
		s.allocated++
		return s.c.bufs.Get().(*[]byte), nil
	}
	// The sender gives every buffer back, sent or not, so this ends.
	return <-s.free, nil
}

// enqueue hands a request to the sender, unless the stream has failed
// or its queue is closed (Finish, Abandon, Close).
func (s *Stream) enqueue(it item) error {
	err := s.failure()
	if err == nil && s.qClosed {
		err = errClosed
	}
	if err != nil {
		if it.buf != nil {
			s.free <- it.buf
		}
		if it.slot {
			<-s.slots
		}
		return err
	}
	s.q <- it
	return nil
}

// sendLoop sends the queued requests in order; after a failure it only
// gives the buffers back.
func (s *Stream) sendLoop() {
	defer close(s.sendDone)
	for it := range s.q {
		if s.failure() == nil {
			s.mu.Lock()
			s.sending, s.lastSign = true, time.Now()
			if it.req.Flush {
				s.awaited = it.ended
			}
			s.mu.Unlock()
			// The buffer of it.req goes back to the free list, and is
			// filled again, as soon as Send returns. That relies on
			// grpc-go's SendMsg serialising the message before it
			// returns (true of grpc-go today, not promised by its
			// documented contract). A channel that passes the request
			// by reference says so (shared), and then the request has
			// a buffer of its own (sendShared).
			err := s.stream.Send(it.req)
			s.mu.Lock()
			s.sending, s.lastSign = false, time.Now()
			s.mu.Unlock()
			if err != nil {
				s.fail(s.sendError(err))
			}
		}
		if it.buf != nil {
			s.free <- it.buf
		}
		if it.slot {
			<-s.slots
		}
	}
}

// sendError turns a failed Send into the stream's real error: io.EOF from
// Send means the store ended the stream, and Recv says why.
func (s *Stream) sendError(err error) error {
	if errors.Is(err, io.EOF) {
		<-s.recvDone
		if rerr := s.failure(); rerr != nil {
			return rerr
		}
		return fmt.Errorf("ingest: the store ended the stream: %w", err)
	}
	return fmt.Errorf("ingest: send: %w", err)
}

// receive collects the store's answers until the stream ends.
func (s *Stream) receive() {
	defer close(s.recvDone)
	defer s.signal()
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			if err != io.EOF {
				s.fail(fmt.Errorf("ingest: %w", err))
			}
			return
		}
		s.mu.Lock()
		s.results = append(s.results, resp.Results...)
		s.received += len(resp.Results)
		s.lastSign = time.Now()
		s.mu.Unlock()
		if s.opts.OnResults != nil {
			if err := s.opts.OnResults(resp.Results); err != nil {
				s.fail(err)
				s.cancel(err)
				return
			}
		}
		s.signal()
	}
}

func (s *Stream) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// watch cuts the stream when the store has neither taken data nor
// answered for Config.Timeout while the client waits on it: a Send
// blocked, or messages ended before a flush (or the end of the stream)
// still without results. Messages sent since the last flush are not
// waited on: the store answers them when it commits, which may be later.
func (s *Stream) watch() {
	timeout := s.c.cfg.Timeout
	t := time.NewTicker(min(timeout/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.recvDone:
			return
		case <-t.C:
		}
		s.mu.Lock()
		waiting := s.sending || s.received < s.awaited
		cut := waiting && time.Since(s.lastSign) > timeout
		s.mu.Unlock()
		if cut {
			err := fmt.Errorf("%w (no sign for %v)", ErrStalled, timeout)
			s.fail(err)
			s.cancel(err)
			return
		}
	}
}

// fail records the stream's first failure. A failure after the watchdog
// cut the stream is the cut's.
func (s *Stream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *Stream) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Take returns the results received since the last call, in stream order.
func (s *Stream) Take() []*mailbusv1.IngestResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.results
	s.results = nil
	return out
}

// Pending is how many messages sent in full have no result yet.
func (s *Stream) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended - s.received
}

// Wait returns once every message sent in full has its result, the
// stream failed (its error), or ctx ended. The store answers at its batch
// bounds and on a flush: call Flush first.
func (s *Stream) Wait(ctx context.Context) error {
	for {
		if err := s.failure(); err != nil {
			return err
		}
		if s.Pending() == 0 {
			return nil
		}
		select {
		case <-s.kick:
		case <-s.recvDone:
			if err := s.failure(); err != nil {
				return err
			}
			if s.Pending() > 0 {
				return errors.New("ingest: the store ended the stream without answering every message")
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Ended is how many messages were sent in full.
func (s *Stream) Ended() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// closeQueue stops the sender once it has sent what is queued.
func (s *Stream) closeQueue() {
	if !s.qClosed {
		s.qClosed = true
		close(s.q)
	}
	<-s.sendDone
}

// Finish ends the stream normally: the store commits the rest and
// answers, and Finish returns once every message has its result (or the
// stream failed, or its context ended). It fails on a stream with a
// half-sent message.
func (s *Stream) Finish() error {
	if s.open {
		return ErrOpenMessage
	}
	s.closeQueue()
	if err := s.failure(); err != nil {
		return err
	}
	s.mu.Lock()
	s.awaited, s.lastSign = s.ended, time.Now()
	s.mu.Unlock()
	if err := s.stream.CloseSend(); err != nil {
		s.fail(fmt.Errorf("ingest: close stream: %w", err))
	}
	<-s.recvDone
	if err := s.failure(); err != nil {
		return err
	}
	s.mu.Lock()
	got, ended := s.received, s.ended
	s.mu.Unlock()
	if got != ended {
		return fmt.Errorf("ingest: the store answered %d of %d messages", got, ended)
	}
	return nil
}

// Abandon ends the stream after a failure. A half-sent message is
// dropped: the stream is cut without its end_of_message, and the store
// discards it. Before that, the store is asked to commit the messages
// sent in full, and Abandon waits (bounded by ctx) for their results, so
// that nothing complete is lost; take them with Take afterwards.
func (s *Stream) Abandon(ctx context.Context) {
	if !s.open {
		s.closeQueue()
		if s.failure() == nil {
			s.mu.Lock()
			s.awaited, s.lastSign = s.ended, time.Now()
			s.mu.Unlock()
			if s.stream.CloseSend() == nil {
				select {
				case <-s.recvDone:
				case <-ctx.Done():
				}
			}
		}
		s.cut(context.Canceled)
		return
	}
	if s.Pending() > 0 && s.Flush() == nil {
		s.closeQueue()
		for s.Pending() > 0 && s.failure() == nil {
			select {
			case <-s.kick:
				continue
			case <-s.recvDone:
			case <-ctx.Done():
			}
			break
		}
	}
	s.cut(context.Canceled)
}

// cut ends the stream at once and waits for its goroutines.
func (s *Stream) cut(cause error) {
	s.fail(errClosed)
	s.cancel(cause)
	s.closeQueue()
	<-s.recvDone
	if !s.closed {
		s.closed = true
		close(s.free)
		for b := range s.free {
			s.c.bufs.Put(b)
		}
		if s.scratch != nil {
			s.c.bufs.Put(s.scratch)
			s.scratch = nil
		}
	}
}

// Close releases the stream, cutting it if it is still open: messages
// without results may or may not be stored (a retry sends them again),
// and a half-sent message is not. Safe after Finish or Abandon, and more
// than once.
func (s *Stream) Close() {
	s.cut(context.Canceled)
}

package pop3fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// ingestStream is one IngestMessages stream. The pass sends messages on
// it (meta, data chunks, end_of_message) while a goroutine collects the
// store's answers: a result is an acknowledgement, and an acknowledged
// message is durable.
//
// The stream runs under the pass's grace context (see withGrace), not the
// pass's own: when the pass is cancelled, the fetcher can still ask the
// store to commit the messages it sent in full before it cuts the stream
// (cutting it drops the partial message: the store never stores a message
// without its end_of_message). The stream is cut in any case at the pass's
// grace deadline, Config.ShutdownGrace after the pass's context ended.
type ingestStream struct {
	stream mailbusv1.IngestService_IngestMessagesClient
	cancel context.CancelFunc
	chunk  []byte

	open       bool  // a message has started and not ended
	ended      int   // messages ended (end_of_message sent)
	sinceFlush int   // messages ended since the last flush
	bytesFlush int64 // octets sent since the last flush

	mu       sync.Mutex
	sending  bool                      // a Send is in progress
	lastSign time.Time                 // the last time the store took data or answered
	stalled  bool                      // the watchdog cut the stream
	results  []*mailbusv1.IngestResult // received, not yet taken
	received int                       // results received in all
	recvErr  error
	kick     chan struct{} // a result or the end arrived
	recvDone chan struct{}
}

// openIngest opens a stream under grace, the pass's grace context.
func (f *Fetcher) openIngest(grace context.Context) (*ingestStream, error) {
	sctx, cancel := context.WithCancel(grace)
	stream, err := f.ingest.IngestMessages(sctx)
	if err != nil {
		cancel()
		return nil, storeErr("open ingest stream", err)
	}
	s := &ingestStream{
		stream: stream, cancel: cancel, chunk: make([]byte, chunkSize),
		kick: make(chan struct{}, 1), recvDone: make(chan struct{}),
	}
	s.lastSign = time.Now()
	go s.receive()
	go s.watch(f.cfg.StoreTimeout)
	return s, nil
}

// watch cuts the stream when the store has neither taken data nor
// answered for timeout while the fetcher waits on it (a Send blocked, or
// results outstanding).
func (s *ingestStream) watch(timeout time.Duration) {
	t := time.NewTicker(min(timeout/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.recvDone:
			return
		case <-t.C:
		}
		s.mu.Lock()
		waiting := s.sending || s.ended > s.received
		cut := waiting && time.Since(s.lastSign) > timeout
		if cut {
			s.stalled = true
		}
		s.mu.Unlock()
		if cut {
			s.cancel()
			return
		}
	}
}

// sendReq sends one request, keeping the watchdog informed.
func (s *ingestStream) sendReq(req *mailbusv1.IngestMessagesRequest) error {
	s.mu.Lock()
	s.sending = true
	s.lastSign = time.Now()
	s.mu.Unlock()
	err := s.stream.Send(req)
	s.mu.Lock()
	s.sending = false
	s.lastSign = time.Now()
	s.mu.Unlock()
	return err
}

func (s *ingestStream) receive() {
	defer close(s.recvDone)
	for {
		resp, err := s.stream.Recv()
		s.mu.Lock()
		if err != nil {
			if err != io.EOF {
				s.recvErr = err
			}
			s.mu.Unlock()
			s.signal()
			return
		}
		s.results = append(s.results, resp.Results...)
		s.received += len(resp.Results)
		s.lastSign = time.Now()
		s.mu.Unlock()
		s.signal()
	}
}

func (s *ingestStream) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// take returns the results received since the last call.
func (s *ingestStream) take() []*mailbusv1.IngestResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.results
	s.results = nil
	return out
}

// err returns the stream's receive error, once the receiver has ended.
func (s *ingestStream) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recvErr
}

// sendErr turns a failed Send into the stream's real error: io.EOF from
// Send means the store ended the stream, and Recv says why.
func (s *ingestStream) sendErr(op string, err error) error {
	if errors.Is(err, io.EOF) {
		<-s.recvDone
		if rerr := s.err(); rerr != nil {
			err = rerr
		}
	}
	return storeErr(op, s.explain(err))
}

// explain replaces the cancellation error of a stream the watchdog cut.
func (s *ingestStream) explain(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled {
		return fmt.Errorf("the store neither took data nor answered for too long, stream cut: %w", err)
	}
	return err
}

// bodyError is a failure to read a message body from the POP3 server (as
// opposed to a failure to send it to the store).
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// send streams one message: meta with the first chunk, the other chunks,
// end_of_message with the last one. It returns the octets sent. If
// reading body fails (a *bodyError) the message stays open: the stream can
// then only be abandoned.
func (s *ingestStream) send(meta *mailbusv1.IngestMeta, body io.Reader) (int64, error) {
	if s.open {
		return 0, errors.New("pop3fetcher: a message is still open on the ingest stream")
	}
	s.open = true
	var total int64
	first := true
	for {
		n, eof, err := fill(body, s.chunk)
		if err != nil {
			return total, &bodyError{err}
		}
		req := &mailbusv1.IngestMessagesRequest{Data: s.chunk[:n], EndOfMessage: eof}
		if first {
			req.Meta, first = meta, false
		}
		if n > 0 || req.Meta != nil || eof {
			if err := s.sendReq(req); err != nil {
				return total, s.sendErr("send message", err)
			}
		}
		total += int64(n)
		if eof {
			s.open = false
			s.ended++
			s.sinceFlush++
			s.bytesFlush += total
			return total, nil
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

// maybeFlush asks the store to commit once enough has been sent since the
// last commit request.
func (s *ingestStream) maybeFlush(messages int, octets int64) error {
	if s.sinceFlush < messages && s.bytesFlush < octets {
		return nil
	}
	s.sinceFlush, s.bytesFlush = 0, 0
	if err := s.sendReq(&mailbusv1.IngestMessagesRequest{Flush: true}); err != nil {
		return s.sendErr("flush", err)
	}
	return nil
}

// finish ends the stream normally: the store commits the rest and answers,
// and finish returns once every message has its result.
func (s *ingestStream) finish(ctx context.Context) error {
	if s.open {
		return errors.New("pop3fetcher: ingest stream finished inside a message")
	}
	if err := s.stream.CloseSend(); err != nil {
		return s.sendErr("close ingest stream", err)
	}
	select {
	case <-s.recvDone:
	case <-ctx.Done():
		// ctx ended: the stream is cut at the pass's grace deadline.
		<-s.recvDone
	}
	if err := s.err(); err != nil {
		return storeErr("ingest", s.explain(err))
	}
	s.mu.Lock()
	got := s.received
	s.mu.Unlock()
	if got != s.ended {
		return storeErr("ingest", fmt.Errorf("the store answered %d of %d messages", got, s.ended))
	}
	return nil
}

// abandon ends the stream after a failure. A message still open is
// dropped: the stream is cut without its end_of_message, and the store
// discards it. Before that, the store is asked to commit the messages sent
// in full, and abandon waits (bounded by ctx) for their results, so that
// nothing complete is lost for this pass.
func (s *ingestStream) abandon(ctx context.Context) {
	if !s.open {
		if err := s.stream.CloseSend(); err == nil {
			select {
			case <-s.recvDone:
				return
			case <-ctx.Done():
			}
		}
		s.cancel()
		<-s.recvDone
		return
	}
	if s.pending() > 0 && s.stream.Send(&mailbusv1.IngestMessagesRequest{Flush: true}) == nil {
		for s.pending() > 0 {
			select {
			case <-s.kick:
				continue
			case <-s.recvDone:
			case <-ctx.Done():
			}
			break
		}
	}
	s.cancel()
	<-s.recvDone
}

// pending is how many ended messages have no result yet.
func (s *ingestStream) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended - s.received
}

// close releases the stream (idempotent; after finish or abandon it only
// frees the context).
func (s *ingestStream) close() {
	s.cancel()
}

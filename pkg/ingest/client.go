package ingest

import (
	"context"
	"fmt"
	"sync"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/inproc"
)

// Defaults of the zero fields of Config.
const (
	// DefaultChunkSize is the data of one request. The store keeps a
	// message that arrives in one request without copying it again, so
	// a chunk holds most messages whole; it stays well under gRPC's
	// default 4 MiB message limit.
	DefaultChunkSize = 1 << 20
	// DefaultQueueChunks bounds the chunks read ahead of the store per
	// stream: at most this many chunk buffers exist per stream. Two is
	// double buffering (one chunk read while the other is sent); more
	// filled up whenever the store was the slower side and only added
	// to the peak RSS (decision 42).
	DefaultQueueChunks = 2
	// DefaultTimeout is how long the store may neither take data nor
	// answer while the client waits on it, before the stream is cut.
	DefaultTimeout = 2 * time.Minute
)

// Config configures a Client. The zero value of each field means its
// default.
type Config struct {
	// ChunkSize is the data of one request (default DefaultChunkSize).
	ChunkSize int
	// QueueChunks is how many chunks a stream may have read and not yet
	// sent (default DefaultQueueChunks).
	QueueChunks int
	// Timeout is the watchdog's bound (default DefaultTimeout).
	Timeout time.Duration
}

// Client opens ingest streams on one store connection and keeps their
// chunk buffers for reuse. It is safe for concurrent use.
type Client struct {
	svc  mailbusv1.IngestServiceClient
	cfg  Config
	bufs sync.Pool // *[]byte of len cfg.ChunkSize
}

// New returns a client of svc.
func New(svc mailbusv1.IngestServiceClient, cfg Config) *Client {
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.QueueChunks <= 0 {
		cfg.QueueChunks = DefaultQueueChunks
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	c := &Client{svc: svc, cfg: cfg}
	c.bufs.New = func() any {
		b := make([]byte, cfg.ChunkSize)
		return &b
	}
	return c
}

// Options are the settings of one stream; the zero value flushes only
// when asked and delivers results through Take.
type Options struct {
	// FlushMessages and FlushBytes make Send flush by itself once this
	// many messages or octets were sent since the last flush; 0 never.
	FlushMessages int
	FlushBytes    int64
	// OnResults, when set, is called by the stream's receiver goroutine
	// with the results of every answer of the store, in order (also
	// with none: the answer to a flush when everything was answered
	// already). An error cuts the stream and becomes its error. Results
	// go to Take as well.
	OnResults func([]*mailbusv1.IngestResult) error
}

// Open opens a stream. It lives until ctx ends, Finish, Abandon or Close;
// a caller that wants to commit what it sent after its own context ended
// passes a context that outlives it (the POP3 fetcher's grace context).
func (c *Client) Open(ctx context.Context, opts Options) (*Stream, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	stream, err := c.svc.IngestMessages(sctx)
	if err != nil {
		cancel(nil)
		return nil, fmt.Errorf("ingest: open stream: %w", err)
	}
	s := &Stream{
		c: c, opts: opts, stream: stream, cancel: cancel,
		q:        make(chan item, 2*c.cfg.QueueChunks),
		free:     make(chan *[]byte, c.cfg.QueueChunks),
		kick:     make(chan struct{}, 1),
		recvDone: make(chan struct{}),
		sendDone: make(chan struct{}),
		lastSign: time.Now(),
		shared:   inproc.SharesMessages(stream.Context()),
		slots:    make(chan struct{}, c.cfg.QueueChunks),
	}
	go s.receive()
	go s.sendLoop()
	go s.watch()
	return s, nil
}

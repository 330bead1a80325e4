package api

import (
	"context"
	"io"
	"testing"

	"google.golang.org/grpc"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// requestStream is the server side of an IngestMessages stream that
// delivers reqs, then the end of the stream.
type requestStream struct {
	grpc.ServerStream
	reqs []*mailbusv1.IngestMessagesRequest
}

func (f *requestStream) Recv() (*mailbusv1.IngestMessagesRequest, error) {
	if len(f.reqs) == 0 {
		return nil, io.EOF
	}
	r := f.reqs[0]
	f.reqs = f.reqs[1:]
	return r, nil
}
func (f *requestStream) Send(*mailbusv1.IngestMessagesResponse) error { return nil }
func (f *requestStream) Context() context.Context                     { return context.Background() }

// The declared size of a message is a hint the upstream server controls
// (POP3 LIST, IMAP RFC822.SIZE): a batch keeps no more memory than its
// messages need, whatever they declared, and a message whose declared
// size is right is not copied.
func TestReceiveKeepsNoDeclaredSize(t *testing.T) {
	for _, tc := range []struct {
		name     string
		messages int
		size     int
		declared uint64
		// chunk is the data size per request.
		chunk int
	}{
		{"tiny messages declaring 16 MiB", 64, 100, 16 << 20, 100},
		{"declared size right", 4, 3 << 20, 3 << 20, 64 << 10},
		{"declared size too small", 4, 3 << 20, 1000, 64 << 10},
		{"no declared size", 4, 3 << 20, 0, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reqs []*mailbusv1.IngestMessagesRequest
			for i := range tc.messages {
				body := make([]byte, tc.size)
				for off := 0; off < tc.size; off += tc.chunk {
					r := &mailbusv1.IngestMessagesRequest{Data: body[off:min(off+tc.chunk, tc.size)]}
					if off == 0 {
						r.Meta = &mailbusv1.IngestMeta{AccountId: "1", Ref: string(rune('a' + i%26)), Size: tc.declared}
					}
					reqs = append(reqs, r)
				}
				reqs[len(reqs)-1].EndOfMessage = true
			}
			batches := receiveAll(t, reqs)
			var n, received, retained int
			for _, b := range batches {
				for _, it := range b.items {
					n++
					received += len(it.Raw)
					retained += cap(it.Raw)
					if it.Err != nil {
						t.Fatalf("message %s refused: %v", it.Meta.Ref, it.Err)
					}
				}
			}
			if n != tc.messages || received != tc.messages*tc.size {
				t.Fatalf("%d messages of %d bytes received, want %d of %d", n, received, tc.messages, tc.messages*tc.size)
			}
			if retained > received+received/4+tc.messages*ingestSlackMax {
				t.Errorf("%d bytes received, %d bytes (%d MiB) retained", received, retained, retained>>20)
			}
			if tc.declared == uint64(tc.size) && retained != received {
				t.Errorf("a right declared size: %d bytes received, %d retained (copied or grown)", received, retained)
			}
		})
	}
}

// A message whose data arrives in one request (imapsync sends messages of
// up to 1 MiB so, with its meta and end; the store's tests send meta, data
// and end apart) is kept in the request's data, which protobuf decoding
// copied out of the stream: not copied again (issue 11, copies of a
// body). One whose data comes in pieces is put together.
func TestReceiveKeepsOneRequestMessageUncopied(t *testing.T) {
	meta := func(ref string, size uint64) *mailbusv1.IngestMeta {
		return &mailbusv1.IngestMeta{AccountId: "1", Ref: ref, Size: size}
	}
	whole := &mailbusv1.IngestMessagesRequest{Meta: meta("whole", 10<<10), Data: make([]byte, 10<<10), EndOfMessage: true}
	alone := &mailbusv1.IngestMessagesRequest{Data: make([]byte, 10<<10)}
	first := &mailbusv1.IngestMessagesRequest{Meta: meta("pieces", 20<<10), Data: make([]byte, 10<<10)}
	second := &mailbusv1.IngestMessagesRequest{Data: make([]byte, 10<<10), EndOfMessage: true}
	reqs := []*mailbusv1.IngestMessagesRequest{
		whole,
		{Meta: meta("alone", 10<<10)}, alone, {EndOfMessage: true},
		first, second,
		{Meta: meta("empty", 0), EndOfMessage: true},
	}
	var items []db.IngestItem
	for _, b := range receiveAll(t, reqs) {
		items = append(items, b.items...)
	}
	if len(items) != 4 {
		t.Fatalf("%d messages, want 4", len(items))
	}
	for i, req := range []*mailbusv1.IngestMessagesRequest{whole, alone} {
		if got := items[i].Raw; len(got) != len(req.Data) || &got[0] != &req.Data[0] {
			t.Errorf("%s: %d bytes, copied; want its request's %d bytes as they are", items[i].Meta.Ref, len(got), len(req.Data))
		}
	}
	if got := items[2].Raw; len(got) != 20<<10 || cap(got) != 20<<10 || &got[0] == &first.Data[0] {
		t.Errorf("a message in two requests: %d bytes in %d (in the first request's data: %v), want 20 KiB put together in a buffer of the declared size",
			len(got), cap(got), &got[0] == &first.Data[0])
	}
	if got := items[3].Raw; got == nil || len(got) != 0 {
		t.Errorf("an empty message: %v, want empty and not nil", got)
	}
}

// A batch is bounded by the memory its messages hold, not only by their
// length.
func TestReceiveBatchBoundCountsCapacity(t *testing.T) {
	// Each message declares 1 MiB and sends 900 KiB: too little unused
	// capacity to be worth a copy, but 10% more than its length.
	const size = 900 << 10
	var reqs []*mailbusv1.IngestMessagesRequest
	for i := range 2 * ingestBatchBytes / size {
		reqs = append(reqs, &mailbusv1.IngestMessagesRequest{
			Meta: &mailbusv1.IngestMeta{AccountId: "1", Ref: string(rune('a' + i%26)), Size: 1 << 20}, Data: make([]byte, size), EndOfMessage: true,
		})
	}
	for _, b := range receiveAll(t, reqs) {
		held := 0
		for _, it := range b.items[:len(b.items)-1] {
			held += cap(it.Raw)
		}
		if held >= ingestBatchBytes {
			t.Errorf("a batch of %d messages held %d bytes before its last message (bound %d)", len(b.items), held, ingestBatchBytes)
		}
	}
}

// receiveAll runs receive over reqs, with a SQLite database that keeps
// every body in its rows, and returns the batches it made.
func receiveAll(t *testing.T, reqs []*mailbusv1.IngestMessagesRequest) []pendingBatch {
	t.Helper()
	cfg := dbtest.Backends()[0].Config(t)
	cfg.BlobFileMin = -1
	d, err := db.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	s := &Ingest{DB: d, MaxMessageSize: 64 << 20}
	batches := make(chan pendingBatch, len(reqs)+1)
	if err := s.receive(context.Background(), &requestStream{reqs: reqs}, batches); err != nil {
		t.Fatal(err)
	}
	close(batches)
	var out []pendingBatch
	for b := range batches {
		b.batch.Release()
		out = append(out, b)
	}
	return out
}

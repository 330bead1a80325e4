// Package ingest is the fetchers' one client of the store's
// IngestService.IngestMessages stream (decision 0042): imapsync and the
// POP3 fetcher both send messages through it.
//
// # The stream
//
// A message goes to the store as a request with its meta (IngestMeta)
// followed by data chunks, the last with end_of_message; one request may
// carry all three. The store commits in batches (at its own bounds, when
// asked with a flush request, and at the end of the stream) and answers
// each committed batch with one IngestResult per message, in stream
// order. A result is the acknowledgement: the message is durable (decision
// 0001, 0002, 0014). A message the stream lost before its end_of_message
// is never stored: the store drops a partial message when the stream
// breaks.
//
// # What the client does
//
// Stream.Send reads a message from an io.Reader in chunks of
// Config.ChunkSize and sends them as it reads: the client never holds a
// whole message, only the chunks queued for sending (at most
// Config.QueueChunks). The chunk buffers are reused (per stream, and
// across streams through the Client), not allocated per message.
//
// A sender goroutine sends the queued chunks while the caller reads the
// next ones from upstream, so that reading the server and writing the
// store overlap. A receiver goroutine collects the results, which the
// caller takes (Stream.Take) or gets by callback (Options.OnResults).
//
// Flushes: Stream.Flush asks the store to commit what it has; with
// Options.FlushMessages or Options.FlushBytes set, Send flushes by itself
// once that much was sent since the last flush.
//
// Watchdog: a store that neither takes data nor answers for
// Config.Timeout while the client waits on it (a send blocked, or a flush
// or the end of the stream not answered) gets its stream cut; the error
// then wraps ErrStalled.
//
// Abandon: Stream.Abandon ends a stream after a failure. A message still
// half-sent (its body failed to read: a *BodyError) is dropped by cutting
// the stream without its end_of_message; before that the store is asked
// to commit the messages sent in full, and Abandon waits for their
// results, bounded by its context. Stream.Close cuts the stream at once.
//
// Errors: a failure to read a body is a *BodyError (the upstream's), a
// cut by the watchdog wraps ErrStalled, and the store's refusals are its
// gRPC status. The fetchers classify errors by their own rules, which
// know more than the stream does (re-authorization, a stale generation,
// the upstream's errors); Classify is a coarse helper they do not use
// (decision 0042).
//
// # Copies of a body
//
// From the upstream socket to the store's gRPC stream a body is copied
// twice in user space: the protocol reader (go-imap's literal reader, the
// POP3 dot-reader, both over a bufio.Reader that the kernel fills) copies
// it into a chunk buffer of this package, and gRPC marshals the request
// into its frame buffer. imapsync copied it twice more before (a 64 KiB
// read buffer, then a whole-message buffer growing by append).
//
// On a stream that passes its requests by reference (mailbus serve's
// in-process channel, pkg/inproc: inproc.SharesMessages on the stream's
// context), the store keeps a request's data as it is, so a chunk buffer
// cannot be reused: each chunk is read into a buffer of its own, sized
// from the meta's declared size, and nothing encodes it; the body is
// copied once, from the protocol's reader into that buffer, before the
// store writes it (decision 0045).
package ingest

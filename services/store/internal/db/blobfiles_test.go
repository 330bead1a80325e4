package db_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// bigMessage is a message of about size bytes, distinct per n.
func bigMessage(n, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: a@example.com\r\nSubject: big %d\r\nMessage-ID: <big%d@example.com>\r\n\r\n", n, n)
	for b.Len() < size {
		fmt.Fprintf(&b, "line %d of message %d, padding padding padding padding\r\n", b.Len(), n)
	}
	return b.Bytes()
}

func blobPath(dir string, raw []byte) string {
	sum := sha256.Sum256(raw)
	h := hex.EncodeToString(sum[:])
	return filepath.Join(dir, "blobs", h[:2], h)
}

// blobRow reads a blob row straight from the SQLite file.
func blobRow(t *testing.T, dir string, raw []byte) (dataLen int, inFile bool) {
	t.Helper()
	sum := sha256.Sum256(raw)
	conn, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "mailbus.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.QueryRow(`SELECT length(data), in_file FROM blobs WHERE hash = ?`, hex.EncodeToString(sum[:])).Scan(&dataLen, &inFile); err != nil {
		t.Fatalf("blob row: %v", err)
	}
	return dataLen, inFile
}

// clock is a settable time for the retention tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestBlobFilesOnSQLite(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	d, err := db.Open(ctx, db.Config{DataDir: dir, Secrets: dbtest.Secrets(t), BlobFileMin: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := mustCreate(t, d, imapAccount("work"))
	mb := mustMailbox(t, d, a.Id, "INBOX", 1)
	small, big := rawMessage(1), bigMessage(2, 5000)
	// The same big body twice (another folder's copy): one file.
	res := mustIngest(t, d, imapItem(a.Id, mb.Id, 1, 1, small), imapItem(a.Id, mb.Id, 1, 2, big), imapItem(a.Id, mb.Id, 1, 3, big))
	for _, r := range res {
		if !r.Created {
			t.Fatalf("not created: %v", r)
		}
	}
	for _, tc := range []struct {
		name       string
		raw        []byte
		wantInFile bool
	}{{"small", small, false}, {"big", big, true}} {
		n, inFile := blobRow(t, dir, tc.raw)
		_, statErr := os.Stat(blobPath(dir, tc.raw))
		if inFile != tc.wantInFile || (statErr == nil) != tc.wantInFile {
			t.Errorf("%s: in_file %v, file: %v; want in file %v", tc.name, inFile, statErr, tc.wantInFile)
		}
		if tc.wantInFile && n != 0 || !tc.wantInFile && n != len(tc.raw) {
			t.Errorf("%s: %d bytes in the row", tc.name, n)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(blobPath(dir, big)))
	if err != nil || len(entries) != 1 {
		t.Fatalf("blob directory: %v %v (want one file, no temporary)", entries, err)
	}
	for i, want := range [][]byte{small, big, big} {
		got, _, err := d.RawMessage(ctx, res[i].MessageId)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("raw %d: %d bytes, %v", i, len(got), err)
		}
	}
	// Reopened, the body is still read from its file.
	d.Close()
	if d, err = db.Open(ctx, db.Config{DataDir: dir, Secrets: dbtest.Secrets(t), BlobFileMin: 1000}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := d.RawMessage(ctx, res[1].MessageId); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("raw after reopen: %d bytes, %v", len(got), err)
	}
}

func TestBlobFilesCollected(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	c := &clock{t: time.Now()}
	d, err := db.Open(ctx, db.Config{DataDir: dir, Secrets: dbtest.Secrets(t), BlobFileMin: 1000, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := mustCreate(t, d, imapAccount("work"))
	mb := mustMailbox(t, d, a.Id, "INBOX", 1)
	kept, deleted := bigMessage(1, 4000), bigMessage(2, 4000)
	res := mustIngest(t, d, imapItem(a.Id, mb.Id, 1, 1, kept), imapItem(a.Id, mb.Id, 1, 2, deleted))
	if _, err := d.DeleteMessages(ctx, device, a.Id, []string{res[1].MessageId}); err != nil {
		t.Fatal(err)
	}
	// Files a crash left: a finished one whose transaction never committed
	// and a temporary one, both old; and a young orphan, which may belong
	// to an ingest in flight.
	orphan, young := bigMessage(3, 4000), bigMessage(4, 4000)
	old := time.Now().Add(-2 * time.Hour)
	tmp := blobPath(dir, orphan) + ".123.tmp"
	for _, p := range []string{blobPath(dir, orphan), tmp, blobPath(dir, young)} {
		if err := os.WriteFile(p, orphan, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{blobPath(dir, orphan), tmp} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	// An hour later, the unreferenced blob goes with its file.
	c.add(2 * time.Hour)
	if err := os.Chtimes(blobPath(dir, young), c.now(), c.now()); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(blobPath(dir, kept), old, old)
	res2, err := d.Prune(ctx, 24*time.Hour)
	if err != nil || res2.Blobs != 1 {
		t.Fatalf("prune: %+v %v", res2, err)
	}
	for _, tc := range []struct {
		name   string
		path   string
		exists bool
	}{
		{"referenced", blobPath(dir, kept), true},
		{"deleted message", blobPath(dir, deleted), false},
		{"orphan", blobPath(dir, orphan), false},
		{"temporary", tmp, false},
		{"young orphan", blobPath(dir, young), true},
	} {
		if _, err := os.Stat(tc.path); (err == nil) != tc.exists {
			t.Errorf("%s: stat %v, want exists %v", tc.name, err, tc.exists)
		}
	}
	if got, _, err := d.RawMessage(ctx, res[0].MessageId); err != nil || !bytes.Equal(got, kept) {
		t.Fatalf("kept message: %d bytes, %v", len(got), err)
	}
	// The deleted body comes back as a new file when ingested again.
	again := mustIngest(t, d, imapItem(a.Id, mb.Id, 1, 5, deleted))
	if got, _, err := d.RawMessage(ctx, again[0].MessageId); err != nil || !bytes.Equal(got, deleted) {
		t.Fatalf("re-ingested message: %d bytes, %v", len(got), err)
	}
}

// A file that was written but never got its row (a crash before commit) is
// adopted as is when the same body comes again: it was fsynced before it
// got its name.
func TestBlobFileAdoptedAfterCrash(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	d, err := db.Open(ctx, db.Config{DataDir: dir, Secrets: dbtest.Secrets(t), BlobFileMin: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := mustCreate(t, d, imapAccount("work"))
	mb := mustMailbox(t, d, a.Id, "INBOX", 1)
	raw := bigMessage(1, 3000)
	if err := os.WriteFile(blobPath(dir, raw), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// A truncated file of the same name (not possible after fsync and
	// rename, but cheap to refuse) is replaced.
	raw2 := bigMessage(2, 3000)
	if err := os.WriteFile(blobPath(dir, raw2), raw2[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	res := mustIngest(t, d, imapItem(a.Id, mb.Id, 1, 1, raw), imapItem(a.Id, mb.Id, 1, 2, raw2))
	for i, want := range [][]byte{raw, raw2} {
		if got, _, err := d.RawMessage(ctx, res[i].MessageId); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// PostgreSQL keeps every body in the database, where every replica reads
// it.
func TestBlobsInPostgres(t *testing.T) {
	ctx := context.Background()
	b := dbtest.Backends()[1]
	cfg := b.Config(t)
	cfg.BlobFileMin = 1
	d, err := db.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := mustCreate(t, d, imapAccount("work"))
	mb := mustMailbox(t, d, a.Id, "INBOX", 1)
	raw := bigMessage(1, 100_000)
	res := mustIngest(t, d, imapItem(a.Id, mb.Id, 1, 1, raw))
	conn, err := sql.Open("pgx", cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n int
	var inFile bool
	if err := conn.QueryRow(`SELECT length(data), in_file = 1 FROM blobs`).Scan(&n, &inFile); err != nil || n != len(raw) || inFile {
		t.Fatalf("blob row: %d bytes, in file %v, %v", n, inFile, err)
	}
	if got, _, err := d.RawMessage(ctx, res[0].MessageId); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("raw: %d bytes, %v", len(got), err)
	}
}

// A store opened with a negative BlobFileMin keeps new bodies in the
// database, and still reads and collects the files it has.
func TestBlobFilesKeptWithoutThreshold(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	c := &clock{t: time.Now()}
	d, err := db.Open(ctx, db.Config{DataDir: dir, Secrets: dbtest.Secrets(t), BlobFileMin: 1000, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	a := mustCreate(t, d, imapAccount("work"))
	mb := mustMailbox(t, d, a.Id, "INBOX", 1)
	inFile, deleted := bigMessage(1, 5000), bigMessage(2, 5000)
	res := mustIngest(t, d, imapItem(a.Id, mb.Id, 1, 1, inFile), imapItem(a.Id, mb.Id, 1, 2, deleted))
	d.Close()

	if d, err = db.Open(ctx, db.Config{DataDir: dir, Secrets: dbtest.Secrets(t), BlobFileMin: -1, Now: c.now}); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got, _, err := d.RawMessage(ctx, res[0].MessageId); err != nil || !bytes.Equal(got, inFile) {
		t.Fatalf("body kept as a file, read with no threshold: %d bytes, %v", len(got), err)
	}
	inRow := bigMessage(3, 5000)
	res2 := mustIngest(t, d, imapItem(a.Id, mb.Id, 1, 3, inRow))
	if n, inFile := blobRow(t, dir, inRow); inFile || n != len(inRow) {
		t.Errorf("new body: %d bytes in the row, in file %v; want all in the row", n, inFile)
	}
	if _, err := os.Stat(blobPath(dir, inRow)); err == nil {
		t.Errorf("new body written as a file")
	}
	if got, _, err := d.RawMessage(ctx, res2[0].MessageId); err != nil || !bytes.Equal(got, inRow) {
		t.Fatalf("new body: %d bytes, %v", len(got), err)
	}
	// The file of a deleted message is still collected.
	if _, err := d.DeleteMessages(ctx, device, a.Id, []string{res[1].MessageId}); err != nil {
		t.Fatal(err)
	}
	c.add(2 * time.Hour)
	if r, err := d.Prune(ctx, 24*time.Hour); err != nil || r.Blobs != 1 {
		t.Fatalf("prune: %+v %v", r, err)
	}
	if _, err := os.Stat(blobPath(dir, deleted)); err == nil {
		t.Errorf("the deleted message's file is still there")
	}
}

// A message deleted and collected while RawMessage reads it is not found,
// as if it had been gone before; a body file missing or of the wrong size
// under a message that is still there is an error that says so.
func TestRawMessageBodyGone(t *testing.T) {
	ctx := context.Background()
	for _, b := range dbtest.Backends() {
		for _, tc := range []struct {
			name string
			// change runs between the summary read and the body read.
			change   func(t *testing.T, d *db.DB, c *clock, dir, acct, id string, raw []byte)
			filesAt  bool // the case needs the body kept as a file
			notFound bool
			errHas   string
		}{
			{name: "deleted and collected", notFound: true, change: func(t *testing.T, d *db.DB, c *clock, dir, acct, id string, raw []byte) {
				if _, err := d.DeleteMessages(ctx, device, acct, []string{id}); err != nil {
					t.Fatal(err)
				}
				c.add(2 * time.Hour)
				if r, err := d.Prune(ctx, 24*time.Hour); err != nil || r.Blobs != 1 {
					t.Fatalf("prune: %+v %v", r, err)
				}
			}},
			{name: "deleted, file collected after its row was read", filesAt: true, notFound: true, change: func(t *testing.T, d *db.DB, c *clock, dir, acct, id string, raw []byte) {
				if _, err := d.DeleteMessages(ctx, device, acct, []string{id}); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(blobPath(dir, raw)); err != nil {
					t.Fatal(err)
				}
			}},
			{name: "file missing", filesAt: true, errHas: "no such file", change: func(t *testing.T, d *db.DB, c *clock, dir, acct, id string, raw []byte) {
				if err := os.Remove(blobPath(dir, raw)); err != nil {
					t.Fatal(err)
				}
			}},
			{name: "file truncated", filesAt: true, errHas: "has 100 bytes, its row says 5", change: func(t *testing.T, d *db.DB, c *clock, dir, acct, id string, raw []byte) {
				if err := os.Truncate(blobPath(dir, raw), 100); err != nil {
					t.Fatal(err)
				}
			}},
		} {
			if tc.filesAt && b.Name != "sqlite" {
				continue
			}
			t.Run(b.Name+"/"+tc.name, func(t *testing.T) {
				c := &clock{t: time.Now()}
				cfg := b.Config(t)
				cfg.BlobFileMin, cfg.Now = 1000, c.now
				d, err := db.Open(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()
				a := mustCreate(t, d, imapAccount("work"))
				mb := mustMailbox(t, d, a.Id, "INBOX", 1)
				raw := bigMessage(1, 5000)
				id := mustIngest(t, d, imapItem(a.Id, mb.Id, 1, 1, raw))[0].MessageId
				s, err := d.GetMessageSummary(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				tc.change(t, d, c, cfg.DataDir, a.Id, id, raw)
				got, _, err := d.RawMessageAfterSummary(ctx, id, s)
				switch {
				case tc.notFound && !errors.Is(err, db.ErrNotFound):
					t.Errorf("%d bytes, %v; want not found", len(got), err)
				case !tc.notFound && (err == nil || errors.Is(err, db.ErrNotFound) || !strings.Contains(err.Error(), tc.errHas)):
					t.Errorf("%d bytes, %v; want an error with %q", len(got), err, tc.errHas)
				}
			})
		}
	}
}

// A batch that is prepared but not committed (its stream waits on a slow
// client) holds off neither the collector nor any other ingest; a file
// of it that the collector removed meanwhile is written again when it
// commits.
func TestUncommittedBatchHoldsNothing(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	c := &clock{t: time.Now()}
	d, err := db.Open(ctx, db.Config{DataDir: dir, Secrets: dbtest.Secrets(t), BlobFileMin: 1000, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := mustCreate(t, d, imapAccount("work"))
	mb := mustMailbox(t, d, a.Id, "INBOX", 1)
	// A body stored, deleted, and unreferenced for more than an hour: the
	// next retention pass removes its row and file.
	again := bigMessage(1, 5000)
	gone := mustIngest(t, d, imapItem(a.Id, mb.Id, 1, 1, again))
	if _, err := d.DeleteMessages(ctx, device, a.Id, []string{gone[0].MessageId}); err != nil {
		t.Fatal(err)
	}
	c.add(2 * time.Hour)
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(blobPath(dir, again), old, old); err != nil {
		t.Fatal(err)
	}

	// Two batches wait to be committed: one prepared whole, which found
	// the old file in place, and one still being filled.
	prepared, err := d.PrepareIngest(ctx, []db.IngestItem{imapItem(a.Id, mb.Id, 1, 2, again)})
	if err != nil {
		t.Fatal(err)
	}
	filling := d.NewIngestBatch()
	filling.Add(imapItem(a.Id, mb.Id, 1, 3, bigMessage(3, 5000)))
	t.Cleanup(func() { prepared.Release(); filling.Release() })

	done := make(chan error, 1)
	other := bigMessage(4, 5000)
	go func() {
		r, err := d.Prune(ctx, 24*time.Hour)
		if err == nil && r.Blobs != 1 {
			err = fmt.Errorf("prune removed %d blobs, want 1", r.Blobs)
		}
		if err == nil {
			_, _, err = d.Ingest(ctx, []db.IngestItem{imapItem(a.Id, mb.Id, 1, 4, other)})
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a retention pass and another ingest are held up by batches not committed")
	}
	if _, err := os.Stat(blobPath(dir, again)); err == nil {
		t.Fatal("the collector did not remove the unreferenced file (the test shows nothing)")
	}

	for _, tc := range []struct {
		name  string
		batch *db.IngestBatch
		raw   []byte
	}{{"prepared", prepared, again}, {"filling", filling, bigMessage(3, 5000)}} {
		res, _, err := tc.batch.Commit(ctx)
		if err != nil || len(res) != 1 || !res[0].Created {
			t.Fatalf("%s: commit %v %v", tc.name, res, err)
		}
		if got, _, err := d.RawMessage(ctx, res[0].MessageId); err != nil || !bytes.Equal(got, tc.raw) {
			t.Errorf("%s: %d bytes, %v", tc.name, len(got), err)
		}
	}
}

// A retention pass that runs while a body is being written leaves its
// temporary file alone, however old the file looks to the collector's
// clock (here two hours ahead of the file system's, as after a clock
// step): the write renames it into place and the batch commits. Before,
// the pass removed every temporary file older than an hour by the
// collector's clock, and the rename failed with the file gone.
func TestRetentionLeavesTempFilesBeingWritten(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	c := &clock{t: time.Now()}
	d, err := db.Open(ctx, db.Config{DataDir: dir, Secrets: dbtest.Secrets(t), BlobFileMin: 1000, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := mustCreate(t, d, imapAccount("work"))
	mb := mustMailbox(t, d, a.Id, "INBOX", 1)
	c.add(2 * time.Hour)
	// The pass runs between the write of the temporary file and its
	// rename, on the batch's worker (which holds no lock).
	var (
		pruneErr error
		tmpLeft  error
		passes   int
	)
	d.OnBlobTempWritten(func(tmp string) {
		passes++
		_, pruneErr = d.Prune(ctx, 24*time.Hour)
		_, tmpLeft = os.Stat(tmp)
	})
	raw := bigMessage(1, 5000)
	b := d.NewIngestBatch()
	b.Add(imapItem(a.Id, mb.Id, 1, 1, raw))
	res, _, err := b.Commit(ctx)
	if passes != 1 || pruneErr != nil {
		t.Fatalf("%d retention passes during the write, %v", passes, pruneErr)
	}
	if tmpLeft != nil {
		t.Errorf("the retention pass removed a temporary file being written: %v", tmpLeft)
	}
	if err != nil || len(res) != 1 || !res[0].Created {
		t.Fatalf("commit: %v %v", res, err)
	}
	if got, _, err := d.RawMessage(ctx, res[0].MessageId); err != nil || !bytes.Equal(got, raw) {
		t.Errorf("%d bytes, %v", len(got), err)
	}
}

// The retention pass finds unreferenced blobs and orphan files without
// holding off ingest, and holds the blob files' lock only to re-check and
// remove a few at a time: never for every file of the store.
func TestCollectorLocksOnlyWhatItRemoves(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	c := &clock{t: time.Now()}
	d, err := db.Open(ctx, db.Config{DataDir: dir, Secrets: dbtest.Secrets(t), BlobFileMin: 1000, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := mustCreate(t, d, imapAccount("work"))
	mb := mustMailbox(t, d, a.Id, "INBOX", 1)
	// More referenced files than the collector decides on at once, one
	// deleted message, and orphans a crash left.
	const referenced = 600
	var items []db.IngestItem
	for i := range referenced + 1 {
		items = append(items, imapItem(a.Id, mb.Id, 1, uint32(i+1), bigMessage(i, 1200)))
	}
	res := mustIngest(t, d, items...)
	if _, err := d.DeleteMessages(ctx, device, a.Id, []string{res[referenced].MessageId}); err != nil {
		t.Fatal(err)
	}
	const orphans = 3
	for i := range orphans {
		raw := bigMessage(10_000+i, 1200)
		if err := os.WriteFile(blobPath(dir, raw), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.add(2 * time.Hour) // every file and row is now older than an hour

	var decided []int
	d.OnCollectorDecided(func(n int) { decided = append(decided, n) })
	r, err := d.Prune(ctx, 24*time.Hour)
	if err != nil || r.Blobs != 1 {
		t.Fatalf("prune: %+v %v", r, err)
	}
	total := 0
	for _, n := range decided {
		total += n
	}
	if total != 1+orphans {
		t.Errorf("decided on %v under the lock (%d); want only the deleted message's blob and the %d orphans", decided, total, orphans)
	}
	if got := countFiles(t, dir); got != referenced {
		t.Errorf("%d files left, want the %d referenced", got, referenced)
	}
}

// countFiles counts the blob files of a data directory.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "blobs"), func(_ string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

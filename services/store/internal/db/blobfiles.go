package db

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// blobFiles keeps large bodies of a SQLite store as content-addressed
// files beside the database, <dir>/<first two hex digits>/<sha256>
// (decision 0014). A file is written to a temporary name, fsynced, renamed
// into place and its directory fsynced before the transaction that
// references it commits, so a committed blob row always has a durable
// file; a crash in between leaves an orphan that the collector removes.
type blobFiles struct {
	dir string
	// min is the smallest body kept as a file.
	min int
	// gc is held shared by ingest from the moment it checks that its
	// files are (still) there until its transaction has committed (not
	// while it writes them, nor while it waits on its client), and
	// exclusively by the collector while it re-checks a few files it
	// found unreferenced and removes them: a file ingest relies on is
	// never removed under it.
	gc sync.RWMutex
	// instance is in the name of every temporary file this blobFiles
	// writes (<hash>.<instance>.<random>.tmp): the collector never removes
	// one of those, however old it looks, as it may be in the middle of
	// being written; only temporary files of an earlier process (a crash)
	// are its to remove.
	instance string
	// onDecided, when set (tests), is called each time the collector
	// holds gc exclusively, with how many blobs or files it decides on.
	onDecided func(n int)
	// onTempWritten, when set (tests), is called with the temporary file
	// of a body once it is written and synced, before its rename.
	onTempWritten func(tmp string)
}

// decided reports n blobs or files decided on under gc (see onDecided).
func (b *blobFiles) decided(n int) {
	if b.onDecided != nil {
		b.onDecided(n)
	}
}

// blobFileWriters bounds the files written and fsynced at once: fsyncs in
// parallel share the file system's journal commits (on ext4 16 parallel
// fsyncs of new files cost about what one does).
const blobFileWriters = 16

// blobFileGrace is how old an unreferenced file must be before the
// collector removes it, as for blob rows.
const blobFileGrace = time.Hour

func openBlobFiles(dir string, min int) (*blobFiles, error) {
	created := false
	for i := range 256 {
		sub := filepath.Join(dir, fmt.Sprintf("%02x", i))
		if _, err := os.Stat(sub); err == nil {
			continue
		}
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return nil, fmt.Errorf("db: blob directory: %w", err)
		}
		created = true
	}
	if created {
		// The fan-out directories must survive a power loss before any
		// file in them is relied on.
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := syncDir(d); err != nil {
				return nil, err
			}
		}
	}
	var instance [8]byte
	if _, err := rand.Read(instance[:]); err != nil {
		return nil, fmt.Errorf("db: blob files: %w", err)
	}
	return &blobFiles{dir: dir, min: min, instance: hex.EncodeToString(instance[:])}, nil
}

// wants reports whether a body of n bytes is kept as a file.
func (b *blobFiles) wants(n int) bool { return b != nil && n >= b.min }

func (b *blobFiles) path(hash string) string {
	return filepath.Join(b.dir, hash[:2], hash)
}

// blobBody is a body to keep as a file.
type blobBody struct {
	hash string
	raw  []byte
}

// put makes every body durable as its file: an existing file of the right
// size is kept (it was fsynced before it got its name), a missing one is
// written. It returns when every file and directory entry is on disk. The
// caller holds gc shared until its transaction commits.
func (b *blobFiles) put(ctx context.Context, bodies []blobBody) error {
	if len(bodies) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(bodies))
	dirs := map[string]bool{}
	var todo []blobBody
	for _, body := range bodies {
		if !seen[body.hash] {
			seen[body.hash] = true
			todo = append(todo, body)
			dirs[filepath.Join(b.dir, body.hash[:2])] = true
		}
	}
	if err := parallel(ctx, todo, blobFileWriters, b.write); err != nil {
		return fmt.Errorf("db: blob files: %w", err)
	}
	// The renames (or an earlier attempt's rename of a file found here)
	// are durable once their directories are.
	if err := parallel(ctx, keys(dirs), blobFileWriters, syncDir); err != nil {
		return fmt.Errorf("db: blob files: %w", err)
	}
	return nil
}

func (b *blobFiles) write(body blobBody) error {
	final := b.path(body.hash)
	if st, err := os.Stat(final); err == nil && st.Size() == int64(len(body.raw)) {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(final), body.hash+"."+b.instance+".*.tmp")
	if err != nil {
		return fmt.Errorf("db: blob file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(body.raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && b.onTempWritten != nil {
		b.onTempWritten(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("db: blob file %s: %w", body.hash, err)
	}
	return nil
}

// read returns the body of a blob kept as a file, which must have size
// bytes: a file of another size is an error, not a short or long body.
func (b *blobFiles) read(hash string, size int64) ([]byte, error) {
	if len(hash) != 64 || strings.ContainsAny(hash, `/\.`) {
		return nil, fmt.Errorf("db: blob file: invalid hash %q", hash)
	}
	f, err := os.Open(b.path(hash))
	if err != nil {
		return nil, fmt.Errorf("db: blob file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("db: blob file: %w", err)
	}
	if st.Size() != size {
		return nil, fmt.Errorf("db: blob file %s has %d bytes, its row says %d", hash, st.Size(), size)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("db: blob file %s: %w", hash, err)
	}
	return data, nil
}

// remove deletes the files of blobs whose rows are gone; the caller holds
// gc exclusively.
func (b *blobFiles) remove(hashes []string) error {
	var errs []error
	for _, h := range hashes {
		if err := os.Remove(b.path(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("db: remove blob file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// stale lists the files older than before: temporary files left by a
// crash while writing (never one of this instance's, which may be being
// written: its age says nothing, as a write may stall, the clock may step
// forward, or the collector's clock may not be the file system's) and
// finished ones (which may have no row, if their transaction never
// committed).
func (b *blobFiles) stale(before time.Time) (tmp, done []string, err error) {
	for i := range 256 {
		sub := filepath.Join(b.dir, fmt.Sprintf("%02x", i))
		entries, err := os.ReadDir(sub)
		if err != nil {
			return nil, nil, fmt.Errorf("db: blob files: %w", err)
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil || !info.ModTime().Before(before) {
				continue
			}
			if strings.HasSuffix(e.Name(), ".tmp") {
				if !strings.Contains(e.Name(), "."+b.instance+".") {
					tmp = append(tmp, filepath.Join(sub, e.Name()))
				}
			} else if len(e.Name()) == 64 {
				done = append(done, e.Name())
			}
		}
	}
	return tmp, done, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("db: sync directory: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("db: sync directory %s: %w", dir, err)
	}
	return nil
}

// parallel calls fn for each item with at most n calls at once and returns
// their errors joined.
func parallel[T any](ctx context.Context, items []T, n int, fn func(T) error) error {
	work := make(chan T)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range min(n, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if err := fn(it); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		work <- it
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func keys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

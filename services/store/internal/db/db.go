package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/mailbus/mailbus/pkg/datadir"
	"github.com/mailbus/mailbus/pkg/secretbox"
)

// Dialect is the SQL flavour of a database.
type Dialect int

const (
	// SQLite is the embedded default.
	SQLite Dialect = iota + 1
	// Postgres is for scale-out.
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// SQLiteFileName is the SQLite database file in Config.DataDir.
const SQLiteFileName = "mailbus.db"

// Config says which database to open.
type Config struct {
	// URL is "postgres://..." for PostgreSQL; empty means SQLite in DataDir.
	URL string
	// DataDir holds the SQLite database file SQLiteFileName.
	DataDir string
	// Secrets seals and opens account secrets.
	Secrets *secretbox.Box
	// MaxMessageSize refuses larger messages; 0 means 64 MiB.
	MaxMessageSize int64
	// BlobFileMin is the size from which a SQLite store keeps a body as a
	// content-addressed file in DataDir/blobs instead of in the database
	// (decision 0014); 0 means DefaultBlobFileMin, negative keeps every
	// new body in the database (bodies already kept as files are still
	// read from them). PostgreSQL keeps every body in the database,
	// where all replicas see it.
	BlobFileMin int64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OAuthHTTP makes the requests to OAuth 2.0 token endpoints; nil means
	// a client with a 30 s timeout.
	OAuthHTTP *http.Client
	// NoMigrate opens the database without applying migrations, to read
	// its SchemaStatus or Migrate it explicitly (mailbus-store migrate); a
	// missing SQLite database is then an error, not a new one.
	NoMigrate bool
}

// DefaultBlobFileMin is the default Config.BlobFileMin: smaller bodies cost
// less in the database than a file and its fsync.
const DefaultBlobFileMin = 32 << 10

// DB is the store's database.
type DB struct {
	dialect Dialect
	// url is the PostgreSQL URL ("" on SQLite), for the connection that
	// listens for account changes.
	url string
	// w takes every write. On SQLite it has one connection, so writes are
	// serialised in the process instead of failing with SQLITE_BUSY.
	w *sql.DB
	// r serves reads; on PostgreSQL it is the same pool as w.
	r       *sql.DB
	secrets *secretbox.Box
	maxSize int64
	now     func() time.Time
	// files keeps large bodies as files (SQLite); nil keeps all in the
	// database.
	files *blobFiles
	// onCommit is called after every transaction that wrote events, with
	// the accounts they belong to.
	onCommit func(accountIDs []string)
	// leaseToken is the fetcher lease token of a WithLeaseToken view (DB
	// is copied there: keep its fields shareable).
	leaseToken uint64
	// oauthHTTP requests OAuth 2.0 access tokens.
	oauthHTTP *http.Client
}

// Open opens (creating if needed) the database and applies migrations.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if cfg.Secrets == nil {
		return nil, errors.New("db: no secrets box")
	}
	d := &DB{secrets: cfg.Secrets, maxSize: cfg.MaxMessageSize, now: cfg.Now, oauthHTTP: cfg.OAuthHTTP}
	if d.oauthHTTP == nil {
		d.oauthHTTP = defaultOAuthHTTP()
	}
	if d.maxSize <= 0 {
		d.maxSize = 64 << 20
	}
	if d.now == nil {
		d.now = time.Now
	}
	var err error
	switch {
	case strings.HasPrefix(cfg.URL, "postgres://") || strings.HasPrefix(cfg.URL, "postgresql://"):
		d.dialect = Postgres
		d.url = cfg.URL
		d.w, err = sql.Open("pgx", cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("db: open postgres: %w", err)
		}
		d.w.SetMaxOpenConns(32)
		d.w.SetMaxIdleConns(8)
		d.r = d.w
	case cfg.URL == "":
		d.dialect = SQLite
		if cfg.DataDir == "" {
			return nil, errors.New("db: neither a database URL nor a data directory")
		}
		if cfg.NoMigrate {
			// Looking at a database never makes one.
			if _, err := os.Stat(filepath.Join(cfg.DataDir, SQLiteFileName)); err != nil {
				return nil, fmt.Errorf("db: no SQLite database in %s: %w", cfg.DataDir, err)
			}
		}
		if err := datadir.Ensure(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("db: %w", err)
		}
		path := filepath.Join(cfg.DataDir, SQLiteFileName)
		// SQLite creates its files with 0644 (less the umask) but gives
		// the -wal and -shm files the mode of the database file: a
		// database file made 0600 first keeps all three private.
		if err := datadir.PrivateFile(path); err != nil {
			return nil, fmt.Errorf("db: %w", err)
		}
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := datadir.NarrowIfExists(path + suffix); err != nil {
				return nil, fmt.Errorf("db: %w", err)
			}
		}
		dsn := sqliteDSN(path)
		if d.w, err = sql.Open("sqlite", dsn+"&_txlock=immediate"); err != nil {
			return nil, fmt.Errorf("db: open sqlite: %w", err)
		}
		d.w.SetMaxOpenConns(1)
		if d.r, err = sql.Open("sqlite", dsn+"&mode=ro"); err != nil {
			return nil, fmt.Errorf("db: open sqlite: %w", err)
		}
		d.r.SetMaxOpenConns(8)
		// The blob directory is opened whatever the threshold: bodies
		// already kept as files stay readable and collectable.
		min := cfg.BlobFileMin
		switch {
		case min == 0:
			min = DefaultBlobFileMin
		case min < 0:
			min = math.MaxInt
		}
		if d.files, err = openBlobFiles(filepath.Join(cfg.DataDir, "blobs"), int(min)); err != nil {
			d.Close()
			return nil, err
		}
	default:
		return nil, fmt.Errorf("db: unsupported database URL scheme in %q (want postgres://)", redactURL(cfg.URL))
	}
	if err := d.w.PingContext(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("db: connect %s: %w", d.dialect, err)
	}
	if cfg.NoMigrate {
		return d, nil
	}
	if _, err := d.Migrate(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func sqliteDSN(path string) string {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "foreign_keys(1)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	return "file:" + path + "?" + q.Encode()
}

// redactURL drops the password from a database URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Dialect reports the SQL flavour.
func (d *DB) Dialect() Dialect { return d.dialect }

// OnCommit sets a function called after each transaction that wrote events
// (the relay's and the watchers' wake-up), with the accounts concerned. It
// must not block.
func (d *DB) OnCommit(f func(accountIDs []string)) { d.onCommit = f }

// Close closes the database.
func (d *DB) Close() error {
	var errs []error
	if d.w != nil {
		errs = append(errs, d.w.Close())
	}
	if d.r != nil && d.r != d.w {
		errs = append(errs, d.r.Close())
	}
	return errors.Join(errs...)
}

// Ping checks that the database answers. It uses the read pool, so that
// on SQLite a long write (one writer connection) does not hold it up.
func (d *DB) Ping(ctx context.Context) error {
	return d.r.PingContext(ctx)
}

// rebind turns ? placeholders into $1, $2... for PostgreSQL.
func (d *DB) rebind(q string) string {
	if d.dialect != Postgres {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// placeholders returns "?,?,...,?" with n marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}

func (d *DB) micros(t time.Time) int64 { return t.UnixMicro() }

func (d *DB) nowMicros() int64 { return d.now().UnixMicro() }

package dovecottest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts. Startup of one instance takes about 20-40 ms on a developer
// machine; the limits only matter when something is wrong.
const (
	// defaultStartTimeout bounds StartServer when ctx has no deadline.
	defaultStartTimeout = 20 * time.Second
	// termGrace is how long Close lets processes exit after SIGTERM before
	// SIGKILL, and then how long it waits for SIGKILL to take effect.
	termGrace = 5 * time.Second
	// doveadmTimeout bounds one doveadm run.
	doveadmTimeout = 30 * time.Second
	// portAttempts is how often StartServer picks new ports when another
	// process took a port between our probe and Dovecot's bind.
	portAttempts = 5
	// addUserTimeout bounds the wait for Dovecot to see a new user.
	addUserTimeout = 5 * time.Second
	// maxDirLen keeps base_dir socket paths (run/login/..., run/token-login/...)
	// below the 108-byte sun_path limit.
	maxDirLen = 64
)

// ErrNotInstalled is returned (wrapped) when the dovecot or doveadm binary
// cannot be found.
var ErrNotInstalled = errors.New("dovecottest: dovecot not installed")

// errPortInUse marks a start that failed because a port was taken.
var errPortInUse = errors.New("dovecottest: port in use")

// User is a mail account of the test server.
type User struct {
	// Name is the login name. Dovecot lowercases login names
	// (auth_username_format = %Lu), so names are stored lowercased.
	Name string
	// Password is stored in clear ({PLAIN}); it must not contain ':' or a
	// line break.
	Password string
}

// Options configures a Server. The zero value (or nil) is a server with no
// users and every default described in the package documentation.
type Options struct {
	// Users are created before Dovecot starts. More can be added at any time
	// with AddUser.
	Users []User

	// HideCapabilities removes capabilities (for example "CONDSTORE",
	// "QRESYNC", "MOVE") from the advertised IMAP CAPABILITY. Dovecot keeps
	// implementing them; only the advertisement changes. Ignored when
	// IMAPCapability is set.
	HideCapabilities []string
	// IMAPCapability, if set, is used verbatim as Dovecot's imap_capability:
	// a full list, or "+XYZ" to append to the default list.
	IMAPCapability string

	// POP3Sessions is the number of concurrent POP3 sessions allowed per user
	// and client IP (mail_max_userip_connections in protocol pop3); further
	// sessions get -ERR [IN-USE] at once. 0 means 1.
	POP3Sessions int
	// NoPOP3SessionLock turns pop3_lock_session off. With it on (the
	// default), a session beyond POP3Sessions that gets past the connection
	// limit waits up to 10 s for the maildrop lock, then gets -ERR [IN-USE].
	NoPOP3SessionLock bool

	// MailUser is the system user that owns the mail when the tests run as
	// root (Dovecot never accesses mail as root). Default "nobody". Ignored
	// when not running as root: the mail then belongs to the current user.
	MailUser string

	// LoginProcesses is the number of imap-login and pop3-login processes
	// started up front (each serves many connections); 0 means 1. Raise it
	// for benchmarks with many concurrent TLS handshakes.
	LoginProcesses int

	// Debug turns on mail_debug, auth_debug, auth_verbose and verbose_ssl.
	Debug bool

	// OAuth2, when set, turns on the SASL mechanisms XOAUTH2 and
	// OAUTHBEARER for IMAP and POP3, checked by Dovecot's oauth2 passdb
	// against a token introspection endpoint (RFC 7662). Passwords still
	// log in with PLAIN and LOGIN.
	OAuth2 *OAuth2

	// ExtraConfig is appended verbatim to dovecot.conf; a setting repeated
	// there overrides the generated one.
	ExtraConfig string
}

// OAuth2 configures Dovecot's oauth2 passdb (Dovecot 2.3: a passdb that
// the XOAUTH2 and OAUTHBEARER mechanisms ask with the bearer token).
type OAuth2 struct {
	// IntrospectionURL is the introspection endpoint, with the mail
	// server's client credentials as its user information
	// (http://ID:SECRET@host/introspect: Dovecot sends them with HTTP Basic
	// authentication). Dovecot POSTs "token=<the access token>"
	// (introspection_mode = post) and accepts the login when the answer's
	// "active" is true and its "username" is the login name. Required;
	// plain HTTP is for loopback servers run by tests.
	IntrospectionURL string
	// UsernameAttribute is the answer's field that names the user;
	// default "username" (RFC 7662).
	UsernameAttribute string
}

// Server is a running Dovecot instance. Its exported fields are read-only.
type Server struct {
	// Host is the listen address, "127.0.0.1".
	Host string
	// IMAPPort serves IMAP with STARTTLS; IMAPSPort IMAP over implicit TLS.
	IMAPPort, IMAPSPort int
	// POP3Port serves POP3 with STLS; POP3SPort POP3 over implicit TLS.
	POP3Port, POP3SPort int
	// Dir holds the configuration, log, passwd file and mail.
	Dir string
	// ConfigPath is the generated dovecot.conf.
	ConfigPath string
	// LogPath is Dovecot's log file.
	LogPath string
	// CACertPEM is the self-signed server certificate (PEM). It is its own
	// trust anchor: put it in a client's root pool.
	CACertPEM []byte

	instance   string
	id         identity
	dovecotBin string
	doveadmBin string
	ownDir     bool
	passwdPath string
	homeDir    string
	stderrPath string

	cmd    *exec.Cmd
	exited chan struct{}

	mu     sync.Mutex
	users  map[string]string // name -> password
	order  []string          // names in passwd-file order
	paths  map[string]string // user "\x00" mailbox -> maildir path
	lastTS int64             // last maildir file timestamp (µs)
	seq    uint64            // maildir file counter

	closeOnce sync.Once
	closeErr  error
}

// Available reports whether dovecot and doveadm are installed; the error
// wraps ErrNotInstalled if not.
func Available() error {
	_, _, err := binaries()
	return err
}

// Require skips the test when Dovecot is not installed, or fails it when
// running on CI (CI=true), where the pipeline installs it.
func Require(t testing.TB) {
	t.Helper()
	err := Available()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v: CI must install dovecot-imapd and dovecot-pop3d", err)
	}
	t.Skip("dovecot not installed: apt-get install dovecot-imapd dovecot-pop3d")
}

// Start starts a Dovecot instance for the test and stops it in t.Cleanup.
// It skips or fails the test as Require does when Dovecot is missing, and
// fails the test if Dovecot does not start. When the test has failed, the
// cleanup logs the end of the Dovecot log. Set DOVECOTTEST_KEEP=1 to keep
// the directory after the test.
func Start(t testing.TB, opts *Options) *Server {
	t.Helper()
	Require(t)
	s, err := StartServer(context.Background(), "", opts)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("DOVECOTTEST_KEEP") != "" {
		s.ownDir = false
		t.Logf("dovecottest: keeping %s", s.Dir)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecottest: last lines of %s:\n%s", s.LogPath, s.LogTail(40))
		}
		if err := s.Close(); err != nil {
			t.Errorf("dovecottest: %v", err)
		}
	})
	return s
}

// StartServer starts a Dovecot instance in dir and returns once all four
// listeners greet. dir "" creates a fresh directory under os.TempDir() that
// Close removes; a given dir is created if needed and kept. As root, dir
// and its parents must be searchable by the mail user (see the package
// documentation), which t.TempDir() is not. ctx bounds the startup only
// (20 s when it has no deadline); the server runs until Close.
func StartServer(ctx context.Context, dir string, opts *Options) (*Server, error) {
	if opts == nil {
		opts = &Options{}
	}
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	dovecotBin, doveadmBin, err := binaries()
	if err != nil {
		return nil, err
	}
	id, err := resolveIdentity(opts.MailUser)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Host:       "127.0.0.1",
		id:         id,
		dovecotBin: dovecotBin,
		doveadmBin: doveadmBin,
		users:      map[string]string{},
		paths:      map[string]string{},
	}
	if err := s.prepareDir(dir); err != nil {
		return nil, err
	}
	if err := s.prepareFiles(opts); err != nil {
		s.removeOwnDir()
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		err = s.startOnce(ctx, opts)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == portAttempts || ctx.Err() != nil {
			break
		}
	}
	s.removeOwnDir()
	return nil, err
}

func binaries() (dovecot, doveadm string, err error) {
	dovecot, err = findBinary("dovecot", "/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
	if err != nil {
		return "", "", err
	}
	doveadm, err = findBinary("doveadm", "/usr/bin/doveadm", "/usr/local/bin/doveadm")
	if err != nil {
		return "", "", err
	}
	if !supported {
		return "", "", fmt.Errorf("%w: this package needs a unix system", ErrNotInstalled)
	}
	return dovecot, doveadm, nil
}

// findBinary looks in PATH, then in the usual places (/usr/sbin is often not
// in an ordinary user's PATH).
func findBinary(name string, fallbacks ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, p := range fallbacks {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found in PATH or %s", ErrNotInstalled, name, strings.Join(fallbacks, ", "))
}

func (s *Server) prepareDir(dir string) error {
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", "dovecottest-")
		if err != nil {
			return fmt.Errorf("dovecottest: %w", err)
		}
		s.ownDir = true
	} else if err = os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	s.Dir = dir
	if dir, err = filepath.Abs(dir); err != nil {
		s.removeOwnDir()
		return fmt.Errorf("dovecottest: %w", err)
	}
	s.Dir = dir
	if err := s.checkDir(); err != nil {
		s.removeOwnDir()
		return err
	}
	return nil
}

func (s *Server) checkDir() error {
	if err := safePath(s.Dir); err != nil {
		return err
	}
	if len(s.Dir) > maxDirLen {
		return fmt.Errorf("dovecottest: directory %s is longer than %d bytes; unix socket paths below it would be too long", s.Dir, maxDirLen)
	}
	if !s.id.Root {
		return nil
	}
	// Mail processes (the mail user) must reach their Maildir below Dir.
	if err := os.Chmod(s.Dir, 0o711); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	return checkSearchable(s.Dir, s.id.MailUID, s.id.MailGID)
}

func (s *Server) prepareFiles(opts *Options) error {
	s.ConfigPath = filepath.Join(s.Dir, "dovecot.conf")
	s.LogPath = filepath.Join(s.Dir, "dovecot.log")
	s.stderrPath = filepath.Join(s.Dir, "dovecot.stderr")
	s.passwdPath = filepath.Join(s.Dir, "passwd")
	s.homeDir = filepath.Join(s.Dir, "home")
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	s.instance = "dovecottest-" + hex.EncodeToString(rnd[:])

	certPEM, keyPEM, err := selfSignedCert()
	if err != nil {
		return err
	}
	s.CACertPEM = certPEM
	if err := os.WriteFile(filepath.Join(s.Dir, "cert.pem"), certPEM, 0o644); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "key.pem"), keyPEM, 0o600); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	// The home root must be writable by the mail user, which creates the
	// per-user homes itself.
	if err := os.MkdirAll(s.homeDir, 0o755); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	if err := s.chown(s.homeDir); err != nil {
		return err
	}
	for _, u := range opts.Users {
		if err := s.addUserLocked(u.Name, u.Password); err != nil {
			return err
		}
	}
	if opts.OAuth2 != nil {
		conf, err := oauth2Config(opts.OAuth2)
		if err != nil {
			return err
		}
		// It holds the mail server's introspection credentials: for the
		// auth process only.
		if err := os.WriteFile(filepath.Join(s.Dir, "dovecot-oauth2.conf.ext"), conf, 0o600); err != nil {
			return fmt.Errorf("dovecottest: %w", err)
		}
	}
	return s.writePasswd()
}

// chown gives path to the mail user when running as root.
func (s *Server) chown(path string) error {
	if !s.id.Root {
		return nil
	}
	if err := os.Lchown(path, s.id.MailUID, s.id.MailGID); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	return nil
}

func (s *Server) configData(opts *Options) *configData {
	d := &configData{
		Instance:     s.instance,
		Dir:          s.Dir,
		BaseDir:      filepath.Join(s.Dir, "run"),
		StateDir:     filepath.Join(s.Dir, "state"),
		LogPath:      s.LogPath,
		CertPath:     filepath.Join(s.Dir, "cert.pem"),
		KeyPath:      filepath.Join(s.Dir, "key.pem"),
		PasswdPath:   s.passwdPath,
		HomeDir:      s.homeDir,
		ID:           s.id,
		IMAPPort:     s.IMAPPort,
		IMAPSPort:    s.IMAPSPort,
		POP3Port:     s.POP3Port,
		POP3SPort:    s.POP3SPort,
		Capability:   capabilityString(opts),
		POP3Sessions: max(opts.POP3Sessions, 1),
		POP3Lock:     !opts.NoPOP3SessionLock,
		LoginProcs:   max(opts.LoginProcesses, 1),
		Debug:        opts.Debug,
		SpecialUse:   specialUseList(),
		Extra:        strings.TrimSpace(opts.ExtraConfig),
		OAuth2:       opts.OAuth2 != nil,
		OAuth2Path:   filepath.Join(s.Dir, "dovecot-oauth2.conf.ext"),
	}
	if !s.id.Root {
		d.NonRootChroot = nonRootChroot
	}
	return d
}

// startOnce picks ports, writes the config, starts the master and waits for
// the greetings.
func (s *Server) startOnce(ctx context.Context, opts *Options) error {
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	s.IMAPPort, s.IMAPSPort, s.POP3Port, s.POP3SPort = ports[0], ports[1], ports[2], ports[3]
	conf, err := renderConfig(s.configData(opts))
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.ConfigPath, conf, 0o644); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	_ = os.Remove(s.LogPath)
	stderr, err := os.Create(s.stderrPath)
	if err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	defer stderr.Close()

	cmd := exec.Command(s.dovecotBin, "-F", "-c", s.ConfigPath)
	cmd.Dir = s.Dir
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dovecottest: start %s: %w", s.dovecotBin, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()

	if err := s.waitReady(ctx); err != nil {
		_ = s.stop()
		out := s.startupOutput()
		if strings.Contains(out, "Address already in use") {
			return fmt.Errorf("%w: %s", errPortInUse, out)
		}
		return fmt.Errorf("%w\n%s", err, out)
	}
	return nil
}

// startupOutput is what the master printed plus the end of the log.
func (s *Server) startupOutput() string {
	b, _ := os.ReadFile(s.stderrPath)
	return strings.TrimSpace(string(b) + "\n" + s.LogTail(20))
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. They are only
// probably free: StartServer retries when Dovecot cannot bind one.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dovecottest: free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady polls until every listener sends its greeting.
func (s *Server) waitReady(ctx context.Context) error {
	probes := []struct {
		port  int
		tls   bool
		greet string
	}{
		{s.IMAPPort, false, "* OK"},
		{s.IMAPSPort, true, "* OK"},
		{s.POP3Port, false, "+OK"},
		{s.POP3SPort, true, "+OK"},
	}
	for _, p := range probes {
		for {
			err := s.probe(ctx, p.port, p.tls, p.greet)
			if err == nil {
				break
			}
			select {
			case <-s.exited:
				return fmt.Errorf("dovecottest: dovecot exited during startup")
			case <-ctx.Done():
				return fmt.Errorf("dovecottest: dovecot not ready on port %d: %w (last: %v)", p.port, ctx.Err(), err)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

func (s *Server) probe(ctx context.Context, port int, useTLS bool, greet string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(s.Host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if useTLS {
		tc := tls.Client(conn, s.TLSConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, greet) {
		return fmt.Errorf("dovecottest: unexpected greeting %q on port %d", line, port)
	}
	return nil
}

// Close stops Dovecot (SIGTERM to its process group, then SIGKILL once the
// master is the only one left, or after 5 s),
// waits until no process of the instance is left and, if StartServer
// created the directory, removes it. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.stop()
		if err := s.removeOwnDir(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

func (s *Server) stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	pgid := s.cmd.Process.Pid
	// SIGTERM to the whole group stops every process at once (signalling
	// only the master makes it wait about a second for its log process).
	// The children exit within milliseconds; the master then sometimes
	// dawdles for seconds over its own shutdown, so once it is alone it
	// gets SIGKILL: there is nothing left for it to do.
	_ = killGroup(pgid, syscall.SIGTERM)
	deadline := time.Now().Add(termGrace)
	for !s.masterExited() && len(s.children(pgid)) > 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	_ = killGroup(pgid, syscall.SIGKILL)
	<-s.exited
	deadline = time.Now().Add(termGrace)
	for len(liveGroupMembers(pgid)) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("dovecottest: processes %v of group %d survive SIGKILL", liveGroupMembers(pgid), pgid)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

func (s *Server) masterExited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// children lists the live processes of the group other than the master.
func (s *Server) children(pgid int) []int {
	var pids []int
	for _, pid := range liveGroupMembers(pgid) {
		if pid != pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (s *Server) removeOwnDir() error {
	if !s.ownDir || s.Dir == "" {
		return nil
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	return nil
}

// Instance is Dovecot's instance_name for this server; every process of the
// instance shows "dovecot-<instance>/..." in its command line (the master
// shows the config path).
func (s *Server) Instance() string { return s.instance }

// Pid is the process id of the Dovecot master (also its process group id).
func (s *Server) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// IMAPAddr is host:port of the IMAP (STARTTLS) listener.
func (s *Server) IMAPAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.IMAPPort)) }

// IMAPSAddr is host:port of the IMAPS (implicit TLS) listener.
func (s *Server) IMAPSAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.IMAPSPort)) }

// POP3Addr is host:port of the POP3 (STLS) listener.
func (s *Server) POP3Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.POP3Port)) }

// POP3SAddr is host:port of the POP3S (implicit TLS) listener.
func (s *Server) POP3SAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.POP3SPort)) }

// CertPool returns a pool holding the server certificate.
func (s *Server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CACertPEM)
	return pool
}

// TLSConfig returns a new client configuration that trusts the server
// certificate, with ServerName "localhost" (the certificate also carries the
// IP SAN 127.0.0.1, so a ServerName of "127.0.0.1" verifies too).
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		RootCAs:    s.CertPool(),
		ServerName: "localhost",
		MinVersion: tls.VersionTLS12,
	}
}

// LogTail returns the last n lines of the Dovecot log.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// AddUser adds a user to the passwd-file and returns once Dovecot knows
// the user. Dovecot re-reads a changed passwd-file at most once a second,
// so this takes up to about a second.
func (s *Server) AddUser(name, password string) error {
	s.mu.Lock()
	err := s.addUserLocked(name, password)
	if err == nil {
		err = s.writePasswd()
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(addUserTimeout)
	for {
		_, err := s.Doveadm("user", normUser(name))
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNotFound) || time.Now().After(deadline) {
			return fmt.Errorf("dovecottest: user %q not visible to Dovecot: %w", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) addUserLocked(name, password string) error {
	name = normUser(name)
	if name == "" || strings.ContainsAny(name, ":/\\%$\"' \t\r\n\x00") || name == "." || name == ".." {
		return fmt.Errorf("dovecottest: invalid user name %q", name)
	}
	if strings.ContainsAny(password, ":\r\n\x00") {
		return fmt.Errorf("dovecottest: password of %q contains ':' or a line break", name)
	}
	if _, ok := s.users[name]; ok {
		return fmt.Errorf("dovecottest: user %q exists", name)
	}
	s.users[name] = password
	s.order = append(s.order, name)
	return nil
}

// writePasswd replaces the passwd-file atomically. The auth process reads
// it as Dovecot's internal user, hence mode 0644 (test passwords only).
func (s *Server) writePasswd() error {
	var b bytes.Buffer
	for _, name := range s.order {
		fmt.Fprintf(&b, "%s:{PLAIN}%s::::::\n", name, s.users[name])
	}
	tmp := s.passwdPath + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	if err := os.Rename(tmp, s.passwdPath); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	return nil
}

func normUser(name string) string { return strings.ToLower(name) }

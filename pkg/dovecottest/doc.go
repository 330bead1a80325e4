// Package dovecottest starts a private Dovecot (2.3) IMAP/POP3 server on
// loopback for interop tests and benchmarks.
//
// Each [Server] is a separate `dovecot -F` master process with its own
// generated, self-contained dovecot.conf (no /etc/dovecot includes), its own
// directory and its own free 127.0.0.1 ports, so any number of instances can
// run in parallel. Close (or the test's Cleanup when started with [Start])
// stops the whole process group and leaves no dovecot process behind.
//
// # Layout of Server.Dir
//
//	dovecot.conf     generated configuration
//	dovecot.log      everything Dovecot logs (Server.LogPath)
//	dovecot.stderr   output of the master before logging is set up
//	cert.pem key.pem self-signed ECDSA certificate for 127.0.0.1 and localhost
//	passwd           passwd-file passdb: "name:{PLAIN}password::::::"
//	run/             base_dir (sockets, master.pid)
//	state/           state_dir
//	home/<user>/Maildir  the user's mail
//
// # Protocols and ports
//
// Four listeners on 127.0.0.1: IMAP (plain, STARTTLS offered), IMAPS
// (implicit TLS), POP3 (plain, STLS offered) and POP3S. Plaintext LOGIN/USER
// is allowed without TLS (disable_plaintext_auth = no); auth mechanisms are
// PLAIN and LOGIN, and with [Options.OAuth2] also XOAUTH2 and OAUTHBEARER,
// checked by Dovecot's oauth2 passdb against a token introspection
// endpoint (RFC 7662; pkg/oauthtest serves one). Clients verify the certificate with
// [Server.TLSConfig] or [Server.CACertPEM].
//
// # Mail storage
//
// mail_location = maildir:~/Maildir:LAYOUT=fs with the hierarchy separator
// "/". INBOX is the Maildir root itself; every other mailbox is a
// subdirectory named after its mailbox name (mUTF-7 on disk), so "a/b" lives
// in Maildir/a/b. Top-level mailboxes named cur, new or tmp are therefore not
// possible. Sent, Drafts, Trash, Junk and Archive are special-use mailboxes
// (RFC 6154) with auto = subscribe: they exist and are subscribed for every
// user from the first login.
//
// [Server.Deliver] writes message files straight into the Maildir (tmp/ then
// rename to new/, or to cur/ with the maildir flag suffix when flags are
// given), which is fast enough for benchmarks that load thousands of
// messages; Dovecot picks them up on its next sync (and wakes IDLE clients
// through inotify). Everything else goes through doveadm run against this
// instance ([Server.Doveadm]), so Dovecot stays the only writer of its
// indexes.
//
// # IMAP capabilities
//
// Dovecot 2.3.19 advertises CONDSTORE, QRESYNC, MOVE, UIDPLUS, SPECIAL-USE,
// IDLE, NOTIFY, LIST-STATUS, ESEARCH, ... by default. Dovecot cannot switch
// CONDSTORE/QRESYNC off; it can only stop advertising them:
// [Options.HideCapabilities] replaces imap_capability with the default list
// minus the named capabilities (pre- and post-login). A client that uses a
// hidden extension anyway still gets it. [Options.IMAPCapability] sets
// imap_capability verbatim ("+XYZ" appends to the default list).
//
// # POP3 sessions
//
// One POP3 session per maildrop: a second concurrent session for the same
// user gets "-ERR [IN-USE] ..." right after PASS. Two settings do this:
// mail_max_userip_connections = 1 in protocol pop3 (immediate [IN-USE]; the
// limit is per user and client IP, which on loopback means per user) and
// pop3_lock_session = yes (a maildrop lock; a second session waits up to 10
// seconds, hard-coded in Dovecot, before "-ERR [IN-USE] Mailbox is locked by
// another POP3 session."). UIDLs are pop3_uidl_format = %08Xu%08Xv: UID and
// UIDVALIDITY as 16 lowercase hex digits (Dovecot's %X is lowercase).
//
// # Authentication
//
// Users live in a passwd-file ([Options.Users], [Server.AddUser]). With
// [Options.OAuth2] a second passdb (driver oauth2, mechanisms xoauth2 and
// oauthbearer) POSTs each bearer token to the introspection URL and accepts
// it when the answer is "active": true with the login name as its
// "username"; the passwd-file passdb stays first and unrestricted, because
// Dovecot's userdb lookups (doveadm) go through the passdbs without a
// mechanism and would skip one restricted to some. Dovecot
// re-reads it at most once a second, so AddUser waits (up to about a second)
// until Dovecot knows the new user. A failed login is answered after about
// 0.5 s (auth_failure_delay = 0; Dovecot 2.3 still answers failures on a
// 0.5 s timer). The auth penalty (after a failure Dovecot delays every later
// login from the same IP by 2 to 15 s, which on loopback would slow down all
// the following tests) is switched off: login_trusted_networks no longer
// does that in 2.3, so the anvil-auth-penalty socket is renamed and the auth
// process silently runs without penalties.
//
// # Running as root
//
// Dovecot never runs a mail process as uid 0 ("userdb returned 0 as uid",
// "Mail access not allowed for root"), whatever first_valid_uid says. As root
// the mail therefore belongs to an unprivileged user, by default "nobody"
// ([Options.MailUser]): mail_uid/mail_gid are its uid and gid, first_valid_uid
// and first_valid_gid are lowered to them, the Maildir tree is chowned to it,
// and Server.Dir (and every directory above it) must be searchable by it,
// which is why [Start] and StartServer with dir "" create their own 0711
// directory under os.TempDir() instead of using t.TempDir() (0700). The
// master, auth, log and config processes run as root, the internal processes
// as "dovecot" and the login processes as "dovenull" (the Debian package's
// users), as in a normal installation. As an ordinary user, every Dovecot
// process and the mail run as that user: default_internal_user and
// default_login_user are set to it and the chroots of the login services are
// switched off.
//
// # Stopping
//
// Close sends SIGTERM to the instance's process group; the children exit
// within milliseconds, and the master, which sometimes takes seconds over
// its own shutdown, gets SIGKILL once it is alone. If the test binary dies
// without Close, the kernel sends the master SIGTERM (Linux parent-death
// signal). Where PID 1 does not reap orphans (some container inits), an
// exited Dovecot child can linger as a zombie; it holds no resources but a
// pid.
//
// # Skipping
//
// [Require] skips a test when dovecot is not installed, except on CI
// (CI=true), where it fails the test.
package dovecottest

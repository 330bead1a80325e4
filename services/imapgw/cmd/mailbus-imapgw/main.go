// Command mailbus-imapgw runs the IMAP gateway: see package imapgw.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"

	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/services/imapgw/imapgw"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := pflag.NewFlagSet("mailbus-imapgw", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `mailbus-imapgw: an IMAP server in front of the mailbus store, so that any mail
client is a device. Log in with an account's name (or its upstream user
name) and a device API token of that account as the password.

Usage: mailbus-imapgw [flags]

Examples:
  mailbus-imapgw --store 127.0.0.1:7400
  # on the network: STARTTLS on 143, implicit TLS on 993
  mailbus-imapgw --store store:7400 --tls-ca ca.pem --listen :143 --tls-listen :993 \
      --tls-cert imap.pem --tls-key imap-key.pem

Flags:
`)
		fs.PrintDefaults()
	}
	cmd := envflag.NewCommand("mailbus-imapgw", fs)
	var (
		listen         = envflag.String(fs, "listen", "MAILBUS_IMAP_LISTEN", imapgw.DefaultListen, "IMAP address (STARTTLS with --tls-cert); - serves none")
		tlsListen      = envflag.String(fs, "tls-listen", "MAILBUS_IMAP_TLS_LISTEN", "", "IMAP over implicit TLS (IMAPS) address, such as :993; needs --tls-cert")
		storeAddr      = envflag.String(fs, "store", "MAILBUS_STORE", "127.0.0.1:7400", "the store's gRPC address")
		maxMessageSize = envflag.Int64(fs, "max-message-size", "MAILBUS_MAX_MESSAGE_SIZE", imapgw.DefaultMaxMessageSize, "largest APPEND in bytes: the store's --max-message-size")
		maxAppend      = envflag.Int64(fs, "max-append-bytes", "MAILBUS_IMAP_MAX_APPEND_BYTES", imapgw.DefaultMaxAppendBytes, "bytes of APPEND literals all connections may have in flight at once; more wait")
		maxConns       = envflag.Int64(fs, "max-conns-per-token", "MAILBUS_IMAP_MAX_CONNS_PER_TOKEN", imapgw.DefaultMaxConnsPerToken, "IMAP connections one token may have open")
		tlsFlags       = grpctls.AddServerFlags(fs)
		storeTLSFlags  = grpctls.AddClientFlags(fs)
	)
	log, code, ok := cmd.Parse(args)
	if !ok {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "mailbus-imapgw:", err)
		return 2
	}
	tlsServer := tlsFlags.Server()
	if tlsServer.ClientCAFile != "" {
		return fail(fmt.Errorf("--tls-client-ca: mail clients present no certificate; it is not for the IMAP gateway"))
	}
	certs, err := tlsServer.Load()
	if err != nil {
		return fail(err)
	}
	storeTLS, err := storeTLSFlags.Client(tlsServer).TLSConfigWith(certs)
	if err != nil {
		return fail(err)
	}
	// No token on the connection: every call carries the client's.
	conn, err := grpc.NewClient(*storeAddr, grpctls.Credentials(storeTLS),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(int(*maxMessageSize)+1<<20), grpc.MaxCallSendMsgSize(int(*maxMessageSize)+1<<20)))
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	g, err := imapgw.New(imapgw.Config{
		StoreConn: conn, Listen: *listen, TLSListen: *tlsListen, TLS: imapgw.ServerTLS(certs.TLSConfig()), Insecure: tlsServer.Insecure,
		MaxMessageSize: *maxMessageSize, MaxAppendBytes: *maxAppend, MaxConnsPerToken: int(*maxConns), Logger: log,
	})
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	certs.Watch(ctx, grpctls.WatchOptions{Logger: log})
	if err := g.Run(ctx); err != nil {
		log.Error("imap gateway failed", "err", err)
		return 1
	}
	return 0
}

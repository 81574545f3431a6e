// Command pop3 fetches the messages of a POP3 mailbox with tlsmail's pop3
// package and, with -delete, deletes them once all were fetched.
//
//	POP3_USER=me@gmail.com POP3_PASSWORD=app-password go run ./examples/pop3 -addr pop.gmail.com:995
//	POP3_USER=me@example.com POP3_TOKEN=ya29... go run ./examples/pop3 -addr outlook.office365.com:995 -delete
//	go run ./examples/pop3     # no -addr: against an embedded test server
//
// The password (POP3_PASSWORD) or OAuth 2.0 access token (POP3_TOKEN) is
// read from the environment, never from a flag (flags show up in ps and
// shell history), and never printed. With a password the strongest
// mechanism the server offers is used (tlsmail.PasswordAuth: SCRAM, then
// PLAIN, then USER/PASS only when no SASL mechanism is offered); with a
// token, OAUTHBEARER or XOAUTH2 (tlsmail.OAuth2Auth), as Gmail and
// Microsoft 365 require.
//
// -stls dials with STLS (port 110) instead of implicit TLS (port 995); it
// fails rather than continue without TLS. -dir saves each message as
// <uid>.eml in a directory instead of printing its first lines.
//
// Without -addr it starts pop3test, an in-process POP3 server with two
// messages, and runs against it, so it works with no account at all.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/pop3"
	"github.com/tlsmail/tlsmail/pop3/pop3test"
)

func main() {
	log.SetFlags(0)
	addr := flag.String("addr", "", "POP3 server host:port (default: an embedded test server)")
	stls := flag.Bool("stls", false, "use STLS (port 110) instead of implicit TLS (port 995)")
	del := flag.Bool("delete", false, "delete the messages after fetching all of them")
	dir := flag.String("dir", "", "save each message to this directory as <uid>.eml")
	flag.Parse()

	mode := pop3.ImplicitTLS
	if *stls {
		mode = pop3.STLS
	}
	d := &pop3.Dialer{Mode: mode}
	user, password, token := os.Getenv("POP3_USER"), os.Getenv("POP3_PASSWORD"), os.Getenv("POP3_TOKEN")
	if *addr == "" {
		srv, err := pop3test.Start(&pop3test.Config{
			Users: map[string]string{"demo@example.org": "correct horse battery staple"},
			Messages: [][]byte{
				[]byte("From: alice@example.net\r\nSubject: Hello\r\n\r\nA first message.\r\n"),
				[]byte("From: bob@example.net\r\nSubject: Dots\r\n\r\n.A line that starts with a dot arrives intact.\r\n"),
			},
		})
		if err != nil {
			log.Fatal(err)
		}
		defer srv.Close()
		*addr, d = srv.Addr(mode), srv.Dialer(mode)
		user, password, token = "demo@example.org", "correct horse battery staple", ""
		fmt.Printf("no -addr: using an embedded test server at %s\n", *addr)
	}
	if user == "" || (password == "" && token == "") {
		log.Fatal("pop3: set POP3_USER and POP3_PASSWORD or POP3_TOKEN")
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	var auth tlsmail.Auth
	if token != "" {
		auth = tlsmail.OAuth2Auth(user, tlsmail.StaticToken(token), host)
	} else {
		auth = tlsmail.PasswordAuth(user, password, host)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := run(ctx, d, *addr, auth, *del, *dir); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, d *pop3.Dialer, addr string, auth tlsmail.Auth, del bool, dir string) error {
	c, err := d.DialContext(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(ctx, auth); err != nil {
		if errors.Is(err, pop3.ErrInUse) || errors.Is(err, pop3.ErrLoginDelay) {
			return fmt.Errorf("%w (another client is reading the mailbox, or polling too often; try later)", err)
		}
		return err
	}
	cs := c.TLSConnectionState()
	fmt.Printf("logged in with %s over %s (%s)\n", c.AuthMechanism(), d.Mode, tls.VersionName(cs.Version))

	uids, err := c.Uidl(ctx)
	if err != nil {
		return err
	}
	for _, m := range uids {
		if err := fetch(ctx, c, m, dir); err != nil {
			return err
		}
	}
	if del {
		for _, m := range uids {
			if err := c.Dele(ctx, m.Number); err != nil {
				return err
			}
		}
	}
	// The deletions happen here, if the server confirms QUIT.
	switch err := c.Quit(ctx); {
	case errors.Is(err, pop3.ErrDeletionsUnknown):
		return fmt.Errorf("%w; check the mailbox before deleting anything else", err)
	case err != nil:
		return err
	}
	if del {
		fmt.Printf("deleted %d messages\n", len(uids))
	}
	return nil
}

// fetch streams one message to a file in dir, or prints its first lines.
func fetch(ctx context.Context, c *pop3.Client, m pop3.MessageInfo, dir string) error {
	r, err := c.Retr(ctx, m.Number)
	if err != nil {
		return err
	}
	defer r.Close()
	if dir != "" {
		// The UID is at most 70 printable ASCII characters (RFC 1939
		// section 7); Base keeps a "/" in it from leaving dir.
		name := filepath.Join(dir, filepath.Base(m.UID)+".eml")
		f, err := os.Create(name)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Printf("message %d (%s): %d bytes to %s\n", m.Number, m.UID, n, name)
		return nil
	}
	fmt.Printf("message %d (uid %s):\n", m.Number, m.UID)
	sc := bufio.NewScanner(r)
	for i := 0; i < 5 && sc.Scan(); i++ {
		fmt.Printf("  | %s\n", sc.Text())
	}
	return r.Close() // reads the rest and checks it arrived whole
}

package pop3test_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/pop3"
	"github.com/tlsmail/tlsmail/pop3/pop3test"
)

// A test of code that reads a mailbox: the server holds two messages; the
// client reads the first with STLS and deletes it; the server's mailbox
// and transcript show what happened.
func ExampleStart() {
	srv, err := pop3test.Start(&pop3test.Config{
		Messages: [][]byte{
			[]byte("Subject: bounce\r\n\r\nUser unknown.\r\n"),
			[]byte("Subject: hello\r\n\r\nHi.\r\n"),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	ctx := context.Background()
	c, err := srv.Dialer(pop3.STLS).DialContext(ctx, srv.Addr(pop3.STLS))
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Auth(ctx, tlsmail.PlainAuth("", "user", "pass", "127.0.0.1")); err != nil {
		log.Fatal(err)
	}
	r, err := c.Top(ctx, 1, 0)
	if err != nil {
		log.Fatal(err)
	}
	head, _ := io.ReadAll(r)
	fmt.Printf("%q\n", head)
	c.Dele(ctx, 1)
	if err := c.Quit(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("left:", len(srv.Messages()))
	for _, l := range srv.Transcript() {
		if l.Text[:4] == "AUTH" {
			l.Text = "AUTH PLAIN ..." // credentials are recorded as sent
		}
		fmt.Println(l)
	}
	// Output:
	// "Subject: bounce\r\n\r\n"
	// left: 1
	// plain: CAPA
	// plain: STLS
	// tls: CAPA
	// tls: AUTH PLAIN ...
	// tls: LIST 1
	// tls: TOP 1 0
	// tls: DELE 1
	// tls: QUIT
}

// A fault: the mailbox is locked by another session.
func ExampleFault() {
	srv, err := pop3test.Start(&pop3test.Config{
		Faults: []pop3test.Fault{{At: "AUTH", Reply: "-ERR [IN-USE] Mailbox locked", Times: 1}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	c, err := srv.Dialer(pop3.ImplicitTLS).DialContext(ctx, srv.Addr(pop3.ImplicitTLS))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	err = c.Auth(ctx, tlsmail.PasswordAuth("user", "pass", "127.0.0.1"))
	var e *pop3.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code, errors.Is(err, pop3.ErrInUse), e.Temporary())
	}
	// The fault applied once: a second try succeeds.
	fmt.Println(c.Auth(ctx, tlsmail.PasswordAuth("user", "pass", "127.0.0.1")))
	// Output:
	// IN-USE true true
	// <nil>
}

package pop3_test

import (
	"context"
	"fmt"
	"io"
	"log"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/pop3"
	"github.com/tlsmail/tlsmail/pop3/pop3test"
)

// Fetch every message, then delete them: the deletions happen only when
// Quit gets the server's +OK.
func Example() {
	srv, err := pop3test.Start(&pop3test.Config{Messages: [][]byte{
		[]byte("Subject: one\r\n\r\nFirst.\r\n"),
		[]byte("Subject: two\r\n\r\n.leading dot\r\n"),
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	ctx := context.Background()
	d := srv.Dialer(pop3.ImplicitTLS) // a Dialer that trusts the test CA
	c, err := d.DialContext(ctx, srv.Addr(pop3.ImplicitTLS))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// The same Auth value works for SMTP submission and for POP3.
	if err := c.Auth(ctx, tlsmail.PasswordAuth("user", "pass", "127.0.0.1")); err != nil {
		log.Fatal(err)
	}
	msgs, err := c.List(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		r, err := c.Retr(ctx, m.Number)
		if err != nil {
			log.Fatal(err)
		}
		body, err := io.ReadAll(r)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d: %q\n", m.Number, body)
		if err := c.Dele(ctx, m.Number); err != nil {
			log.Fatal(err)
		}
	}
	if err := c.Quit(ctx); err != nil {
		log.Fatal(err) // errors.Is(err, pop3.ErrDeletionsUnknown): check on the next session
	}
	fmt.Println("mechanism:", c.AuthMechanism(), "left:", len(srv.Messages()))
	// Output:
	// 1: "Subject: one\r\n\r\nFirst.\r\n"
	// 2: "Subject: two\r\n\r\n.leading dot\r\n"
	// mechanism: SCRAM-SHA-256-PLUS left: 0
}

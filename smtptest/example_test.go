package smtptest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/smtptest"
)

func ExampleNewServer() {
	// In a test:
	test := func(t *testing.T) {
		srv := smtptest.NewServer(t, nil) // closed when the test ends
		d := srv.Dialer(tlsmail.ImplicitTLS)
		auth := tlsmail.PlainAuth("", "user", "pass", "127.0.0.1")
		msg := []byte("Subject: welcome\r\n\r\nHello.\r\n")
		if err := d.SendMail(srv.Addr(tlsmail.ImplicitTLS), auth, "app@example.org", []string{"new@example.net"}, msg); err != nil {
			t.Fatal(err)
		}
		m, err := srv.WaitMessage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := string(m.Data); got != string(msg) {
			t.Errorf("server received %q, want %q", got, msg)
		}
	}
	_ = test
}

func ExampleStart() {
	// Outside a test (an example, a demo), Start and Close by hand.
	srv, err := smtptest.Start(&smtptest.Config{
		Users: map[string]string{"me@example.org": "app password"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	d := srv.Dialer(tlsmail.STARTTLS) // trusts the server's throwaway CA
	auth := tlsmail.PasswordAuth("me@example.org", "app password", "127.0.0.1")
	err = d.SendMail(srv.Addr(tlsmail.STARTTLS), auth, "me@example.org", []string{"you@example.net"},
		[]byte("Subject: hi\r\n\r\nHi.\r\n"))
	if err != nil {
		log.Fatal(err)
	}

	m := srv.Messages()[0]
	fmt.Println(m.From, m.To, m.MailParams)
	fmt.Println(m.TLS, tls.VersionName(m.TLSVersion), m.AuthUser, m.AuthMechanism)
	fmt.Printf("%q\n", m.Data)
	// Output:
	// me@example.org [you@example.net] SIZE=20
	// true TLS 1.3 me@example.org SCRAM-SHA-256-PLUS
	// "Subject: hi\r\n\r\nHi.\r\n"
}

func ExampleServer_WaitMessage() {
	srv, err := smtptest.Start(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	// The code under test sends in the background.
	go func() {
		d := srv.Dialer(tlsmail.ImplicitTLS)
		for _, to := range []string{"ann@example.net", "bob@example.net"} {
			d.SendMail(srv.Addr(tlsmail.ImplicitTLS), nil, "app@example.org", []string{to}, []byte("Subject: report\r\n\r\nDone.\r\n"))
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		m, err := srv.WaitMessage(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m.QueueID, m.To[0])
	}
	// Output:
	// 1 ann@example.net
	// 2 bob@example.net
}

func ExampleFault() {
	// The first RCPT gets a temporary refusal; the second attempt works.
	srv, err := smtptest.Start(&smtptest.Config{
		Faults: []smtptest.Fault{{At: "RCPT", Reply: "451 4.3.0 Try again later", Times: 1}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	d := srv.Dialer(tlsmail.ImplicitTLS)
	send := func() error {
		return d.SendMail(srv.Addr(tlsmail.ImplicitTLS), nil, "app@example.org", []string{"you@example.net"},
			[]byte("Subject: hi\r\n\r\nHi.\r\n"))
	}
	err = send()
	var e *tlsmail.Error
	if errors.As(err, &e) {
		fmt.Println(e.Command, e.Code, e.EnhancedCode, e.Temporary())
	}
	fmt.Println(send(), len(srv.Messages()))
	// Output:
	// RCPT 451 4.3.0 true
	// <nil> 1
}

func ExampleFault_drop() {
	// The connection breaks after the whole message was sent, before the
	// server's reply: the client cannot know whether it was delivered.
	srv, err := smtptest.Start(&smtptest.Config{
		Faults: []smtptest.Fault{{At: smtptest.EndOfData, Drop: true}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	d := srv.Dialer(tlsmail.ImplicitTLS)
	err = d.SendMail(srv.Addr(tlsmail.ImplicitTLS), nil, "app@example.org", []string{"you@example.net"},
		[]byte("Subject: hi\r\n\r\nHi.\r\n"))
	fmt.Println(errors.Is(err, tlsmail.ErrUnknownOutcome))
	// Output:
	// true
}

func ExampleConfig_reply() {
	// Scripted replies: refuse one sender at MAIL, and one recipient.
	srv, err := smtptest.Start(&smtptest.Config{
		Reply: func(cmd smtptest.Command) (string, bool) {
			if cmd.Verb == "MAIL" && cmd.Addr == "spammer@example.org" {
				return "550 5.7.1 Sender rejected", true
			}
			return "", false
		},
		RcptReplies: map[string]string{
			"gone@example.net": "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown",
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	d := srv.Dialer(tlsmail.ImplicitTLS)
	addr := srv.Addr(tlsmail.ImplicitTLS)
	msg := []byte("Subject: hi\r\n\r\nHi.\r\n")
	fmt.Println(d.SendMail(addr, nil, "spammer@example.org", []string{"you@example.net"}, msg))
	fmt.Println(d.SendMail(addr, nil, "app@example.org", []string{"gone@example.net"}, msg))
	fmt.Println(d.SendMail(addr, nil, "app@example.org", []string{"you@example.net"}, msg))
	// Output:
	// tlsmail: MAIL: server replied 550 5.7.1 Sender rejected
	// tlsmail: RCPT: server replied 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown
	// <nil>
}

func ExampleServer_Transcript() {
	srv, err := smtptest.Start(&smtptest.Config{Extensions: []string{"ENHANCEDSTATUSCODES"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	d := srv.Dialer(tlsmail.STARTTLS)
	err = d.SendMail(srv.Addr(tlsmail.STARTTLS), tlsmail.PlainAuth("", "user", "pass", "127.0.0.1"),
		"app@example.org", []string{"you@example.net"}, []byte("Subject: hi\r\n\r\nHi.\r\n"))
	if err != nil {
		log.Fatal(err)
	}
	srv.WaitIdle(context.Background()) // until the QUIT has arrived
	for _, l := range srv.Transcript() {
		fmt.Println(strings.Replace(l.String(), "AHVzZXIAcGFzcw==", "<credentials, as sent>", 1))
	}
	// Output:
	// plain: EHLO localhost
	// plain: STARTTLS
	// tls: EHLO localhost
	// tls: AUTH PLAIN <credentials, as sent>
	// tls: MAIL FROM:<app@example.org>
	// tls: RCPT TO:<you@example.net>
	// tls: DATA
	// tls: QUIT
}

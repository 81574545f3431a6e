package tlsmail_test

import (
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// startServer starts the embedded test server. Real code dials a real
// provider instead, e.g. "smtp.gmail.com:465".
func startServer(opts *smtptest.Options) *smtptest.Server {
	srv, err := smtptest.Start(opts)
	if err != nil {
		log.Fatal(err)
	}
	return srv
}

func ExampleSendMail() {
	srv := startServer(nil)
	defer srv.Close()

	// The same call as with net/smtp, but over implicit TLS (port 465 on
	// a real server), with the certificate verified against the system
	// roots (the test server's CA is one of them in this test binary).
	auth := tlsmail.PlainAuth("", "user", "pass", "127.0.0.1")
	msg := []byte("To: recipient@example.net\r\n" +
		"Subject: discount Gophers!\r\n" +
		"\r\n" +
		"This is the email body.\r\n")
	err := tlsmail.SendMail(srv.ImplicitAddr, auth, "sender@example.org", []string{"recipient@example.net"}, msg)
	if err != nil {
		log.Fatal(err)
	}

	m := srv.Messages()[0]
	fmt.Printf("from %s to %v, TLS %v, authenticated as %q\n", m.From, m.To, m.TLS, m.AuthUser)
	for _, line := range strings.Split(strings.TrimSuffix(string(m.Data), "\r\n"), "\r\n") {
		fmt.Println(line)
	}
	// Output:
	// from sender@example.org to [recipient@example.net], TLS true, authenticated as "user"
	// To: recipient@example.net
	// Subject: discount Gophers!
	//
	// This is the email body.
}

func ExampleDialer_starttls() {
	srv := startServer(nil)
	defer srv.Close()

	// Port 587: connect in plaintext, then STARTTLS, which is required.
	d := &tlsmail.Dialer{
		Mode:      tlsmail.STARTTLS,
		TLSConfig: srv.ClientTLSConfig(), // nil for a public server
	}
	c, err := d.Dial(srv.StartTLSAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	mode, _ := c.Mode()
	fmt.Println("secured by", mode)
	if err := c.Auth(tlsmail.LoginAuth("user", "pass", "127.0.0.1")); err != nil {
		log.Fatal(err)
	}
	if err := c.Mail("sender@example.org"); err != nil {
		log.Fatal(err)
	}
	if err := c.Rcpt("recipient@example.net"); err != nil {
		log.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprint(w, "Subject: hello\n\n.a line starting with a dot\n")
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", srv.Messages()[0].Raw)
	// Output:
	// secured by STARTTLS
	// "Subject: hello\r\n\r\n..a line starting with a dot\r\n.\r\n"
}

func ExampleDialer_fallback() {
	srv := startServer(nil)
	defer srv.Close()

	// Try implicit TLS first; if nothing listens there, or it speaks
	// plaintext SMTP, use STARTTLS on the fallback address.
	d := &tlsmail.Dialer{
		Mode:         tlsmail.ImplicitTLSOrSTARTTLS,
		TLSConfig:    srv.ClientTLSConfig(),
		FallbackAddr: srv.StartTLSAddr, // default: the same host, port 587
	}
	// The "implicit" address here is really the STARTTLS port.
	c, err := d.Dial(srv.StartTLSAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Quit()
	mode, _ := c.Mode()
	fmt.Println("secured by", mode)
	// Output:
	// secured by STARTTLS
}

func ExampleError() {
	srv := startServer(&smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
		if strings.HasPrefix(line, "RCPT") {
			s.Reply("550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown")
			return true
		}
		return false
	}})
	defer srv.Close()

	// A Dialer's methods (and SendMailContext, DialContext) return replies
	// as *Error; the net/smtp names SendMail, Dial and NewClient return
	// the *textproto.Error net/smtp would.
	var d tlsmail.Dialer
	err := d.SendMail(srv.ImplicitAddr, nil, "sender@example.org", []string{"nobody@example.net"}, []byte("Subject: hi\r\n\r\nhi\r\n"))
	var e *tlsmail.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code, e.EnhancedCode, e.Temporary())
		fmt.Println(e.Message)
	}
	// Output:
	// 550 5.1.1 false
	// <nobody@example.net>: Recipient address rejected: User unknown
}

func ExampleDialer_refusesPlaintext() {
	// A server that does not offer STARTTLS (or whose offer an attacker
	// removed): tlsmail stops after EHLO.
	srv := startServer(&smtptest.Options{StripSTARTTLS: true})
	defer srv.Close()

	d := &tlsmail.Dialer{Mode: tlsmail.STARTTLS}
	_, err := d.Dial(srv.StartTLSAddr)
	fmt.Println(errors.Is(err, tlsmail.ErrSTARTTLSUnsupported))
	srv.WaitIdle(time.Second)
	fmt.Println(srv.Transcript())
	// Output:
	// true
	// [plain: EHLO localhost]
}

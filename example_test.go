package tlsmail_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"sync"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/smtptest"
)

// startServer starts an in-process test server (package smtptest). Real
// code dials a real provider instead, e.g. "smtp.gmail.com:465"; in a
// test, smtptest.NewServer(t, cfg) also closes it when the test ends.
func startServer(cfg *smtptest.Config) *smtptest.Server {
	srv, err := smtptest.Start(cfg)
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
	// roots. (This test binary makes the test server's CA one of them,
	// through SSL_CERT_FILE and srv.CACertPEM(); in your own tests,
	// srv.Dialer(tlsmail.ImplicitTLS).SendMail trusts it directly.)
	auth := tlsmail.PlainAuth("", "user", "pass", "127.0.0.1")
	msg := []byte("To: recipient@example.net\r\n" +
		"Subject: discount Gophers!\r\n" +
		"\r\n" +
		"This is the email body.\r\n")
	err := tlsmail.SendMail(srv.Addr(tlsmail.ImplicitTLS), auth, "sender@example.org", []string{"recipient@example.net"}, msg)
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
		TLSConfig: srv.TLSConfig(), // nil for a public server
	}
	c, err := d.Dial(srv.Addr(tlsmail.STARTTLS))
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
		TLSConfig:    srv.TLSConfig(),
		FallbackAddr: srv.Addr(tlsmail.STARTTLS), // default: the same host, port 587
	}
	// The "implicit" address here is really the STARTTLS port.
	c, err := d.Dial(srv.Addr(tlsmail.STARTTLS))
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
	srv := startServer(&smtptest.Config{RcptReplies: map[string]string{
		"nobody@example.net": "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown",
	}})
	defer srv.Close()

	// A Dialer's methods (and SendMailContext, DialContext) return replies
	// as *Error; the net/smtp names SendMail, Dial and NewClient return
	// the *textproto.Error net/smtp would.
	d := srv.Dialer(tlsmail.ImplicitTLS) // for a real server: var d tlsmail.Dialer
	err := d.SendMail(srv.Addr(tlsmail.ImplicitTLS), nil, "sender@example.org", []string{"nobody@example.net"}, []byte("Subject: hi\r\n\r\nhi\r\n"))
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
	srv := startServer(&smtptest.Config{StripSTARTTLS: true})
	defer srv.Close()

	d := srv.Dialer(tlsmail.STARTTLS)
	_, err := d.Dial(srv.Addr(tlsmail.STARTTLS))
	fmt.Println(errors.Is(err, tlsmail.ErrSTARTTLSUnsupported))
	srv.WaitIdle(context.Background()) // until the server has seen the connection end
	fmt.Println(srv.Transcript())
	// Output:
	// true
	// [plain: EHLO localhost]
}

func ExampleOAuth2Auth() {
	// Gmail and Microsoft 365 take an OAuth 2.0 access token (XOAUTH2 or
	// OAUTHBEARER). The TokenSource is called for every connection, so
	// a long-running program always sends a fresh token; with
	// golang.org/x/oauth2, wrap ts.Token() as shown on TokenSource.
	srv := startServer(&smtptest.Config{
		AuthMechanisms: []string{"XOAUTH2", "OAUTHBEARER"},
		Tokens:         map[string]string{"ya29.a0-example": "me@example.org"},
	})
	defer srv.Close()

	token := tlsmail.StaticToken("ya29.a0-example")
	auth := tlsmail.OAuth2Auth("me@example.org", token, "127.0.0.1") // "smtp.gmail.com" for real
	d := srv.Dialer(tlsmail.ImplicitTLS)                             // for real: var d tlsmail.Dialer
	c, err := d.Dial(srv.Addr(tlsmail.ImplicitTLS))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(auth); err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.AuthMechanism())

	// A refused token is an *OAuthError with the server's status and
	// scope, never the token.
	c2, _ := d.Dial(srv.Addr(tlsmail.ImplicitTLS))
	defer c2.Close()
	err = c2.Auth(tlsmail.XOAuth2Auth("me@example.org", tlsmail.StaticToken("expired"), "127.0.0.1"))
	var oe *tlsmail.OAuthError
	if errors.As(err, &oe) {
		fmt.Println(oe.Status, oe.Scope, oe.Reply.Code)
	}
	// Output:
	// OAUTHBEARER
	// 401 https://mail.google.com/ 535
}

func ExamplePasswordAuth() {
	// An app password (Google Workspace, iCloud, Fastmail) or an
	// ordinary one: PasswordAuth picks the strongest mechanism the
	// server offers after TLS, here SCRAM with channel binding.
	srv := startServer(&smtptest.Config{
		AuthMechanisms: []string{"PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"},
		Users:          map[string]string{"me@example.org": "abcd efgh ijkl mnop"},
	})
	defer srv.Close()

	d := srv.Dialer(tlsmail.ImplicitTLS) // for a real server: var d tlsmail.Dialer
	c, err := d.Dial(srv.Addr(tlsmail.ImplicitTLS))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(tlsmail.PasswordAuth("me@example.org", "abcd efgh ijkl mnop", "127.0.0.1")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.AuthMechanism())
	// Output:
	// SCRAM-SHA-256-PLUS
}

func ExampleClient_Send() {
	srv := startServer(&smtptest.Config{
		Extensions: []string{"SIZE 10485760", "8BITMIME", "DSN", "ENHANCEDSTATUSCODES"},
		RcptReplies: map[string]string{
			"nobody@example.net": "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown",
		},
	})
	defer srv.Close()

	d := srv.Dialer(tlsmail.ImplicitTLS) // for a real server: var d tlsmail.Dialer
	res, err := d.Send(context.Background(), srv.Addr(tlsmail.ImplicitTLS), nil, &tlsmail.Message{
		From:            "sender@example.org",
		To:              []string{"friend@example.net", "nobody@example.net"},
		Body:            strings.NewReader("Subject: hi\r\n\r\nHello.\r\n"),
		DSN:             tlsmail.DSN{Notify: tlsmail.NotifyFailure},
		PartialDelivery: true, // deliver to those accepted
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range res.Recipients {
		if r.Err != nil {
			fmt.Println(r.Addr, "refused:", r.Err.Code, r.Err.EnhancedCode, r.Err.Temporary())
		} else {
			fmt.Println(r.Addr, "accepted")
		}
	}
	fmt.Println(res.Reply.Code, res.Reply.Message)
	// Output:
	// friend@example.net accepted
	// nobody@example.net refused: 550 5.1.1 false
	// 250 Ok: queued as 1
}

func ExampleDialer_SendBatch() {
	srv := startServer(&smtptest.Config{
		// As Postfix, Gmail and Microsoft 365 offer: the messages stream
		// without waiting for each other.
		Extensions: []string{"PIPELINING", "CHUNKING", "8BITMIME", "ENHANCEDSTATUSCODES"},
		RcptReplies: map[string]string{
			"gone@example.net": "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown",
		},
	})
	defer srv.Close()

	var msgs []*tlsmail.Message
	for _, to := range []string{"ann@example.net", "gone@example.net", "bob@example.net"} {
		msgs = append(msgs, &tlsmail.Message{
			From: "news@example.org",
			To:   []string{to},
			Body: strings.NewReader("Subject: news\r\n\r\nHello " + to + ".\r\n"),
		})
	}
	d := srv.Dialer(tlsmail.ImplicitTLS) // for a real server: var d tlsmail.Dialer
	results, err := d.SendBatch(context.Background(), srv.Addr(tlsmail.ImplicitTLS), nil, msgs)
	if err != nil {
		fmt.Println("first failure:", err)
	}
	for i, r := range results {
		if r.Err != nil {
			fmt.Println(msgs[i].To[0], "failed")
		} else {
			fmt.Println(msgs[i].To[0], r.Result.Reply.Code, r.Result.Reply.Message)
		}
	}
	fmt.Println(len(srv.Messages()), "delivered")
	// Output:
	// first failure: tlsmail: RCPT: server replied 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown
	// ann@example.net 250 Ok: queued as 1
	// gone@example.net failed
	// bob@example.net 250 Ok: queued as 2
	// 2 delivered
}

// A Pool sends for many goroutines over a few connections: messages that
// wait at the same time share one connection's pipeline, and each caller
// gets its own message's Result.
func ExamplePool() {
	srv := startServer(nil)
	defer srv.Close()

	pool := &tlsmail.Pool{
		Dialer: srv.Dialer(tlsmail.ImplicitTLS), // a real program: &tlsmail.Dialer{} or nil
		Addr:   srv.Addr(tlsmail.ImplicitTLS),   // "smtp.example.com:465"
		Auth:   tlsmail.PlainAuth("", "user", "pass", "127.0.0.1"),
	}
	defer pool.Close()

	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = pool.Send(context.Background(), &tlsmail.Message{
				From: "orders@example.org",
				To:   []string{fmt.Sprintf("customer%d@example.net", i)},
				Body: strings.NewReader(fmt.Sprintf("Subject: order %d\r\n\r\nShipped.\r\n", i)),
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		log.Fatal(err)
	}
	pool.Close() // sends QUIT on every connection
	st := pool.Stats()
	fmt.Printf("%d sent, %d messages at the server, over at most %d connections\n", st.Sent, len(srv.Messages()), tlsmail.DefaultPoolMaxConns)
	fmt.Println(srv.Connections() <= tlsmail.DefaultPoolMaxConns)
	// Output:
	// 50 sent, 50 messages at the server, over at most 3 connections
	// true
}

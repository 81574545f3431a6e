package tlsmail_test

import (
	"log/slog"
	"os"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/smtptest"
)

func ExampleDialer_trace() {
	// A server that offers PIPELINING but not CHUNKING, so that the
	// trace shows DATA.
	srv := startServer(&smtptest.Config{Extensions: []string{"PIPELINING", "SIZE 10485760", "8BITMIME"}, AuthMechanisms: []string{"PLAIN"}})
	defer srv.Close()

	// Times, durations and addresses change from run to run: this
	// example leaves them out. A real trace keeps them.
	skip := map[string]bool{"time": true, "elapsed": true, "addr": true, "server": true,
		"not_after": true, "days_left": true, "cipher": true}
	trace := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if skip[a.Key] {
				return slog.Attr{}
			}
			return a
		},
	}))
	d := srv.Dialer(tlsmail.ImplicitTLS)
	d.Trace = trace
	auth := tlsmail.PlainAuth("", "user", "pass", "127.0.0.1")
	msg := []byte("Subject: hi\r\n\r\nHello.\r\n")
	if err := d.SendMail(srv.Addr(tlsmail.ImplicitTLS), auth, "sender@example.org", []string{"friend@example.net"}, msg); err != nil {
		panic(err)
	}
	// Output:
	// level=INFO msg=connect mode=ImplicitTLS
	// level=INFO msg=tls version="TLS 1.3" resumed=false starttls=false peer="CN=mx.test"
	// level=INFO msg=reply command=greeting code=220 text="mx.test ESMTP tlsmail-test"
	// level=INFO msg=command line="EHLO localhost"
	// level=INFO msg=reply command=EHLO code=250 text="mx.test\nPIPELINING\nSIZE 10485760\n8BITMIME\nAUTH PLAIN"
	// level=INFO msg=command line="AUTH PLAIN [initial response withheld]"
	// level=INFO msg=reply command=AUTH code=235 text="2.7.0 Authentication successful"
	// level=INFO msg=command line="MAIL FROM:<sender@example.org> SIZE=23"
	// level=INFO msg=command line="RCPT TO:<friend@example.net>"
	// level=INFO msg=command line=DATA
	// level=INFO msg=reply command=MAIL code=250 text="2.1.0 Ok"
	// level=INFO msg=reply command=RCPT code=250 text="2.1.5 Ok"
	// level=INFO msg=reply command=DATA code=354 text="End data with <CR><LF>.<CR><LF>"
	// level=INFO msg=data via=DATA bytes=23
	// level=INFO msg=command line=QUIT
	// level=INFO msg=reply command="end of data" code=250 text="2.0.0 Ok: queued as 1"
	// level=INFO msg=reply command=QUIT code=221 text="2.0.0 Bye"
}

package tlsmail

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// TestSendMailImplicitTLS runs the package-level SendMail exactly as a
// net/smtp user would: system roots (the test CA is installed as one by
// TestMain), no Dialer.
func TestSendMailImplicitTLS(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	msg := "Subject: test\nFrom: a@example.com\n\n.leading dot\n.\nend"
	err := SendMail(srv.ImplicitAddr, PlainAuth("", "user", "pass", "127.0.0.1"),
		"a@example.com", []string{"b@example.com", "c@example.com"}, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	wantTranscript(t, srv,
		"tls: EHLO localhost",
		"tls: AUTH PLAIN AHVzZXIAcGFzcw==",
		"tls: MAIL FROM:<a@example.com> SIZE=60", // 7-bit: no BODY=8BITMIME; 54 bytes, 6 of them bare LF
		"tls: RCPT TO:<b@example.com>",
		"tls: RCPT TO:<c@example.com>",
		"tls: DATA",
		"tls: QUIT",
	)
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	wantData := "Subject: test\r\nFrom: a@example.com\r\n\r\n.leading dot\r\n.\r\nend\r\n"
	if string(msgs[0].Data) != wantData {
		t.Errorf("delivered %q; want %q", msgs[0].Data, wantData)
	}
	if want := "Subject: test\r\nFrom: a@example.com\r\n\r\n..leading dot\r\n..\r\nend\r\n.\r\n"; string(msgs[0].Raw) != want {
		t.Errorf("wire %q; want %q", msgs[0].Raw, want)
	}
}

func TestSendMailWithoutAuth(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	if err := SendMailContext(context.Background(), srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.com"}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m := srv.Messages(); len(m) != 1 || m[0].AuthUser != "" || string(m[0].Data) != "x\r\n" {
		t.Errorf("messages %+v", m)
	}
}

func TestSendMailRefusesPlaintextPort(t *testing.T) {
	// net/smtp.SendMail would send this message in plaintext.
	srv := smtptest.NewServer(t, &smtptest.Options{StripSTARTTLS: true, AuthBeforeTLS: true})
	err := SendMail(srv.StartTLSAddr, PlainAuth("", "user", "pass", "127.0.0.1"), "a@example.com", []string{"b@example.com"}, []byte("x"))
	if !errors.Is(err, ErrPlaintextServer) {
		t.Errorf("SendMail = %v; want ErrPlaintextServer", err)
	}
	d := testDialer(srv, STARTTLS)
	err = d.SendMail(srv.StartTLSAddr, PlainAuth("", "user", "pass", "127.0.0.1"), "a@example.com", []string{"b@example.com"}, []byte("x"))
	if !errors.Is(err, ErrSTARTTLSUnsupported) {
		t.Errorf("STARTTLS SendMail = %v; want ErrSTARTTLSUnsupported", err)
	}
	// The server saw the implicit attempt's ClientHello as garbage lines
	// and the STARTTLS attempt's EHLO; nothing else.
	for _, l := range transcript(t, srv) {
		for _, secret := range []string{"AUTH", "MAIL", "RCPT", "DATA", "AHVzZXIAcGFzcw==", "a@example.com"} {
			if strings.Contains(l, secret) {
				t.Errorf("sent in plaintext: %q", l)
			}
		}
	}
	if len(srv.Messages()) != 0 {
		t.Error("message delivered")
	}
}

func TestSendMailValidatesBeforeDialing(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	cases := []struct {
		from string
		to   []string
	}{
		{"a@example.com\r\nRSET", []string{"b@example.com"}},
		{"a@example.com", []string{"b@example.com", "c@example.com>\r\nDATA"}},
		{"a@example.com", []string{"b@example.com", ""}},
		{"a@example.com", nil},
		{"a@example.com> NOTIFY=NEVER", []string{"b@example.com"}},
	}
	for _, c := range cases {
		err := SendMail(srv.ImplicitAddr, nil, c.from, c.to, []byte("x"))
		if !errors.Is(err, ErrInvalidInput) {
			t.Errorf("SendMail(%q, %q) = %v; want ErrInvalidInput", c.from, c.to, err)
		}
	}
	if n := srv.Connections(); n != 0 {
		t.Errorf("%d connections made for invalid input", n)
	}
}

// TestSendMailStopsAtRejectedRecipient: without PIPELINING, SendMail stops
// at the first refused recipient and says goodbye. (With PIPELINING the
// whole group has gone out; see TestPipelinedPartialRefusal.)
func TestSendMailStopsAtRejectedRecipient(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Extensions: []string{"SIZE 67108864", "8BITMIME"}, Handler: func(s *smtptest.Session, line string) bool {
		if line == "RCPT TO:<bad@example.com>" {
			s.Reply("550 5.1.1 User unknown")
			return true
		}
		return false
	}})
	err := testDialer(srv, ImplicitTLS).SendMail(srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.com", "bad@example.com"}, []byte("x"))
	var e *Error
	if !errors.As(err, &e) || e.Code != 550 || e.Command != "RCPT" {
		t.Fatalf("SendMail = %v; want *Error 550 from RCPT", err)
	}
	wantTranscript(t, srv,
		"tls: EHLO localhost",
		"tls: MAIL FROM:<a@example.com> SIZE=3", // "x" and the CRLF added to it
		"tls: RCPT TO:<b@example.com>",
		"tls: RCPT TO:<bad@example.com>",
		"tls: QUIT",
	)
	if len(srv.Messages()) != 0 {
		t.Error("message delivered")
	}
}

func TestSendMailNeedsAuthWhenGiven(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{AuthMechanisms: []string{}})
	err := testDialer(srv, ImplicitTLS).SendMail(srv.ImplicitAddr, PlainAuth("", "user", "pass", "127.0.0.1"), "a@example.com", []string{"b@example.com"}, []byte("x"))
	if !errors.Is(err, ErrAuthUnsupported) {
		t.Errorf("SendMail = %v; want ErrAuthUnsupported", err)
	}
	if len(srv.Messages()) != 0 {
		t.Error("message delivered without the requested authentication")
	}
}

func TestSendMailPlainAuthWrongHost(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	err := testDialer(srv, ImplicitTLS).SendMail(srv.ImplicitAddr, PlainAuth("", "user", "pass", "smtp.example.com"), "a@example.com", []string{"b@example.com"}, []byte("x"))
	if err == nil || !strings.Contains(err.Error(), `"smtp.example.com"`) {
		t.Errorf("SendMail = %v; want an error naming the host", err)
	}
	for _, l := range transcript(t, srv) {
		if strings.HasPrefix(l, "tls: AUTH") {
			t.Errorf("credentials sent to the wrong host: %q", l)
		}
	}
}

func TestSendMailDialError(t *testing.T) {
	err := SendMail(closedAddr(t), nil, "a@example.com", []string{"b@example.com"}, []byte("x"))
	var oe *net.OpError
	if !errors.As(err, &oe) || !strings.Contains(err.Error(), "connecting to") {
		t.Errorf("SendMail = %v", err)
	}
}

// TestSendMailAsksForExtensionsOnlyWhenNeeded checks the MAIL parameters
// SendMail chooses: SIZE always (the size is known), BODY=8BITMIME only
// for 8-bit content (RFC 6152), SMTPUTF8 only for a non-ASCII address or
// header (RFC 6531).
func TestSendMailAsksForExtensionsOnlyWhenNeeded(t *testing.T) {
	tests := []struct {
		from, to, msg string
		want          string
	}{
		{"a@example.com", "b@example.com", "Subject: plain\r\n\r\nbody\r\n", "SIZE=24"},
		{"a@example.com", "b@example.com", "Subject: plain\r\n\r\nbody with ü\r\n", "SIZE=32 BODY=8BITMIME"},
		{"a@example.com", "b@example.com", "Subject: ü\r\n\r\nbody\r\n", "SIZE=21 BODY=8BITMIME SMTPUTF8"},
		{"a@example.com", "b@example.com", "Subject: x\nTo: Jörg <b@example.com>\n\nbody\n", "SIZE=47 BODY=8BITMIME SMTPUTF8"},
		{"jörg@example.com", "b@example.com", "Subject: x\r\n\r\n", "SIZE=14 SMTPUTF8"},
		{"a@example.com", "用户@example.com", "Subject: x\r\n\r\n", "SIZE=14 SMTPUTF8"},
	}
	for _, tt := range tests {
		srv := smtptest.NewServer(t, nil)
		if err := testDialer(srv, ImplicitTLS).SendMail(srv.ImplicitAddr, nil, tt.from, []string{tt.to}, []byte(tt.msg)); err != nil {
			t.Fatal(err)
		}
		if got := srv.Messages()[0].MailParams; got != tt.want {
			t.Errorf("SendMail(%q, %q, %q): MAIL parameters %q; want %q", tt.from, tt.to, tt.msg, got, tt.want)
		}
	}
}

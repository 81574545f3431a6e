package tlsmail

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// replyTo answers the first command starting with prefix with lines, or
// drops the connection when lines is nil.
func replyTo(prefix string, lines ...string) *smtptest.Options {
	return &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
		if !strings.HasPrefix(line, prefix) {
			return false
		}
		if lines == nil {
			s.Close()
		} else {
			s.Reply(lines...)
		}
		return true
	}}
}

// netsmtpClient is a Client made the net/smtp way: tls.Dial, then NewClient.
func netsmtpClient(t *testing.T, srv *smtptest.Server) *Client {
	t.Helper()
	cfg := srv.ClientTLSConfig()
	cfg.ServerName = "127.0.0.1"
	conn, err := tls.Dial("tcp", srv.ImplicitAddr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// clientOf returns a Client made the net/smtp way or by a Dialer.
func clientOf(t *testing.T, srv *smtptest.Server, netsmtp bool) *Client {
	t.Helper()
	if netsmtp {
		return netsmtpClient(t, srv)
	}
	return dialerClient(t, srv)
}

func dialerClient(t *testing.T, srv *smtptest.Server) *Client {
	t.Helper()
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestNetsmtpErrorValues checks that the net/smtp entry points return the
// very values net/smtp does, which existing code compares with == and
// type assertions, while a Dialer's Client returns *Error.
func TestNetsmtpErrorValues(t *testing.T) {
	t.Run("reply is a bare *textproto.Error", func(t *testing.T) {
		srv := smtptest.NewServer(t, replyTo("MAIL", "550-5.1.0 first", "550 5.1.0 second"))
		c := netsmtpClient(t, srv)
		err := c.Mail("a@example.com")
		tp, ok := err.(*textproto.Error)
		if !ok {
			t.Fatalf("Mail = %T %v; want *textproto.Error", err, err)
		}
		if tp.Code != 550 || tp.Msg != "5.1.0 first\n5.1.0 second" {
			t.Errorf("got %d %q; want 550 %q", tp.Code, tp.Msg, "5.1.0 first\n5.1.0 second")
		}
		// The session goes on after a 5xx, as with net/smtp.
		if err := c.Reset(); err != nil {
			t.Errorf("Reset after 550: %v", err)
		}
	})
	t.Run("closed connection is io.EOF", func(t *testing.T) {
		srv := smtptest.NewServer(t, replyTo("RCPT"))
		c := netsmtpClient(t, srv)
		if err := c.Mail("a@example.com"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("b@example.com"); err != io.EOF {
			t.Fatalf("Rcpt = %#v; want io.EOF itself", err)
		}
		// Later calls see the same value, as net/smtp's would, and send
		// nothing.
		if err := c.Noop(); err != io.EOF {
			t.Errorf("Noop after drop = %v; want io.EOF", err)
		}
		if err := c.Quit(); err != io.EOF {
			t.Errorf("Quit after drop = %v; want io.EOF", err)
		}
		wantTranscript(t, srv, "tls: EHLO localhost", "tls: MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8", "tls: RCPT TO:<b@example.com>")
	})
	t.Run("Dial", func(t *testing.T) {
		srv := smtptest.NewServer(t, replyTo("NOOP", "421 4.3.2 shutting down"))
		c, err := Dial(srv.ImplicitAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Noop()
		if tp, ok := err.(*textproto.Error); !ok || tp.Code != 421 || tp.Msg != "4.3.2 shutting down" {
			t.Fatalf("Noop = %#v; want *textproto.Error 421", err)
		}
	})
	t.Run("package SendMail", func(t *testing.T) {
		srv := smtptest.NewServer(t, replyTo("RCPT", "550 5.1.1 unknown"))
		err := SendMail(srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.com"}, []byte(testMsg))
		if tp, ok := err.(*textproto.Error); !ok || tp.Code != 550 || tp.Msg != "5.1.1 unknown" {
			t.Fatalf("SendMail = %#v; want *textproto.Error 550", err)
		}
	})
	t.Run("net error itself", func(t *testing.T) {
		srv := smtptest.NewServer(t, nil)
		c := netsmtpClient(t, srv)
		if err := c.Noop(); err != nil {
			t.Fatal(err)
		}
		c.conn.(*tls.Conn).NetConn().Close() // the local side breaks
		err := c.Noop()
		// net/smtp returns what the tls.Conn returned, a net.Error;
		// so must tlsmail, unwrapped.
		var op *net.OpError
		if _, ok := err.(net.Error); !ok || !errors.As(err, &op) || strings.HasPrefix(err.Error(), "tlsmail") {
			t.Fatalf("Noop on a closed connection = %T %v; want the connection's net.Error itself", err, err)
		}
	})
	t.Run("tlsmail conditions keep their sentinels", func(t *testing.T) {
		srv := smtptest.NewServer(t, nil)
		c := netsmtpClient(t, srv)
		if err := c.Mail("a\r\nRSET"); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Mail with CRLF = %v; want ErrInvalidInput", err)
		}
		if err := c.Auth(PlainAuth("", "user", "pass", "other.example")); err == nil || strings.Contains(err.Error(), "pass\x00") {
			t.Errorf("Auth for another host = %v; want a tlsmail error", err)
		}
	})
	t.Run("Dialer clients return *Error", func(t *testing.T) {
		srv := smtptest.NewServer(t, replyTo("MAIL", "451 4.3.0 try later"))
		c := dialerClient(t, srv)
		err := c.Mail("a@example.com")
		e, ok := err.(*Error)
		if !ok || e.Code != 451 || e.EnhancedCode != (EnhancedCode{4, 3, 0}) || e.Message != "try later" || !e.Temporary() || e.Command != "MAIL" {
			t.Fatalf("Mail = %#v; want *Error 451 4.3.0", err)
		}
		var tp *textproto.Error
		if !errors.As(err, &tp) || tp.Code != 451 || tp.Msg != "4.3.0 try later" {
			t.Errorf("errors.As to *textproto.Error = %v", tp)
		}
	})
	t.Run("Dialer drop wraps io.EOF", func(t *testing.T) {
		srv := smtptest.NewServer(t, replyTo("MAIL"))
		c := dialerClient(t, srv)
		err := c.Mail("a@example.com")
		if err == io.EOF || !errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "MAIL: server closed the connection") {
			t.Fatalf("Mail = %v; want a described error wrapping io.EOF", err)
		}
	})
}

// TestServerTextSanitised checks that escape sequences, BEL, NUL, bare CR
// and invalid UTF-8 from a reply never reach an error, in either form.
func TestServerTextSanitised(t *testing.T) {
	hostile := "550 5.7.1 \x1b[2J\x1b]0;owned\x07 a\x00b\rc \xff\xfe d\u009b1m e\u2028f"
	for _, netsmtp := range []bool{false, true} {
		srv := smtptest.NewServer(t, replyTo("MAIL", hostile))
		c := clientOf(t, srv, netsmtp)
		err := c.Mail("a@example.com")
		if err == nil {
			t.Fatal("Mail succeeded")
		}
		var texts []string
		if e, ok := err.(*Error); ok {
			texts = append(texts, e.Message, e.Error(), e.textproto().Msg)
		} else if tp, ok := err.(*textproto.Error); ok {
			texts = append(texts, tp.Msg, tp.Error())
		} else {
			t.Fatalf("Mail = %T %v", err, err)
		}
		for _, s := range texts {
			if !utf8.ValidString(s) {
				t.Errorf("invalid UTF-8 in %q", s)
			}
			for _, r := range s {
				if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == '\u2028' {
					t.Errorf("control character %U in %q", r, s)
				}
			}
			if !strings.Contains(s, "owned") || !strings.Contains(s, "\uFFFD") {
				t.Errorf("%q: want the text kept with U+FFFD in place of the controls", s)
			}
		}
	}
}

// TestServerTextCapped checks that a huge reply does not become a huge
// error, and that the error says how much was cut.
func TestServerTextCapped(t *testing.T) {
	var lines []string
	for i := 0; i < 59; i++ {
		lines = append(lines, "550-"+strings.Repeat("x", 1000))
	}
	lines = append(lines, "550 end")
	for _, netsmtp := range []bool{false, true} {
		srv := smtptest.NewServer(t, replyTo("MAIL", lines...))
		c := clientOf(t, srv, netsmtp)
		err := c.Mail("a@example.com")
		if err == nil {
			t.Fatal("Mail succeeded")
		}
		if n := len(err.Error()); n > maxErrorText+200 || n < maxErrorText {
			t.Errorf("error is %d bytes; want about %d", n, maxErrorText)
		}
		if !strings.Contains(err.Error(), "more bytes cut]") {
			t.Errorf("error %.80q... does not say it was cut", err)
		}
	}
}

// TestErrorsHaveOnePrefix checks that wrapping never repeats "tlsmail: ".
func TestErrorsHaveOnePrefix(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{STARTTLSReply: "454 4.7.0 TLS not available"})
	var errs []error
	c := plainClient(t, srv)
	errs = append(errs, c.Auth(PlainAuth("", "user", "pass", "127.0.0.1")))
	errs = append(errs, c.Mail("a@example.com"))
	errs = append(errs, c.Rcpt("a@example.com"))
	errs = append(errs, c.Verify("a@example.com"))
	_, err := c.Data()
	errs = append(errs, err)
	errs = append(errs, c.StartTLS(nil))
	errs = append(errs, c.Noop())
	c2 := dialerClient(t, smtptest.NewServer(t, nil))
	errs = append(errs, c2.Auth(PlainAuth("", "user", "pass", "elsewhere.example")))
	for i, err := range errs {
		if err == nil {
			t.Errorf("error %d is nil", i)
			continue
		}
		if n := strings.Count(err.Error(), "tlsmail:"); n != 1 {
			t.Errorf("error %d %q has %d tlsmail: prefixes; want 1", i, err, n)
		}
	}
	// The refusals name the command they refused.
	for i, verb := range []string{"AUTH", "MAIL", "RCPT", "VRFY", "DATA"} {
		if !strings.HasPrefix(errs[i].Error(), "tlsmail: "+verb+": ") {
			t.Errorf("error %q does not name %s", errs[i], verb)
		}
	}
	for _, err := range errs[1:5] {
		if !errors.Is(err, ErrPlaintextMail) {
			t.Errorf("%v is not ErrPlaintextMail", err)
		}
	}
	if !errors.Is(errs[0], ErrPlaintextAuth) {
		t.Errorf("%v is not ErrPlaintextAuth", errs[0])
	}
}

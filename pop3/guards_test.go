package pop3

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tlsmail/tlsmail"
)

// Tests that each isolate one guard: with the guard gone, the test fails.

// TestCapaLineCap: a CAPA reply of maxCapaLines short lines is accepted,
// one more is refused by the line cap, long before the byte cap of a
// listing could apply.
func TestCapaLineCap(t *testing.T) {
	capa := func(n int) string {
		var b strings.Builder
		b.WriteString("+OK\r\n")
		for i := range n {
			b.WriteString("X-CAP")
			b.WriteString(strings.Repeat("A", i%7))
			b.WriteString("\r\n")
		}
		b.WriteString(".\r\n")
		return b.String()
	}
	t.Run("at the cap", func(t *testing.T) {
		s := serve(t, true, func(p *peer) {
			p.send(greeting)
			p.expect("CAPA", capa(maxCapaLines))
			p.drain()
		})
		c, err := testDialer(ImplicitTLS).Dial(s.addr())
		if err != nil {
			t.Fatalf("%d CAPA lines refused: %v", maxCapaLines, err)
		}
		c.Close()
	})
	t.Run("over the cap", func(t *testing.T) {
		reply := capa(maxCapaLines + 1)
		if len(reply) >= maxListing/1000 {
			t.Fatalf("reply of %d bytes is not well under the byte cap", len(reply))
		}
		s := serve(t, true, func(p *peer) {
			p.send(greeting)
			p.expect("CAPA", reply)
			p.drain()
		})
		c, err := testDialer(ImplicitTLS).Dial(s.addr())
		if err == nil {
			c.Close()
			t.Fatalf("%d CAPA lines accepted", maxCapaLines+1)
		}
		if !isProtocol(err) || !strings.Contains(err.Error(), "CAPA: more than 100 lines") {
			t.Errorf("got %v, want ErrProtocol naming the CAPA line cap", err)
		}
		if got := s.lines(); !slices.Equal(got, []string{"tls: CAPA"}) {
			t.Errorf("client sent %q", got)
		}
	})
}

// TestEmptyStatusLine: an empty status line, with CRLF or a bare LF, is
// the protocol error that names it, not the catch-all for a line that is
// neither +OK nor -ERR; also where a "+ " continuation is allowed (AUTH)
// and for the greeting.
func TestEmptyStatusLine(t *testing.T) {
	check := func(t *testing.T, err error, verb string) {
		t.Helper()
		if err == nil {
			t.Fatal("an empty status line was taken for success")
		}
		want := verb + ": empty status line"
		if !isProtocol(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want ErrProtocol with %q", err, want)
		}
		if strings.Contains(err.Error(), "neither +OK nor -ERR") {
			t.Errorf("got the catch-all error: %v", err)
		}
	}
	for _, eol := range []struct{ name, s string }{{"CRLF", "\r\n"}, {"LF", "\n"}} {
		t.Run("NOOP "+eol.name, func(t *testing.T) {
			s := serve(t, true, func(p *peer) {
				p.login()
				p.expect("NOOP", eol.s)
				p.drain()
			})
			c := loggedIn(t, s)
			check(t, c.Noop(t.Context()), "NOOP")
			if err := c.Noop(t.Context()); !errors.Is(err, ErrClosed) {
				t.Errorf("after the failure: %v, want ErrClosed", err)
			}
		})
	}
	t.Run("AUTH", func(t *testing.T) {
		s := serve(t, true, func(p *peer) {
			p.send(greeting)
			p.expect("CAPA", capsTLS)
			p.expect(plainLine, "\r\n")
			p.drain()
		})
		c, err := testDialer(ImplicitTLS).Dial(s.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		check(t, c.Auth(t.Context(), testAuth), "AUTH")
	})
	t.Run("greeting", func(t *testing.T) {
		s := serve(t, true, func(p *peer) {
			p.send("\r\n")
			p.drain()
		})
		c, err := testDialer(ImplicitTLS).Dial(s.addr())
		if err == nil {
			c.Close()
		}
		check(t, err, "")
	})
}

// longPass makes PLAIN's initial response too long for the AUTH line
// (RFC 5034 section 4), so it is due as the answer to an empty challenge.
var longPass = strings.Repeat("p", 250)

func longPlain() tlsmail.Auth { return tlsmail.PlainAuth("", "user", longPass, "127.0.0.1") }

// TestLongInitialResponse: the exchange the guards below protect works:
// "AUTH PLAIN", an empty challenge, then the response.
func TestLongInitialResponse(t *testing.T) {
	resp := b64("\x00user\x00" + longPass)
	if len("AUTH PLAIN "+resp)+2 <= maxCommand {
		t.Fatal("the initial response fits the AUTH line; make longPass longer")
	}
	s := serve(t, true, func(p *peer) {
		p.send(greeting)
		p.expect("CAPA", capsTLS)
		p.expect("AUTH PLAIN", "+ \r\n")
		p.expect(resp, loginDone)
		p.expect("NOOP", "+OK\r\n")
		p.drain()
	})
	c, err := testDialer(ImplicitTLS).Dial(s.addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(t.Context(), longPlain()); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got, want := s.lines(), []string{"tls: CAPA", "tls: AUTH PLAIN", "tls: " + resp, "tls: NOOP"}; !slices.Equal(got, want) {
		t.Errorf("client sent %q, want %q", got, want)
	}
}

// TestAcceptedBeforeCredentials: a server that answers +OK to "AUTH
// PLAIN" while the initial response is still due accepted credentials it
// never saw: an error that ends the session, never an authenticated one.
func TestAcceptedBeforeCredentials(t *testing.T) {
	s := serve(t, true, func(p *peer) {
		p.send(greeting)
		p.expect("CAPA", capsTLS)
		p.expect("AUTH PLAIN", "+OK welcome, whoever you are\r\n")
		p.expect("NOOP", "+OK\r\n")
		p.drain()
	})
	c, err := testDialer(ImplicitTLS).Dial(s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Auth(t.Context(), longPlain())
	if err == nil {
		t.Fatal("Auth succeeded without sending the credentials")
	}
	if !strings.Contains(err.Error(), "server accepted before the credentials were sent") {
		t.Errorf("got %v", err)
	}
	if strings.Contains(err.Error(), longPass) {
		t.Errorf("error shows the password: %v", err)
	}
	if got := c.AuthMechanism(); got != "" {
		t.Errorf("AuthMechanism %q after the failure", got)
	}
	if err := c.Noop(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("session still open: %v", err)
	}
	if got := s.lines(); !slices.Equal(got, []string{"tls: CAPA", "tls: AUTH PLAIN"}) {
		t.Errorf("client sent %q", got)
	}
}

// TestBadChallenges: a challenge that is not base64, and a non-empty
// challenge where the initial response was due, are answered with "*"
// (RFC 5034 section 4) and an error that names them; nothing else is
// sent, the credentials least of all.
func TestBadChallenges(t *testing.T) {
	for _, tc := range []struct {
		name, mech, challenge, want string
		auth                        tlsmail.Auth
	}{
		{"not base64", "X-ECHO", "!!!notbase64", "server sent a challenge that is not base64", echoAuth{}},
		{"not base64 where the initial response was due", "PLAIN", "!!!notbase64", "server sent a challenge that is not base64", longPlain()},
		{"non-empty where the initial response was due", "PLAIN", b64("hello"), "server sent a non-empty challenge where the initial response was due", longPlain()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, true, func(p *peer) {
				p.send(greeting)
				p.expect("CAPA", "+OK\r\nSASL "+tc.mech+"\r\n.\r\n")
				p.expect("AUTH "+tc.mech, "+ "+tc.challenge+"\r\n")
				// Whatever comes next, "*" or not, is refused.
				p.expect("", "-ERR cancelled\r\n")
				p.drain()
			})
			c, err := testDialer(ImplicitTLS).Dial(s.addr())
			if err != nil {
				t.Fatal(err)
			}
			err = c.Auth(t.Context(), tc.auth)
			c.Close()
			if err == nil {
				t.Fatal("Auth succeeded")
			}
			if want := "pop3: AUTH " + tc.mech + ": " + tc.want; err.Error() != want {
				t.Errorf("got %v, want %q", err, want)
			}
			if strings.Contains(err.Error(), longPass) {
				t.Errorf("error shows the password: %v", err)
			}
			want := []string{"tls: CAPA", "tls: AUTH " + tc.mech, "tls: *"}
			if got := s.lines(); !slices.Equal(got, want) {
				t.Errorf("client sent %q, want %q", got, want)
			}
		})
	}
}

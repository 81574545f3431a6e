package pop3

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
)

// TestSTLSFailsClosed: a server whose CAPA lacks STLS, one that refuses
// STLS, and one that sends bytes after +OK are all refused, and the client
// sends nothing but CAPA and STLS in plaintext.
func TestSTLSFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script func(p *peer)
		want   error
		sent   []string
	}{
		{"stripped", func(p *peer) {
			p.send(greeting)
			p.expect("CAPA", "+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n")
			p.drain()
		}, ErrSTLSUnsupported, []string{"plain: CAPA"}},
		{"refused", func(p *peer) {
			p.send(greeting)
			p.expect("CAPA", "+OK\r\nSTLS\r\n.\r\n")
			p.expect("STLS", "-ERR not now\r\n")
			p.drain()
		}, ErrSTLSUnsupported, []string{"plain: CAPA", "plain: STLS"}},
		{"no CAPA", func(p *peer) {
			p.send(greeting)
			p.expect("CAPA", "-ERR what\r\n")
			p.drain()
		}, ErrSTLSUnsupported, []string{"plain: CAPA"}},
		{"garbage to STLS", func(p *peer) {
			p.send(greeting)
			p.expect("CAPA", "+OK\r\nSTLS\r\n.\r\n")
			p.expect("STLS", "OK go ahead\r\n")
			p.drain()
		}, ErrProtocol, []string{"plain: CAPA", "plain: STLS"}},
		{"injection after +OK", func(p *peer) {
			p.send(greeting)
			p.expect("CAPA", "+OK\r\nSTLS\r\n.\r\n")
			p.expect("STLS", "+OK begin\r\n+OK injected\r\n")
			p.drain()
		}, ErrResponseInjection, []string{"plain: CAPA", "plain: STLS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, false, tc.script)
			c, err := testDialer(STLS).Dial(s.addr())
			if err == nil {
				c.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if got := s.lines(); !slices.Equal(got, tc.sent) {
				t.Errorf("client sent %q, want exactly %q", got, tc.sent)
			}
		})
	}
}

// TestSTLSForgetsPlaintextCapabilities: what CAPA said before TLS is
// discarded and CAPA is asked again (RFC 2595 section 4): a forged
// plaintext SASL list offering PLAIN alone does not stop PasswordAuth from
// using SCRAM, which the TLS list offers. The exact transcript is checked.
func TestSTLSForgetsPlaintextCapabilities(t *testing.T) {
	s := serve(t, false, func(p *peer) {
		p.send(greeting)
		p.expect("CAPA", "+OK\r\nSTLS\r\nSASL PLAIN\r\nX-PLAINTEXT-ONLY\r\n.\r\n")
		p.expect("STLS", "+OK begin\r\n")
		p.handshake()
		p.expect("CAPA", "+OK\r\nSASL SCRAM-SHA-256 PLAIN\r\n.\r\n")
		p.expect("", "-ERR [AUTH] no\r\n")
		p.drain()
	})
	c, err := testDialer(STLS).Dial(s.addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Capabilities()["X-PLAINTEXT-ONLY"]; ok {
		t.Error("a capability from before TLS survived the upgrade")
	}
	err = c.Auth(t.Context(), tlsmail.PasswordAuth("user", "pass", "127.0.0.1"))
	if !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Auth: %v", err)
	}
	c.Close()
	got := s.lines()
	want := []string{"plain: CAPA", "plain: STLS", "tls: CAPA"}
	if len(got) != 4 || !slices.Equal(got[:3], want) || !strings.HasPrefix(got[3], "tls: AUTH SCRAM-SHA-256 ") {
		t.Errorf("transcript %q", got)
	}
}

// TestImplicitTLSAtPlaintextPort: a plaintext greeting where TLS was
// expected fails at once and names port 110 and Mode STLS.
func TestImplicitTLSAtPlaintextPort(t *testing.T) {
	s := serve(t, false, func(p *peer) {
		p.send("+OK Dovecot ready.\r\n")
		p.drain()
	})
	start := time.Now()
	_, err := testDialer(ImplicitTLS).Dial(s.addr())
	if !errors.Is(err, ErrPlaintextServer) || !strings.Contains(err.Error(), "110") || !strings.Contains(err.Error(), "Mode STLS") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestSTLSAtImplicitPort: a server that waits for a ClientHello gives no
// greeting; the error names port 995 and Mode ImplicitTLS.
func TestSTLSAtImplicitPort(t *testing.T) {
	s := serve(t, false, func(p *peer) { p.drain() })
	d := testDialer(STLS)
	d.GreetingTimeout = 20 * time.Millisecond
	_, err := d.Dial(s.addr())
	if !errors.Is(err, ErrNoGreeting) || !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "995") {
		t.Fatalf("got %v", err)
	}
}

// TestSTLSAtPort995FailsFast: STLS dialed at port 995, where a server
// waits silently for a ClientHello, gives up after implicitTLSWait, not
// the configured greeting timeout, and names the port.
func TestSTLSAtPort995FailsFast(t *testing.T) {
	s := serve(t, false, func(p *peer) { p.drain() })
	d := testDialer(STLS)
	d.GreetingTimeout = time.Minute
	d.NetDialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, s.addr())
	}
	start := time.Now()
	_, err := d.Dial("pop.example.com:995")
	if !errors.Is(err, ErrNoGreeting) || !strings.Contains(err.Error(), "port 995 is the implicit-TLS port") {
		t.Fatalf("got %v", err)
	}
	if el := time.Since(start); el < implicitTLSWait || el > implicitTLSWait+20*time.Second {
		t.Errorf("gave up after %v; want about %v", el, implicitTLSWait)
	}
	if got := stlsGreetingWait("pop.example.com:110", time.Minute); got != time.Minute {
		t.Errorf("port 110 wait %v; want the configured minute", got)
	}
	if got := stlsGreetingWait("pop.example.com:995", time.Second); got != time.Second {
		t.Errorf("port 995 with a 1 s timeout waits %v; want 1 s", got)
	}
}

// TestStatusLines: empty, garbage and oversized status lines are protocol
// errors, never success; the session is then closed.
func TestStatusLines(t *testing.T) {
	for _, tc := range []struct{ name, reply string }{
		{"empty", "\r\n"},
		{"garbage", "OK\r\n"},
		{"plus only", "+\r\n"},
		{"+OKAY", "+OKAY\r\n"},
		{"lowercase", "+ok\r\n"},
		{"oversized", "+OK " + strings.Repeat("x", 600) + "\r\n"},
		{"eof", ""},
		{"no line end", "+OK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, true, func(p *peer) {
				p.login()
				p.expect("NOOP", tc.reply)
			})
			c := loggedIn(t, s)
			err := c.Noop(t.Context())
			if err == nil {
				t.Fatal("NOOP succeeded")
			}
			if tc.reply != "" && tc.reply != "+OK" && !isProtocol(err) {
				t.Errorf("got %v, want ErrProtocol", err)
			}
			if err := c.Noop(t.Context()); !errors.Is(err, ErrClosed) {
				t.Errorf("after the failure: %v, want ErrClosed", err)
			}
		})
	}
}

// TestMalformedListings: STAT, LIST and UIDL replies that do not parse
// are protocol errors, never a panic or a made-up value.
func TestMalformedListings(t *testing.T) {
	for _, tc := range []struct {
		name, cmd, reply string
		run              func(c *Client) error
	}{
		{"STAT bare", "STAT", "+OK\r\n", stat},
		{"STAT one number", "STAT", "+OK 1\r\n", stat},
		{"STAT letters", "STAT", "+OK a b\r\n", stat},
		{"STAT negative", "STAT", "+OK -1 20\r\n", stat},
		{"STAT suffix", "STAT", "+OK 1 20x\r\n", stat},
		{"STAT huge", "STAT", "+OK 99999999999999999999 1\r\n", stat},
		{"STAT two spaces", "STAT", "+OK 1  2\r\n", stat},
		{"LIST short line", "LIST", "+OK\r\n1\r\n.\r\n", list},
		{"LIST zero", "LIST", "+OK\r\n0 10\r\n.\r\n", list},
		{"LIST repeated", "LIST", "+OK\r\n1 10\r\n1 10\r\n.\r\n", list},
		{"LIST empty line", "LIST", "+OK\r\n\r\n.\r\n", list},
		{"LIST no terminator", "LIST", "+OK\r\n1 10\r\n", list},
		{"LIST bare LF terminator", "LIST", "+OK\r\n1 10\r\n.\n", list},
		{"LIST one wrong number", "LIST 1", "+OK 2 10\r\n", func(c *Client) error { _, err := c.ListOne(context.Background(), 1); return err }},
		{"UIDL short", "UIDL", "+OK\r\n1\r\n.\r\n", uidl},
		{"UIDL control", "UIDL", "+OK\r\n1 a\x01b\r\n.\r\n", uidl},
		{"UIDL long", "UIDL", "+OK\r\n1 " + strings.Repeat("u", 71) + "\r\n.\r\n", uidl},
		{"UIDL space", "UIDL", "+OK\r\n1 a b\r\n.\r\n", uidl},
		{"UIDL one empty", "UIDL 1", "+OK 1\r\n", func(c *Client) error { _, err := c.UidlOne(context.Background(), 1); return err }},
		{"LIST oversized line", "LIST", "+OK\r\n1 " + strings.Repeat("1", 600) + "\r\n.\r\n", list},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, true, func(p *peer) {
				p.login()
				p.expect(tc.cmd, tc.reply)
				if strings.HasSuffix(tc.reply, ".\r\n") || !strings.HasSuffix(tc.reply, "\r\n") {
					p.drain()
				}
			})
			c := loggedIn(t, s)
			if err := tc.run(c); !isProtocol(err) {
				t.Errorf("got %v, want ErrProtocol", err)
			}
		})
	}
}

func stat(c *Client) error { _, _, err := c.Stat(context.Background()); return err }
func list(c *Client) error { _, err := c.List(context.Background()); return err }
func uidl(c *Client) error { _, err := c.Uidl(context.Background()); return err }

// TestEndlessResponses: a multi-line response that never ends stops at the
// bound, whether the bound is LIST's size (RETR), the line cap (CAPA) or
// the listing cap (LIST).
func TestEndlessResponses(t *testing.T) {
	// endless writes lines until the client goes away.
	endless := func(p *peer, line string, _ int) {
		b := []byte(strings.Repeat(line, 1+(64<<10)/len(line)))
		for {
			if _, err := p.conn.Write(b); err != nil {
				return
			}
		}
	}
	t.Run("RETR", func(t *testing.T) {
		s := serve(t, true, func(p *peer) {
			p.login()
			p.expect("LIST 1", "+OK 1 100\r\n")
			p.expect("RETR 1", "+OK\r\n")
			endless(p, "x\r\n", 1<<20)
		})
		c := loggedIn(t, s)
		r, err := c.Retr(t.Context(), 1)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, r)
		if !isProtocol(err) || n > 100 {
			t.Errorf("read %d bytes, then %v", n, err)
		}
	})
	t.Run("CAPA", func(t *testing.T) {
		s := serve(t, true, func(p *peer) {
			p.send(greeting)
			p.expect("CAPA", "+OK\r\n")
			endless(p, "X\r\n", 1<<20)
		})
		_, err := testDialer(ImplicitTLS).Dial(s.addr())
		if !isProtocol(err) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("LIST", func(t *testing.T) {
		s := serve(t, true, func(p *peer) {
			p.login()
			p.expect("LIST", "+OK\r\n")
			endless(p, "1 "+strings.Repeat("1", 500)+"\r\n", maxListing+1<<20)
		})
		c := loggedIn(t, s)
		if _, err := c.List(t.Context()); !isProtocol(err) {
			t.Errorf("got %v", err)
		}
	})
}

// TestRetrBounds: more content than LIST announced, a line over
// MaxLineLength, a missing terminator and a bare-LF terminator are errors;
// content of exactly the announced size is not.
func TestRetrBounds(t *testing.T) {
	long := strings.Repeat("y", MaxLineLength) + "\r\n"
	for _, tc := range []struct {
		name, size, body string
		ok               bool
	}{
		{"fewer than announced", "6", "abc\r\n.\r\n", true},
		{"exact with stuffing", "8", "..abc\r\n\r\n.\r\n", true},
		{"one more", "4", "abc\r\n.\r\n", false},
		{"exactly", "5", "abc\r\n.\r\n", true},
		{"long line", "999999", long + ".\r\n", false},
		{"no terminator", "100", "abc\r\n", false},
		{"bare LF terminator", "100", "abc\r\n.\nmore\r\n.\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, true, func(p *peer) {
				p.login()
				p.expect("LIST 1", "+OK 1 "+tc.size+"\r\n")
				p.expect("RETR 1", "+OK\r\n"+tc.body)
				if strings.HasSuffix(tc.body, ".\r\n") {
					p.drain()
				}
			})
			c := loggedIn(t, s)
			r, err := c.Retr(t.Context(), 1)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(r)
			if tc.ok != (err == nil) {
				t.Fatalf("got %v", err)
			}
			if !tc.ok && !isProtocol(err) {
				t.Errorf("got %v, want ErrProtocol", err)
			}
		})
	}
}

// TestDotUnstuffing: the stream is the content exactly, for every kind of
// line that begins with a dot, with bare LFs and binary bytes inside.
func TestDotUnstuffing(t *testing.T) {
	for _, tc := range []struct{ wire, want string }{
		{".\r\n", ""},
		{"..\r\n.\r\n", ".\r\n"},
		{"...\r\n.\r\n", "..\r\n"},
		{"..x\r\n.\r\n", ".x\r\n"},
		{".x\r\n.\r\n", "x\r\n"}, // RFC 1939 section 3: the first dot goes
		{"a\r\n..\r\n\r\n.\r\n", "a\r\n.\r\n\r\n"},
		{"a\nb\r\n.\r\n", "a\nb\r\n"},
		{"\x00\xff\r\n.\r\n", "\x00\xff\r\n"},
		{". \r\n.\r\n", " \r\n"},
	} {
		d := &dotReader{r: bufioReader(tc.wire), maxLine: 100, limit: 100, what: "test"}
		got, err := io.ReadAll(d)
		if err != nil || string(got) != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.wire, got, err, tc.want)
		}
	}
}

// TestArgumentsInjection: CR, LF or NUL in any argument is refused before
// anything is sent, so "bob\r\nDELE 1" never deletes message 1.
func TestArgumentsInjection(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(c *Client) error
	}{
		{"USER", func(c *Client) error {
			return c.Auth(context.Background(), tlsmail.PasswordAuth("bob\r\nDELE 1", "pw", "127.0.0.1"))
		}},
		{"PASS", func(c *Client) error {
			return c.Auth(context.Background(), tlsmail.PasswordAuth("bob", "pw\r\nDELE 1", "127.0.0.1"))
		}},
		{"PASS NUL", func(c *Client) error {
			return c.Auth(context.Background(), tlsmail.PasswordAuth("bob", "pw\x00", "127.0.0.1"))
		}},
		{"APOP", func(c *Client) error { return c.APOP(context.Background(), "bob\nDELE 1", "pw") }},
		{"APOP space", func(c *Client) error { return c.APOP(context.Background(), "bob DELE", "pw") }},
		{"mechanism", func(c *Client) error { return c.Auth(context.Background(), badMech{}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, true, func(p *peer) {
				p.send(greeting)
				p.expect("CAPA", "+OK\r\nUSER\r\nSASL X\r\n.\r\n")
				p.drain()
			})
			c, err := testDialer(ImplicitTLS).Dial(s.addr())
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.run(c); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("got %v, want ErrInvalidInput", err)
			}
			c.Close()
			if got := s.lines(); !slices.Equal(got, []string{"tls: CAPA"}) {
				t.Errorf("client sent %q", got)
			}
		})
	}
}

// badMech is a foreign Auth whose mechanism name would inject a command.
type badMech struct{}

func (badMech) Start(*tlsmail.ServerInfo) (string, []byte, error) { return "X\r\nDELE 1", nil, nil }
func (badMech) Next([]byte, bool) ([]byte, error)                 { return nil, nil }

// TestResponseCodes: every response code of RFC 2449 and RFC 3206 is
// recognised, hierarchically, and exposed.
func TestResponseCodes(t *testing.T) {
	for _, tc := range []struct {
		reply string
		code  string
		is    error
		temp  bool
	}{
		{"-ERR [IN-USE] locked", "IN-USE", ErrInUse, true},
		{"-ERR [LOGIN-DELAY] wait", "LOGIN-DELAY", ErrLoginDelay, true},
		{"-ERR [SYS/TEMP] later", "SYS/TEMP", ErrSysTemp, true},
		{"-ERR [SYS/TEMP/QUOTA] later", "SYS/TEMP/QUOTA", ErrSysTemp, true},
		{"-ERR [SYS/PERM] broken", "SYS/PERM", ErrSysPerm, false},
		{"-ERR [AUTH] bad password", "AUTH", ErrAuthFailed, false},
		{"-ERR [auth] bad password", "auth", ErrAuthFailed, false},
		{"-ERR no code", "", nil, false},
		{"-ERR [not a code] x", "", nil, false},
		{"-ERR", "", nil, false},
	} {
		s := serve(t, true, func(p *peer) {
			p.send(greeting)
			p.expect("CAPA", capsTLS)
			p.expect(plainLine, tc.reply+"\r\n")
			p.drain()
		})
		c, err := testDialer(ImplicitTLS).Dial(s.addr())
		if err != nil {
			t.Fatal(err)
		}
		err = c.Auth(t.Context(), testAuth)
		c.Close()
		var e *Error
		if !errors.As(err, &e) || e.ResponseCode() != tc.code || e.Temporary() != tc.temp {
			t.Errorf("%q: got %#v", tc.reply, err)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%q: not %v", tc.reply, tc.is)
		}
		if tc.is != ErrAuthFailed && errors.Is(err, ErrAuthFailed) {
			t.Errorf("%q matches ErrAuthFailed", tc.reply)
		}
	}
}

// TestServerQuotingCredentials: a server that quotes the password or the
// AUTH line back puts neither into the error or the trace.
func TestServerQuotingCredentials(t *testing.T) {
	s := serve(t, true, func(p *peer) {
		p.send(greeting)
		p.expect("CAPA", capsTLS)
		p.expect(plainLine, "-ERR [AUTH] bad: "+b64("\x00user\x00"+userPass)+" / "+userPass+"\r\n")
		p.drain()
	})
	var trace bytes.Buffer
	d := testDialer(ImplicitTLS)
	d.Trace = slogTo(&trace)
	c, err := d.Dial(s.addr())
	if err != nil {
		t.Fatal(err)
	}
	err = c.Auth(t.Context(), testAuth)
	c.Close()
	if err == nil {
		t.Fatal("Auth succeeded")
	}
	for _, out := range []string{err.Error(), trace.String()} {
		if strings.Contains(out, userPass) || strings.Contains(out, b64("\x00user\x00"+userPass)) || strings.Contains(out, "AHVzZXIAcGFzcw") {
			t.Errorf("credentials shown: %s", out)
		}
	}
	if !strings.Contains(trace.String(), "[initial response withheld]") {
		t.Errorf("trace: %s", trace.String())
	}
}

// TestMessageBusy: a command while a message is being read is refused
// without anything sent; closing the reader drains and frees the session.
func TestMessageBusy(t *testing.T) {
	s := serve(t, true, func(p *peer) {
		p.login()
		p.expect("LIST 1", "+OK 1 10\r\n")
		p.expect("RETR 1", "+OK\r\n12345678\r\n.\r\n")
		p.expect("NOOP", "+OK\r\n")
		p.drain()
	})
	c := loggedIn(t, s)
	r, err := c.Retr(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(t.Context()); !errors.Is(err, ErrBusy) {
		t.Errorf("NOOP during RETR: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Noop(t.Context()); err != nil {
		t.Errorf("NOOP after Close: %v", err)
	}
}

// TestSCRAMServerUnverified: a server that accepts SCRAM without proving
// it knows the password ends the session.
func TestSCRAMServerUnverified(t *testing.T) {
	s := serve(t, true, func(p *peer) {
		p.send(greeting)
		p.expect("CAPA", "+OK\r\nSASL SCRAM-SHA-256\r\n.\r\n")
		p.expect("", "+OK welcome\r\n")
		p.drain()
	})
	c, err := testDialer(ImplicitTLS).Dial(s.addr())
	if err != nil {
		t.Fatal(err)
	}
	err = c.Auth(t.Context(), tlsmail.ScramSHA256Auth("user", "pass"))
	if err == nil {
		t.Fatal("Auth succeeded")
	}
	if err := c.Noop(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("session still open: %v", err)
	}
}

// TestTLSMinimum: the ClientHello offers nothing below TLS 1.2, even when
// the caller's config allows TLS 1.0.
func TestTLSMinimum(t *testing.T) {
	leaf, roots := testCert()
	versions := make(chan []uint16, 1)
	addr, _ := tlsListen(t, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		versions <- h.SupportedVersions
		return &tls.Config{Certificates: []tls.Certificate{leaf}}, nil
	}})
	d := &Dialer{TLSConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10}, GreetingTimeout: time.Second}
	d.Dial(addr)
	for _, v := range <-versions {
		if v < tls.VersionTLS12 {
			t.Errorf("ClientHello offers %s", tls.VersionName(v))
		}
	}
}

// TestEndlessChallenges: a server that never stops challenging is cut off
// after maxAuthChallenges rounds, with "*".
func TestEndlessChallenges(t *testing.T) {
	s := serve(t, true, func(p *peer) {
		p.send(greeting)
		p.expect("CAPA", "+OK\r\nSASL X-ECHO\r\n.\r\n")
		for {
			l, ok := p.read()
			if !ok {
				return
			}
			if l == "*" {
				p.send("-ERR cancelled\r\n")
				continue
			}
			p.send("+ " + b64("again") + "\r\n")
		}
	})
	c, err := testDialer(ImplicitTLS).Dial(s.addr())
	if err != nil {
		t.Fatal(err)
	}
	err = c.Auth(t.Context(), echoAuth{})
	c.Close()
	if err == nil || !strings.Contains(err.Error(), "challenges") {
		t.Fatalf("got %v", err)
	}
	got := s.lines()
	if n := len(got); n != maxAuthChallenges+3 || got[n-1] != "tls: *" {
		t.Errorf("%d lines, last %q", n, got[len(got)-1])
	}
}

// echoAuth is a foreign mechanism that answers every challenge.
type echoAuth struct{}

func (echoAuth) Start(*tlsmail.ServerInfo) (string, []byte, error) { return "X-ECHO", nil, nil }
func (echoAuth) Next(b []byte, _ bool) ([]byte, error)             { return b, nil }

// TestRetrCancelStalled: cancelling the context interrupts a read blocked
// in the middle of a message at once, not when CommandTimeout expires.
func TestRetrCancelStalled(t *testing.T) {
	s := serve(t, true, func(p *peer) {
		p.login()
		p.expect("LIST 1", "+OK 1 100\r\n")
		p.expect("RETR 1", "+OK\r\npartial\r\n")
		p.drain()
	})
	c := loggedIn(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	r, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 9)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err = r.Read(buf)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v (the CommandTimeout, not the cancellation)", d)
	}
}

// TestSessionTranscript: a whole session, byte for byte as the client
// sent it, and the trace it leaves: sizes, never content or credentials.
func TestSessionTranscript(t *testing.T) {
	s := serve(t, true, func(p *peer) {
		p.login()
		p.expect("STAT", "+OK 1 12\r\n")
		p.expect("UIDL", "+OK\r\n1 abc\r\n.\r\n")
		p.expect("LIST 1", "+OK 1 12\r\n")
		p.expect("RETR 1", "+OK 12 octets\r\n..secret\r\n\r\n.\r\n")
		p.expect("DELE 1", "+OK\r\n")
		p.expect("QUIT", "+OK bye\r\n")
	})
	var trace bytes.Buffer
	d := testDialer(ImplicitTLS)
	d.Trace = slogTo(&trace)
	c, err := d.Dial(s.addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := c.Auth(ctx, testAuth); err != nil {
		t.Fatal(err)
	}
	if n, size, err := c.Stat(ctx); n != 1 || size != 12 || err != nil {
		t.Fatalf("STAT %d %d %v", n, size, err)
	}
	if u, err := c.Uidl(ctx); err != nil || len(u) != 1 || u[0].UID != "abc" {
		t.Fatalf("UIDL %v %v", u, err)
	}
	r, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != ".secret\r\n\r\n" {
		t.Fatalf("RETR %q %v", b, err)
	}
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"tls: CAPA", "tls: " + plainLine, "tls: STAT", "tls: UIDL", "tls: LIST 1", "tls: RETR 1", "tls: DELE 1", "tls: QUIT"}
	if got := s.lines(); !slices.Equal(got, want) {
		t.Errorf("client sent\n%q\nwant\n%q", got, want)
	}
	tr := trace.String()
	for _, want := range []string{"msg=connect", "msg=tls", "line=\"AUTH PLAIN [initial response withheld]\"", "command=RETR bytes=11", "command=UIDL bytes=7 lines=1"} {
		if !strings.Contains(tr, want) {
			t.Errorf("trace lacks %s:\n%s", want, tr)
		}
	}
	if strings.Contains(tr, "secret") || strings.Contains(tr, "AHVzZXIAcGFzcw") {
		t.Errorf("trace shows content or credentials:\n%s", tr)
	}
}

package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/pop3"
)

// The full loop of issue #16: send with tlsmail over SMTP to Postfix,
// fetch the same message from Dovecot's POP3 (start.sh section 9b) over
// implicit TLS and STLS, with PLAIN, SCRAM and the OAuth mechanisms,
// compare it byte for byte, delete it, and check the mailbox is empty.

// pop3Env is what start.sh section 9b wrote to the env file.
type pop3Env struct {
	ImplicitAddr string // TLSMAIL_POP3S_ADDR
	STLSAddr     string // TLSMAIL_POP3_STLS_ADDR (127.0.0.2)
	User         string // TLSMAIL_POP3_USER
	Password     string // TLSMAIL_POP3_PASSWORD
}

func needPOP3(t *testing.T) (*server, pop3Env) {
	t.Helper()
	s := needServer(t)
	env := s.env
	p := pop3Env{env["TLSMAIL_POP3S_ADDR"], env["TLSMAIL_POP3_STLS_ADDR"], env["TLSMAIL_POP3_USER"], env["TLSMAIL_POP3_PASSWORD"]}
	if p.ImplicitAddr == "" || p.STLSAddr == "" || p.User == "" {
		t.Fatal("the env file has no TLSMAIL_POP3S_ADDR, TLSMAIL_POP3_STLS_ADDR or TLSMAIL_POP3_USER: the server was started by an older start.sh; restart it")
	}
	return s, p
}

// fromLoopback1 dials from 127.0.0.1, so that Dovecot, listening on
// 127.0.0.2 for STLS, does not take the connection for a local, secure one.
func fromLoopback1(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	return d.DialContext(ctx, network, addr)
}

func (p pop3Env) addr(mode pop3.Mode) string {
	if mode == pop3.STLS {
		return p.STLSAddr
	}
	return p.ImplicitAddr
}

// dialer returns a pop3.Dialer for mode. The certificate names
// s.ServerName and 127.0.0.1 but not 127.0.0.2, so ServerName is set; the
// CA is the system root through SSL_CERT_FILE (TestMain).
func (p pop3Env) dialer(s *server, mode pop3.Mode) *pop3.Dialer {
	return &pop3.Dialer{
		Mode:           mode,
		TLSConfig:      &tls.Config{ServerName: s.ServerName},
		NetDialContext: fromLoopback1,
		CommandTimeout: 30 * time.Second,
	}
}

// TestPOP3PlaintextLoginRefused: the STLS listener really refuses to log
// in before TLS, so the fail-closed tests below are meaningful.
func TestPOP3PlaintextLoginRefused(t *testing.T) {
	_, p := needPOP3(t)
	conn, err := fromLoopback1(testContext(t, 10*time.Second), "tcp", p.STLSAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	line := func() string {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	if g := line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	io.WriteString(conn, "CAPA\r\n")
	var caps []string
	for l := line(); l != "."; l = line() {
		caps = append(caps, l)
	}
	if !strings.Contains(strings.Join(caps, "\n"), "\nSTLS") {
		t.Errorf("CAPA before TLS lacks STLS: %q", caps)
	}
	io.WriteString(conn, "USER "+p.User+"\r\n")
	if l := line(); !strings.HasPrefix(l, "-ERR") {
		t.Fatalf("USER before TLS: %q, want -ERR (is Dovecot treating the connection as secure?)", l)
	}
	io.WriteString(conn, "QUIT\r\n")
}

// TestPOP3RoundTrip sends a message, fetches it over each mode with each
// kind of mechanism, compares it, deletes it, and checks the mailbox.
func TestPOP3RoundTrip(t *testing.T) {
	s, p := needPOP3(t)
	tok := newToken("pop3-")
	in := s.serveIntrospection(t, map[string]string{tok: p.User})
	emptyMailbox(t, s, p)
	for _, mode := range []pop3.Mode{pop3.ImplicitTLS, pop3.STLS} {
		h := host(t, p.addr(mode))
		for _, tc := range []struct {
			name, want string
			auth       tlsmail.Auth
			token      bool
		}{
			{"PLAIN", "PLAIN", tlsmail.PlainAuth("", p.User, p.Password, h), false},
			// Dovecot 2.3 offers no -PLUS variant.
			{"PasswordAuth", "SCRAM-SHA-256", tlsmail.PasswordAuth(p.User, p.Password, h), false},
			{"SCRAM-SHA-1", "SCRAM-SHA-1", tlsmail.ScramSHA1Auth(p.User, p.Password), false},
			{"XOAUTH2", "XOAUTH2", tlsmail.XOAuth2Auth(p.User, tlsmail.StaticToken(tok), h), true},
			{"OAUTHBEARER", "OAUTHBEARER", tlsmail.OAuthBearerAuth(p.User, tlsmail.StaticToken(tok), h), true},
		} {
			t.Run(mode.String()+"/"+tc.name, func(t *testing.T) {
				// Dot-stuffing both ways: SMTP stuffs, Postfix stores the
				// lines as they are, Dovecot's POP3 stuffs again, pop3
				// unstuffs.
				id, msg := newMessage(t, s, []string{p.User}, "POP3 "+tc.name+" over "+mode.String(),
					"First line.", ".", "..", "...three", ".leading dot", "", "Last line.")
				ctx := testContext(t, time.Minute)
				if err := (&tlsmail.Dialer{}).SendMailContext(ctx, s.ImplicitAddr, s.plain(t, s.ImplicitAddr), s.User, []string{p.User}, msg); err != nil {
					t.Fatalf("SendMail: %v", err)
				}
				s.waitMessage(t, p.User, id)

				c, err := p.dialer(s, mode).DialContext(ctx, p.addr(mode))
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				if err := c.Auth(ctx, tc.auth); err != nil {
					t.Fatalf("Auth: %v", err)
				}
				if got := c.AuthMechanism(); got != tc.want {
					t.Errorf("AuthMechanism() = %q, want %s", got, tc.want)
				}
				if tc.token {
					in.check(t, tok)
				}
				list, err := c.List(ctx)
				if err != nil || len(list) != 1 {
					t.Fatalf("LIST: %+v, %v; want the one message", list, err)
				}
				if _, err := c.UidlOne(ctx, 1); err != nil {
					t.Errorf("UIDL 1: %v", err)
				}
				r, err := c.Retr(ctx, 1)
				if err != nil {
					t.Fatalf("RETR: %v", err)
				}
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatalf("RETR: %v", err)
				}
				if int64(len(got)) != list[0].Size {
					t.Errorf("RETR gave %d bytes, LIST said %d", len(got), list[0].Size)
				}
				checkFetched(t, s, p.User, got, msg)
				if err := c.Dele(ctx, 1); err != nil {
					t.Fatalf("DELE: %v", err)
				}
				if err := c.Quit(ctx); err != nil {
					t.Fatalf("QUIT: %v", err)
				}
				if n := mailboxCount(t, s, p); n != 0 {
					t.Errorf("%d messages left after DELE and QUIT", n)
				}
			})
		}
	}
}

// checkFetched compares a message fetched over POP3 (CRLF line ends) with
// the one sent, after the trace headers Postfix prepended, byte for byte.
func checkFetched(t *testing.T, s *server, rcpt string, got, sent []byte) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(got, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("fetched message has a bare LF")
	}
	lf := bytes.ReplaceAll(got, []byte("\r\n"), []byte("\n"))
	_, rest := s.storedMessage(t, lf, s.User, rcpt, false)
	skip := bytes.Count(lf[:len(lf)-len(rest)], []byte("\n"))
	body := got
	for range skip {
		_, body, _ = bytes.Cut(body, []byte("\r\n"))
	}
	if !bytes.Equal(body, sent) {
		t.Errorf("fetched message differs from the one sent: %s", firstDifference(body, sent))
	}
}

// mailboxCount logs in with PLAIN over implicit TLS and returns STAT's
// count, and checks the Maildir agrees.
func mailboxCount(t *testing.T, s *server, p pop3Env) int {
	t.Helper()
	ctx := testContext(t, time.Minute)
	c, err := p.dialer(s, pop3.ImplicitTLS).DialContext(ctx, p.ImplicitAddr)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if err := c.Auth(ctx, tlsmail.PlainAuth("", p.User, p.Password, host(t, p.ImplicitAddr))); err != nil {
		t.Fatalf("Auth: %v", err)
	}
	n, _, err := c.Stat(ctx)
	if err != nil {
		t.Fatalf("STAT: %v", err)
	}
	c.Quit(ctx)
	if files := s.counts(t)[strings.SplitN(p.User, "@", 2)[0]]; files != n {
		t.Errorf("STAT says %d messages, the Maildir holds %d", n, files)
	}
	return n
}

// emptyMailbox deletes whatever an earlier, interrupted run left.
func emptyMailbox(t *testing.T, s *server, p pop3Env) {
	t.Helper()
	ctx := testContext(t, time.Minute)
	c, err := p.dialer(s, pop3.ImplicitTLS).DialContext(ctx, p.ImplicitAddr)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if err := c.Auth(ctx, tlsmail.PlainAuth("", p.User, p.Password, host(t, p.ImplicitAddr))); err != nil {
		t.Fatalf("Auth: %v", err)
	}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		c.Dele(ctx, m.Number)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestPOP3Refusals: the port mix-ups fail fast and say which port, and
// Dovecot's refusal of a wrong password carries the [AUTH] code (RFC
// 3206) without the password.
func TestPOP3Refusals(t *testing.T) {
	s, p := needPOP3(t)
	ctx := testContext(t, time.Minute)
	_, err := p.dialer(s, pop3.ImplicitTLS).DialContext(ctx, p.STLSAddr)
	if !errors.Is(err, pop3.ErrPlaintextServer) {
		t.Errorf("implicit TLS at the STLS port: %v", err)
	}
	d := p.dialer(s, pop3.STLS)
	d.GreetingTimeout = time.Second
	_, err = d.DialContext(ctx, p.ImplicitAddr)
	if !errors.Is(err, pop3.ErrNoGreeting) {
		t.Errorf("STLS at the implicit-TLS port: %v", err)
	}
	c, err := p.dialer(s, pop3.STLS).DialContext(ctx, p.STLSAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const wrong = "wrong-password-1234"
	err = c.Auth(ctx, tlsmail.PasswordAuth(p.User, wrong, host(t, p.STLSAddr)))
	if !errors.Is(err, pop3.ErrAuthFailed) || strings.Contains(err.Error(), wrong) {
		t.Errorf("wrong password: %v", err)
	}
}

package pop3test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"

	"github.com/tlsmail/tlsmail/internal/smtptest"
	"github.com/tlsmail/tlsmail/pop3"
)

func TestStartRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Faults: []Fault{{At: "HELO", Drop: true}}},
		{Faults: []Fault{{At: "RETR"}}},
		{Faults: []Fault{{At: "RETR", Drop: true, Reply: "-ERR"}}},
		{SASL: []string{"GSSAPI"}},
	} {
		if s, err := Start(&cfg); err == nil {
			s.Close()
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
}

// rawSession dials addr and returns a line reader and writer.
type rawSession struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (r *rawSession) line() string {
	r.t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatal(err)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (r *rawSession) cmd(c string) string {
	r.conn.Write([]byte(c + "\r\n"))
	return r.line()
}

// TestPlaintextRefused: before TLS the STLS listener refuses everything
// but CAPA, STLS and QUIT, offers no SASL, and records what it got.
func TestPlaintextRefused(t *testing.T) {
	srv := NewServer(t, nil)
	conn, err := net.Dial("tcp", srv.Addr(pop3.STLS))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := &rawSession{t, conn, bufio.NewReader(conn)}
	if g := r.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatal(g)
	}
	r.cmd("CAPA")
	var caps []string
	for l := r.line(); l != "."; l = r.line() {
		caps = append(caps, l)
	}
	if c := strings.Join(caps, ","); !strings.Contains(c, "STLS") || strings.Contains(c, "SASL") {
		t.Errorf("plaintext CAPA %q", caps)
	}
	if l := r.cmd("USER user"); !strings.HasPrefix(l, "-ERR") {
		t.Errorf("USER in plaintext: %q", l)
	}
	if l := r.cmd("STLS"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("STLS: %q", l)
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: srv.RootCAs(), ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r = &rawSession{t, tc, bufio.NewReader(tc)}
	if l := r.cmd("USER user"); l != "+OK" {
		t.Errorf("USER under TLS: %q", l)
	}
	if l := r.cmd("PASS pass"); !strings.HasPrefix(l, "+OK") {
		t.Errorf("PASS: %q", l)
	}
	r.cmd("QUIT")
	want := "plain: CAPA|plain: USER user|plain: STLS|tls: USER user|tls: PASS pass|tls: QUIT"
	var got []string
	for _, l := range srv.Transcript() {
		got = append(got, l.String())
	}
	if strings.Join(got, "|") != want {
		t.Errorf("transcript %q", got)
	}
}

// TestScramDowngradeRefused: a client that says it could bind ("y") on a
// connection where -PLUS was offered is refused (RFC 5802 section 6).
func TestScramDowngradeRefused(t *testing.T) {
	srv := NewServer(t, nil)
	conn, err := tls.Dial("tcp", srv.Addr(pop3.ImplicitTLS), &tls.Config{RootCAs: srv.RootCAs()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := &rawSession{t, conn, bufio.NewReader(conn)}
	r.line()
	if l := r.cmd("AUTH SCRAM-SHA-256 eSwsbj11c2VyLHI9bm9uY2U="); !strings.Contains(l, "server-does-support-channel-binding") {
		t.Errorf("got %q", l)
	}
}

// TestCertificate: the certificate is the shared test CA's, as smtptest's.
func TestCertificate(t *testing.T) {
	srv := NewServer(t, nil)
	pem, err := smtptest.CACertPEM()
	if err != nil || string(pem) != string(srv.CACertPEM()) {
		t.Errorf("CA differs from smtptest's: %v", err)
	}
}

// TestFaultsAtLoginSteps: faults at the steps of USER/PASS, APOP and STLS
// reach the client as the errors they stand for.
func TestFaultsAtLoginSteps(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		fault Fault
		mode  pop3.Mode
		run   func(c *pop3.Client) error
		want  error
	}{
		{Fault{At: "USER", Reply: "-ERR [SYS/TEMP] later"}, pop3.ImplicitTLS, func(c *pop3.Client) error {
			return c.Auth(ctx, tlsmail.PasswordAuth("user", "pass", "127.0.0.1"))
		}, pop3.ErrSysTemp},
		{Fault{At: "PASS", Reply: "-ERR [LOGIN-DELAY] wait"}, pop3.ImplicitTLS, func(c *pop3.Client) error {
			return c.Auth(ctx, tlsmail.PasswordAuth("user", "pass", "127.0.0.1"))
		}, pop3.ErrLoginDelay},
		{Fault{At: "APOP", Reply: "-ERR [AUTH] no"}, pop3.STLS, func(c *pop3.Client) error {
			return c.APOP(ctx, "user", "pass")
		}, pop3.ErrAuthFailed},
		{Fault{At: "PASS", Drop: true}, pop3.ImplicitTLS, func(c *pop3.Client) error {
			return c.Auth(ctx, tlsmail.PasswordAuth("user", "pass", "127.0.0.1"))
		}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.fault.At, func(t *testing.T) {
			srv := NewServer(t, &Config{SASL: []string{}, Faults: []Fault{tc.fault}})
			c, err := srv.Dialer(tc.mode).Dial(srv.Addr(tc.mode))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := tc.run(c); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	// STLS refused and STLS followed by injected bytes.
	srv := NewServer(t, &Config{Faults: []Fault{{At: "STLS", Reply: "-ERR [SYS/TEMP] no TLS now", Times: 1}, {At: "STLS", Reply: "+OK go\r\n+OK injected"}}})
	if _, err := srv.Dialer(pop3.STLS).Dial(srv.Addr(pop3.STLS)); !errors.Is(err, pop3.ErrSTLSUnsupported) || !errors.Is(err, pop3.ErrSysTemp) {
		t.Errorf("refused STLS: %v", err)
	}
	if _, err := srv.Dialer(pop3.STLS).Dial(srv.Addr(pop3.STLS)); !errors.Is(err, pop3.ErrResponseInjection) {
		t.Errorf("injected STLS: %v", err)
	}
}

// TestCloseLeavesNothing: Close ends every session, a stalled one
// included, and leaves no goroutine behind.
func TestCloseLeavesNothing(t *testing.T) {
	base := runtime.NumGoroutine()
	srv, err := Start(&Config{Faults: []Fault{{At: "NOOP", Delay: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := srv.Dialer(pop3.ImplicitTLS).Dial(srv.Addr(pop3.ImplicitTLS))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(t.Context(), tlsmail.PasswordAuth("user", "pass", "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { done <- c.Noop(context.Background()) }()
	for !slices.ContainsFunc(srv.Transcript(), func(l Line) bool { return l.Text == "NOOP" }) {
		time.Sleep(time.Millisecond)
	}
	srv.Close()
	if err := <-done; err == nil {
		t.Error("NOOP succeeded on a closed server")
	}
	c.Close()
	smtptest.CheckGoroutines(t, base)
}

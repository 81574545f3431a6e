package tlsmail

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// TestMain makes the embedded server's throwaway CA a system root, so that
// the package-level SendMail and Dial, which use the system roots, can be
// tested as they are. Go reads SSL_CERT_FILE once, on first use, so this
// must happen before any test runs.
//
// With TLSMAIL_BENCH_SINK=1 the binary is instead the benchmarks' sink
// subprocess (see runBenchSink).
func TestMain(m *testing.M) {
	if os.Getenv(benchSinkEnv) == "1" {
		os.Exit(runBenchSink())
	}
	srv, err := smtptest.Start(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	f, err := os.CreateTemp("", "tlsmail-ca-*.pem")
	if err == nil {
		_, err = f.Write(srv.CACertPEM())
		f.Close()
	}
	srv.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("SSL_CERT_FILE", f.Name())
	code := m.Run()
	os.Remove(f.Name())
	os.Exit(code)
}

// testDialer returns a Dialer that trusts srv and gives up quickly.
func testDialer(srv *smtptest.Server, mode Mode) *Dialer {
	return &Dialer{
		Mode:            mode,
		TLSConfig:       srv.ClientTLSConfig(),
		GreetingTimeout: 2 * time.Second,
		CommandTimeout:  5 * time.Second,
		DataTimeout:     5 * time.Second,
	}
}

// transcript waits for the server to finish with every connection and
// returns what it received.
func transcript(t *testing.T, srv *smtptest.Server) []string {
	t.Helper()
	if err := srv.WaitIdle(5 * time.Second); err != nil {
		t.Fatalf("server not idle: %v", err)
	}
	return srv.Transcript()
}

func wantTranscript(t *testing.T, srv *smtptest.Server, want ...string) {
	t.Helper()
	got := transcript(t, srv)
	if !slices.Equal(got, want) {
		t.Errorf("server received:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// plainConn connects to srv's STARTTLS port without securing it.
func plainClient(t *testing.T, srv *smtptest.Server) *Client {
	t.Helper()
	conn, err := net.Dial("tcp", srv.StartTLSAddr)
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

func sendOne(t *testing.T, c *Client, from string, to []string, msg string) {
	t.Helper()
	if err := c.Mail(from); err != nil {
		t.Fatalf("Mail: %v", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			t.Fatalf("Rcpt: %v", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("Data: %v", err)
	}
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close data: %v", err)
	}
}

const testMsg = "From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n"

func TestSTARTTLSSessionTranscript(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	c, err := testDialer(srv, STARTTLS).Dial(srv.StartTLSAddr)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := c.Mode(); !ok || m != STARTTLS {
		t.Errorf("Mode() = %v, %v; want STARTTLS, true", m, ok)
	}
	if err := c.Auth(PlainAuth("", "user", "pass", "127.0.0.1")); err != nil {
		t.Fatalf("Auth: %v", err)
	}
	sendOne(t, c, "a@example.com", []string{"b@example.net", "c@example.org"}, testMsg)
	if err := c.Quit(); err != nil {
		t.Fatalf("Quit: %v", err)
	}
	wantTranscript(t, srv,
		"plain: EHLO localhost",
		"plain: STARTTLS",
		"tls: EHLO localhost",
		"tls: AUTH PLAIN AHVzZXIAcGFzcw==",
		"tls: MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8",
		"tls: RCPT TO:<b@example.net>",
		"tls: RCPT TO:<c@example.org>",
		"tls: DATA",
		"tls: QUIT",
	)
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if string(m.Data) != testMsg || string(m.Raw) != testMsg+".\r\n" || !m.TLS || m.AuthUser != "user" ||
		m.From != "a@example.com" || !slices.Equal(m.To, []string{"b@example.net", "c@example.org"}) {
		t.Errorf("server got %+v", m)
	}
}

func TestImplicitTLSSessionTranscript(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := c.Mode(); !ok || m != ImplicitTLS {
		t.Errorf("Mode() = %v, %v; want ImplicitTLS, true", m, ok)
	}
	st, ok := c.TLSConnectionState()
	if !ok || !st.HandshakeComplete || st.Version < tls.VersionTLS12 {
		t.Errorf("TLSConnectionState = %v, %v", st.Version, ok)
	}
	if err := c.Hello("client.example"); err != nil {
		t.Errorf("Hello after Dial: %v; want nil (Dial sends no EHLO)", err)
	}
	if err := c.Hello("again.example"); err == nil {
		t.Error("second Hello succeeded; want error")
	}
	if ok, size := c.Extension("size"); !ok || size != "67108864" {
		t.Errorf(`Extension("size") = %v, %q`, ok, size)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS advertised on a TLS session")
	}
	if err := c.Noop(); err != nil {
		t.Error(err)
	}
	if err := c.Reset(); err != nil {
		t.Error(err)
	}
	sendOne(t, c, "", []string{"b@example.net"}, "x")
	c.Quit()
	wantTranscript(t, srv,
		"tls: EHLO client.example",
		"tls: NOOP",
		"tls: RSET",
		"tls: MAIL FROM:<> BODY=8BITMIME SMTPUTF8",
		"tls: RCPT TO:<b@example.net>",
		"tls: DATA",
		"tls: QUIT",
	)
	if got := string(srv.Messages()[0].Raw); got != "x\r\n.\r\n" {
		t.Errorf("raw data %q; want a final CRLF added", got)
	}
}

func TestNewClientWithTLSConnAndHello(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	conn, err := tls.Dial("tcp", srv.ImplicitAddr, srv.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(CRAMMD5Auth("user", "pass")); err != nil {
		t.Fatalf("CRAM-MD5: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	got := transcript(t, srv)
	if len(got) != 4 || got[0] != "tls: EHLO client.example" || got[1] != "tls: AUTH CRAM-MD5" || got[3] != "tls: QUIT" {
		t.Errorf("transcript %q", got)
	}
}

// netsmtpLogin is a LOGIN mechanism as people write it for net/smtp: it
// must work with tlsmail unchanged.
type netsmtpLogin struct{ user, pass string }

func (a netsmtpLogin) Start(*smtp.ServerInfo) (string, []byte, error) { return "LOGIN", nil, nil }
func (a netsmtpLogin) Next(from []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch string(from) {
	case "Username:":
		return []byte(a.user), nil
	case "Password:":
		return []byte(a.pass), nil
	}
	return nil, errors.New("unknown prompt")
}

func TestAuthMechanisms(t *testing.T) {
	tests := []struct {
		name string
		auth Auth
		want []string // lines after EHLO
	}{
		{"PlainAuth", PlainAuth("", "user", "pass", "127.0.0.1"), []string{"tls: AUTH PLAIN AHVzZXIAcGFzcw=="}},
		{"PlainAuth identity", PlainAuth("user", "user", "pass", "127.0.0.1"), []string{"tls: AUTH PLAIN dXNlcgB1c2VyAHBhc3M="}},
		{"LoginAuth", LoginAuth("user", "pass", "127.0.0.1"), []string{"tls: AUTH LOGIN", "tls: dXNlcg==", "tls: cGFzcw=="}},
		{"net/smtp PlainAuth", smtp.PlainAuth("", "user", "pass", "127.0.0.1"), []string{"tls: AUTH PLAIN AHVzZXIAcGFzcw=="}},
		{"net/smtp-style LOGIN", netsmtpLogin{"user", "pass"}, []string{"tls: AUTH LOGIN", "tls: dXNlcg==", "tls: cGFzcw=="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, nil)
			c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Auth(tt.auth); err != nil {
				t.Fatalf("Auth: %v", err)
			}
			c.Quit()
			want := append([]string{"tls: EHLO localhost"}, tt.want...)
			wantTranscript(t, srv, append(want, "tls: QUIT")...)
		})
	}
}

func TestAuthFailureIsReplyErrorWithoutCancel(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Auth(PlainAuth("", "user", "wrong", "127.0.0.1"))
	var e *Error
	if !errors.As(err, &e) || e.Code != 535 || e.EnhancedCode != (EnhancedCode{5, 7, 8}) || e.Command != "AUTH" || e.Temporary() {
		t.Fatalf("Auth error = %#v; want *Error 535 5.7.8", err)
	}
	if strings.Contains(err.Error(), "wrong") || strings.Contains(err.Error(), "AHVzZXIAd3Jvbmc=") {
		t.Errorf("error %q contains the credentials", err)
	}
	// The session goes on after a failed AUTH; no "*" was sent.
	if err := c.Auth(LoginAuth("user", "pass", "127.0.0.1")); err != nil {
		t.Fatalf("second Auth: %v", err)
	}
	c.Quit()
	wantTranscript(t, srv,
		"tls: EHLO localhost",
		"tls: AUTH PLAIN AHVzZXIAd3Jvbmc=",
		"tls: AUTH LOGIN",
		"tls: dXNlcg==",
		"tls: cGFzcw==",
		"tls: QUIT",
	)
}

func TestAuthCancelsChallengeTheMechanismRejects(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Auth(netsmtpLogin{"user", "pass"}.withPrompts())
	if err == nil || !strings.Contains(err.Error(), "unknown prompt") {
		t.Fatalf("Auth error = %v; want the mechanism's error", err)
	}
	if err := c.Noop(); err != nil {
		t.Fatalf("session unusable after cancelled AUTH: %v", err)
	}
	c.Quit()
	wantTranscript(t, srv, "tls: EHLO localhost", "tls: AUTH LOGIN", "tls: *", "tls: NOOP", "tls: QUIT")
}

// withPrompts returns a LOGIN that rejects every prompt.
func (a netsmtpLogin) withPrompts() Auth { return rejectingAuth{} }

type rejectingAuth struct{}

func (rejectingAuth) Start(*smtp.ServerInfo) (string, []byte, error) { return "LOGIN", nil, nil }
func (rejectingAuth) Next([]byte, bool) ([]byte, error)              { return nil, errors.New("unknown prompt") }

func TestPlaintextRefused(t *testing.T) {
	// The server offers AUTH in plaintext and would accept it: the refusal
	// is the client's own.
	srv := smtptest.NewServer(t, &smtptest.Options{AuthBeforeTLS: true})
	c := plainClient(t, srv)
	for _, a := range []Auth{
		PlainAuth("", "user", "pass", "127.0.0.1"),
		CRAMMD5Auth("user", "pass"),
		LoginAuth("user", "pass", "127.0.0.1"),
		smtp.PlainAuth("", "user", "pass", "127.0.0.1"),
	} {
		if err := c.Auth(a); !errors.Is(err, ErrPlaintextAuth) {
			t.Errorf("Auth(%v) on plaintext = %v; want ErrPlaintextAuth", a, err)
		}
	}
	if err := c.Mail("a@example.com"); !errors.Is(err, ErrPlaintextMail) {
		t.Errorf("Mail on plaintext = %v; want ErrPlaintextMail", err)
	}
	if err := c.Rcpt("b@example.com"); !errors.Is(err, ErrPlaintextMail) {
		t.Errorf("Rcpt on plaintext = %v; want ErrPlaintextMail", err)
	}
	if _, err := c.Data(); !errors.Is(err, ErrPlaintextMail) {
		t.Errorf("Data on plaintext = %v; want ErrPlaintextMail", err)
	}
	if err := c.Verify("b@example.com"); !errors.Is(err, ErrPlaintextMail) {
		t.Errorf("Verify on plaintext = %v; want ErrPlaintextMail", err)
	}
	c.Quit()
	wantTranscript(t, srv, "plain: EHLO localhost", "plain: QUIT")
}

func TestStartTLSUpgradesAndForgetsCapabilities(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{AuthOnlyBeforeTLS: true})
	c := plainClient(t, srv)
	if ok, _ := c.Extension("AUTH"); !ok {
		t.Fatal("AUTH not advertised before TLS")
	}
	if err := c.StartTLS(srv.ClientTLSConfig()); err != nil {
		t.Fatal(err)
	}
	if m, ok := c.Mode(); !ok || m != STARTTLS {
		t.Errorf("Mode() = %v, %v", m, ok)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH from the plaintext EHLO survived STARTTLS")
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS from the plaintext EHLO survived STARTTLS")
	}
	if err := c.Auth(PlainAuth("", "user", "pass", "127.0.0.1")); !errors.Is(err, ErrAuthUnsupported) {
		t.Errorf("Auth = %v; want ErrAuthUnsupported", err)
	}
	c.Quit()
	wantTranscript(t, srv, "plain: EHLO localhost", "plain: STARTTLS", "tls: EHLO localhost", "tls: QUIT")
}

func TestStartTLSDoesNotMutateConfig(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	cfg := srv.ClientTLSConfig()
	c := plainClient(t, srv)
	if err := c.StartTLS(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "" || cfg.MinVersion != 0 {
		t.Errorf("caller's config modified: ServerName %q MinVersion %x", cfg.ServerName, cfg.MinVersion)
	}
	c.Quit()
}

func TestStartTLSFailuresAreFinal(t *testing.T) {
	tests := []struct {
		name string
		opts smtptest.Options
		cfg  func(*smtptest.Server) *tls.Config
		is   error
		want []string
	}{
		{"stripped", smtptest.Options{StripSTARTTLS: true}, nil, ErrSTARTTLSUnsupported,
			[]string{"plain: EHLO localhost"}},
		{"454", smtptest.Options{STARTTLSReply: "454 4.7.0 TLS not available due to local problem"}, nil, nil,
			[]string{"plain: EHLO localhost", "plain: STARTTLS"}},
		{"injection", smtptest.Options{InjectAfterSTARTTLS: "250 2.7.0 Authentication successful\r\n"}, nil, ErrResponseInjection,
			[]string{"plain: EHLO localhost", "plain: STARTTLS"}},
		{"untrusted", smtptest.Options{Cert: smtptest.CertUntrusted}, nil, nil,
			[]string{"plain: EHLO localhost", "plain: STARTTLS"}},
		{"wrong name", smtptest.Options{Cert: smtptest.CertWrongName}, nil, nil,
			[]string{"plain: EHLO localhost", "plain: STARTTLS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, &tt.opts)
			c := plainClient(t, srv)
			err := c.StartTLS(srv.ClientTLSConfig())
			if err == nil {
				t.Fatal("StartTLS succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("StartTLS = %v; want %v", err, tt.is)
			}
			if tt.name == "454" {
				var e *Error
				if !errors.As(err, &e) || e.Code != 454 || e.EnhancedCode != (EnhancedCode{4, 7, 0}) {
					t.Errorf("StartTLS = %v; want *Error 454", err)
				}
			}
			for _, f := range []func() error{
				func() error { return c.Mail("a@example.com") },
				func() error { return c.Auth(PlainAuth("", "user", "pass", "127.0.0.1")) },
				c.Noop,
				func() error { return c.StartTLS(nil) },
			} {
				if err := f(); err == nil {
					t.Error("command after failed StartTLS succeeded")
				}
			}
			c.Quit()
			wantTranscript(t, srv, tt.want...)
		})
	}
}

func TestInvalidInputRejectedBeforeSending(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	bad := []string{
		"a@example.com\r\nRCPT TO:<evil@example.com>",
		"a@example.com\n",
		"a@example.com\r",
		"a\x00@example.com",
		"a@example.com> SIZE=1",
		"<a@example.com",
		"a @example.com",
		"a\t@example.com",
		"a\x7f@example.com",
	}
	for _, addr := range bad {
		if err := c.Mail(addr); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Mail(%q) = %v; want ErrInvalidInput", addr, err)
		}
		if err := c.Rcpt(addr); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Rcpt(%q) = %v; want ErrInvalidInput", addr, err)
		}
		if err := c.Verify(addr); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Verify(%q) = %v; want ErrInvalidInput", addr, err)
		}
	}
	if err := c.Rcpt(""); !errors.Is(err, ErrInvalidInput) {
		t.Errorf(`Rcpt("") = %v; want ErrInvalidInput`, err)
	}
	if err := c.Noop(); err != nil {
		t.Errorf("session broken by rejected input: %v", err)
	}
	c.Quit()
	wantTranscript(t, srv, "tls: EHLO localhost", "tls: NOOP", "tls: QUIT")

	for _, name := range []string{"host\r\nMAIL FROM:<x>", "host\n", "ho st", "", "a\x00b"} {
		c := plainClient(t, srv)
		if err := c.Hello(name); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Hello(%q) = %v; want ErrInvalidInput", name, err)
		}
		d := testDialer(srv, ImplicitTLS)
		d.LocalName = name
		if name != "" {
			if _, err := d.Dial(srv.ImplicitAddr); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("Dial with LocalName %q = %v; want ErrInvalidInput", name, err)
			}
		}
	}
}

func TestNonASCIIAddressNeedsSMTPUTF8(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Extensions: []string{"8BITMIME"}})
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("jörg@example.com"); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Mail = %v; want ErrInvalidInput", err)
	}
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("用户@例子.广告"); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Rcpt = %v; want ErrInvalidInput", err)
	}
	c.Quit()
	wantTranscript(t, srv, "tls: EHLO localhost", "tls: MAIL FROM:<a@example.com> BODY=8BITMIME", "tls: QUIT")

	srv2 := smtptest.NewServer(t, nil)
	c, err = testDialer(srv2, ImplicitTLS).Dial(srv2.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	sendOne(t, c, "jörg@example.com", []string{"用户@例子.广告"}, "Subject: ü\r\n\r\nü\r\n")
	c.Quit()
	wantTranscript(t, srv2, "tls: EHLO localhost", "tls: MAIL FROM:<jörg@example.com> BODY=8BITMIME SMTPUTF8",
		"tls: RCPT TO:<用户@例子.广告>", "tls: DATA", "tls: QUIT")
}

func TestDataIsNormalisedAndDotStuffed(t *testing.T) {
	tests := []struct{ in, raw string }{
		{"", ".\r\n"},
		{"a", "a\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{".", "..\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{"a\n.\nb\n", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\r\n.\r\nMAIL FROM:<x>\r\n", "a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"},
		{"a\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\r.\r\nb", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\r\n.\rb", "a\r\n..\r\nb\r\n.\r\n"},
		{"..x\r\n.y\n", "...x\r\n..y\r\n.\r\n"},
		{"a\r\rb", "a\r\n\r\nb\r\n.\r\n"},
		{"a\r", "a\r\n.\r\n"},
		{"x.\r\n.", "x.\r\n..\r\n.\r\n"},
	}
	srv := smtptest.NewServer(t, nil)
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	for i, tt := range tests {
		sendOne(t, c, "a@example.com", []string{"b@example.com"}, tt.in)
		msgs := srv.Messages()
		if len(msgs) != i+1 {
			t.Fatalf("%q: server has %d messages, want %d", tt.in, len(msgs), i+1)
		}
		if got := string(msgs[i].Raw); got != tt.raw {
			t.Errorf("data %q went on the wire as %q; want %q", tt.in, got, tt.raw)
		}
	}
}

func TestDataInChunks(t *testing.T) {
	// Splitting a message at every byte must not change what is sent:
	// the writer keeps its state across writes.
	in := "a\r\n.\r\n\r.b\n.\n\r\n..c\rd"
	want := "a\r\n..\r\n\r\n..b\r\n..\r\n\r\n...c\r\nd\r\n.\r\n"
	srv := smtptest.NewServer(t, nil)
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	c.Mail("a@example.com")
	c.Rcpt("b@example.com")
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); err == nil {
		t.Error("command accepted while the Data writer is open")
	}
	for i := range len(in) {
		if n, err := w.Write([]byte{in[i]}); n != 1 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err == nil {
		t.Error("second Close succeeded")
	}
	if got := string(srv.Messages()[0].Raw); got != want {
		t.Errorf("wire %q; want %q", got, want)
	}
}

func TestReplyErrors(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
		switch {
		case strings.HasPrefix(line, "RCPT TO:<temp"):
			s.Reply("451-4.3.0 Try again", "451 4.3.0 later")
		case strings.HasPrefix(line, "RCPT TO:<bad"):
			s.Reply("550 5.1.1 <bad@example.com>: Recipient address rejected")
		case strings.HasPrefix(line, "RCPT TO:<plain"):
			s.Reply("550 no enhanced code")
		case strings.HasPrefix(line, "VRFY"):
			s.Reply("252 2.1.5 Cannot VRFY user")
		default:
			return false
		}
		return true
	}})
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt("temp@example.com")
	var e *Error
	if !errors.As(err, &e) || e.Code != 451 || e.EnhancedCode != (EnhancedCode{4, 3, 0}) || e.Message != "Try again\nlater" || !e.Temporary() {
		t.Errorf("451: %#v", err)
	}
	if got, want := err.Error(), "tlsmail: RCPT: server replied 451 4.3.0 Try again / later"; got != want {
		t.Errorf("Error() = %q; want %q", got, want)
	}
	err = c.Rcpt("bad@example.com")
	if !errors.As(err, &e) || e.Code != 550 || e.EnhancedCode.String() != "5.1.1" || e.Temporary() {
		t.Errorf("550: %#v", err)
	}
	// net/smtp code that looks for *textproto.Error keeps working.
	var tpe *textproto.Error
	if !errors.As(err, &tpe) || tpe.Code != 550 || tpe.Msg != "5.1.1 <bad@example.com>: Recipient address rejected" {
		t.Errorf("as *textproto.Error: %#v", tpe)
	}
	err = c.Rcpt("plain@example.com")
	if !errors.As(err, &e) || e.EnhancedCode != (EnhancedCode{}) || e.Message != "no enhanced code" {
		t.Errorf("550 without enhanced code: %#v", err)
	}
	err = c.Verify("x@example.com")
	if !errors.As(err, &e) || e.Code != 252 {
		t.Errorf("VRFY 252: %v", err)
	}
	if err := c.Rcpt("ok@example.com"); err != nil {
		t.Errorf("session unusable after reply errors: %v", err)
	}
}

func TestReply421EndsSession(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
		if strings.HasPrefix(line, "MAIL") {
			s.Reply("421 4.3.2 Service shutting down")
			s.Close()
			return true
		}
		return false
	}})
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Mail("a@example.com")
	if !errors.Is(err, ErrServerClosing) {
		t.Fatalf("Mail = %v; want ErrServerClosing", err)
	}
	if err := c.Rcpt("b@example.com"); err == nil {
		t.Error("Rcpt after 421 succeeded")
	}
	c.Quit()
	wantTranscript(t, srv, "tls: EHLO localhost", "tls: MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8")
}

// TestDataNot354SendsNoData: a reply to DATA other than 354 means the
// server will not read message data, so not one byte of it may be sent;
// had the client sent it anyway, the server would have read each line as
// a command and its transcript would show them. After a 5xx the session
// is still good and Quit sends QUIT; after a reply DATA cannot take (a
// protocol violation) the client hangs up without another word.
func TestDataNot354SendsNoData(t *testing.T) {
	const msg = "Subject: canary-subject\r\n\r\ncanary-body\r\n"
	for _, tc := range []struct {
		reply string
		quit  bool // the session survives and Quit sends QUIT
	}{
		{"554 5.5.1 No valid recipients", true},
		{"451 4.3.0 Try again later", true},
		{"250 2.0.0 Ok", false},
		{"220 what", false},
	} {
		t.Run(tc.reply, func(t *testing.T) {
			srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
				if line == "DATA" {
					s.Reply(tc.reply)
					return true
				}
				return false
			}})
			c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Mail("a@example.com"); err != nil {
				t.Fatal(err)
			}
			if err := c.Rcpt("b@example.com"); err != nil {
				t.Fatal(err)
			}
			w, err := c.Data()
			if err == nil || w != nil {
				t.Errorf("Data() = %v, %v; want an error and no writer", w, err)
			}
			if w != nil {
				// Show what a writer would have sent.
				io.WriteString(w, msg)
				w.Close()
			}
			var e *Error
			if tc.quit && (!errors.As(err, &e) || fmt.Sprint(e.Code) != tc.reply[:3]) {
				t.Errorf("Data() = %v; want the server's %s as an *Error", err, tc.reply[:3])
			}
			if !tc.quit && !errors.Is(err, ErrProtocol) {
				t.Errorf("Data() = %v; want ErrProtocol", err)
			}
			c.Quit()
			want := []string{
				"tls: EHLO localhost",
				"tls: MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8",
				"tls: RCPT TO:<b@example.com>",
				"tls: DATA",
			}
			if tc.quit {
				want = append(want, "tls: QUIT")
			}
			got := transcript(t, srv)
			if !slices.Equal(got, want) {
				t.Errorf("server received:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
			}
			for _, l := range got {
				if strings.Contains(l, "canary") {
					t.Errorf("message data reached the server: %q", l)
				}
			}
			if len(srv.Messages()) != 0 {
				t.Error("message recorded")
			}
		})
	}
}

func TestDroppedConnectionAtEndOfData(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{OnData: func(s *smtptest.Session, m *smtptest.Message) bool {
		s.Close()
		return true
	}})
	c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Mail("a@example.com")
	c.Rcpt("b@example.com")
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, testMsg)
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "closed the connection") {
		t.Fatalf("Close = %v; want error about the closed connection", err)
	}
}

func TestCredentialsNotPrinted(t *testing.T) {
	for _, a := range []Auth{
		PlainAuth("", "user", "s3cret", "h"),
		LoginAuth("user", "s3cret", "h"),
		CRAMMD5Auth("user", "s3cret"),
		ScramSHA256Auth("user", "s3cret"),
	} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			if s := fmt.Sprintf(verb, a); strings.Contains(s, "s3cret") {
				t.Errorf("Sprintf(%s) = %s", verb, s)
			}
		}
	}
}

// TestNetSMTPSurface checks that every exported function and method of
// net/smtp exists here with the same signature.
func TestNetSMTPSurface(t *testing.T) {
	var (
		_ func(string) (*Client, error)                           = Dial
		_ func(net.Conn, string) (*Client, error)                 = NewClient
		_ func(string, smtp.Auth, string, []string, []byte) error = SendMail
		_ func(string, string, string, string) smtp.Auth          = PlainAuth
		_ func(string, string) smtp.Auth                          = CRAMMD5Auth
		_ *smtp.ServerInfo                                        = (*ServerInfo)(nil)
	)
	theirs := reflect.TypeOf(&smtp.Client{})
	ours := reflect.TypeOf(&Client{})
	for i := range theirs.NumMethod() {
		m := theirs.Method(i)
		o, ok := ours.MethodByName(m.Name)
		if !ok {
			t.Errorf("Client lacks method %s", m.Name)
			continue
		}
		if a, b := strings.ReplaceAll(m.Type.String(), "smtp.Client", "tlsmail.Client"), o.Type.String(); a != b {
			t.Errorf("Client.%s is %s; net/smtp has %s", m.Name, b, a)
		}
	}
	if f, ok := reflect.TypeOf(Client{}).FieldByName("Text"); !ok || f.Type != reflect.TypeOf(&textproto.Conn{}) {
		t.Error("Client.Text is not a *textproto.Conn")
	}
}

// TestDialAndNewClientSendNothing checks that, as in net/smtp, Dial and
// NewClient read the greeting and send nothing, so that Hello can still
// choose the EHLO name.
func TestDialAndNewClientSendNothing(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	c, err := Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	c = netsmtpClient(t, srv)
	c.Close()
	d, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	wantTranscript(t, srv)
	if n := srv.Connections(); n != 3 {
		t.Errorf("server saw %d connections; want 3", n)
	}
}

// TestHelloFirst checks Hello as the first call of every kind of Client,
// and after a Dialer in STARTTLS mode, where it names the EHLO sent over
// TLS.
func TestHelloFirst(t *testing.T) {
	t.Run("NewClient", func(t *testing.T) {
		srv := smtptest.NewServer(t, nil)
		c := netsmtpClient(t, srv)
		if err := c.Hello("client.example"); err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("other.example"); err == nil || !strings.Contains(err.Error(), "Hello called after other methods") {
			t.Errorf("second Hello = %v", err)
		}
		if err := c.Quit(); err != nil {
			t.Error(err)
		}
		wantTranscript(t, srv, "tls: EHLO client.example", "tls: QUIT")
	})
	t.Run("Dialer STARTTLS", func(t *testing.T) {
		srv := smtptest.NewServer(t, nil)
		d := testDialer(srv, STARTTLS)
		d.LocalName = "plain.example"
		c, err := d.Dial(srv.StartTLSAddr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("tls.example"); err != nil {
			t.Fatal(err)
		}
		sendOne(t, c, "a@example.com", []string{"b@example.com"}, "x")
		c.Quit()
		wantTranscript(t, srv, "plain: EHLO plain.example", "plain: STARTTLS", "tls: EHLO tls.example",
			"tls: MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8", "tls: RCPT TO:<b@example.com>", "tls: DATA", "tls: QUIT")
	})
	t.Run("Extension sends EHLO", func(t *testing.T) {
		srv := smtptest.NewServer(t, nil)
		c := netsmtpClient(t, srv)
		if ok, v := c.Extension("size"); !ok || v != "67108864" {
			t.Errorf("Extension(size) = %v %q", ok, v)
		}
		c.Quit()
		wantTranscript(t, srv, "tls: EHLO localhost", "tls: QUIT")
	})
	t.Run("StartTLS sends EHLO again at once", func(t *testing.T) {
		srv := smtptest.NewServer(t, nil)
		c := plainClient(t, srv)
		cfg := srv.ClientTLSConfig()
		if err := c.StartTLS(cfg); err != nil {
			t.Fatal(err)
		}
		if err := c.Hello("late.example"); err == nil {
			t.Error("Hello after StartTLS succeeded; net/smtp refuses it too")
		}
		c.Quit()
		wantTranscript(t, srv, "plain: EHLO localhost", "plain: STARTTLS", "tls: EHLO localhost", "tls: QUIT")
	})
}

// TestHELOFallbackAndQuit checks that a refused EHLO is followed by HELO
// and that Quit after a refused EHLO and HELO still says goodbye, as
// net/smtp does.
func TestHELOFallbackAndQuit(t *testing.T) {
	t.Run("HELO accepted", func(t *testing.T) {
		srv := smtptest.NewServer(t, replyTo("EHLO", "502 5.5.2 EHLO not implemented"))
		c := netsmtpClient(t, srv)
		if err := c.Hello("client.example"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("PIPELINING"); ok {
			t.Error("a HELO session has extensions")
		}
		c.Quit()
		wantTranscript(t, srv, "tls: EHLO client.example", "tls: HELO client.example", "tls: QUIT")
	})
	t.Run("both refused", func(t *testing.T) {
		srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
			if strings.HasPrefix(line, "EHLO") || strings.HasPrefix(line, "HELO") {
				s.Reply("454 4.7.0 go away")
				return true
			}
			return false
		}})
		c := netsmtpClient(t, srv)
		err := c.Hello("client.example")
		if tp, ok := err.(*textproto.Error); !ok || tp.Code != 454 {
			t.Fatalf("Hello = %#v; want *textproto.Error 454", err)
		}
		if err := c.Quit(); err != nil {
			t.Errorf("Quit = %v", err)
		}
		wantTranscript(t, srv, "tls: EHLO client.example", "tls: HELO client.example", "tls: QUIT")
	})
}

// TestUnsolicitedReplySaysWhatHappened checks that the error for a reply
// to no command says what arrived and before which command; the advice
// for test authors lives in ErrProtocol's documentation.
func TestUnsolicitedReplySaysWhatHappened(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
		if strings.HasPrefix(line, "MAIL") {
			s.Reply("250 ok", "250 and one more")
			return true
		}
		return false
	}})
	c := netsmtpClient(t, srv)
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("b@example.com")
	want := `tlsmail: SMTP protocol error: server sent "250 and one more\r\n" before RCPT was sent, a reply to no command`
	if !errors.Is(err, ErrProtocol) || err.Error() != want {
		t.Fatalf("Rcpt = %v", err)
	}
}

// wrappedTLS is a TLS connection hidden behind another type, as a
// connection pool or a tracing wrapper would hand it over.
type wrappedTLS struct {
	net.Conn
	tc *tls.Conn
}

func (w wrappedTLS) ConnectionState() tls.ConnectionState { return w.tc.ConnectionState() }

// TestNewClientRecognisesWrappedTLS checks that NewClient counts any
// connection that reports a completed TLS handshake as TLS, and nothing
// else.
func TestNewClientRecognisesWrappedTLS(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	cfg := srv.ClientTLSConfig()
	cfg.ServerName = "127.0.0.1"
	for _, withState := range []bool{true, false} {
		tc, err := tls.Dial("tcp", srv.ImplicitAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var conn net.Conn = struct{ net.Conn }{tc}
		if withState {
			conn = wrappedTLS{tc, tc}
		}
		c, err := NewClient(conn, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		_, isTLS := c.TLSConnectionState()
		err = c.Mail("a@example.com")
		if withState && (err != nil || !isTLS) {
			t.Errorf("wrapped TLS: Mail = %v, TLS %v; want accepted", err, isTLS)
		}
		if !withState && (!errors.Is(err, ErrPlaintextMail) || isTLS) {
			t.Errorf("opaque connection: Mail = %v, TLS %v; want ErrPlaintextMail", err, isTLS)
		}
		c.Close()
	}
}

// TestNewClientNoGreetingHint checks that NewClient, like a Dialer in
// STARTTLS mode, explains a missing greeting (the default 30 s wait).
func TestNewClientNoGreetingHint(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out NewClient's default 30 s greeting timeout; runs without -short, as in CI")
	}
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			io.Copy(io.Discard, c) // an implicit-TLS server waiting for a ClientHello
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewClient(conn, "127.0.0.1")
	if !errors.Is(err, ErrNoGreeting) || !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "implicit TLS") {
		t.Fatalf("NewClient = %v; want ErrNoGreeting with the implicit-TLS hint", err)
	}
}

package pop3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/internal/smtptest"
	"github.com/tlsmail/tlsmail/pop3"
	"github.com/tlsmail/tlsmail/pop3/pop3test"
)

const host = "127.0.0.1"

var longToken = "ya29." + strings.Repeat("t0k3n", 80)

// dotty is a message whose lines exercise dot-stuffing: ".", "..", a
// line that is only ".", and a dot at the very end.
var dotty = []byte("Subject: dots\r\n\r\n.\r\n..\r\n...x\r\n.hidden\r\n \r\n.\r\nend.\r\n.")

func dial(t *testing.T, srv *pop3test.Server, mode pop3.Mode) *pop3.Client {
	t.Helper()
	c, err := srv.Dialer(mode).DialContext(t.Context(), srv.Addr(mode))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// plaintextLines returns what the client sent before TLS.
func plaintextLines(srv *pop3test.Server) []string {
	var out []string
	for _, l := range srv.Transcript() {
		if !l.TLS {
			out = append(out, l.Text)
		}
	}
	return out
}

// TestMechanisms: every mechanism, in both modes, logs in against the
// test server, which verifies it; only CAPA and STLS precede TLS.
func TestMechanisms(t *testing.T) {
	tok := tlsmail.StaticToken("token")
	for _, tc := range []struct {
		name string
		cfg  pop3test.Config
		auth tlsmail.Auth
		apop bool
		mech string
	}{
		{"PasswordAuth picks SCRAM-PLUS", pop3test.Config{}, tlsmail.PasswordAuth("user", "pass", host), false, "SCRAM-SHA-256-PLUS"},
		{"PLAIN", pop3test.Config{}, tlsmail.PlainAuth("", "user", "pass", host), false, "PLAIN"},
		{"LOGIN", pop3test.Config{}, tlsmail.LoginAuth("user", "pass", host), false, "LOGIN"},
		{"CRAM-MD5", pop3test.Config{}, tlsmail.CRAMMD5Auth("user", "pass"), false, "CRAM-MD5"},
		{"SCRAM-SHA-1", pop3test.Config{}, tlsmail.ScramSHA1Auth("user", "pass"), false, "SCRAM-SHA-1"},
		{"SCRAM-SHA-256", pop3test.Config{}, tlsmail.ScramSHA256Auth("user", "pass"), false, "SCRAM-SHA-256"},
		{"SCRAM-SHA-256-PLUS", pop3test.Config{}, tlsmail.ScramSHA256PlusAuth("user", "pass"), false, "SCRAM-SHA-256-PLUS"},
		{"PasswordAuth picks SCRAM-SHA-1", pop3test.Config{SASL: []string{"PLAIN", "SCRAM-SHA-1"}}, tlsmail.PasswordAuth("user", "pass", host), false, "SCRAM-SHA-1"},
		{"XOAUTH2", pop3test.Config{}, tlsmail.XOAuth2Auth("user", tok, host), false, "XOAUTH2"},
		{"OAUTHBEARER", pop3test.Config{}, tlsmail.OAuthBearerAuth("user", tok, host), false, "OAUTHBEARER"},
		{"OAuth2Auth", pop3test.Config{}, tlsmail.OAuth2Auth("user", tok, host), false, "OAUTHBEARER"},
		// An initial response that would make AUTH longer than 255
		// octets goes as the answer to an empty challenge (RFC 5034
		// section 4).
		{"XOAUTH2 long token", pop3test.Config{Tokens: map[string]string{longToken: "user"}}, tlsmail.XOAuth2Auth("user", tlsmail.StaticToken(longToken), host), false, "XOAUTH2"},
		{"USER/PASS when no SASL", pop3test.Config{SASL: []string{}}, tlsmail.PasswordAuth("user", "pass", host), false, "USER"},
		{"USER/PASS for PLAIN not offered", pop3test.Config{SASL: []string{"SCRAM-SHA-1"}}, tlsmail.PlainAuth("", "user", "pass", host), false, "USER"},
		{"USER/PASS without CAPA", pop3test.Config{NoCAPA: true}, tlsmail.PasswordAuth("user", "pass", host), false, "USER"},
		{"APOP", pop3test.Config{}, nil, true, "APOP"},
	} {
		for _, mode := range []pop3.Mode{pop3.ImplicitTLS, pop3.STLS} {
			if tc.cfg.NoCAPA && mode == pop3.STLS {
				continue
			}
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				cfg := tc.cfg
				cfg.Messages = [][]byte{dotty}
				srv := pop3test.NewServer(t, &cfg)
				c := dial(t, srv, mode)
				var err error
				if tc.apop {
					err = c.APOP(t.Context(), "user", "pass")
				} else {
					err = c.Auth(t.Context(), tc.auth)
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := c.AuthMechanism(); got != tc.mech {
					t.Errorf("mechanism %s, want %s", got, tc.mech)
				}
				for _, l := range srv.Transcript() {
					if strings.HasPrefix(l.Text, "AUTH ") && len(l.Text)+2 > 255 {
						t.Errorf("AUTH line of %d octets, more than RFC 5034 allows", len(l.Text)+2)
					}
				}
				r, err := c.Retr(t.Context(), 1)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				if err != nil || !bytes.Equal(got, append(dotty, '\r', '\n')) {
					t.Errorf("RETR: %q, %v", got, err)
				}
				if err := c.Quit(t.Context()); err != nil {
					t.Error(err)
				}
				want := []string(nil)
				if mode == pop3.STLS {
					want = []string{"CAPA", "STLS"}
				}
				if got := plaintextLines(srv); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("plaintext lines %q, want %q", got, want)
				}
			})
		}
	}
}

// TestAuthRefusals: wrong credentials are *Error with [AUTH]; a refused
// token is an *OAuthError; a SASL list without the Auth's mechanism and no
// USER is ErrAuthUnsupported, for the root package's sentinel too; APOP is
// never chosen by Auth.
func TestAuthRefusals(t *testing.T) {
	srv := pop3test.NewServer(t, nil)
	c := dial(t, srv, pop3.ImplicitTLS)
	err := c.Auth(t.Context(), tlsmail.PlainAuth("", "user", "wrong-password", host))
	var e *pop3.Error
	if !errors.As(err, &e) || e.Code != "AUTH" || !errors.Is(err, pop3.ErrAuthFailed) || strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("wrong password: %v", err)
	}

	err = c.Auth(t.Context(), tlsmail.XOAuth2Auth("user", tlsmail.StaticToken("expired-token"), host))
	var oe *pop3.OAuthError
	if !errors.As(err, &oe) || oe.Status != "401" || !errors.Is(err, pop3.ErrAuthFailed) || strings.Contains(err.Error(), "expired-token") {
		t.Errorf("refused token: %v", err)
	}

	srv2 := pop3test.NewServer(t, &pop3test.Config{SASL: []string{"PLAIN"}, NoUSER: true})
	c2 := dial(t, srv2, pop3.ImplicitTLS)
	err = c2.Auth(t.Context(), tlsmail.ScramSHA256Auth("user", "pass"))
	if !errors.Is(err, pop3.ErrAuthUnsupported) || !errors.Is(err, tlsmail.ErrAuthUnsupported) {
		t.Errorf("unsupported: %v", err)
	}

	// USER/PASS cannot carry PLAIN's authorization identity: refused,
	// not silently dropped.
	srvID := pop3test.NewServer(t, &pop3test.Config{SASL: []string{}})
	cID := dial(t, srvID, pop3.ImplicitTLS)
	if err := cID.Auth(t.Context(), tlsmail.PlainAuth("admin", "user", "pass", host)); !errors.Is(err, pop3.ErrAuthUnsupported) {
		t.Errorf("PLAIN with an identity over USER/PASS: %v", err)
	}

	// Credentials made for another host go nowhere, USER/PASS included.
	srv3 := pop3test.NewServer(t, &pop3test.Config{SASL: []string{}})
	c3 := dial(t, srv3, pop3.ImplicitTLS)
	err = c3.Auth(t.Context(), tlsmail.PasswordAuth("user", "pass", "pop.example.com"))
	if err == nil || !strings.Contains(err.Error(), "pop.example.com") {
		t.Errorf("other host: %v", err)
	}
	for _, l := range srv3.Transcript() {
		if strings.HasPrefix(l.Text, "USER") || strings.HasPrefix(l.Text, "PASS") {
			t.Errorf("sent %q", l.Text)
		}
	}
}

// TestMailbox: STAT, LIST, UIDL, TOP, DELE, RSET and QUIT against the
// test server's RFC 1939 mailbox.
func TestMailbox(t *testing.T) {
	msgs := [][]byte{
		[]byte("Subject: a\r\n\r\nline 1\r\nline 2\r\n"),
		dotty,
		[]byte("Subject: c\r\n\r\nc\r\n"),
	}
	srv := pop3test.NewServer(t, &pop3test.Config{Messages: msgs})
	ctx := t.Context()
	c := dial(t, srv, pop3.ImplicitTLS)
	if err := c.Auth(ctx, tlsmail.PasswordAuth("user", "pass", host)); err != nil {
		t.Fatal(err)
	}
	n, size, err := c.Stat(ctx)
	want := len(msgs[0]) + len(dotty) + 2 + len(msgs[2])
	if err != nil || n != 3 || size != int64(want) {
		t.Errorf("STAT: %d %d %v, want 3 %d", n, size, err, want)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 3 || list[1].Size != int64(len(dotty)+2) {
		t.Errorf("LIST: %+v %v", list, err)
	}
	uids, err := c.Uidl(ctx)
	if err != nil || len(uids) != 3 || uids[2].UID == "" {
		t.Errorf("UIDL: %+v %v", uids, err)
	}
	one, err := c.UidlOne(ctx, 3)
	if err != nil || one != uids[2] {
		t.Errorf("UIDL 3: %+v %v", one, err)
	}
	r, err := c.Top(ctx, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != "Subject: a\r\n\r\nline 1\r\n" {
		t.Errorf("TOP: %q %v", got, err)
	}
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Rset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Dele(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListOne(ctx, 2); err == nil {
		t.Error("LIST of a marked message succeeded")
	}
	var e *pop3.Error
	if _, err := c.Retr(ctx, 9); !errors.As(err, &e) || e.Command != "LIST" {
		t.Errorf("RETR 9: %v", err)
	}
	if m := c.Marked(); len(m) != 1 || m[0] != 2 {
		t.Errorf("Marked: %v", m)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := srv.Messages(); len(got) != 2 || !bytes.Equal(got[1], msgs[2]) {
		t.Errorf("left %q", got)
	}
	if err := c.Noop(ctx); !errors.Is(err, pop3.ErrClosed) {
		t.Errorf("after QUIT: %v", err)
	}
}

func loginTo(t *testing.T, srv *pop3test.Server, d *pop3.Dialer) *pop3.Client {
	t.Helper()
	c, err := d.DialContext(t.Context(), srv.Addr(d.Mode))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Auth(t.Context(), tlsmail.PasswordAuth("user", "pass", host)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestQuitOutcomes: QUIT's reply decides what Quit says about deletions.
func TestQuitOutcomes(t *testing.T) {
	msgs := [][]byte{[]byte("a\r\n"), []byte("b\r\n")}
	t.Run("confirmed", func(t *testing.T) {
		srv := pop3test.NewServer(t, &pop3test.Config{Messages: msgs})
		c := loginTo(t, srv, srv.Dialer(pop3.ImplicitTLS))
		c.Dele(t.Context(), 1)
		if err := c.Quit(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(srv.Messages()) != 1 {
			t.Error("not deleted")
		}
	})
	t.Run("reply lost", func(t *testing.T) {
		srv := pop3test.NewServer(t, &pop3test.Config{Messages: msgs, Faults: []pop3test.Fault{{At: "QUIT", Drop: true}}})
		c := loginTo(t, srv, srv.Dialer(pop3.ImplicitTLS))
		c.Dele(t.Context(), 1)
		if err := c.Quit(t.Context()); !errors.Is(err, pop3.ErrDeletionsUnknown) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("reply lost, nothing marked", func(t *testing.T) {
		srv := pop3test.NewServer(t, &pop3test.Config{Messages: msgs, Faults: []pop3test.Fault{{At: "QUIT", Drop: true}}})
		c := loginTo(t, srv, srv.Dialer(pop3.ImplicitTLS))
		if err := c.Quit(t.Context()); err == nil || errors.Is(err, pop3.ErrDeletionsUnknown) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		srv := pop3test.NewServer(t, &pop3test.Config{Messages: msgs, Faults: []pop3test.Fault{{At: "QUIT", Reply: "-ERR [SYS/TEMP] some deleted messages not removed"}}})
		c := loginTo(t, srv, srv.Dialer(pop3.ImplicitTLS))
		c.Dele(t.Context(), 1)
		err := c.Quit(t.Context())
		var e *pop3.Error
		if !errors.As(err, &e) || e.Command != "QUIT" || errors.Is(err, pop3.ErrDeletionsUnknown) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("Close keeps them", func(t *testing.T) {
		srv := pop3test.NewServer(t, &pop3test.Config{Messages: msgs})
		c := loginTo(t, srv, srv.Dialer(pop3.ImplicitTLS))
		c.Dele(t.Context(), 1)
		c.Close()
		if err := srv.WaitIdle(t.Context()); err != nil {
			t.Fatal(err)
		}
		c2 := loginTo(t, srv, srv.Dialer(pop3.STLS))
		if n, _, err := c2.Stat(t.Context()); n != 2 || err != nil {
			t.Errorf("STAT %d %v", n, err)
		}
	})
}

// TestInUse: a second session gets [IN-USE] while the first holds the
// mailbox.
func TestInUse(t *testing.T) {
	srv := pop3test.NewServer(t, nil)
	loginTo(t, srv, srv.Dialer(pop3.ImplicitTLS))
	c := dial(t, srv, pop3.ImplicitTLS)
	err := c.Auth(t.Context(), tlsmail.PasswordAuth("user", "pass", host))
	var e *pop3.Error
	if !errors.Is(err, pop3.ErrInUse) || !errors.As(err, &e) || !e.Temporary() {
		t.Fatalf("got %v", err)
	}
}

// TestRetrCutShort: a connection lost in the middle of a message is an
// error, never a short message, and the Client is closed after it.
func TestRetrCutShort(t *testing.T) {
	srv := pop3test.NewServer(t, &pop3test.Config{
		Messages: [][]byte{bytes.Repeat([]byte("0123456789\r\n"), 1000)},
		Faults:   []pop3test.Fault{{At: "RETR", Drop: true}},
	})
	c := loginTo(t, srv, srv.Dialer(pop3.ImplicitTLS))
	r, err := c.Retr(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, pop3.ErrProtocol) || !errors.Is(err, io.ErrUnexpectedEOF) || len(got) >= 12000 {
		t.Errorf("read %d bytes, then %v", len(got), err)
	}
	if err := c.Noop(t.Context()); !errors.Is(err, pop3.ErrClosed) {
		t.Errorf("after: %v", err)
	}
}

// TestFaultReplies: a scripted -ERR at each step comes back as an *Error
// naming the command.
func TestFaultReplies(t *testing.T) {
	steps := map[string]func(c *pop3.Client) error{
		"STAT": func(c *pop3.Client) error { _, _, err := c.Stat(context.Background()); return err },
		"LIST": func(c *pop3.Client) error { _, err := c.List(context.Background()); return err },
		"UIDL": func(c *pop3.Client) error { _, err := c.Uidl(context.Background()); return err },
		"RETR": func(c *pop3.Client) error { _, err := c.Retr(context.Background(), 1); return err },
		"TOP":  func(c *pop3.Client) error { _, err := c.Top(context.Background(), 1, 0); return err },
		"DELE": func(c *pop3.Client) error { return c.Dele(context.Background(), 1) },
		"RSET": func(c *pop3.Client) error { return c.Rset(context.Background()) },
		"NOOP": func(c *pop3.Client) error { return c.Noop(context.Background()) },
	}
	for step, run := range steps {
		t.Run(step, func(t *testing.T) {
			srv := pop3test.NewServer(t, &pop3test.Config{
				Messages: [][]byte{[]byte("x\r\n")},
				Faults:   []pop3test.Fault{{At: step, Reply: "-ERR [SYS/PERM] no " + step}},
			})
			c := loginTo(t, srv, srv.Dialer(pop3.ImplicitTLS))
			err := run(c)
			var e *pop3.Error
			if !errors.As(err, &e) || e.Command != step || !errors.Is(err, pop3.ErrSysPerm) {
				t.Fatalf("got %v", err)
			}
			if err := c.Noop(t.Context()); step != "NOOP" && err != nil {
				t.Errorf("session broken after -ERR: %v", err)
			}
		})
	}
	for _, step := range []string{pop3test.Greeting, "CAPA"} {
		srv := pop3test.NewServer(t, &pop3test.Config{Faults: []pop3test.Fault{{At: step, Reply: "-ERR [SYS/TEMP] busy"}}})
		_, err := srv.Dialer(pop3.STLS).Dial(srv.Addr(pop3.STLS))
		if err == nil {
			t.Errorf("%s: Dial succeeded", step)
		}
		if step == pop3test.Greeting && !errors.Is(err, pop3.ErrSysTemp) {
			t.Errorf("%s: %v", step, err)
		}
	}
}

// TestContextCancel: a cancelled context interrupts a command the server
// never answers, promptly, and closes the session.
func TestContextCancel(t *testing.T) {
	srv := pop3test.NewServer(t, &pop3test.Config{Faults: []pop3test.Fault{{At: "NOOP", Delay: time.Hour}}})
	c := loginTo(t, srv, srv.Dialer(pop3.ImplicitTLS))
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		// Cancel once the server has the command, so that the
		// cancellation interrupts a read in progress.
		for !slices.ContainsFunc(srv.Transcript(), func(l pop3test.Line) bool { return l.Text == "NOOP" }) {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	err := c.Noop(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if err := c.Noop(t.Context()); !errors.Is(err, pop3.ErrClosed) {
		t.Errorf("after: %v", err)
	}
}

// TestCommandTimeout: a server that does not answer fails the command
// after CommandTimeout.
func TestCommandTimeout(t *testing.T) {
	// PLAIN, not SCRAM: the login itself must fit in the timeout, and
	// PBKDF2 under the race detector may not.
	srv := pop3test.NewServer(t, &pop3test.Config{SASL: []string{"PLAIN"}, Faults: []pop3test.Fault{{At: "NOOP", Delay: time.Hour}}})
	d := srv.Dialer(pop3.ImplicitTLS)
	d.CommandTimeout = 500 * time.Millisecond
	c := loginTo(t, srv, d)
	if err := c.Noop(t.Context()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

// TestRetrCancelledMidStream: cancelling the context while a message is
// being read ends the stream with the context's error.
func TestRetrCancelledMidStream(t *testing.T) {
	srv := pop3test.NewServer(t, &pop3test.Config{Messages: [][]byte{bytes.Repeat([]byte("x\r\n"), 1<<18)}})
	c := loginTo(t, srv, srv.Dialer(pop3.ImplicitTLS))
	ctx, cancel := context.WithCancel(t.Context())
	r, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.ReadAll(r)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	// Either the rest was already buffered (no error) or the read was
	// interrupted; a cancelled stream must not be followed by commands.
	if err != nil {
		if err := c.Noop(t.Context()); !errors.Is(err, pop3.ErrClosed) {
			t.Errorf("after: %v", err)
		}
	}
}

// TestNoCredentialsInOutput: fmt of every Auth, the Client and the errors
// and trace of a session show no password or token.
func TestNoCredentialsInOutput(t *testing.T) {
	const pw, tok = "hunter2-secret", "ya29.token-secret"
	srv := pop3test.NewServer(t, &pop3test.Config{Users: map[string]string{"user": pw}, Tokens: map[string]string{tok: "user"}})
	var trace bytes.Buffer
	d := srv.Dialer(pop3.STLS)
	d.Trace = slog.New(slog.NewTextHandler(&trace, nil))
	var out strings.Builder
	for _, a := range []tlsmail.Auth{
		tlsmail.PasswordAuth("user", pw, host), tlsmail.PlainAuth("", "user", pw, host),
		tlsmail.LoginAuth("user", pw, host), tlsmail.XOAuth2Auth("user", tlsmail.StaticToken(tok), host),
		tlsmail.OAuthBearerAuth("user", tlsmail.StaticToken(tok), host), tlsmail.ScramSHA1Auth("user", pw),
	} {
		c, err := d.Dial(srv.Addr(pop3.STLS))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Auth(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%v %+v %#v %x %s %d\n", c, c, c, c, a, a)
		c.Quit(t.Context())
	}
	// USER/PASS and a failed login quoting nothing.
	srv2 := pop3test.NewServer(t, &pop3test.Config{Users: map[string]string{"user": pw}, SASL: []string{}})
	d2 := srv2.Dialer(pop3.ImplicitTLS)
	d2.Trace = d.Trace
	c, err := d2.Dial(srv2.Addr(pop3.ImplicitTLS))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(t.Context(), tlsmail.PasswordAuth("user", pw, host)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, s := range []string{out.String(), trace.String()} {
		if strings.Contains(s, pw) || strings.Contains(s, tok) || strings.Contains(s, "aHVudGVy") {
			t.Errorf("secret shown:\n%s", s)
		}
	}
	if !strings.Contains(trace.String(), "PASS [password withheld]") {
		t.Errorf("trace lacks the PASS placeholder:\n%s", trace.String())
	}
}

// TestNoGoroutineLeak: sessions that succeed, fail and are cancelled leave
// no goroutine behind.
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		srv, err := pop3test.Start(&pop3test.Config{
			Messages: [][]byte{[]byte("x\r\n")},
			Faults:   []pop3test.Fault{{At: "RETR", Drop: true}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		slow, err := pop3test.Start(&pop3test.Config{Faults: []pop3test.Fault{{At: "NOOP", Delay: time.Hour}}})
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Close()
		c := loginTo(t, slow, slow.Dialer(pop3.ImplicitTLS))
		c.Noop(ctx)
		c.Close()
		c = loginTo(t, srv, srv.Dialer(pop3.STLS))
		if r, err := c.Retr(context.Background(), 1); err == nil {
			io.ReadAll(r)
		}
		c.Quit(context.Background())
		srv.Dialer(pop3.ImplicitTLS).Dial(srv.Addr(pop3.STLS))
	}()
	smtptest.CheckGoroutines(t, base)
}

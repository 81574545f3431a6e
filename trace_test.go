package tlsmail

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// traceLog keeps the records of a trace as "msg key=value ..." lines,
// with the attributes that change from run to run (times, durations,
// expiry, the server's address) left out, so that a test can compare
// whole sessions.
type traceLog struct {
	mu      sync.Mutex
	lines   []string
	records []slog.Record
}

func (l *traceLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *traceLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &traceHandler{l: l, attrs: as}
}
func (l *traceLog) WithGroup(string) slog.Handler { return l }
func (l *traceLog) Handle(ctx context.Context, r slog.Record) error {
	return (&traceHandler{l: l}).Handle(ctx, r)
}

type traceHandler struct {
	l     *traceLog
	attrs []slog.Attr
}

func (h *traceHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &traceHandler{l: h.l, attrs: append(slices.Clone(h.attrs), as...)}
}
func (h *traceHandler) WithGroup(string) slog.Handler { return h }
func (h *traceHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		switch a.Key {
		case "elapsed", "not_after", "days_left", "addr", "from", "to", "server":
			return true
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	r.Attrs(add)
	h.l.mu.Lock()
	h.l.lines = append(h.l.lines, b.String())
	rc := r.Clone()
	rc.AddAttrs(h.attrs...)
	h.l.records = append(h.l.records, rc)
	h.l.mu.Unlock()
	return nil
}

func (l *traceLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

func (l *traceLog) logger() *slog.Logger { return slog.New(l) }

func wantTrace(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("trace:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// TestTraceSendMail pins the records of a whole implicit-TLS session with
// PIPELINING: connection, handshake, every command and reply, the data
// as a size, and AUTH as its mechanism and length only.
func TestTraceSendMail(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	var log traceLog
	d := testDialer(srv, ImplicitTLS)
	d.Trace = log.logger()
	if err := d.SendMail(srv.ImplicitAddr, PlainAuth("", "user", "pass", "127.0.0.1"), "a@example.com", []string{"b@example.net"}, []byte(testMsg)); err != nil {
		t.Fatal(err)
	}
	got := log.get()
	if len(got) < 2 || !strings.HasPrefix(got[1], "tls version=TLS 1.3 cipher=TLS_") || !strings.HasSuffix(got[1], "resumed=false starttls=false peer=CN=mx.test") {
		t.Errorf("handshake record %q", got[1:2])
	}
	got[1] = "tls"
	wantTrace(t, got,
		"connect mode=ImplicitTLS",
		"tls",
		"reply command=greeting code=220 text=mx.test ESMTP tlsmail-test",
		"command line=EHLO localhost",
		"reply command=EHLO code=250 text=mx.test\nPIPELINING\nSIZE 67108864\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nAUTH PLAIN LOGIN CRAM-MD5",
		"command line=AUTH PLAIN [initial response withheld]",
		"reply command=AUTH code=235 text=2.7.0 Authentication successful",
		"command line=MAIL FROM:<a@example.com> SIZE=63",
		"command line=RCPT TO:<b@example.net>",
		"command line=DATA",
		"reply command=MAIL code=250 text=2.1.0 Ok",
		"reply command=RCPT code=250 text=2.1.5 Ok",
		"reply command=DATA code=354 text=End data with <CR><LF>.<CR><LF>",
		"data via=DATA bytes=63",
		"command line=QUIT",
		"reply command=end of data code=250 text=2.0.0 Ok: queued as 1",
		"reply command=QUIT code=221 text=2.0.0 Bye",
	)
}

// TestTraceSTARTTLSAndResumption: the STARTTLS path, and a second session
// of the same Dialer resuming the first one's TLS session.
func TestTraceSTARTTLSAndResumption(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Extensions: chunkingExts})
	var log traceLog
	d := testDialer(srv, STARTTLS)
	d.Trace = log.logger()
	for range 2 {
		if err := d.SendMail(srv.StartTLSAddr, nil, "a@example.com", []string{"b@example.net"}, []byte(testMsg)); err != nil {
			t.Fatal(err)
		}
	}
	var tlsRecs, cmds []string
	for _, l := range log.get() {
		switch {
		case strings.HasPrefix(l, "tls "):
			tlsRecs = append(tlsRecs, l[strings.Index(l, "resumed="):])
		case strings.HasPrefix(l, "command "), strings.HasPrefix(l, "data "), strings.HasPrefix(l, "connect "):
			cmds = append(cmds, l)
		}
	}
	wantTrace(t, tlsRecs, "resumed=false starttls=true peer=CN=mx.test", "resumed=true starttls=true peer=CN=mx.test")
	session := []string{
		"connect mode=STARTTLS",
		"command line=EHLO localhost",
		"command line=STARTTLS",
		"command line=EHLO localhost",
		"command line=MAIL FROM:<a@example.com> SIZE=63",
		"command line=RCPT TO:<b@example.net>",
		"command line=BDAT 63 LAST",
		"data via=BDAT bytes=63 chunks=1",
		"command line=QUIT",
	}
	wantTrace(t, cmds, append(slices.Clone(session), session...)...)
}

// TestTraceFallback records the fallback from implicit TLS to STARTTLS and
// its reason.
func TestTraceFallback(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{PlaintextOnImplicit: true})
	var log traceLog
	d := testDialer(srv, ImplicitTLSOrSTARTTLS)
	d.FallbackAddr = srv.StartTLSAddr
	d.Trace = log.logger()
	c, err := d.Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	got := log.get()
	if len(got) < 4 || got[0] != "connect mode=ImplicitTLS" || got[1] != "failure step=TLS handshake error=tls: first record does not look like a TLS handshake" ||
		!strings.HasPrefix(got[2], "fallback reason=tlsmail: server answered in plaintext") || got[3] != "connect mode=STARTTLS" {
		t.Errorf("trace starts %q", got[:min(4, len(got))])
	}
}

// TestTraceSetTrace: a Client made by NewClient traces from SetTrace on,
// and SetTrace(nil) stops it; an AUTH exchange shows as the mechanism and
// lengths only, challenges included.
func TestTraceSetTrace(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	c, _ := pipeClient(t, srv)
	var log traceLog
	c.SetTrace(log.logger())
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(LoginAuth("user", "pass", "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	c.SetTrace(nil)
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	wantTrace(t, log.get(),
		"command line=EHLO localhost",
		"reply command=EHLO code=250 text=mx.test\nPIPELINING\nSIZE 67108864\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8\nAUTH PLAIN LOGIN CRAM-MD5",
		"command line=NOOP",
		"reply command=NOOP code=250 text=2.0.0 Ok",
		"command line=AUTH LOGIN",
		"reply command=AUTH code=334 text=[challenge withheld]",
		"command line=[response withheld]",
		"reply command=AUTH code=334 text=[challenge withheld]",
		"command line=[response withheld]",
		"reply command=AUTH code=235 text=2.7.0 Authentication successful")
}

// TestTraceNoSecrets logs in with every mechanism tlsmail speaks to a
// server that quotes the client's AUTH lines and the decoded credentials
// back in its replies, and checks that no credential appears in the
// trace in any form: as sent, base64-encoded, or in part.
func TestTraceNoSecrets(t *testing.T) {
	const pass, token = "s3cret-pass-Zq9", "tok-9f8e7d6c5b4a"
	mechs := []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "XOAUTH2", "OAUTHBEARER"}
	for _, tc := range []struct {
		mech  string
		auth  Auth
		offer []string // what the server offers, if not all of mechs
	}{
		{"PLAIN", PlainAuth("", "jdoe", pass, "127.0.0.1"), nil},
		{"LOGIN", LoginAuth("jdoe", pass, "127.0.0.1"), nil},
		{"CRAM-MD5", CRAMMD5Auth("jdoe", pass), nil},
		{"SCRAM-SHA-1", ScramSHA1Auth("jdoe", pass), nil},
		{"SCRAM-SHA-256", ScramSHA256Auth("jdoe", pass), nil},
		{"SCRAM-SHA-1-PLUS", PasswordAuth("jdoe", pass, "127.0.0.1"), []string{"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS"}},
		{"SCRAM-SHA-256-PLUS", ScramSHA256PlusAuth("jdoe", pass), nil},
		{"XOAUTH2", XOAuth2Auth("jdoe", StaticToken(token), "127.0.0.1"), nil},
		{"OAUTHBEARER", OAuthBearerAuth("jdoe", StaticToken(token), "127.0.0.1"), nil},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			var authLines []string
			var mu sync.Mutex
			offer := mechs
			if tc.offer != nil {
				offer = tc.offer
			}
			srv := smtptest.NewServer(t, &smtptest.Options{
				AuthMechanisms: offer,
				Users:          map[string]string{"jdoe": pass},
				Tokens:         map[string]string{token: "jdoe"},
				Handler: func(s *smtptest.Session, line string) bool {
					mu.Lock()
					defer mu.Unlock()
					if strings.HasPrefix(line, "MAIL") {
						// The echo: every AUTH line, and its decoding.
						var echo []string
						for _, l := range authLines {
							dec, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimPrefix(l, "AUTH "+tc.mech), " "))
							echo = append(echo, "250-you said "+l, "250-which is "+strings.ToValidUTF8(strings.ReplaceAll(string(dec), "\x00", " "), "?"))
						}
						s.Reply(append(echo, "250 2.1.0 and the password is "+pass+", the token "+token)...)
						return true
					}
					if !strings.HasPrefix(line, "EHLO") && !strings.HasPrefix(line, "QUIT") {
						authLines = append(authLines, line)
					}
					return false
				},
			})
			var out bytes.Buffer
			d := testDialer(srv, ImplicitTLS)
			d.Trace = slog.New(slog.NewTextHandler(&out, nil))
			c, err := d.Dial(srv.ImplicitAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Auth(tc.auth); err != nil {
				t.Fatalf("Auth: %v", err)
			}
			if got := c.AuthMechanism(); got != tc.mech {
				t.Fatalf("mechanism %s, want %s", got, tc.mech)
			}
			if err := c.Mail("a@example.com"); err != nil {
				t.Fatal(err)
			}
			c.Quit()
			trace := out.String()
			if !strings.Contains(trace, "you said") {
				t.Fatalf("the server's echo is not in the trace:\n%s", trace)
			}
			// What the client sent on this session: the token for OAuth,
			// the password otherwise (the server's text names both).
			secrets := []string{pass}
			if strings.Contains(tc.mech, "OAUTH") {
				secrets = []string{token}
			}
			for _, l := range authLines {
				if l != "AUTH "+tc.mech {
					secrets = append(secrets, strings.TrimPrefix(l, "AUTH "+tc.mech+" "))
				}
			}
			for _, s := range secrets {
				for i := 0; i+secretRun <= len(s); i++ {
					if strings.Contains(trace, s[i:i+secretRun]) {
						t.Fatalf("the trace holds %q, part of %q:\n%s", s[i:i+secretRun], s, trace)
					}
				}
			}
		})
	}
}

// BenchmarkTrace measures a SendMail to the loopback test server with the
// trace off and on, in the same run: trace-off-allocs/op is the cost of
// the trace's mere existence (none: a nil check per record), and
// trace-on-allocs/op what a trace to a JSON handler adds.
func BenchmarkTrace(b *testing.B) {
	srv := smtptest.NewServer(b, nil)
	msg := []byte(testMsg)
	off := testDialer(srv, ImplicitTLS)
	on := testDialer(srv, ImplicitTLS)
	on.Trace = slog.New(slog.NewJSONHandler(io.Discard, nil))
	send := func(d *Dialer) {
		if err := d.SendMail(srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.net"}, msg); err != nil {
			b.Fatal(err)
		}
	}
	send(off)
	send(on)
	var mOff, mOn float64
	var tOff, tOn time.Duration
	n := 0
	for b.Loop() {
		start := time.Now()
		mOff += testing.AllocsPerRun(1, func() { send(off) })
		tOff += time.Since(start)
		start = time.Now()
		mOn += testing.AllocsPerRun(1, func() { send(on) })
		tOn += time.Since(start)
		n++
	}
	// The counts include the in-process server's allocations, the same
	// on both sides; the difference is the trace's.
	b.ReportMetric(mOff/float64(n), "trace-off-allocs/op")
	b.ReportMetric(mOn/float64(n), "trace-on-allocs/op")
	b.ReportMetric((mOn-mOff)/float64(n), "trace-extra-allocs/op")
	b.ReportMetric(float64(tOn)/float64(tOff), "time-on-vs-off")
}

// TestTraceHandshakeFailure: a certificate that does not verify is in the
// trace with the reason, for implicit TLS and STARTTLS.
func TestTraceHandshakeFailure(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Cert: smtptest.CertUntrusted})
	for _, mode := range []Mode{ImplicitTLS, STARTTLS} {
		var log traceLog
		d := testDialer(srv, mode)
		d.Trace = log.logger()
		addr := srv.ImplicitAddr
		if mode == STARTTLS {
			addr = srv.StartTLSAddr
		}
		if _, err := d.Dial(addr); err == nil {
			t.Fatalf("%v: Dial succeeded with an untrusted certificate", mode)
		}
		var failures []string
		for _, l := range log.get() {
			if strings.HasPrefix(l, "failure ") {
				failures = append(failures, l)
			}
		}
		if len(failures) != 1 || !strings.Contains(failures[0], "handshake error=") || !strings.Contains(failures[0], "certificate") {
			t.Errorf("%v: failure records %q", mode, failures)
		}
	}
}

package tlsmail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestFallbackTriggers(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		srv := smtptest.NewServer(t, nil)
		d := testDialer(srv, ImplicitTLSOrSTARTTLS)
		d.FallbackAddr = srv.StartTLSAddr
		c, err := d.Dial(closedAddr(t))
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := c.Mode(); !ok || m != STARTTLS {
			t.Errorf("Mode() = %v, %v; want STARTTLS", m, ok)
		}
		c.Quit()
		wantTranscript(t, srv, "plain: EHLO localhost", "plain: STARTTLS", "tls: EHLO localhost", "tls: QUIT")
	})
	t.Run("plaintext SMTP on the implicit port", func(t *testing.T) {
		srv := smtptest.NewServer(t, &smtptest.Options{PlaintextOnImplicit: true})
		d := testDialer(srv, ImplicitTLSOrSTARTTLS)
		d.FallbackAddr = srv.StartTLSAddr
		if err := d.SendMail(srv.ImplicitAddr, PlainAuth("", "user", "pass", "127.0.0.1"), "a@example.com", []string{"b@example.com"}, []byte(testMsg)); err != nil {
			t.Fatal(err)
		}
		// The implicit attempt sent only a TLS ClientHello, which the
		// plaintext server read as one garbage line; the fallback sent
		// nothing but EHLO and STARTTLS before TLS.
		got := transcript(t, srv)
		want := []string{"plain: EHLO localhost", "plain: STARTTLS", "tls: EHLO localhost", "tls: AUTH PLAIN AHVzZXIAcGFzcw=="}
		i := 0
		for i < len(got) && !strings.HasPrefix(got[i], "plain: EHLO") {
			if strings.HasPrefix(got[i], "tls:") || strings.Contains(got[i], "user") {
				t.Errorf("implicit attempt sent %q", got[i])
			}
			i++
		}
		for j, w := range want {
			if i+j >= len(got) || got[i+j] != w {
				t.Fatalf("transcript %q; want %q after the implicit attempt", got, want)
			}
		}
		if len(srv.Messages()) != 1 || !srv.Messages()[0].TLS {
			t.Error("message not delivered over TLS")
		}
	})
	t.Run("default fallback address is port 587", func(t *testing.T) {
		var dialed []string
		d := &Dialer{Mode: ImplicitTLSOrSTARTTLS, NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed = append(dialed, addr)
			return nil, errors.New("no route")
		}}
		_, err := d.Dial("mail.example.com:465")
		var fe *FallbackError
		if !errors.As(err, &fe) || fe.STARTTLSAddr != "mail.example.com:587" {
			t.Fatalf("Dial = %v", err)
		}
		if strings.Join(dialed, " ") != "mail.example.com:465 mail.example.com:587" {
			t.Errorf("dialed %q", dialed)
		}
	})
}

func TestFallbackNonTriggers(t *testing.T) {
	tests := []struct {
		name  string
		opts  smtptest.Options
		check func(error) bool
	}{
		{"untrusted certificate", smtptest.Options{Cert: smtptest.CertUntrusted}, func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua)
		}},
		{"wrong name", smtptest.Options{Cert: smtptest.CertWrongName}, func(err error) bool {
			var he x509.HostnameError
			return errors.As(err, &he)
		}},
		{"expired", smtptest.Options{Cert: smtptest.CertExpired}, func(err error) bool {
			var ce x509.CertificateInvalidError
			return errors.As(err, &ce) && ce.Reason == x509.Expired
		}},
		{"TLS 1.1 only", smtptest.Options{MaxTLSVersion: tls.VersionTLS11}, func(err error) bool {
			return strings.Contains(err.Error(), "protocol version")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := smtptest.NewServer(t, &tt.opts)
			good := smtptest.NewServer(t, nil)
			d := testDialer(bad, ImplicitTLSOrSTARTTLS)
			d.FallbackAddr = good.StartTLSAddr
			c, err := d.Dial(bad.ImplicitAddr)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !tt.check(err) {
				t.Errorf("Dial = %v", err)
			}
			if n := good.Connections(); n != 0 {
				t.Errorf("fell back after %v (%d connections)", err, n)
			}
			wantTranscript(t, bad)
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		good := smtptest.NewServer(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		d := &Dialer{Mode: ImplicitTLSOrSTARTTLS, FallbackAddr: good.StartTLSAddr,
			NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				cancel()
				<-ctx.Done()
				return nil, ctx.Err()
			}}
		_, err := d.DialContext(ctx, "127.0.0.1:465")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Dial = %v; want context.Canceled", err)
		}
		if good.Connections() != 0 {
			t.Error("fell back after cancellation")
		}
	})
}

func TestFallbackBothFail(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{StripSTARTTLS: true})
	d := testDialer(srv, ImplicitTLSOrSTARTTLS)
	d.FallbackAddr = srv.StartTLSAddr
	implicit := closedAddr(t)
	_, err := d.Dial(implicit)
	var fe *FallbackError
	if !errors.As(err, &fe) {
		t.Fatalf("Dial = %v; want *FallbackError", err)
	}
	if !errors.Is(err, ErrSTARTTLSUnsupported) {
		t.Errorf("errors.Is(ErrSTARTTLSUnsupported) false for %v", err)
	}
	var oe *net.OpError
	if !errors.As(fe.ImplicitErr, &oe) || fe.ImplicitAddr != implicit || fe.STARTTLSAddr != srv.StartTLSAddr {
		t.Errorf("FallbackError = %+v", fe)
	}
	if !strings.Contains(err.Error(), "implicit TLS to "+implicit) || !strings.Contains(err.Error(), "STARTTLS fallback to "+srv.StartTLSAddr) {
		t.Errorf("message %q does not name both attempts", err)
	}
	wantTranscript(t, srv, "plain: EHLO localhost")
}

func TestImplicitTLSAtSTARTTLSPort(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	start := time.Now()
	_, err := testDialer(srv, ImplicitTLS).Dial(srv.StartTLSAddr)
	if !errors.Is(err, ErrPlaintextServer) {
		t.Fatalf("Dial = %v; want ErrPlaintextServer", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v; want an immediate error", d)
	}
	for _, s := range []string{`"220 m..."`, "STARTTLS", "587", "465"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestSTARTTLSAtImplicitPort(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	d := testDialer(srv, STARTTLS)
	d.GreetingTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err := d.Dial(srv.ImplicitAddr)
	if !errors.Is(err, ErrNoGreeting) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Dial = %v; want ErrNoGreeting", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v; want about the greeting timeout", d)
	}
	if !strings.Contains(err.Error(), "implicit TLS (port 465)") {
		t.Errorf("error %q does not name implicit TLS", err)
	}
}

func TestTimeoutsNameTheStep(t *testing.T) {
	stall := func(c net.Conn) bool { io.Copy(io.Discard, c); return true }
	t.Run("TLS handshake", func(t *testing.T) {
		srv := smtptest.NewServer(t, &smtptest.Options{OnAccept: stall})
		d := testDialer(srv, ImplicitTLS)
		d.GreetingTimeout = 200 * time.Millisecond
		_, err := d.Dial(srv.ImplicitAddr)
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "handshake") {
			t.Errorf("Dial = %v", err)
		}
	})
	t.Run("greeting", func(t *testing.T) {
		srv := smtptest.NewServer(t, &smtptest.Options{OnAccept: stall})
		d := testDialer(srv, STARTTLS)
		d.GreetingTimeout = 200 * time.Millisecond
		_, err := d.Dial(srv.StartTLSAddr)
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "greeting") {
			t.Errorf("Dial = %v", err)
		}
	})
	t.Run("command reply", func(t *testing.T) {
		srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
			if strings.HasPrefix(line, "MAIL") {
				s.Stall()
				return true
			}
			return false
		}})
		d := testDialer(srv, ImplicitTLS)
		d.CommandTimeout = 200 * time.Millisecond
		c, err := d.Dial(srv.ImplicitAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		err = c.Mail("a@example.com")
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "MAIL") {
			t.Errorf("Mail = %v", err)
		}
		if time.Since(start) > 2*time.Second {
			t.Errorf("took %v", time.Since(start))
		}
	})
}

func TestContextCancellationInterruptsIO(t *testing.T) {
	var stalled atomic.Bool
	srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
		if strings.HasPrefix(line, "RCPT") {
			stalled.Store(true)
			s.Stall()
			return true
		}
		return false
	}})
	d := testDialer(srv, ImplicitTLS)
	d.CommandTimeout = time.Minute // the context, not a timeout, must end it
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for !stalled.Load() {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	err := d.SendMailContext(ctx, srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.com"}, []byte(testMsg))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("SendMailContext = %v; want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned after %v", d)
	}
	if len(srv.Messages()) != 0 {
		t.Error("message delivered")
	}
}

func TestContextDeadlineDuringDial(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{OnAccept: func(c net.Conn) bool { io.Copy(io.Discard, c); return true }})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	d := testDialer(srv, ImplicitTLS)
	d.GreetingTimeout = time.Minute
	_, err := d.DialContext(ctx, srv.ImplicitAddr)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("DialContext = %v; want context.DeadlineExceeded", err)
	}
}

func TestDialerConfigAndDefaults(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	cfg := srv.ClientTLSConfig()
	var used atomic.Int32
	d := &Dialer{TLSConfig: cfg, LocalName: "client.example",
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			used.Add(1)
			var nd net.Dialer
			return nd.DialContext(ctx, network, addr)
		}}
	c, err := d.Dial(srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if used.Load() != 1 {
		t.Error("NetDialContext not used")
	}
	if cfg.ServerName != "" || cfg.MinVersion != 0 {
		t.Error("Dialer modified the caller's tls.Config")
	}
	wantTranscript(t, srv, "tls: EHLO client.example", "tls: QUIT")

	if got := (&Dialer{}).timeouts(); got != (timeouts{DefaultTimeout, DefaultGreetingTimeout, DefaultCommandTimeout, DefaultDataTimeout}) {
		t.Errorf("zero Dialer timeouts = %+v", got)
	}
	for _, addr := range []string{"mail.example.com", "", "[::1"} {
		if _, err := d.Dial(addr); err == nil || !strings.Contains(err.Error(), "host:port") {
			t.Errorf("Dial(%q) = %v; want an error explaining host:port", addr, err)
		}
	}
	if _, err := (&Dialer{Mode: Mode(7)}).Dial("a:1"); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{ImplicitTLS: "ImplicitTLS", STARTTLS: "STARTTLS", ImplicitTLSOrSTARTTLS: "ImplicitTLSOrSTARTTLS", 9: "Mode(9)"} {
		if m.String() != want {
			t.Errorf("%d.String() = %q", int(m), m.String())
		}
	}
}

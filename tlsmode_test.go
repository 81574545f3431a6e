package tlsmail

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
		// The expectation is per connection, because the server reads the
		// two concurrently: the implicit attempt's lines can arrive after
		// the fallback's first ones. (The ClientHello holds LF bytes, for
		// one in cipher suite 0xc00a, so the server reads it as several
		// lines, answering each while the fallback is under way.)
		if err := srv.WaitIdle(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		sessions := map[int][]string{}
		var ids []int
		for _, l := range srv.Lines() {
			if _, ok := sessions[l.Session]; !ok {
				ids = append(ids, l.Session)
			}
			prefix := "plain: "
			if l.TLS {
				prefix = "tls: "
			}
			sessions[l.Session] = append(sessions[l.Session], prefix+l.Text)
		}
		// The fallback, the last connection, sent nothing but EHLO and
		// STARTTLS before TLS.
		want := []string{"plain: EHLO localhost", "plain: STARTTLS", "tls: EHLO localhost", "tls: AUTH PLAIN AHVzZXIAcGFzcw==",
			"tls: MAIL FROM:<a@example.com> SIZE=63", "tls: RCPT TO:<b@example.com>", "tls: DATA", "tls: QUIT"}
		slices.Sort(ids) // in the order of the connections
		last := ids[len(ids)-1]
		if got := sessions[last]; !slices.Equal(got, want) {
			t.Errorf("fallback session received:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
		// The implicit attempt, if the server read anything of it before
		// the client hung up, sent one TLS record, the ClientHello, and
		// nothing after it.
		for _, id := range ids[:len(ids)-1] {
			var b []byte
			for _, l := range sessions[id] {
				text, ok := strings.CutPrefix(l, "plain: ")
				if !ok {
					t.Fatalf("implicit attempt: %q", l)
				}
				b = append(append(b, text...), '\n')
			}
			b = b[:len(b)-1] // the server strips line endings: at most this much was sent
			if len(b) < 5 || b[0] != 0x16 || b[1] != 0x03 || len(b) > 5+(int(b[3])<<8|int(b[4])) {
				t.Errorf("implicit attempt sent more than a ClientHello: %q", b)
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
			return nil, syscallDialError(syscall.EHOSTUNREACH) // "no route to host"
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
	// The test server's implicit port is not 465, so the error offers
	// implicit TLS as a possibility beside a slow server.
	if !strings.Contains(err.Error(), "may expect implicit TLS (as on port 465; use Mode ImplicitTLS)") {
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

// failingDial returns a NetDialContext that fails the connection to addr
// with the error fail returns, and dials every other address for real. It
// records every address it is asked for.
func failingDial(addr string, fail func(ctx context.Context) error, dialed *[]string) func(context.Context, string, string) (net.Conn, error) {
	var mu sync.Mutex
	return func(ctx context.Context, network, a string) (net.Conn, error) {
		mu.Lock()
		*dialed = append(*dialed, a)
		mu.Unlock()
		if a == addr {
			return nil, fail(ctx)
		}
		var nd net.Dialer
		return nd.DialContext(ctx, network, a)
	}
}

// syscallDialError builds the error net.Dialer returns when connect(2) fails
// with errno.
func syscallDialError(errno syscall.Errno) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 465},
		Err: &os.SyscallError{Syscall: "connect", Err: errno}}
}

// TestFallbackConnectErrors checks that the fallback follows from what the
// connect error is, not from which function returned it: a custom
// NetDialContext (a proxy, say) can return anything, including a
// certificate error.
func TestFallbackConnectErrors(t *testing.T) {
	const implicit = "mx.test:465"
	dnsNotFound := &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "mx.test", IsNotFound: true}}
	for _, tt := range []struct {
		name string
		fail func(ctx context.Context) error
	}{
		{"connection refused", func(context.Context) error { return syscallDialError(syscall.ECONNREFUSED) }},
		{"host unreachable", func(context.Context) error { return syscallDialError(syscall.EHOSTUNREACH) }},
		{"network unreachable", func(context.Context) error { return syscallDialError(syscall.ENETUNREACH) }},
		{"connection refused (Windows)", func(context.Context) error { return syscallDialError(10061) }}, // WSAECONNREFUSED
		{"connect timed out", func(context.Context) error { return syscallDialError(syscall.ETIMEDOUT) }},
		{"deadline exceeded", func(context.Context) error {
			return &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
		}},
		{"name not found", func(context.Context) error { return dnsNotFound }},
		{"Dialer.Timeout expired", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		{"Dialer.Timeout expired, proxy's own error", func(ctx context.Context) error {
			<-ctx.Done()
			return errors.New("proxy: connection to mx.test:465 aborted")
		}},
	} {
		t.Run("falls back/"+tt.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, nil)
			d := testDialer(srv, ImplicitTLSOrSTARTTLS)
			d.Timeout = 300 * time.Millisecond
			d.FallbackAddr = srv.StartTLSAddr
			var dialed []string
			d.NetDialContext = failingDial(implicit, tt.fail, &dialed)
			c, err := d.Dial(implicit)
			if err != nil {
				t.Fatalf("Dial = %v; want a fallback to STARTTLS", err)
			}
			defer c.Close()
			if m, ok := c.Mode(); !ok || m != STARTTLS {
				t.Errorf("Mode() = %v, %v; want STARTTLS", m, ok)
			}
			if want := []string{implicit, srv.StartTLSAddr}; !slices.Equal(dialed, want) {
				t.Errorf("dialed %q; want %q", dialed, want)
			}
		})
	}

	certErr := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	proxyErr := errors.New("proxy says no")
	for _, tt := range []struct {
		name  string
		err   error
		check func(error) bool
	}{
		{"certificate verification error", certErr, func(err error) bool {
			var ce *tls.CertificateVerificationError
			return errors.As(err, &ce) && ce == certErr
		}},
		{"unknown authority", x509.UnknownAuthorityError{}, func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua)
		}},
		{"proxy refusal", proxyErr, func(err error) bool { return errors.Is(err, proxyErr) }},
		{"EOF", io.EOF, func(err error) bool { return errors.Is(err, io.EOF) }},
		{"connection reset", syscallDialError(syscall.ECONNRESET), func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
		{"DNS server failure", &net.DNSError{Err: "server misbehaving", Name: "mx.test", IsTemporary: true}, func(err error) bool {
			var de *net.DNSError
			return errors.As(err, &de) && !de.IsNotFound
		}},
	} {
		t.Run("returned as is/"+tt.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, nil)
			d := testDialer(srv, ImplicitTLSOrSTARTTLS)
			d.FallbackAddr = srv.StartTLSAddr
			var dialed []string
			d.NetDialContext = failingDial(implicit, func(context.Context) error { return tt.err }, &dialed)
			c, err := d.Dial(implicit)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded: fell back to STARTTLS")
			}
			var fe *FallbackError
			if errors.As(err, &fe) {
				t.Errorf("Dial = %v; fell back", err)
			}
			if !tt.check(err) {
				t.Errorf("Dial = %v; want the NetDialContext error", err)
			}
			if !slices.Equal(dialed, []string{implicit}) {
				t.Errorf("dialed %q; want only %s", dialed, implicit)
			}
			if n := srv.Connections(); n != 0 {
				t.Errorf("%d connections to the fallback server", n)
			}
		})
	}
}

// TestFallbackCancelledWhileConnecting checks that a cancellation during
// the connect is reported as such, whatever NetDialContext returned, and
// never falls back.
func TestFallbackCancelledWhileConnecting(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := testDialer(srv, ImplicitTLSOrSTARTTLS)
	d.FallbackAddr = srv.StartTLSAddr
	var dialed []string
	d.NetDialContext = failingDial("mx.test:465", func(context.Context) error {
		cancel()
		return syscallDialError(syscall.ECONNREFUSED)
	}, &dialed)
	_, err := d.DialContext(ctx, "mx.test:465")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("DialContext = %v; want context.Canceled", err)
	}
	if len(dialed) != 1 || srv.Connections() != 0 {
		t.Errorf("fell back after cancellation: dialed %q", dialed)
	}
}

// rawServer starts a TCP listener on 127.0.0.1 that runs script on every
// connection, and returns its address. The connection is closed when script
// returns; everything is stopped at the end of the test.
func rawServer(t *testing.T, script func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				script(c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-accepting
		wg.Wait()
	})
	return l.Addr().String()
}

// readHello reads (part of) the client's first flight.
func readHello(c net.Conn) {
	buf := make([]byte, 4096)
	c.Read(buf)
}

// TestPlaintextOnlyFromFirstBytes checks that only the very first bytes of
// the connection can make it a plaintext server: a "220" after the start of
// a ServerHello is a failed handshake, and a server that is neither TLS nor
// SMTP is named for what it sent.
func TestPlaintextOnlyFromFirstBytes(t *testing.T) {
	tests := []struct {
		name      string
		script    func(net.Conn)
		want, not []string // in the error message, and not in it
	}{
		{"220 after a ServerHello", func(c net.Conn) {
			readHello(c)
			// A handshake record carrying the first 4 bytes of a
			// ServerHello that announces 100 bytes, then a plaintext
			// greeting.
			c.Write([]byte{0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x64})
			time.Sleep(20 * time.Millisecond)
			c.Write([]byte("220 mx.test ESMTP\r\n"))
			io.Copy(io.Discard, c)
		}, []string{"tlsmail: TLS handshake with "}, []string{"not TLS", `"220 m`}},
		{"silent server", func(c net.Conn) {
			io.Copy(io.Discard, c)
		}, []string{"tlsmail: TLS handshake with ", "no TLS handshake within 300ms"}, []string{"not TLS"}},
		{"SSH server", func(c net.Conn) {
			c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			io.Copy(io.Discard, c)
		}, []string{"tlsmail: TLS handshake with ", `"SSH-2.0-OpenSSH_9.2"`, "not TLS", "implicit-TLS", "465"}, nil},
		{"HTTP server", func(c net.Conn) {
			readHello(c)
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"))
		}, []string{"tlsmail: TLS handshake with ", `"HTTP/1.1 400 Bad`, "not TLS", "implicit-TLS", "465"}, nil},
	}
	for _, tt := range tests {
		for _, mode := range []Mode{ImplicitTLS, ImplicitTLSOrSTARTTLS} {
			t.Run(tt.name+"/"+mode.String(), func(t *testing.T) {
				addr := rawServer(t, tt.script)
				good := smtptest.NewServer(t, nil)
				d := testDialer(good, mode)
				d.GreetingTimeout = 300 * time.Millisecond
				d.FallbackAddr = good.StartTLSAddr
				c, err := d.Dial(addr)
				if err == nil {
					c.Close()
					t.Fatal("Dial succeeded")
				}
				t.Logf("error: %v", err)
				if errors.Is(err, ErrPlaintextServer) {
					t.Errorf("Dial = %v; want no ErrPlaintextServer", err)
				}
				var fe *FallbackError
				if errors.As(err, &fe) || good.Connections() != 0 {
					t.Errorf("fell back to STARTTLS: %v", err)
				}
				for _, s := range append(tt.want, addr) {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				for _, s := range append(tt.not, "STARTTLS") {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q contains %q", err, s)
					}
				}
			})
		}
	}
}

// TestMayFallBack checks the fallback decision by itself, including the
// cases the dial path already excludes before asking.
func TestMayFallBack(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(live)
	cancel()
	refused := &connectError{err: syscallDialError(syscall.ECONNREFUSED), unreachable: true}
	plaintext := fmt.Errorf("%w: 127.0.0.1:465 sent \"220 m...\"", ErrPlaintextServer)
	for _, tt := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"unreachable", live, refused, true},
		{"plaintext server", live, plaintext, true},
		{"unreachable, cancelled", cancelled, refused, false},
		{"plaintext server, cancelled", cancelled, plaintext, false},
		{"connect error, not unreachable", live, &connectError{err: errors.New("proxy says no")}, false},
		// Unreachable-looking errors count only from the connect step.
		{"handshake timeout", live, fmt.Errorf("tlsmail: TLS handshake with a:465: no TLS handshake within 1s: %w", os.ErrDeadlineExceeded), false},
		{"refused, not from connecting", live, syscallDialError(syscall.ECONNREFUSED), false},
	} {
		if got := mayFallBack(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: mayFallBack = %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestLooksLikeSMTP(t *testing.T) {
	for s, want := range map[string]bool{
		"220 mx": true, "220-mx": true, "220\r\n": true, "421 4": true, "554 5": true, "250 ": true,
		"": false, "220": false, "150 x": false, "199 x": false, "600 x": false, "260 x": false, "2x0 x": false,
		"220x": false, "220\n": false, "HTTP/": false, "SSH-2": false, "\x16\x03\x03\x00": false,
	} {
		if got := looksLikeSMTP([]byte(s)); got != want {
			t.Errorf("looksLikeSMTP(%q) = %v; want %v", s, got, want)
		}
	}
}

func TestNoGreetingError(t *testing.T) {
	cause := fmt.Errorf("tlsmail: greeting: no reply from server within 30s: %w", os.ErrDeadlineExceeded)
	for _, tt := range []struct {
		addr      string
		want, not []string
	}{
		{"mx.example.com:465", []string{"mx.example.com:465", "within 30s", "port 465 is the implicit-TLS port", "use Mode ImplicitTLS"}, []string{"overloaded"}},
		{"mx.example.com:smtps", []string{"port 465 is the implicit-TLS port", "use Mode ImplicitTLS"}, []string{"overloaded"}},
		{"mx.example.com:587", []string{"mx.example.com:587", "sent no greeting within 30s: the server may be overloaded, or it may expect implicit TLS (as on port 465; use Mode ImplicitTLS)"}, []string{"is the implicit-TLS port"}},
		{"[::1]:2525", []string{"may be overloaded", "may expect implicit TLS"}, nil},
		{"no port", []string{"may be overloaded", "may expect implicit TLS"}, nil},
	} {
		err := noGreetingError(tt.addr, 30*time.Second, cause)
		if !errors.Is(err, ErrNoGreeting) || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, cause) {
			t.Errorf("noGreetingError(%q) = %v; want ErrNoGreeting, os.ErrDeadlineExceeded and the cause", tt.addr, err)
		}
		if !strings.HasPrefix(err.Error(), "tlsmail: ") {
			t.Errorf("noGreetingError(%q) = %q; want the tlsmail: prefix", tt.addr, err)
		}
		for _, s := range tt.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("noGreetingError(%q) = %q; want it to contain %q", tt.addr, err, s)
			}
		}
		for _, s := range tt.not {
			if strings.Contains(err.Error(), s) {
				t.Errorf("noGreetingError(%q) = %q; must not contain %q", tt.addr, err, s)
			}
		}
	}
	if err := noGreetingError("mx.example.com:587", time.Second, nil); !errors.Is(err, ErrNoGreeting) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("noGreetingError with nil cause = %v", err)
	}
	if err := noGreetingError("mx.example.com:587", time.Second, io.EOF); !errors.Is(err, ErrNoGreeting) || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, io.EOF) {
		t.Errorf("noGreetingError with cause io.EOF = %v", err)
	}
}

// TestDefaultTimeouts pins the deliberate choices documented on the
// constants against RFC 5321 section 4.5.3.2.
func TestDefaultTimeouts(t *testing.T) {
	for _, tt := range []struct {
		name      string
		got, want time.Duration
	}{
		{"DefaultTimeout", DefaultTimeout, 30 * time.Second},
		{"DefaultGreetingTimeout", DefaultGreetingTimeout, 30 * time.Second},
		{"DefaultCommandTimeout", DefaultCommandTimeout, 5 * time.Minute},
		{"DefaultDataTimeout", DefaultDataTimeout, 10 * time.Minute},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v; want %v", tt.name, tt.got, tt.want)
		}
	}
}

// TestOldTLSRefused checks that a caller's MinVersion below TLS 1.2 is
// raised, not honoured, without modifying the caller's tls.Config, and that
// the error explains why.
func TestOldTLSRefused(t *testing.T) {
	for _, mode := range []Mode{ImplicitTLS, STARTTLS} {
		t.Run(mode.String(), func(t *testing.T) {
			srv := smtptest.NewServer(t, &smtptest.Options{MaxTLSVersion: tls.VersionTLS11})
			d := testDialer(srv, mode)
			d.TLSConfig.MinVersion = tls.VersionTLS10
			addr := srv.ImplicitAddr
			if mode == STARTTLS {
				addr = srv.StartTLSAddr
			}
			c, err := d.Dial(addr)
			if err == nil {
				st, _ := c.TLSConnectionState()
				c.Close()
				t.Fatalf("Dial succeeded with %s", tls.VersionName(st.Version))
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), "protocol version") || !strings.Contains(err.Error(), "tlsmail requires TLS 1.2 or later (RFC 8996)") {
				t.Errorf("Dial = %v; want the protocol version error and the TLS 1.2 hint", err)
			}
			if d.TLSConfig.MinVersion != tls.VersionTLS10 {
				t.Errorf("caller's MinVersion changed to %s", tls.VersionName(d.TLSConfig.MinVersion))
			}
		})
	}
}

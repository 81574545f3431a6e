package tlsmail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/tlsmail/tlsmail/internal/wire"
)

// Mode says how a Dialer secures the connection. There is deliberately no
// plaintext or opportunistic mode: every mode ends in TLS or in an error.
type Mode int

const (
	// ImplicitTLS starts TLS on the first byte of the connection, as on the
	// submissions port 465 (RFC 8314 section 3). It is the zero value.
	ImplicitTLS Mode = iota

	// STARTTLS connects in plaintext and upgrades with the STARTTLS
	// command, as on the submission port 587 (RFC 3207). TLS is required:
	// if the server does not offer STARTTLS, refuses it or the handshake
	// fails, the Dialer returns an error having sent nothing but EHLO and
	// STARTTLS in plaintext.
	STARTTLS

	// ImplicitTLSOrSTARTTLS tries ImplicitTLS and, only if that attempt
	// failed before any trust decision (the connection could not be made,
	// or the server answered in plaintext SMTP where a TLS handshake was
	// expected), tries STARTTLS on Dialer.FallbackAddr. It never falls back
	// after a certificate or handshake error or a cancelled context.
	ImplicitTLSOrSTARTTLS
)

// String returns the constant's name.
func (m Mode) String() string {
	switch m {
	case ImplicitTLS:
		return "ImplicitTLS"
	case STARTTLS:
		return "STARTTLS"
	case ImplicitTLSOrSTARTTLS:
		return "ImplicitTLSOrSTARTTLS"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Default timeouts, used where a Dialer field is zero. Each is at or below
// the minimum RFC 5321 section 4.5.3.2 asks a client to wait for that step,
// so a silent server never blocks the caller for longer than the RFC
// allows, and a healthy one is never cut off.
const (
	DefaultTimeout         = 30 * time.Second // TCP connect
	DefaultGreetingTimeout = 10 * time.Second // 220 greeting and each TLS handshake
	DefaultCommandTimeout  = 2 * time.Minute  // each command's reply
	DefaultDataTimeout     = 10 * time.Minute // each write of message data and the reply after it
)

// A Dialer connects to an SMTP server securely. The zero value is ready to
// use: implicit TLS, system roots, "localhost" as the EHLO name and the
// default timeouts. A Dialer must not be modified while in use.
type Dialer struct {
	// Mode is how the connection is secured. The zero value is ImplicitTLS.
	Mode Mode

	// TLSConfig is the TLS client configuration. It is cloned, never
	// modified; ServerName is set to the host being dialed and MinVersion
	// raised to TLS 1.2 when they are unset. nil means the defaults,
	// which verify the server's certificate against the system roots.
	TLSConfig *tls.Config

	// FallbackAddr is the STARTTLS address used by ImplicitTLSOrSTARTTLS
	// after a failed implicit attempt. Empty means the same host on port
	// 587.
	FallbackAddr string

	// Timeout bounds the TCP connect. Zero means DefaultTimeout.
	Timeout time.Duration

	// GreetingTimeout bounds the wait for the server's 220 greeting and
	// each TLS handshake. Zero means DefaultGreetingTimeout. It is short
	// so that STARTTLS pointed at an implicit-TLS port, where the server
	// waits silently for a TLS ClientHello, fails quickly.
	GreetingTimeout time.Duration

	// CommandTimeout bounds the wait for each command's reply. Zero means
	// DefaultCommandTimeout.
	CommandTimeout time.Duration

	// DataTimeout bounds each write of message data and the wait for the
	// reply that accepts the message. Zero means DefaultDataTimeout.
	DataTimeout time.Duration

	// LocalName is the host name sent with EHLO. Empty means "localhost",
	// as in net/smtp (it reveals nothing about the sending machine).
	LocalName string

	// NetDialContext, if set, makes the underlying connection, for
	// example through a proxy or over a Unix socket. TLS is still run
	// on top of the connection it returns. It is called with network
	// "tcp". nil means a net.Dialer with Timeout.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Policy and connection errors of the TLS modes. Compare with errors.Is.
var (
	// ErrSTARTTLSUnsupported is returned when a server does not advertise
	// STARTTLS. tlsmail then stops rather than continue in plaintext: the
	// advertisement may have been stripped by an attacker.
	ErrSTARTTLSUnsupported = errors.New("tlsmail: server does not offer STARTTLS; refusing to continue in plaintext")

	// ErrResponseInjection is returned when the server sent bytes after
	// its 220 reply to STARTTLS and before the TLS handshake (RFC 3207
	// section 6). The connection is closed.
	ErrResponseInjection = errors.New("tlsmail: STARTTLS response injection: server sent data before the TLS handshake")

	// ErrPlaintextServer is returned by ImplicitTLS when the server
	// answered in plaintext SMTP instead of a TLS handshake: the address
	// is most likely a STARTTLS port (587 or 25).
	ErrPlaintextServer = errors.New("tlsmail: server answered in plaintext SMTP where implicit TLS was expected")

	// ErrNoGreeting is returned when no greeting arrives within the
	// GreetingTimeout. In STARTTLS mode the address is most likely an
	// implicit-TLS port (465), where the server waits for the client to
	// start TLS.
	ErrNoGreeting = errors.New("tlsmail: no SMTP greeting from server")
)

// FallbackError is returned by ImplicitTLSOrSTARTTLS when both attempts
// failed. errors.Is and errors.As see both causes.
type FallbackError struct {
	ImplicitAddr string // address of the implicit-TLS attempt
	ImplicitErr  error  // why it failed
	STARTTLSAddr string // address of the STARTTLS attempt
	STARTTLSErr  error  // why it failed
}

// Error describes both failures.
func (e *FallbackError) Error() string {
	return fmt.Sprintf("tlsmail: implicit TLS to %s failed (%v), and STARTTLS fallback to %s failed: %v",
		e.ImplicitAddr, e.ImplicitErr, e.STARTTLSAddr, e.STARTTLSErr)
}

// Unwrap returns both causes.
func (e *FallbackError) Unwrap() []error {
	return []error{e.ImplicitErr, e.STARTTLSErr}
}

// Dial connects to addr (host:port) as DialContext does, with a
// background context.
func (d *Dialer) Dial(addr string) (*Client, error) {
	return d.DialContext(context.Background(), addr)
}

// DialContext connects to the SMTP server at addr (host:port), secures the
// connection according to d.Mode, verifies the server certificate for the
// host in addr and sends EHLO. The returned Client is TLS; Client.Mode
// tells which path was used. ctx bounds everything DialContext does;
// cancelling it interrupts the I/O in flight.
func (d *Dialer) DialContext(ctx context.Context, addr string) (*Client, error) {
	host, err := splitAddr(addr)
	if err != nil {
		return nil, err
	}
	if err := wire.CheckHelloName(d.localName()); err != nil {
		// Checked before connecting: EHLO goes out later, when nothing
		// could be done about the name any more.
		return nil, fmt.Errorf("%w: Dialer.LocalName %q %v", ErrInvalidInput, d.localName(), err)
	}
	switch d.Mode {
	case ImplicitTLS:
		return d.dialImplicit(ctx, addr, host)
	case STARTTLS:
		return d.dialSTARTTLS(ctx, addr, host)
	case ImplicitTLSOrSTARTTLS:
		c, err := d.dialImplicit(ctx, addr, host)
		if err == nil || !mayFallBack(ctx, err) {
			return c, err
		}
		fb := d.FallbackAddr
		if fb == "" {
			fb = net.JoinHostPort(host, "587")
		}
		fbHost, err2 := splitAddr(fb)
		if err2 == nil {
			c, err2 = d.dialSTARTTLS(ctx, fb, fbHost)
		}
		if err2 != nil {
			return nil, &FallbackError{ImplicitAddr: addr, ImplicitErr: err, STARTTLSAddr: fb, STARTTLSErr: err2}
		}
		return c, nil
	}
	return nil, fmt.Errorf("tlsmail: unknown Mode %v", d.Mode)
}

func splitAddr(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("tlsmail: address %q: %w (want host:port, e.g. smtp.example.com:465)", addr, err)
	}
	return host, nil
}

// dialError marks a failure to make the TCP connection; only these, and
// ErrPlaintextServer, allow a fallback.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// mayFallBack reports whether an implicit-TLS failure happened before any
// trust decision. Why so narrow: falling back after a certificate error
// would let whoever presented a bad certificate choose our path, and would
// hide the error from the caller.
func mayFallBack(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var de *dialError
	return errors.As(err, &de) || errors.Is(err, ErrPlaintextServer)
}

func (d *Dialer) netDial(ctx context.Context, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, d.timeouts().dial)
	defer cancel()
	var conn net.Conn
	var err error
	if d.NetDialContext != nil {
		conn, err = d.NetDialContext(dctx, "tcp", addr)
	} else {
		var nd net.Dialer
		conn, err = nd.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("tlsmail: connecting to %s: %w", addr, ctx.Err())
		}
		return nil, &dialError{fmt.Errorf("tlsmail: connecting to %s: %w", addr, err)}
	}
	return conn, nil
}

func (d *Dialer) dialImplicit(ctx context.Context, addr, host string) (*Client, error) {
	conn, err := d.netDial(ctx, addr)
	if err != nil {
		return nil, err
	}
	t := d.timeouts()
	tconn, err := handshake(ctx, conn, completeConfig(d.TLSConfig, host), t.greeting)
	if err != nil {
		defer conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("tlsmail: TLS handshake with %s: %w", addr, ctx.Err())
		}
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && looksLikeSMTP(rh.RecordHeader[:]) {
			// The TLS layer has consumed the rest of the line; its first
			// five bytes are enough to show what happened.
			return nil, fmt.Errorf("%w: %s sent %q, the start of a plaintext greeting, so it most likely expects STARTTLS (port 587); use Mode STARTTLS, or the server's implicit-TLS port (465)",
				ErrPlaintextServer, addr, string(rh.RecordHeader[:])+"...")
		}
		return nil, fmt.Errorf("tlsmail: TLS handshake with %s: %w", addr, err)
	}
	c := d.newClient(tconn, host)
	c.isTLS, c.mode = true, ImplicitTLS
	if err := c.readGreeting(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// looksLikeSMTP reports whether the start of a "TLS record" is in fact an
// SMTP reply code.
func looksLikeSMTP(b []byte) bool {
	return len(b) >= 4 && b[0] >= '1' && b[0] <= '5' && b[1] >= '0' && b[1] <= '9' &&
		b[2] >= '0' && b[2] <= '9' && (b[3] == ' ' || b[3] == '-' || b[3] == '\r')
}

func (d *Dialer) dialSTARTTLS(ctx context.Context, addr, host string) (*Client, error) {
	conn, err := d.netDial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c := d.newClient(conn, host)
	if err := c.readGreeting(ctx); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w: %s sent nothing within %v; it most likely expects implicit TLS (port 465): use Mode ImplicitTLS (%w)",
				ErrNoGreeting, addr, c.timeouts.greeting, err)
		}
		return nil, err
	}
	if err := c.startTLS(ctx, d.TLSConfig); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (d *Dialer) timeouts() timeouts {
	t := timeouts{d.Timeout, d.GreetingTimeout, d.CommandTimeout, d.DataTimeout}
	if t.dial == 0 {
		t.dial = DefaultTimeout
	}
	if t.greeting == 0 {
		t.greeting = DefaultGreetingTimeout
	}
	if t.command == 0 {
		t.command = DefaultCommandTimeout
	}
	if t.data == 0 {
		t.data = DefaultDataTimeout
	}
	return t
}

func (d *Dialer) localName() string {
	if d.LocalName != "" {
		return d.LocalName
	}
	return "localhost"
}

// completeConfig clones config (nil allowed) and fills in what a safe
// client connection needs without overriding the caller's choices.
func completeConfig(config *tls.Config, serverName string) *tls.Config {
	var cfg *tls.Config
	if config == nil {
		cfg = &tls.Config{}
	} else {
		cfg = config.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		// Why: TLS 1.0 and 1.1 are deprecated (RFC 8996); RFC 8314
		// section 4.1 asks for current TLS.
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}

// handshake runs a client TLS handshake over conn, bounded by timeout and
// interrupted by ctx.
func handshake(ctx context.Context, conn net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	tconn := tls.Client(conn, cfg)
	hctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := tconn.HandshakeContext(hctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if hctx.Err() != nil {
			return nil, fmt.Errorf("no TLS handshake within %v: %w", timeout, os.ErrDeadlineExceeded)
		}
		return nil, err
	}
	return tconn, nil
}

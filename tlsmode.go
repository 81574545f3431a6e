package tlsmail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
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
	// failed before any trust decision, tries STARTTLS on
	// Dialer.FallbackAddr. The failures that allow it are a connection
	// refused, a host or network unreachable, a connect timeout, a host
	// name not found, and a server whose first bytes are a plaintext SMTP
	// reply where a TLS handshake was expected. It never falls back after
	// any other error (in particular a certificate or handshake error,
	// whatever NetDialContext returned it) or a cancelled context.
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

// Default timeouts, used where a Dialer field is zero. RFC 5321 section
// 4.5.3.2 says how long a client should wait at each step; the defaults
// give every step at least that long, except the greeting, which is
// deliberately shorter (see DefaultGreetingTimeout).
const (
	// DefaultTimeout bounds the TCP connect, for which RFC 5321 sets no
	// value.
	DefaultTimeout = 30 * time.Second

	// DefaultGreetingTimeout bounds the wait for the 220 greeting and
	// each TLS handshake. It is deliberately below the 5 minutes RFC 5321
	// section 4.5.3.2.1 asks for: submission servers greet at once, and
	// this wait is how STARTTLS pointed at an implicit-TLS port, where the
	// server waits silently for a TLS ClientHello, is detected. Set
	// Dialer.GreetingTimeout to 5*time.Minute for the RFC's value.
	DefaultGreetingTimeout = 30 * time.Second

	// DefaultCommandTimeout bounds the wait for each command's reply: the
	// 5 minutes RFC 5321 asks for MAIL (section 4.5.3.2.2) and RCPT
	// (section 4.5.3.2.3), which also covers the 2 minutes for the reply
	// to DATA (section 4.5.3.2.4).
	DefaultCommandTimeout = 5 * time.Minute

	// DefaultDataTimeout bounds each stall while writing message data,
	// for which RFC 5321 section 4.5.3.2.5 asks 3 minutes per TCP send,
	// and the wait for the reply to the end of data, for which section
	// 4.5.3.2.6 asks 10 minutes: the server may be filtering or
	// delivering the message, and giving up early leads to the message
	// being sent twice.
	DefaultDataTimeout = 10 * time.Minute
)

// A Dialer connects to an SMTP server securely. The zero value is ready to
// use: implicit TLS, system roots, "localhost" as the EHLO name and the
// default timeouts. A Dialer must not be modified while in use.
type Dialer struct {
	// Mode is how the connection is secured. The zero value is ImplicitTLS.
	Mode Mode

	// TLSConfig is the TLS client configuration. It is cloned, never
	// modified. In the clone, ServerName is set to the host being dialed
	// if it is empty, and MinVersion is raised to TLS 1.2 if it is lower,
	// including when the caller set it lower: TLS 1.0 and 1.1 cannot be
	// enabled (RFC 8996). nil means the defaults, which verify the
	// server's certificate against the system roots.
	TLSConfig *tls.Config

	// FallbackAddr is the STARTTLS address used by ImplicitTLSOrSTARTTLS
	// after a failed implicit attempt. Empty means the same host on port
	// 587.
	FallbackAddr string

	// Timeout bounds the TCP connect. Zero means DefaultTimeout (30
	// seconds; RFC 5321 sets no value).
	Timeout time.Duration

	// GreetingTimeout bounds the wait for the server's 220 greeting and
	// each TLS handshake. Zero means DefaultGreetingTimeout (30 seconds).
	// It is shorter than the 5 minutes of RFC 5321 section 4.5.3.2.1 so
	// that STARTTLS pointed at an implicit-TLS port, where the server
	// waits silently for a TLS ClientHello, fails in reasonable time; set
	// it to 5*time.Minute for the RFC's value.
	GreetingTimeout time.Duration

	// CommandTimeout bounds the wait for each command's reply. Zero means
	// DefaultCommandTimeout (5 minutes, RFC 5321 sections 4.5.3.2.2 to
	// 4.5.3.2.4).
	CommandTimeout time.Duration

	// DataTimeout bounds each stall while writing message data: the
	// deadline is renewed for every piece written, so a large message on
	// a slow link is not cut off as long as the server keeps taking data
	// (RFC 5321 section 4.5.3.2.5, "each TCP SEND"). It also bounds the
	// wait for the reply to the end of data (section 4.5.3.2.6). Zero
	// means DefaultDataTimeout (10 minutes).
	DataTimeout time.Duration

	// LocalName is the host name sent with EHLO. Empty means "localhost",
	// as in net/smtp (it reveals nothing about the sending machine).
	LocalName string

	// NetDialContext, if set, makes the underlying connection, for
	// example through a proxy or over a Unix socket. TLS is still run
	// on top of the connection it returns. It is called with network
	// "tcp". nil means a net.Dialer with Timeout.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// Trace, if set, receives a record of each session: the connection,
	// the TLS handshake (version, cipher, certificate subject and expiry,
	// resumed or not), the path taken (implicit TLS, STARTTLS, a
	// fallback and why), and every command and reply with timings. AUTH
	// payloads, tokens and passwords never appear in it in any form, and
	// message content appears as its size only. The records are listed
	// in the package documentation under "Trace". nil, the default,
	// records nothing and costs nothing.
	Trace *slog.Logger
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
	// GreetingTimeout. In STARTTLS mode the address may be an implicit-TLS
	// port (465), where the server waits for the client to start TLS, or
	// the server may be overloaded.
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
// host in addr and reads the greeting. The EHLO under TLS is sent by the
// first command that needs it, so Client.Hello can still choose its name
// (in STARTTLS mode the plaintext EHLO before STARTTLS uses LocalName).
// The returned Client is TLS; Client.Mode tells which path was used. ctx
// bounds everything DialContext does; cancelling it interrupts the I/O in
// flight.
func (d *Dialer) DialContext(ctx context.Context, addr string) (*Client, error) {
	host, err := splitAddr(addr)
	if err != nil {
		return nil, err
	}
	// Checked before connecting: EHLO goes out later, when nothing could
	// be done about the name any more.
	if err := checkHelloName("Dialer.LocalName", d.localName()); err != nil {
		return nil, err
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
		newTracer(d.Trace, host, nil).fallback(addr, fb, err)
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

// connectError is a failure to make the connection. unreachable records,
// from the error itself, whether the server could not be reached at all.
type connectError struct {
	err         error
	unreachable bool
}

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// mayFallBack reports whether an implicit-TLS failure happened before any
// trust decision: the server could not be reached, or its first bytes were
// plaintext SMTP. Why so narrow: falling back after a certificate error
// would let whoever presented a bad certificate choose our path, and would
// hide the error from the caller. Why after the caller's cancellation
// never: the caller asked us to stop.
func mayFallBack(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var ce *connectError
	return (errors.As(err, &ce) && ce.unreachable) || errors.Is(err, ErrPlaintextServer)
}

// unreachable reports whether err, returned while making the connection,
// says that nothing could be reached at the address: connection refused,
// host or network unreachable, a timeout, or a host name that does not
// exist. It judges the error, not where it came from, because
// NetDialContext may return anything, a proxy's certificate error
// included, and that must not allow a fallback.
func unreachable(err error) bool {
	for _, errno := range unreachableErrnos {
		if errors.Is(err, errno) {
			return true
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		// Only a name that does not exist: a failing resolver (SERVFAIL,
		// timeout) would fail the fallback's lookup of the same host too.
		return dnsErr.IsNotFound
	}
	// A timeout: net.Dialer's own, os.ErrDeadlineExceeded and
	// context.DeadlineExceeded are all net.Errors whose Timeout is true.
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unreachableErrnos are the connect errors that mean the address could
// not be reached. Windows reports them with Winsock's numbers, which
// syscall.Errno.Is does not match to the POSIX names; no Unix uses those
// numbers, so all are checked everywhere.
var unreachableErrnos = []syscall.Errno{
	syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
	10061, 10065, 10051, // WSAECONNREFUSED, WSAEHOSTUNREACH, WSAENETUNREACH
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
		// Our own Timeout expiring is a connect timeout whatever error
		// NetDialContext made of it: an attacker able to delay the
		// connection could as well have blocked it.
		timedOut := dctx.Err() != nil
		return nil, &connectError{fmt.Errorf("tlsmail: connecting to %s: %w", addr, err), timedOut || unreachable(err)}
	}
	return conn, nil
}

func (d *Dialer) dialImplicit(ctx context.Context, addr, host string) (*Client, error) {
	start := time.Now()
	tr := newTracer(d.Trace, host, nil)
	conn, err := d.netDial(ctx, addr)
	if err != nil {
		tr.failure("connect", err)
		return nil, err
	}
	tr.connect(addr, ImplicitTLS, time.Since(start))
	t := d.timeouts()
	rec := &wire.FirstBytes{Conn: conn}
	start = time.Now()
	tconn, err := handshake(ctx, rec, withSessions(completeConfig(d.TLSConfig, host), d.TLSConfig), t.greeting)
	if err != nil {
		tr.failure("TLS handshake", err)
		defer conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("tlsmail: TLS handshake with %s: %w", addr, ctx.Err())
		}
		first := rec.Bytes()
		if looksLikeSMTP(first) {
			// Why only the first bytes: a server that began a TLS
			// handshake and then sent "220" is a broken or hostile TLS
			// server, and this error allows the STARTTLS fallback.
			return nil, fmt.Errorf("%w: %s sent %q, the start of a plaintext greeting, so it most likely expects STARTTLS (port 587); use Mode STARTTLS, or the server's implicit-TLS port (465)",
				ErrPlaintextServer, addr, string(first[:min(len(first), 5)])+"...")
		}
		if len(first) > 0 && !looksLikeTLS(first) {
			// Neither TLS nor SMTP (an HTTP or SSH server, say): no
			// fallback, since nothing shows that the host offers mail
			// submission at all; say what answered instead.
			return nil, fmt.Errorf("tlsmail: TLS handshake with %s: server sent %s which is not TLS; is this the server's implicit-TLS submission port (465)? (%w)",
				addr, quoteStart(first), err)
		}
		return nil, fmt.Errorf("tlsmail: TLS handshake with %s: %w", addr, err)
	}
	tr.handshake(tconn.ConnectionState(), false, time.Since(start))
	c := d.newClient(tconn, host)
	c.isTLS, c.mode = true, ImplicitTLS
	if err := c.readGreeting(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// looksLikeSMTP reports whether b, the first bytes a server sent, starts
// with an SMTP reply code (RFC 5321 section 4.2: a digit 2 to 5, a digit
// 0 to 5, a digit) followed by what may follow one: a space, a hyphen or
// the end of the line.
func looksLikeSMTP(b []byte) bool {
	return len(b) >= 4 && b[0] >= '2' && b[0] <= '5' && b[1] >= '0' && b[1] <= '5' &&
		b[2] >= '0' && b[2] <= '9' && (b[3] == ' ' || b[3] == '-' || b[3] == '\r')
}

// looksLikeTLS reports whether b, the first bytes a server sent, can start
// a TLS record: a handshake (ServerHello) or an alert, in a TLS 1.x record
// version (RFC 8446 section 5.1).
func looksLikeTLS(b []byte) bool {
	if len(b) == 0 || (b[0] != 0x15 && b[0] != 0x16) {
		return false
	}
	return len(b) < 2 || b[1] == 0x03
}

// quoteStart quotes the start of b, up to the first line end and at most
// 20 bytes, escaping anything that is not printable ASCII.
func quoteStart(b []byte) string {
	const max = 20
	if i := strings.IndexAny(string(b), "\r\n"); i >= 0 {
		return strconv.QuoteToASCII(string(b[:i]))
	}
	if len(b) >= max {
		return strconv.QuoteToASCII(string(b[:max])) + "..."
	}
	return strconv.QuoteToASCII(string(b))
}

func (d *Dialer) dialSTARTTLS(ctx context.Context, addr, host string) (*Client, error) {
	start := time.Now()
	conn, err := d.netDial(ctx, addr)
	if err != nil {
		newTracer(d.Trace, host, nil).failure("connect", err)
		return nil, err
	}
	c := d.newClient(conn, host)
	c.tr.connect(addr, STARTTLS, time.Since(start))
	c.resume = true
	if err := c.readGreeting(ctx); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, noGreetingError(addr, c.timeouts.greeting, err)
		}
		return nil, err
	}
	if err := c.startTLS(ctx, d.TLSConfig); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// noGreetingError returns the error for a server at addr that sent no
// greeting within timeout; cause is the error of the read that timed out.
// The error matches ErrNoGreeting and os.ErrDeadlineExceeded. On port 465
// it names the implicit-TLS port; elsewhere it offers an overloaded server
// and an implicit-TLS port as the possible causes, since a busy STARTTLS
// port can also be slow to greet.
func noGreetingError(addr string, timeout time.Duration, cause error) error {
	if cause == nil {
		cause = os.ErrDeadlineExceeded
	} else if !errors.Is(cause, os.ErrDeadlineExceeded) {
		cause = fmt.Errorf("%w: %w", os.ErrDeadlineExceeded, cause)
	}
	if _, port, err := net.SplitHostPort(addr); err == nil && (port == "465" || port == "smtps" || port == "submissions") {
		return fmt.Errorf("%w: %s sent no greeting within %v: port 465 is the implicit-TLS port, where the server waits for the client to start TLS; use Mode ImplicitTLS: %w",
			ErrNoGreeting, addr, timeout, cause)
	}
	return fmt.Errorf("%w: %s sent no greeting within %v: the server may be overloaded, or it may expect implicit TLS (as on port 465; use Mode ImplicitTLS): %w",
		ErrNoGreeting, addr, timeout, cause)
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

// completeConfig clones config (nil allowed) and completes the clone: an
// empty ServerName becomes serverName, and MinVersion is raised to TLS 1.2
// if it is lower, including when the caller set it lower: TLS 1.0 and 1.1
// cannot be enabled. The caller's config is never modified.
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
		// Why even over the caller's choice: TLS 1.0 and 1.1 are
		// deprecated (RFC 8996) and RFC 8314 section 4.1 asks for current
		// TLS; a submission server that offers nothing newer must be
		// fixed, not accommodated with credentials at stake.
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
		if strings.Contains(err.Error(), "protocol version") {
			// crypto/tls has no error type for a version mismatch. The
			// hint says that no setting will help: see completeConfig.
			return nil, fmt.Errorf("%w; tlsmail requires TLS 1.2 or later (RFC 8996)", err)
		}
		return nil, err
	}
	return tconn, nil
}

package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tlsmail/tlsmail/internal/authbridge"
	"github.com/tlsmail/tlsmail/internal/wire"
)

// Mode says how a connection is secured. There is no plaintext mode: a
// POP3 session carries a password or token and the mail itself.
type Mode int

const (
	// ImplicitTLS starts TLS as soon as the TCP connection is up, before
	// the greeting (RFC 8314 section 3.3), usually on port 995. It is the
	// zero value and the mode RFC 8314 recommends.
	ImplicitTLS Mode = iota

	// STLS reads the greeting in plaintext, checks that the server lists
	// STLS in its CAPA reply, and upgrades with the STLS command (RFC
	// 2595 section 4), usually on port 110. It fails closed: when STLS
	// is missing or refused, the client stops with ErrSTLSUnsupported
	// instead of carrying on in plaintext. Nothing but CAPA and STLS is
	// ever sent before TLS.
	STLS
)

// String returns "ImplicitTLS" or "STLS".
func (m Mode) String() string {
	switch m {
	case ImplicitTLS:
		return "ImplicitTLS"
	case STLS:
		return "STLS"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Default timeouts, used when the Dialer's field is zero.
const (
	// DefaultTimeout bounds the TCP connect.
	DefaultTimeout = 30 * time.Second
	// DefaultGreetingTimeout bounds the greeting and each TLS handshake.
	// It is short so that STLS pointed at an implicit-TLS port, where the
	// server waits silently, fails in reasonable time.
	DefaultGreetingTimeout = 30 * time.Second
	// DefaultCommandTimeout bounds the wait for each reply and for each
	// line of a multi-line response. RFC 1939 section 3 gives servers an
	// inactivity timer of at least 10 minutes; a client need not wait as
	// long for a line the server owes it.
	DefaultCommandTimeout = 2 * time.Minute
)

// DefaultMaxMessageSize bounds a message read with Retr or Top when the
// server's LIST reply gives no size for it: 256 MiB.
const DefaultMaxMessageSize = 256 << 20

// A Dialer connects to POP3 servers. The zero value is ready to use: it
// dials with implicit TLS, verifies certificates against the system roots
// and applies the default timeouts. A Dialer may be used by several
// goroutines at once and reused for many connections.
type Dialer struct {
	// Mode is how the connection is secured. The zero value is
	// ImplicitTLS (port 995); STLS is for port 110.
	Mode Mode

	// TLSConfig is the TLS client configuration. It is cloned, never
	// modified. In the clone, ServerName is set to the host being dialed
	// if it is empty, and MinVersion is raised to TLS 1.2 if it is lower:
	// TLS 1.0 and 1.1 cannot be enabled (RFC 8996). nil means the
	// defaults, which verify the server's certificate against the system
	// roots. Certificates are always verified unless the caller sets
	// InsecureSkipVerify here, which tlsmail never does.
	TLSConfig *tls.Config

	// Timeout bounds the TCP connect. Zero means DefaultTimeout.
	Timeout time.Duration

	// GreetingTimeout bounds the wait for the greeting and each TLS
	// handshake. Zero means DefaultGreetingTimeout.
	GreetingTimeout time.Duration

	// CommandTimeout bounds the wait for each reply, and for each line
	// of a multi-line response, so that a silent server cannot hang the
	// client. Zero means DefaultCommandTimeout.
	CommandTimeout time.Duration

	// MaxMessageSize bounds a message read with Retr or Top when the
	// server gives no size for it. Zero means DefaultMaxMessageSize.
	// When LIST gives the size, that size is the bound.
	MaxMessageSize int64

	// NetDialContext, if set, makes the underlying connection, for
	// example through a proxy. TLS is still run on top of the connection
	// it returns. It is called with network "tcp". nil means a
	// net.Dialer with Timeout.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// Trace, if set, receives a record of each session, as the root
	// package's Dialer.Trace does: the connection, the TLS handshake, and
	// every command and status line with timings. Passwords, tokens and
	// AUTH payloads never appear in it in any form, and message content
	// appears as its size only. nil records nothing.
	Trace *slog.Logger
}

// Dial connects to addr (host:port) as DialContext does, with a
// background context.
func (d *Dialer) Dial(addr string) (*Client, error) {
	return d.DialContext(context.Background(), addr)
}

// DialContext connects to the POP3 server at addr (host:port), secures
// the connection according to d.Mode, verifies the server certificate for
// the host in addr, reads the greeting and asks for the capabilities
// (CAPA) under TLS. The returned Client is in the AUTHORIZATION state;
// call Auth next. ctx bounds everything DialContext does.
func (d *Dialer) DialContext(ctx context.Context, addr string) (*Client, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("pop3: address %q: %w (want host:port, e.g. pop.example.com:995)", addr, err)
	}
	switch d.Mode {
	case ImplicitTLS:
		return d.dialImplicit(ctx, addr, host)
	case STLS:
		return d.dialSTLS(ctx, addr, host)
	}
	return nil, fmt.Errorf("pop3: unknown Mode %v", d.Mode)
}

func (d *Dialer) timeouts() timeouts {
	t := timeouts{dial: d.Timeout, greeting: d.GreetingTimeout, command: d.CommandTimeout}
	if t.dial <= 0 {
		t.dial = DefaultTimeout
	}
	if t.greeting <= 0 {
		t.greeting = DefaultGreetingTimeout
	}
	if t.command <= 0 {
		t.command = DefaultCommandTimeout
	}
	return t
}

type timeouts struct{ dial, greeting, command time.Duration }

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
			err = ctx.Err()
		}
		return nil, fmt.Errorf("pop3: connecting to %s: %w", addr, err)
	}
	return conn, nil
}

func (d *Dialer) newClient(conn net.Conn, host string) *Client {
	c := &Client{
		conn:     conn,
		host:     host,
		timeouts: d.timeouts(),
		maxMsg:   d.MaxMessageSize,
		deleted:  make(map[int]bool),
	}
	if c.maxMsg <= 0 {
		c.maxMsg = DefaultMaxMessageSize
	}
	c.br = bufio.NewReaderSize(conn, MaxLineLength)
	c.tr = newTracer(d.Trace, host, c.redact)
	return c
}

func (d *Dialer) dialImplicit(ctx context.Context, addr, host string) (*Client, error) {
	tr := newTracer(d.Trace, host, nil)
	start := time.Now()
	conn, err := d.netDial(ctx, addr)
	if err != nil {
		tr.failure("connect", err)
		return nil, err
	}
	tr.connect(addr, ImplicitTLS, time.Since(start))
	rec := &wire.FirstBytes{Conn: conn}
	start = time.Now()
	tconn, err := handshake(ctx, rec, authbridge.CompleteConfig(d.TLSConfig, host), d.timeouts().greeting)
	if err != nil {
		conn.Close()
		tr.failure("TLS handshake", err)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pop3: TLS handshake with %s: %w", addr, ctx.Err())
		}
		first := rec.Bytes()
		if looksLikePOP3(first) {
			// Why only the first bytes: a server that began TLS and then
			// sent "+OK" is a broken or hostile TLS server, not a
			// plaintext one.
			return nil, fmt.Errorf("%w: %s sent %s, the start of a plaintext greeting, so it most likely expects STLS (port 110); use Mode STLS, or the server's implicit-TLS port (995)",
				ErrPlaintextServer, addr, quoteStart(first))
		}
		if len(first) > 0 && !looksLikeTLS(first) {
			return nil, fmt.Errorf("pop3: TLS handshake with %s: server sent %s, which is not TLS; is this the server's implicit-TLS POP3 port (995)? (%w)",
				addr, quoteStart(first), err)
		}
		return nil, fmt.Errorf("pop3: TLS handshake with %s: %w", addr, err)
	}
	tr.handshake(tconn.ConnectionState(), false, time.Since(start))
	c := d.newClient(tconn, host)
	c.tls, c.mode = true, ImplicitTLS
	if err := c.readGreeting(ctx, addr); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.capa(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (d *Dialer) dialSTLS(ctx context.Context, addr, host string) (*Client, error) {
	start := time.Now()
	conn, err := d.netDial(ctx, addr)
	if err != nil {
		newTracer(d.Trace, host, nil).failure("connect", err)
		return nil, err
	}
	c := d.newClient(conn, host)
	c.mode = STLS
	c.tr.connect(addr, STLS, time.Since(start))
	greeting := c.timeouts.greeting
	c.timeouts.greeting = stlsGreetingWait(addr, greeting)
	err = c.readGreeting(ctx, addr)
	c.timeouts.greeting = greeting
	if err != nil {
		c.Close()
		return nil, err
	}
	if err := c.startTLS(ctx, d.TLSConfig); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// startTLS runs the STLS upgrade (RFC 2595 section 4) on a plaintext
// session just greeted, and asks CAPA again under TLS.
func (c *Client) startTLS(ctx context.Context, config *tls.Config) error {
	// Why CAPA first: RFC 2595 section 4 says STLS is offered through
	// CAPA; a server that does not list it gets nothing else in
	// plaintext.
	if err := c.capa(ctx); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return fmt.Errorf("%w: the server refused CAPA (%w), so it cannot offer STLS", ErrSTLSUnsupported, err)
		}
		return err
	}
	if _, ok := c.caps["STLS"]; !ok {
		// Why fail closed: a stripped capability is the classic downgrade
		// attack; carrying on would send the credentials in plaintext.
		return fmt.Errorf("%w: STLS is not in the server's CAPA reply; use the implicit-TLS port (995) if the server has one", ErrSTLSUnsupported)
	}
	if _, err := c.simple(ctx, "STLS", "STLS"); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return fmt.Errorf("%w: %w", ErrSTLSUnsupported, err)
		}
		return err
	}
	if n := c.br.Buffered(); n > 0 {
		// Why: bytes sent after +OK and before the handshake were sent in
		// plaintext, possibly by an attacker, and would otherwise be read
		// as the first replies under TLS (response injection; compare RFC
		// 3207 section 6 for SMTP).
		c.fail(ErrResponseInjection)
		return fmt.Errorf("%w (%d bytes)", ErrResponseInjection, n)
	}
	start := time.Now()
	tconn, err := handshake(ctx, c.conn, authbridge.CompleteConfig(config, c.host), c.timeouts.greeting)
	if err != nil {
		c.tr.failure("TLS handshake", err)
		return c.fail(fmt.Errorf("pop3: TLS handshake after STLS: %w", err))
	}
	c.tr.handshake(tconn.ConnectionState(), true, time.Since(start))
	c.conn, c.tls = tconn, true
	c.br = bufio.NewReaderSize(tconn, MaxLineLength)
	// Why forget and ask again: RFC 2595 section 4 requires the client to
	// discard what it learned before TLS, which an attacker could have
	// written (a SASL list without the strong mechanisms, say).
	c.caps = nil
	return c.capa(ctx)
}

// handshake runs a client TLS handshake over conn, bounded by timeout and
// interrupted by ctx.
func handshake(ctx context.Context, conn net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	tconn := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
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

// looksLikePOP3 reports whether b, the first bytes a server sent, start a
// POP3 greeting: "+OK" or "-ERR" (RFC 1939 section 3).
func looksLikePOP3(b []byte) bool {
	s := string(b)
	return strings.HasPrefix(s, "+OK") || strings.HasPrefix(s, "-ERR")
}

// looksLikeTLS reports whether b can start a TLS record: a handshake or an
// alert in a TLS 1.x record version (RFC 8446 section 5.1).
func looksLikeTLS(b []byte) bool {
	if len(b) == 0 || (b[0] != 0x15 && b[0] != 0x16) {
		return false
	}
	return len(b) < 2 || b[1] == 0x03
}

// quoteStart quotes the start of b, up to the first line end and at most
// 20 bytes, escaping anything that is not printable ASCII.
func quoteStart(b []byte) string {
	if i := strings.IndexAny(string(b), "\r\n"); i >= 0 {
		return strconv.QuoteToASCII(string(b[:i]))
	}
	if len(b) >= 20 {
		return strconv.QuoteToASCII(string(b[:20])) + "..."
	}
	return strconv.QuoteToASCII(string(b))
}

// implicitTLSWait bounds the wait for a plaintext greeting on port 995.
const implicitTLSWait = 3 * time.Second

// stlsGreetingWait is how long STLS waits for the greeting at addr. On
// port 995 a server that waits for a TLS ClientHello says nothing, so
// the wait is cut to implicitTLSWait: a POP3 server greets at once, and
// STLS pointed at the implicit-TLS port then fails fast, naming it.
func stlsGreetingWait(addr string, configured time.Duration) time.Duration {
	if _, port, err := net.SplitHostPort(addr); err == nil && (port == "995" || port == "pop3s") {
		return min(configured, implicitTLSWait)
	}
	return configured
}

// noGreetingError is the error for a server at addr that sent no greeting
// within timeout.
func noGreetingError(addr string, timeout time.Duration, cause error) error {
	if _, port, err := net.SplitHostPort(addr); err == nil && (port == "995" || port == "pop3s") {
		return fmt.Errorf("%w: %s sent no greeting within %v: port 995 is the implicit-TLS port, where the server waits for the client to start TLS; use Mode ImplicitTLS: %w",
			ErrNoGreeting, addr, timeout, cause)
	}
	return fmt.Errorf("%w: %s sent no greeting within %v: the server may be overloaded, or it may expect implicit TLS (as on port 995; use Mode ImplicitTLS): %w",
		ErrNoGreeting, addr, timeout, cause)
}

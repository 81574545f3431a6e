package tlsmail

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"strings"
	"time"

	"github.com/tlsmail/tlsmail/internal/wire"
)

// A Client represents a client connection to an SMTP server.
//
// Its methods mirror those of net/smtp.Client, one per SMTP verb, and are
// stricter: credentials, envelope and message data are only ever sent over
// TLS, every reply is read with a deadline and a size limit, and after a
// failure that leaves the session in doubt (a dropped connection, a timeout,
// a failed STARTTLS) the Client refuses further commands.
//
// A Client made by Dial or NewClient returns errors as net/smtp does (a
// reply is a *textproto.Error, a closed connection io.EOF); one made by a
// Dialer or DialContext returns *Error. See the package documentation.
//
// A Client is not safe for concurrent use by multiple goroutines.
type Client struct {
	// Text is the textproto.Conn used by the Client. It is exported, as in
	// net/smtp, so that callers can add support for extensions. Replies
	// read through Text directly are not subject to the Client's timeouts
	// and size limits.
	Text *textproto.Conn

	conn       net.Conn
	serverName string // name the certificate is verified against; ServerInfo.Name
	localName  string // name sent with EHLO
	isTLS      bool
	mode       Mode
	tlsConfig  *tls.Config // base configuration for StartTLS(nil)
	resume     bool        // made by a Dialer: resume its TLS sessions
	tr         *tracer     // the protocol trace; nil when off
	timeouts   timeouts
	netsmtp    bool // return errors as net/smtp does (Dial, NewClient)

	didHello bool
	helloErr error
	ext      map[string]string // EHLO capabilities, upper-case keyword -> parameters
	auth     []string          // advertised SASL mechanisms

	authMech string // the mechanism of the last AUTH
	err      error  // sticky failure: once set, no command is sent
	dataOpen bool   // a Data writer is open
	quitSent bool   // QUIT went out with the last message

	// secrets returns the credentials sent on this session, so that
	// server text repeating any part of them is kept out of errors. Why a
	// func: fmt prints a func as an address, never what it holds, so even
	// a Client printed field by field shows no credentials.
	secrets func() *redactor
}

// timeouts bounds each network step; see the Dialer fields of the same names.
type timeouts struct {
	dial, greeting, command, data time.Duration
}

// quitTimeout bounds the wait for the reply to QUIT. Why short: by then
// the work is done (a message accepted with 250 stays accepted), and a
// server that does not answer QUIT must not hold the caller for the
// whole CommandTimeout.
const quitTimeout = 5 * time.Second

// Dial returns a new Client connected to an SMTP server at addr, which must
// include a port, over implicit TLS (RFC 8314).
//
// Unlike net/smtp.Dial, which connects in plaintext, the connection is TLS
// from its first byte and the server's certificate is verified for the host
// in addr. As in net/smtp, Dial reads the server's greeting and nothing
// more: EHLO is sent by the first method that needs it, or by Hello, and
// errors are the values net/smtp returns. Use a Dialer for STARTTLS or
// other settings.
func Dial(addr string) (*Client, error) {
	var d Dialer
	c, err := d.DialContext(context.Background(), addr)
	if err != nil {
		return nil, netsmtpError(err)
	}
	c.netsmtp = true
	return c, nil
}

// DialContext is like Dial but uses ctx for connecting, the TLS handshake
// and the greeting; cancelling ctx interrupts them. Unlike Dial, it is not
// a net/smtp name, so the Client returns *Error values as a Dialer's does.
func DialContext(ctx context.Context, addr string) (*Client, error) {
	var d Dialer
	return d.DialContext(ctx, addr)
}

// NewClient returns a new Client using an existing connection and host as a
// server name to be used when authenticating and verifying certificates. It
// reads the server's greeting and nothing more, and returns errors as
// net/smtp does.
//
// As with net/smtp, conn may be any connection. If it is TLS (a *tls.Conn,
// or any connection with a ConnectionState method reporting a completed
// handshake once the greeting has been read) the session counts as TLS;
// otherwise call StartTLS before Auth, Mail, Rcpt, Data or Verify, which
// refuse to run on a connection that is not TLS.
func NewClient(conn net.Conn, host string) (*Client, error) {
	var d Dialer
	c := d.newClient(conn, host)
	c.netsmtp = true
	if err := c.readGreeting(context.Background()); err != nil {
		closeNow(conn)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			addr := host
			if ra := conn.RemoteAddr(); ra != nil {
				addr = ra.String() // with the port, so the hint can name 465
			}
			return nil, noGreetingError(addr, c.timeouts.greeting, err)
		}
		return nil, netsmtpError(err)
	}
	if ts, ok := conn.(tlsStater); ok && ts.ConnectionState().HandshakeComplete {
		c.isTLS, c.mode = true, ImplicitTLS
	}
	return c, nil
}

// tlsStater is a TLS connection: *tls.Conn, or a wrapper around one.
type tlsStater interface {
	ConnectionState() tls.ConnectionState
}

func (d *Dialer) newClient(conn net.Conn, host string) *Client {
	secrets := newSecrets()
	return &Client{
		Text:       newText(conn),
		conn:       conn,
		serverName: host,
		localName:  d.localName(),
		tlsConfig:  d.TLSConfig,
		timeouts:   d.timeouts(),
		secrets:    secrets,
		tr:         newTracer(d.Trace, host, secrets),
	}
}

// newText wraps conn. textproto's bufio.Reader has the default 4096-byte
// buffer, which wire.ReadReply needs.
func newText(conn net.Conn) *textproto.Conn {
	return textproto.NewConn(conn)
}

// export returns err in the form this Client's callers expect: as is, or
// as net/smtp would have returned it.
func (c *Client) export(err error) error {
	if err == nil || !c.netsmtp {
		return err
	}
	return netsmtpError(err)
}

// Close closes the connection without sending QUIT.
func (c *Client) Close() error {
	return c.Text.Close()
}

// Hello sends a HELO or EHLO to the server as the given host name. Calling
// this method is only necessary if the client needs control over the host
// name used; by default the Dialer's LocalName, or "localhost", is sent.
// If Hello is called, it must be called before any of the other methods.
//
// As in net/smtp, the Clients made by Dial and NewClient have sent nothing
// yet, so Hello may be their first call. A Dialer in STARTTLS mode has
// sent its plaintext EHLO (with Dialer.LocalName) and STARTTLS, but not yet
// the EHLO under TLS: Hello may still be called, and its name is the one
// sent over TLS.
//
// A name containing CR, LF, NUL, spaces or angle brackets is rejected
// before anything is sent.
func (c *Client) Hello(localName string) error {
	if err := checkHelloName("hello name", localName); err != nil {
		return err
	}
	if c.didHello {
		return errors.New("tlsmail: Hello called after other methods")
	}
	if err := c.ready(); err != nil {
		return c.export(err)
	}
	c.localName = localName
	return c.export(c.hello(context.Background()))
}

// hello sends EHLO once per session (and again after STARTTLS).
func (c *Client) hello(ctx context.Context) error {
	if !c.didHello {
		c.didHello = true
		c.helloErr = c.ehlo(ctx)
	}
	return c.helloErr
}

// ehlo sends EHLO, falling back to HELO when the server refuses it with a
// 4xx or 5xx reply, as net/smtp does (RFC 5321 section 4.1.4 lets an old
// server know only HELO). A HELO session has no extensions, so it can
// never satisfy a STARTTLS requirement.
func (c *Client) ehlo(ctx context.Context) error {
	if err := checkHelloName("hello name", c.localName); err != nil {
		return err
	}
	rep, err := c.cmd(ctx, "EHLO", c.timeouts.command, []int{250}, "EHLO %s", c.localName)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || c.err != nil {
			return err
		}
		if _, err := c.cmd(ctx, "HELO", c.timeouts.command, []int{250}, "HELO %s", c.localName); err != nil {
			return err
		}
		c.ext = map[string]string{}
		c.auth = nil
		return nil
	}
	c.ext = wire.ParseEHLO(rep.Lines)
	c.auth = nil
	if mechs, ok := c.ext["AUTH"]; ok {
		c.auth = strings.Fields(strings.ToUpper(mechs))
	}
	return nil
}

// StartTLS sends the STARTTLS command and encrypts all further
// communication (RFC 3207). Only servers that advertise the STARTTLS
// extension support this function.
//
// config may be nil. It is cloned, never modified; ServerName is set to the
// client's server name when unset, and MinVersion is at least TLS 1.2.
//
// StartTLS fails closed: if STARTTLS is not advertised, the server refuses
// it, sends anything between its 220 reply and the handshake (response
// injection, RFC 3207 section 6), or the handshake fails, it returns an
// error, closes the connection and the Client refuses further commands.
// On success every capability learned before TLS is forgotten and EHLO is
// sent again, as net/smtp does.
func (c *Client) StartTLS(config *tls.Config) error {
	if err := c.startTLS(context.Background(), config); err != nil {
		return c.export(err)
	}
	return c.export(c.hello(context.Background()))
}

// startTLS upgrades the connection. The EHLO under TLS is left to the
// next command, so that Hello can still choose its name.
func (c *Client) startTLS(ctx context.Context, config *tls.Config) error {
	if err := c.session(ctx); err != nil {
		return err
	}
	if c.isTLS {
		return errors.New("tlsmail: StartTLS: connection is already TLS")
	}
	if _, ok := c.ext["STARTTLS"]; !ok {
		// Why: continuing without TLS would send credentials and mail in
		// plaintext; a server that does not offer STARTTLS may be an
		// attacker that stripped it from the EHLO reply.
		return c.fail(fmt.Errorf("%w (server %s)", ErrSTARTTLSUnsupported, c.serverName))
	}
	if _, err := c.cmd(ctx, "STARTTLS", c.timeouts.command, []int{220}, "STARTTLS"); err != nil {
		// Why fail rather than carry on: a 454 or 5xx may be injected by an
		// attacker to force a downgrade.
		return c.fail(wrap(err, "STARTTLS failed, not continuing in plaintext"))
	}
	if n := c.Text.R.Buffered(); n > 0 {
		// Why an error and not a discard: bytes that arrive before the
		// handshake were not protected by TLS; a man-in-the-middle put them
		// there to be read as replies to our first encrypted commands
		// (RFC 3207 section 6; CVE-2021-22947, CVE-2020-14954).
		return c.fail(fmt.Errorf("%w: %d unexpected bytes from %s", ErrResponseInjection, n, c.serverName))
	}
	cfg := completeConfig(config, c.serverName)
	if c.resume && config == c.tlsConfig {
		// A Dialer's client upgrading with the Dialer's configuration
		// resumes that configuration's sessions (see sessions.go).
		cfg = withSessions(cfg, config)
	}
	start := time.Now()
	tconn, err := handshake(ctx, c.conn, cfg, c.timeouts.greeting)
	if err != nil {
		c.tr.failure("STARTTLS handshake", err)
		return c.fail(wrap(err, "STARTTLS handshake with %s", c.serverName))
	}
	c.tr.handshake(tconn.ConnectionState(), true, time.Since(start))
	c.conn = tconn
	c.Text = newText(tconn)
	c.isTLS = true
	c.mode = STARTTLS
	// Why forget: capabilities seen in plaintext may have been forged
	// (RFC 3207 section 4.2); only the encrypted EHLO counts.
	c.ext, c.auth = nil, nil
	c.didHello, c.helloErr = false, nil
	return nil
}

// TLSConnectionState returns the client's TLS connection state. The return
// values are their zero values if the connection is not TLS.
func (c *Client) TLSConnectionState() (state tls.ConnectionState, ok bool) {
	ts, ok := c.conn.(tlsStater)
	if !ok || !c.isTLS {
		return state, false
	}
	return ts.ConnectionState(), true
}

// Mode reports how the connection was secured: ImplicitTLS when it was TLS
// from the first byte, STARTTLS when it was upgraded. ok is false while the
// connection is not TLS.
func (c *Client) Mode() (m Mode, ok bool) {
	return c.mode, c.isTLS
}

// Verify checks the validity of an email address on the server (VRFY). If
// Verify returns nil, the address is valid. A non-nil return does not
// necessarily indicate an invalid address; many servers will not verify
// addresses for security reasons. As in net/smtp, only a 250 reply is
// success: 251 and 252 (RFC 5321 section 3.5.3) are returned as errors.
func (c *Client) Verify(addr string) error {
	ctx := context.Background()
	if err := wire.CheckAddress(addr); err != nil {
		return fmt.Errorf("%w: address %q %v", ErrInvalidInput, addr, err)
	}
	if err := c.mailReady(ctx, "VRFY"); err != nil {
		return c.export(err)
	}
	rep, err := c.exchange(ctx, "VRFY", c.timeouts.command, []int{250, 251, 252}, "VRFY "+addr)
	if err == nil && rep.Code != 250 {
		err = newError("VRFY", rep, c.clean)
	}
	return c.export(err)
}

// Auth authenticates a client using the provided authentication mechanism
// (RFC 4954). Any net/smtp.Auth works.
//
// Auth refuses, before the mechanism sees anything, when the connection is
// not TLS (ErrPlaintextAuth), whatever the mechanism and whatever the host,
// and when the mechanism the Auth chooses is not one the server advertised
// in its current EHLO reply (ErrAuthUnsupported). A failed authentication
// is a reply error; unlike net/smtp, nothing more is sent after it (no "*"
// and no QUIT), and the Client stays usable.
func (c *Client) Auth(a Auth) error {
	return c.export(c.authenticate(context.Background(), a))
}

// AuthMechanism returns the SASL mechanism of the last authentication
// attempted on this connection (e.g. "SCRAM-SHA-256-PLUS" or "XOAUTH2"),
// or "" if there was none. It shows what an Auth that chooses by itself,
// such as PasswordAuth or OAuth2Auth, picked.
func (c *Client) AuthMechanism() string {
	return c.authMech
}

// clean makes server text safe for an error: runs that repeat credentials
// are withheld, then control characters and length are dealt with.
func (c *Client) clean(text string) string {
	text, _ = c.secrets().redact(text)
	return sanitize(text)
}

// scrub returns err, or an equivalent error with the reply text withheld
// where the malformed reply it quotes repeats credentials.
func (c *Client) scrub(err error) error {
	var me *wire.MalformedError
	if errors.As(err, &me) {
		if text, changed := c.secrets().redact(string(me.Line)); changed {
			return &wire.MalformedError{Line: []byte(text), Reason: me.Reason}
		}
	}
	return err
}

// Mail issues a MAIL command to the server using the provided email
// address. If the server supports the 8BITMIME extension, Mail adds the
// BODY=8BITMIME parameter. If the server supports the SMTPUTF8 extension,
// Mail adds the SMTPUTF8 parameter. This initiates a mail transaction and is
// followed by one or more Rcpt calls.
//
// from may be empty (the null reverse-path, for bounces). An address with
// CR, LF, NUL, spaces or angle brackets is rejected before anything is
// sent, and so is a non-ASCII address when the server lacks SMTPUTF8
// (RFC 6531 section 3.2).
func (c *Client) Mail(from string) error {
	return c.export(c.mail(context.Background(), from))
}

// mail sends MAIL FROM with BODY=8BITMIME and SMTPUTF8 whenever the
// server offers them, as net/smtp's Mail does: Mail knows nothing of the
// message to come. (Send, which knows the message, asks for them only
// when it needs them; see plan.)
func (c *Client) mail(ctx context.Context, from string) error {
	if err := checkSender(from); err != nil {
		return err
	}
	if err := c.mailReady(ctx, "MAIL"); err != nil {
		return err
	}
	_, utf8ok := c.ext["SMTPUTF8"]
	if !utf8ok && !wire.IsASCII(from) {
		return fmt.Errorf("%w: sender %q is not ASCII and the server does not support SMTPUTF8", ErrInvalidInput, from)
	}
	line := "MAIL FROM:<" + from + ">"
	if _, ok := c.ext["8BITMIME"]; ok {
		line += " BODY=8BITMIME"
	}
	if utf8ok {
		line += " SMTPUTF8"
	}
	_, err := c.exchange(ctx, "MAIL", c.timeouts.command, []int{250}, line)
	return err
}

// Rcpt issues a RCPT command to the server using the provided email
// address. A call to Rcpt must be preceded by a call to Mail and may be
// followed by a Data call or another Rcpt call. The address is checked as
// in Mail.
func (c *Client) Rcpt(to string) error {
	return c.export(c.rcpt(context.Background(), to))
}

func (c *Client) rcpt(ctx context.Context, to string) error {
	if err := checkRecipient(to); err != nil {
		return err
	}
	if err := c.mailReady(ctx, "RCPT"); err != nil {
		return err
	}
	if _, ok := c.ext["SMTPUTF8"]; !ok && !wire.IsASCII(to) {
		return fmt.Errorf("%w: recipient %q is not ASCII and the server does not support SMTPUTF8", ErrInvalidInput, to)
	}
	_, err := c.exchange(ctx, "RCPT", c.timeouts.command, []int{250, 251}, "RCPT TO:<"+to+">")
	return err
}

// checkSender checks a MAIL FROM address before anything is sent; empty
// is the null reverse-path.
func checkSender(from string) error {
	if err := wire.CheckAddress(from); err != nil {
		return fmt.Errorf("%w: sender %q %v", ErrInvalidInput, from, err)
	}
	return nil
}

// checkRecipient checks a RCPT TO address before anything is sent.
func checkRecipient(to string) error {
	if to == "" {
		return fmt.Errorf("%w: empty recipient", ErrInvalidInput)
	}
	if err := wire.CheckAddress(to); err != nil {
		return fmt.Errorf("%w: recipient %q %v", ErrInvalidInput, to, err)
	}
	return nil
}

// checkHelloName checks a name for EHLO and HELO before anything is sent;
// what says where the name came from.
func checkHelloName(what, name string) error {
	if err := wire.CheckHelloName(name); err != nil {
		return fmt.Errorf("%w: %s %q %v", ErrInvalidInput, what, name, err)
	}
	return nil
}

// Extension reports whether an extension is supported by the server. The
// extension name is case-insensitive. If the extension is supported,
// Extension also returns a string that contains any parameters the server
// specifies for the extension. Like net/smtp's, it sends EHLO first if no
// command has yet.
func (c *Client) Extension(ext string) (bool, string) {
	if c.ready() != nil {
		return false, ""
	}
	if err := c.hello(context.Background()); err != nil {
		return false, ""
	}
	v, ok := c.ext[strings.ToUpper(ext)]
	return ok, v
}

// Reset sends the RSET command to the server, aborting the current mail
// transaction.
func (c *Client) Reset() error {
	return c.export(c.simple("RSET"))
}

// Noop sends the NOOP command to the server. It does nothing but check
// that the connection to the server is okay.
func (c *Client) Noop() error {
	return c.export(c.simple("NOOP"))
}

// simple sends a command without arguments that 250 answers.
func (c *Client) simple(verb string) error {
	ctx := context.Background()
	if err := c.session(ctx); err != nil {
		return err
	}
	_, err := c.exchange(ctx, verb, c.timeouts.command, []int{250}, verb)
	return err
}

// Quit sends the QUIT command and closes the connection to the server.
// As in net/smtp, QUIT is sent even when EHLO and HELO were refused. After
// a failure that ended the session (a dropped connection, a timeout, a
// 421), Quit sends nothing, closes the connection and returns that
// failure again. The wait for the reply to QUIT is at most a few seconds.
func (c *Client) Quit() error {
	return c.export(c.quit(context.Background()))
}

func (c *Client) quit(ctx context.Context) error {
	defer c.Text.Close()
	if c.quitSent {
		return nil
	}
	if err := c.ready(); err != nil {
		return err
	}
	// As in net/smtp, a refused EHLO/HELO does not stop the goodbye; a
	// broken connection does, through the sticky error.
	c.hello(ctx)
	_, err := c.exchange(ctx, "QUIT", min(c.timeouts.command, quitTimeout), []int{221}, "QUIT")
	return err
}

// ready returns the sticky error, if any, or an error if a Data writer is
// still open.
func (c *Client) ready() error {
	if c.err != nil {
		return c.unusable()
	}
	if c.dataOpen {
		return errors.New("tlsmail: command refused: the Data writer is still open")
	}
	return nil
}

// session is ready plus the EHLO every command needs first.
func (c *Client) session(ctx context.Context) error {
	if err := c.ready(); err != nil {
		return err
	}
	return c.hello(ctx)
}

// mailReady is session plus the TLS requirement for anything that carries an
// address or message data; verb names the command for the error.
func (c *Client) mailReady(ctx context.Context, verb string) error {
	if err := c.session(ctx); err != nil {
		return err
	}
	if !c.isTLS {
		// Why: envelope addresses and message content are as private as
		// credentials; tlsmail never sends them in the clear.
		return wrap(ErrPlaintextMail, "%s", verb)
	}
	return nil
}

func (c *Client) unusable() error {
	return &unusableError{c.err}
}

// fail records err as the sticky failure, closes the connection and
// returns err.
func (c *Client) fail(err error) error {
	if c.err == nil {
		c.err = err
	}
	closeNow(c.conn)
	return err
}

// closeNow closes conn at once. Why not tls.Conn.Close: it first sends a
// close_notify alert and waits up to 5 seconds for the write, which is
// exactly what happens after a failure such as a server that stopped
// reading message data; a broken session gets no goodbye.
func closeNow(conn net.Conn) {
	if tc, ok := conn.(*tls.Conn); ok {
		tc.NetConn().Close()
	}
	conn.Close()
}

// interrupter returns a function that makes any blocked read or write on
// conn return now. It binds conn rather than reading c.conn, because it may
// still be running when the Client has moved on.
func interrupter(conn net.Conn) func() {
	return func() { conn.SetDeadline(time.Unix(1, 0)) }
}

// readGreeting reads the 220 greeting (RFC 5321 section 4.3.1).
func (c *Client) readGreeting(ctx context.Context) error {
	rep, err := c.readReply(ctx, "greeting", c.timeouts.greeting)
	if err != nil {
		return err
	}
	if err := c.check("greeting", rep, []int{220}); err != nil {
		return c.fail(err)
	}
	return nil
}

// cmd formats and sends one command line and reads its reply.
func (c *Client) cmd(ctx context.Context, verb string, d time.Duration, want []int, format string, args ...any) (wire.Reply, error) {
	return c.exchange(ctx, verb, d, want, fmt.Sprintf(format, args...))
}

// exchange sends line and reads the reply, which must carry one of the
// codes in want. A 4xx or 5xx reply is returned as an *Error and leaves
// the session usable (except 421); any other unexpected code, a malformed
// or oversized reply, a timeout or a broken connection make the Client
// unusable.
func (c *Client) exchange(ctx context.Context, verb string, d time.Duration, want []int, line string) (wire.Reply, error) {
	if c.err != nil {
		return wire.Reply{}, c.unusable()
	}
	if err := c.unsolicited(verb); err != nil {
		return wire.Reply{}, err
	}
	var rep wire.Reply
	err := c.withDeadline(ctx, d, func() error {
		_, err := c.Text.W.WriteString(line + "\r\n")
		if err == nil {
			err = c.Text.W.Flush()
		}
		if err != nil {
			return c.fail(c.stepError(ctx, verb, d, err))
		}
		var sent time.Time
		if c.tr != nil {
			c.tr.command(verb, line)
			sent = time.Now()
		}
		rep, err = c.receive(ctx, verb, verb, d, sent)
		return err
	})
	if err != nil {
		return rep, c.interrupted(verb, err)
	}
	return rep, c.check(verb, rep, want)
}

// unsolicited fails the session if the server has sent something that no
// command asked for; before names what was about to be sent. Why: a reply
// read early would pass for the reply to the next command: a "250" sent
// together with the "354" to DATA would report a message as accepted
// before a byte of it was sent. Only bytes already read from the network
// can be seen, so this is best effort; the reply codes catch the rest.
func (c *Client) unsolicited(before string) error {
	n := c.Text.R.Buffered()
	if n == 0 {
		return nil
	}
	peek, _ := c.Text.R.Peek(min(n, 80))
	text, _ := c.secrets().redact(string(peek))
	if bytes.HasPrefix(peek, []byte("421")) {
		return c.fail(fmt.Errorf("%w: reply %q arrived before %s was sent", ErrServerClosing, wire.Quote([]byte(text)), before))
	}
	return c.fail(fmt.Errorf("%w: server sent %q before %s was sent, a reply to no command",
		ErrProtocol, wire.Quote([]byte(text)), before))
}

// readReply reads one reply without sending anything.
func (c *Client) readReply(ctx context.Context, step string, d time.Duration) (wire.Reply, error) {
	var rep wire.Reply
	start := time.Now()
	err := c.withDeadline(ctx, d, func() (err error) {
		rep, err = c.receive(ctx, step, step, d, start)
		return err
	})
	if err != nil {
		return rep, c.interrupted(step, err)
	}
	return rep, nil
}

// receive reads one reply within d: the one read-a-reply step that the
// net/smtp-style methods, the Data writer and the engine share. It
// parses with the size limits of internal/wire, traces the reply as the
// answer to verb (sent at since) and, on failure, ends the session with
// an error that names step and keeps credentials out. The caller arranges
// for ctx to interrupt the read (withDeadline, or the engine's run).
func (c *Client) receive(ctx context.Context, verb, step string, d time.Duration, since time.Time) (wire.Reply, error) {
	c.conn.SetReadDeadline(deadline(d))
	// Why check after setting the deadline: a cancelled context has
	// already pushed the deadline into the past, and renewing it undid
	// that (as in stallWriter.Write).
	err := ctx.Err()
	var rep wire.Reply
	if err == nil {
		rep, err = wire.ReadReply(c.Text.R)
	}
	if err != nil {
		return rep, c.fail(c.stepError(ctx, step, d, c.scrub(err)))
	}
	if c.tr != nil {
		c.tr.reply(verb, rep, time.Since(since))
	}
	return rep, nil
}

// stepError describes a failure of I/O during step, which had timeout d:
// the context's error when it was cancelled, and otherwise err.
func (c *Client) stepError(ctx context.Context, step string, d time.Duration, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("tlsmail: %s: %w", step, ctx.Err())
	}
	return ioError(step, d, err)
}

// interrupted returns err, the failure of withDeadline's f, ending the
// session if f did not: a context that fired as f finished left the
// connection's deadline in the past.
func (c *Client) interrupted(step string, err error) error {
	if c.err == nil {
		return c.fail(fmt.Errorf("tlsmail: %s: %w", step, err))
	}
	return err
}

// check turns a reply into nil or an error. Codes in want are success;
// 4xx and 5xx are *Error; anything else is a protocol violation.
func (c *Client) check(verb string, rep wire.Reply, want []int) error {
	for _, w := range want {
		if rep.Code == w {
			return nil
		}
	}
	if rep.Code >= 400 {
		e := newError(verb, rep, c.clean)
		if e.Code == 421 {
			// RFC 5321 section 3.8: 421 means the server is closing the
			// transmission channel; nothing more can be done on it.
			return c.fail(e)
		}
		return e
	}
	// A 2xx or 3xx the command cannot take means client and server no
	// longer agree on the state of the session; stop at once rather than
	// guess (a DATA answered with 250 would otherwise have its message
	// read as commands).
	text, _ := c.secrets().redact(strings.Join(rep.Lines, " "))
	return c.fail(fmt.Errorf("%w: unexpected reply %d to %s: %q", ErrProtocol, rep.Code, verb, wire.Quote([]byte(text))))
}

// withDeadline runs f with the connection deadline d from now, letting ctx
// interrupt it, and clears the deadline afterwards.
func (c *Client) withDeadline(ctx context.Context, d time.Duration, f func() error) error {
	c.conn.SetDeadline(deadline(d))
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, interrupter(c.conn))
	}
	err := f()
	if stop != nil && !stop() && err == nil {
		// The context fired while f was finishing; the connection's
		// deadline is now in the past, so report the cancellation.
		err = ctx.Err()
	}
	c.conn.SetDeadline(time.Time{})
	return err
}

func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tlsmail/tlsmail/internal/authbridge"
)

// The session's states (RFC 1939 section 3). Each command checks the
// state it needs before anything is sent.
type state int

const (
	// stateAuthorization: greeted, not authenticated; only CAPA, STLS,
	// AUTH, USER, PASS, APOP and QUIT.
	stateAuthorization state = iota
	// stateTransaction: authenticated; the maildrop is locked.
	stateTransaction
	// stateDone: QUIT sent, closed, or failed.
	stateDone
)

// A Client is a POP3 session made by a Dialer. It is not safe for
// concurrent use: POP3 answers one command at a time. Each method takes a
// context that bounds it; a cancelled context interrupts the I/O in
// flight and leaves the Client closed, since the session is then out of
// step.
//
// Every multi-line response is read as a stream and bounded, and every
// -ERR reply is an *Error. Any other failure (a timeout, a dropped
// connection, a protocol error) closes the connection, and later calls
// return ErrClosed.
type Client struct {
	conn     net.Conn
	br       *bufio.Reader
	host     string
	mode     Mode
	tls      bool
	timeouts timeouts
	maxMsg   int64
	tr       *tracer

	state    state
	closed   bool
	err      error // why the session ended, once it has
	caps     map[string][]string
	capaOK   bool   // the server answered CAPA with +OK
	banner   string // the greeting's text, for APOP's timestamp
	authMech string

	sizes   map[int]int64 // message sizes learned from LIST
	deleted map[int]bool  // messages marked by DELE since the last RSET
	reader  *messageReader
	secrets []string // credential forms to withhold from server text
}

// Format implements fmt.Formatter: every verb prints the server name and
// the mode, e.g. pop3.Client(server "pop.example.com", ImplicitTLS). Why
// every verb: once credentials have been sent the Client keeps what it
// needs to recognise them in replies, and %+v would otherwise walk its
// fields.
func (c *Client) Format(f fmt.State, verb rune) {
	desc := "<nil>"
	if c != nil {
		desc = "pop3.Client(server " + strconv.Quote(c.host) + ", " + c.mode.String() + ")"
	}
	io.WriteString(f, desc)
}

// TLSConnectionState returns the state of the TLS connection.
func (c *Client) TLSConnectionState() tls.ConnectionState {
	if tc, ok := c.conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// Mode returns how the connection was secured.
func (c *Client) Mode() Mode { return c.mode }

// Capabilities returns the server's capabilities from its CAPA reply
// under TLS (RFC 2449): each capability name in upper case, mapped to its
// arguments, e.g. "SASL" to ["PLAIN", "SCRAM-SHA-256"], "UIDL" to none.
// What the server said before TLS is never here (RFC 2595 section 4). The
// map is a copy. It is empty when the server does not support CAPA.
func (c *Client) Capabilities() map[string][]string {
	out := make(map[string][]string, len(c.caps))
	for k, v := range c.caps {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// AuthMechanism returns the mechanism used by a successful Auth: a SASL
// mechanism name, "USER" for USER and PASS, or "APOP"; "" before.
func (c *Client) AuthMechanism() string { return c.authMech }

// Close closes the connection without QUIT: messages marked with Dele are
// not deleted (RFC 1939 section 6). Close may be called more than once.
func (c *Client) Close() error {
	if c.closed {
		return nil
	}
	c.closed, c.state = true, stateDone
	if c.err == nil {
		c.err = ErrClosed
	}
	return c.conn.Close()
}

// fail ends the session after err, closing the connection, and returns
// err.
func (c *Client) fail(err error) error {
	if c.err == nil {
		c.err = err
	}
	c.state = stateDone
	if !c.closed {
		c.closed = true
		c.conn.Close()
	}
	return err
}

// ready checks that a command may be sent in state want.
func (c *Client) ready(verb string, want state) error {
	switch {
	case c.state == stateDone:
		if c.err != nil && c.err != ErrClosed {
			return fmt.Errorf("%w (the session ended: %v)", ErrClosed, c.err)
		}
		return ErrClosed
	case c.reader != nil:
		return ErrBusy
	case c.state != want && want == stateTransaction:
		return fmt.Errorf("pop3: %s needs an authenticated session; call Auth first", verb)
	case c.state != want:
		return fmt.Errorf("pop3: %s is only allowed before authentication", verb)
	}
	return nil
}

// redact withholds the session's credentials from text and makes it safe
// to print.
func (c *Client) redact(text string) string {
	if len(c.secrets) > 0 {
		text = authbridge.Redact(c.secrets, text)
	}
	return authbridge.Sanitize(text)
}

// io runs f, a step of the session, with the connection's deadline set to
// d from now and ctx able to interrupt it. Any error from f other than a
// *Error ends the session.
func (c *Client) io(ctx context.Context, step string, d time.Duration, f func() error) error {
	if err := ctx.Err(); err != nil {
		// Nothing was sent: the session is still in step.
		return fmt.Errorf("pop3: %s: %w", step, err)
	}
	c.conn.SetDeadline(time.Now().Add(d))
	stop := context.AfterFunc(ctx, func() {
		// Why a deadline in the past: it interrupts a blocked Read or
		// Write at once, and the caller asked to stop.
		c.conn.SetDeadline(time.Unix(1, 0))
	})
	err := f()
	if !stop() {
		return c.fail(fmt.Errorf("pop3: %s: %w", step, ctx.Err()))
	}
	var e *Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	switch {
	case errors.Is(err, ErrProtocol):
		// Already says what broke.
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("pop3: %s: no reply within %v: %w", step, d, err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		err = fmt.Errorf("pop3: %s: the server closed the connection: %w", step, io.ErrUnexpectedEOF)
	case !strings.HasPrefix(err.Error(), "pop3: "):
		err = fmt.Errorf("pop3: %s: %w", step, err)
	}
	return c.fail(err)
}

// send writes one command line; it must hold no CR, LF or NUL (checked by
// the callers through checkArg).
func (c *Client) send(verb, line string) error {
	c.tr.command(verb, line)
	_, err := io.WriteString(c.conn, line+"\r\n")
	return err
}

// status reads one status line and returns its text after "+OK" (or after
// "+" for a continuation when cont is set), or an *Error for -ERR.
func (c *Client) status(verb string, cont bool) (text string, isCont bool, err error) {
	start := time.Now()
	raw, err := readLine(c.br, maxStatusLine)
	if err != nil {
		if errors.Is(err, errLineTooLong) {
			return "", false, protocolError("%s: status line longer than %d octets (RFC 2449 section 4)", verb, maxStatusLine)
		}
		return "", false, err
	}
	line := string(raw)
	c.tr.status(verb, line, time.Since(start))
	switch {
	case line == "+OK" || strings.HasPrefix(line, "+OK "):
		return strings.TrimPrefix(strings.TrimPrefix(line, "+OK"), " "), false, nil
	case line == "-ERR" || strings.HasPrefix(line, "-ERR "):
		return "", false, parseErr(verb, strings.TrimPrefix(line, "-ERR"), c.redact)
	case cont && (line == "+" || strings.HasPrefix(line, "+ ")):
		return strings.TrimPrefix(strings.TrimPrefix(line, "+"), " "), true, nil
	case line == "":
		// Why an error: an empty line is not "+OK"; a client that takes
		// anything but -ERR for success reports deletions that never
		// happened.
		return "", false, protocolError("%s: empty status line", verb)
	}
	return "", false, protocolError("%s: status line %s is neither +OK nor -ERR", verb, strconv.Quote(c.redact(line[:min(len(line), 40)])))
}

// simple sends a one-line command and reads its status line.
func (c *Client) simple(ctx context.Context, verb, line string) (string, error) {
	var text string
	err := c.io(ctx, verb, c.timeouts.command, func() error {
		if err := c.send(verb, line); err != nil {
			return err
		}
		var err error
		text, _, err = c.status(verb, false)
		return err
	})
	return text, err
}

// readGreeting reads the server's first status line.
func (c *Client) readGreeting(ctx context.Context, addr string) error {
	var text string
	err := c.io(ctx, "greeting", c.timeouts.greeting, func() error {
		var err error
		text, _, err = c.status("", false)
		return err
	})
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
		return noGreetingError(addr, c.timeouts.greeting, err)
	}
	c.banner = text
	return err
}

// capa asks for the capabilities (RFC 2449 section 5). A -ERR reply (the
// server has no CAPA) leaves them empty and is returned.
func (c *Client) capa(ctx context.Context) error {
	c.caps, c.capaOK = map[string][]string{}, false
	var lines []string
	err := c.io(ctx, "CAPA", c.timeouts.command, func() error {
		if err := c.send("CAPA", "CAPA"); err != nil {
			return err
		}
		if _, _, err := c.status("CAPA", false); err != nil {
			return err
		}
		var err error
		lines, err = c.listing("CAPA", maxCapaLines)
		return err
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) && c.tls {
			// An old server without CAPA: under TLS, carry on without
			// capabilities (Auth then tries USER and PASS).
			return nil
		}
		return err
	}
	c.capaOK = true
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		c.caps[strings.ToUpper(f[0])] = f[1:]
	}
	return nil
}

// listing reads the lines of a multi-line listing (CAPA, LIST, UIDL),
// each at most maxStatusLine bytes, at most maxLines of them (0: no cap
// but maxListing bytes).
func (c *Client) listing(verb string, maxLines int) ([]string, error) {
	d := &dotReader{r: c.br, maxLine: maxStatusLine, limit: maxListing, why: "the limit for a listing", what: verb + " listing"}
	var lines []string
	for {
		if maxLines > 0 && len(lines) > maxLines {
			return nil, protocolError("%s: more than %d lines", verb, maxLines)
		}
		d.pending = nil
		d.next()
		if d.err == io.EOF {
			break
		}
		if d.err != nil {
			return nil, d.err
		}
		l := d.pending
		if !bytes.HasSuffix(l, []byte("\r\n")) {
			return nil, protocolError("%s: listing line without CRLF", verb)
		}
		lines = append(lines, string(l[:len(l)-2]))
	}
	c.tr.data(verb, d.n, len(lines))
	return lines, nil
}

// checkArg refuses an argument with CR, LF or NUL, before anything is
// sent. Why: such an argument would end the command early and start
// another one of the caller's input's choosing (command injection).
func checkArg(what, s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return fmt.Errorf("%w: %s contains CR, LF or NUL", ErrInvalidInput, what)
	}
	return nil
}

// checkMsg refuses a message number below 1 (RFC 1939 section 3: messages
// are numbered from 1).
func checkMsg(n int) error {
	if n < 1 {
		return fmt.Errorf("%w: message number %d; messages are numbered from 1", ErrInvalidInput, n)
	}
	return nil
}

// Noop sends NOOP, which keeps the session alive.
func (c *Client) Noop(ctx context.Context) error {
	if err := c.ready("NOOP", stateTransaction); err != nil {
		return err
	}
	_, err := c.simple(ctx, "NOOP", "NOOP")
	return err
}

// Stat returns the number of messages in the maildrop and their total
// size in octets (STAT, RFC 1939 section 5), messages marked for deletion
// excluded.
func (c *Client) Stat(ctx context.Context) (count int, size int64, err error) {
	if err := c.ready("STAT", stateTransaction); err != nil {
		return 0, 0, err
	}
	text, err := c.simple(ctx, "STAT", "STAT")
	if err != nil {
		return 0, 0, err
	}
	count, size, ok := parseCounts(text)
	if !ok {
		return 0, 0, c.fail(protocolError("STAT: malformed reply %s; want \"+OK count size\"", strconv.Quote(c.redact(text[:min(len(text), 40)]))))
	}
	return count, size, nil
}

// parseCounts parses "a b[ anything]", two decimal numbers (STAT's drop
// listing and LIST's scan listing, RFC 1939 section 5), as an int and an
// int64; RFC 1939 allows text after the second.
func parseCounts(s string) (int, int64, bool) {
	f := strings.SplitN(s, " ", 3)
	if len(f) < 2 {
		return 0, 0, false
	}
	a, ok1 := parseNum(f[0], 31)
	b, ok2 := parseNum(f[1], 62)
	return int(a), b, ok1 && ok2
}

// parseNum parses a decimal number of at most bits bits: digits only, no
// sign, no spaces.
func parseNum(s string, bits int) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n < 1<<bits
}

// A MessageInfo is one line of a LIST or UIDL listing.
type MessageInfo struct {
	// Number is the message number, from 1, valid for this session.
	Number int
	// Size is the message size in octets (LIST); -1 from UIDL.
	Size int64
	// UID is the unique id, stable across sessions (UIDL); "" from LIST.
	UID string
}

// List returns the number and size of every message not marked for
// deletion (LIST, RFC 1939 section 5). The sizes bound what Retr and
// Top accept.
func (c *Client) List(ctx context.Context) ([]MessageInfo, error) {
	lines, err := c.multiListing(ctx, "LIST", "LIST")
	if err != nil {
		return nil, err
	}
	out := make([]MessageInfo, 0, len(lines))
	seen := make(map[int]bool, len(lines))
	for _, l := range lines {
		n, size, ok := parseCounts(l)
		if !ok || n < 1 || seen[int(n)] {
			return nil, c.fail(protocolError("LIST: malformed or repeated line %s; want \"number size\"", strconv.Quote(c.redact(l[:min(len(l), 40)]))))
		}
		seen[n] = true
		c.noteSize(n, size)
		out = append(out, MessageInfo{Number: n, Size: size})
	}
	return out, nil
}

// ListOne returns the size of message n (LIST n).
func (c *Client) ListOne(ctx context.Context, n int) (MessageInfo, error) {
	if err := checkMsg(n); err != nil {
		return MessageInfo{}, err
	}
	if err := c.ready("LIST", stateTransaction); err != nil {
		return MessageInfo{}, err
	}
	text, err := c.simple(ctx, "LIST", "LIST "+strconv.Itoa(n))
	if err != nil {
		return MessageInfo{}, err
	}
	m, size, ok := parseCounts(text)
	if !ok || m != n {
		return MessageInfo{}, c.fail(protocolError("LIST %d: malformed reply %s; want \"+OK %d size\"", n, strconv.Quote(c.redact(text[:min(len(text), 40)])), n))
	}
	c.noteSize(n, size)
	return MessageInfo{Number: n, Size: size}, nil
}

func (c *Client) noteSize(n int, size int64) {
	if c.sizes == nil {
		c.sizes = make(map[int]int64)
	}
	c.sizes[n] = size
}

// Uidl returns the unique id of every message not marked for deletion
// (UIDL, RFC 1939 section 7).
func (c *Client) Uidl(ctx context.Context) ([]MessageInfo, error) {
	lines, err := c.multiListing(ctx, "UIDL", "UIDL")
	if err != nil {
		return nil, err
	}
	out := make([]MessageInfo, 0, len(lines))
	seen := make(map[int]bool, len(lines))
	for _, l := range lines {
		m, ok := parseUID(l)
		if !ok || seen[m.Number] {
			return nil, c.fail(protocolError("UIDL: malformed or repeated line %s; want \"number uid\"", strconv.Quote(c.redact(l[:min(len(l), 40)]))))
		}
		seen[m.Number] = true
		out = append(out, m)
	}
	return out, nil
}

// UidlOne returns the unique id of message n (UIDL n).
func (c *Client) UidlOne(ctx context.Context, n int) (MessageInfo, error) {
	if err := checkMsg(n); err != nil {
		return MessageInfo{}, err
	}
	if err := c.ready("UIDL", stateTransaction); err != nil {
		return MessageInfo{}, err
	}
	text, err := c.simple(ctx, "UIDL", "UIDL "+strconv.Itoa(n))
	if err != nil {
		return MessageInfo{}, err
	}
	m, ok := parseUID(text)
	if !ok || m.Number != n {
		return MessageInfo{}, c.fail(protocolError("UIDL %d: malformed reply %s; want \"+OK %d uid\"", n, strconv.Quote(c.redact(text[:min(len(text), 40)])), n))
	}
	return m, nil
}

// parseUID parses "number uid" (RFC 1939 section 7: the uid is 1 to 70
// characters from 0x21 to 0x7E).
func parseUID(s string) (MessageInfo, bool) {
	num, uid, ok := strings.Cut(s, " ")
	n, okN := parseNum(num, 31)
	if !ok || !okN || n < 1 || len(uid) < 1 || len(uid) > 70 {
		return MessageInfo{}, false
	}
	for i := 0; i < len(uid); i++ {
		if uid[i] < 0x21 || uid[i] > 0x7e {
			return MessageInfo{}, false
		}
	}
	return MessageInfo{Number: int(n), Size: -1, UID: uid}, true
}

// multiListing sends a command whose reply is a listing and returns its
// lines.
func (c *Client) multiListing(ctx context.Context, verb, line string) ([]string, error) {
	if err := c.ready(verb, stateTransaction); err != nil {
		return nil, err
	}
	var lines []string
	err := c.io(ctx, verb, c.timeouts.command, func() error {
		if err := c.send(verb, line); err != nil {
			return err
		}
		if _, _, err := c.status(verb, false); err != nil {
			return err
		}
		var err error
		lines, err = c.listing(verb, 0)
		return err
	})
	return lines, err
}

// Retr returns message n as a stream (RETR, RFC 1939 section 5): the
// message exactly as the server holds it, dot-stuffing removed, with
// CRLF line endings. The stream is bounded by the size LIST gives for the
// message (Retr sends LIST n first unless List or ListOne already gave
// it): a server that sends more is an ErrProtocol error, as is a response
// that ends without its terminating line. Read the stream to io.EOF or
// Close it before the next command; ctx bounds the reading too.
func (c *Client) Retr(ctx context.Context, n int) (io.ReadCloser, error) {
	return c.fetch(ctx, "RETR", n, "RETR "+strconv.Itoa(n))
}

// Top returns the header of message n and the first lines lines of its
// body, as Retr returns a whole message (TOP, RFC 1939 section 7).
func (c *Client) Top(ctx context.Context, n, lines int) (io.ReadCloser, error) {
	if lines < 0 {
		return nil, fmt.Errorf("%w: TOP with %d lines", ErrInvalidInput, lines)
	}
	return c.fetch(ctx, "TOP", n, "TOP "+strconv.Itoa(n)+" "+strconv.Itoa(lines))
}

func (c *Client) fetch(ctx context.Context, verb string, n int, line string) (io.ReadCloser, error) {
	if err := checkMsg(n); err != nil {
		return nil, err
	}
	if err := c.ready(verb, stateTransaction); err != nil {
		return nil, err
	}
	limit, ok := c.sizes[n]
	if !ok {
		m, err := c.ListOne(ctx, n)
		if err != nil {
			return nil, err
		}
		limit = m.Size
	}
	if limit > c.maxMsg {
		return nil, fmt.Errorf("pop3: %s %d: the message is %d bytes, more than Dialer.MaxMessageSize (%d)", verb, n, limit, c.maxMsg)
	}
	err := c.io(ctx, verb, c.timeouts.command, func() error {
		if err := c.send(verb, line); err != nil {
			return err
		}
		_, _, err := c.status(verb, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	r := &messageReader{c: c, verb: verb, ctx: ctx}
	r.d = &dotReader{r: c.br, maxLine: MaxLineLength, limit: limit, why: "the message size LIST gave", what: verb + " " + strconv.Itoa(n), before: r.renew}
	r.stop = context.AfterFunc(ctx, r.interrupt)
	c.reader = r
	return r, nil
}

// renew gives the next line of the message CommandTimeout to arrive,
// unless the context was cancelled. Why the lock: a cancellation that
// lands between two lines must not be undone by the next renewal, or the
// read would wait for the timeout instead of returning at once.
func (r *messageReader) renew() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.cancelled {
		r.c.conn.SetReadDeadline(time.Now().Add(r.c.timeouts.command))
	}
}

// interrupt is run by the context's cancellation: it makes any read in
// progress, or to come, fail at once.
func (r *messageReader) interrupt() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancelled = true
	r.c.conn.SetDeadline(time.Unix(1, 0))
}

// A messageReader is the stream Retr and Top return.
type messageReader struct {
	c    *Client
	verb string
	d    *dotReader
	ctx  context.Context
	stop func() bool
	err  error // set when finished: io.EOF or the failure

	mu        sync.Mutex // orders renew and interrupt
	cancelled bool
}

// Read implements io.Reader.
func (r *messageReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.d.Read(p)
	if err != nil {
		r.finish(err)
		return n, r.err
	}
	return n, nil
}

// Close reads and discards the rest of the message, so that the session
// can go on, and releases the Client for the next command. It returns
// nil when the whole message arrived intact.
func (r *messageReader) Close() error {
	if r.err == nil {
		r.finish(r.d.drain())
	}
	if r.err == io.EOF {
		return nil
	}
	return r.err
}

// finish ends the stream with err (nil or io.EOF: the terminator arrived).
func (r *messageReader) finish(err error) {
	c := r.c
	cancelled := !r.stop()
	c.reader = nil
	if err == nil || err == io.EOF {
		if !cancelled {
			c.tr.data(r.verb, r.d.n, 0)
			r.err = io.EOF
			return
		}
	}
	switch {
	case cancelled:
		err = fmt.Errorf("pop3: %s: %w", r.verb, r.ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("pop3: %s: no data within %v: %w", r.verb, c.timeouts.command, err)
	case !strings.HasPrefix(err.Error(), "pop3: "):
		err = fmt.Errorf("pop3: %s: %w", r.verb, err)
	}
	// Why end the session: the rest of the response is unread or
	// untrustworthy, so the next status line could be message content.
	r.err = c.fail(err)
}

// Dele marks message n for deletion (DELE, RFC 1939 section 5). The mark
// is only carried out when Quit gets the server's +OK; Close, a dropped
// connection or Rset keeps the message.
func (c *Client) Dele(ctx context.Context, n int) error {
	if err := checkMsg(n); err != nil {
		return err
	}
	if err := c.ready("DELE", stateTransaction); err != nil {
		return err
	}
	if _, err := c.simple(ctx, "DELE", "DELE "+strconv.Itoa(n)); err != nil {
		return err
	}
	c.deleted[n] = true
	return nil
}

// Rset unmarks every message marked for deletion (RSET).
func (c *Client) Rset(ctx context.Context) error {
	if err := c.ready("RSET", stateTransaction); err != nil {
		return err
	}
	if _, err := c.simple(ctx, "RSET", "RSET"); err != nil {
		return err
	}
	clear(c.deleted)
	return nil
}

// Marked returns the numbers of the messages marked for deletion since
// the last Rset, in no particular order.
func (c *Client) Marked() []int {
	out := make([]int, 0, len(c.deleted))
	for n := range c.deleted {
		out = append(out, n)
	}
	return out
}

// Quit ends the session with QUIT and closes the connection. After Auth,
// QUIT is what deletes the messages marked with Dele (the UPDATE state,
// RFC 1939 section 6), and Quit's result says what became of them:
//
//   - nil: the server answered +OK; every marked message was removed.
//   - an *Error: the server answered -ERR; some marked messages may not
//     have been removed (RFC 1939 section 6).
//   - an error matching ErrDeletionsUnknown: messages were marked and no
//     reply arrived; they may or may not have been removed.
//
// With nothing marked, a lost reply is reported as the I/O error alone.
// A message stream still open is closed first.
func (c *Client) Quit(ctx context.Context) error {
	if c.reader != nil {
		if err := c.reader.Close(); err != nil {
			// The session failed while draining: nothing was committed.
			return fmt.Errorf("pop3: QUIT not sent, marked messages not deleted: %w", err)
		}
	}
	if c.state == stateDone {
		return c.ready("QUIT", stateTransaction)
	}
	pending := len(c.deleted) > 0 && c.state == stateTransaction
	_, err := c.simple(ctx, "QUIT", "QUIT")
	c.Close()
	var e *Error
	if err != nil && pending && !errors.As(err, &e) {
		return fmt.Errorf("%w: %d messages were marked: %w", ErrDeletionsUnknown, len(c.deleted), err)
	}
	if err == nil {
		clear(c.deleted)
	}
	return err
}

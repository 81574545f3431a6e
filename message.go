package tlsmail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/tlsmail/tlsmail/internal/wire"
)

// A Message is one message to send with Client.Send or Dialer.Send: its
// envelope, its content and the SMTP extensions it asks for. Each option
// that needs an extension makes Send fail, before anything of the message
// is sent, when the server does not offer that extension; none is ever
// silently dropped.
type Message struct {
	// From is the envelope sender (MAIL FROM). Empty is the null
	// reverse-path, for bounces.
	From string

	// To lists the envelope recipients (RCPT TO); at least one.
	To []string

	// Body is the message content: header section, blank line, body. It
	// is read once and streamed; line endings are normalised to CRLF and
	// lines starting with "." are escaped, so "\n" line endings are fine.
	//
	// When Body is a *bytes.Reader, *strings.Reader or *bytes.Buffer,
	// tlsmail looks at the content before sending: it declares SIZE,
	// asks for 8BITMIME (RFC 6152) and SMTPUTF8 (RFC 6531) only when the
	// content needs them, and fails before sending when the server lacks
	// one the content needs. For any other reader it reads ahead only the
	// header section (up to 64 KiB) for SMTPUTF8; it asks for 8BITMIME
	// whenever the server offers it, and against a server that does not,
	// it abandons the transaction without delivering anything if an 8-bit
	// byte turns up while streaming.
	Body io.Reader

	// Size, if positive, is declared as the message size with the SIZE
	// parameter (RFC 1870) in place of the size tlsmail works out for an
	// in-memory Body. A message larger than the server's advertised limit
	// fails with ErrMessageTooLarge before anything is sent.
	Size int64

	// RequireTLS asks, with REQUIRETLS (RFC 8689), that the message only
	// travel over TLS with verified certificates on every further hop.
	RequireTLS bool

	// DSN asks for delivery status notifications (RFC 3461). The zero
	// value asks for nothing.
	DSN DSN

	// PartialDelivery sends the message to the recipients the server
	// accepted when it refused others. The zero value is all-or-nothing,
	// like SendMail: unless every recipient is accepted the transaction
	// is reset and nothing is delivered.
	PartialDelivery bool
}

// DSN holds the delivery status notification parameters of RFC 3461.
type DSN struct {
	// Return says how much of the message a notification returns: the
	// full message or only its headers. Empty leaves it to the server.
	Return DSNReturn

	// EnvelopeID is an identifier of the caller's choosing, returned in
	// every notification (ENVID); printable ASCII.
	EnvelopeID string

	// Notify says when to notify, for every recipient (NOTIFY). Zero
	// leaves it to the server (usually failure and delay).
	Notify DSNNotify

	// OriginalRecipient sends each recipient's address as its original
	// recipient (ORCPT), so that notifications name the address the
	// message was sent to even after forwarding.
	OriginalRecipient bool
}

// DSNReturn is the RET parameter of RFC 3461 section 4.3.
type DSNReturn string

// Values of DSN.Return.
const (
	ReturnFull    DSNReturn = "FULL" // return the whole message
	ReturnHeaders DSNReturn = "HDRS" // return only its headers
)

// DSNNotify is a set of conditions for the NOTIFY parameter of RFC 3461
// section 4.1.
type DSNNotify uint8

// Conditions for DSN.Notify. NotifyNever may not be combined with others.
const (
	NotifyNever DSNNotify = 1 << iota
	NotifySuccess
	NotifyFailure
	NotifyDelay
)

// String returns the NOTIFY value, e.g. "SUCCESS,FAILURE".
func (n DSNNotify) String() string {
	var parts []string
	for _, f := range []struct {
		bit  DSNNotify
		name string
	}{{NotifyNever, "NEVER"}, {NotifySuccess, "SUCCESS"}, {NotifyFailure, "FAILURE"}, {NotifyDelay, "DELAY"}} {
		if n&f.bit != 0 {
			parts = append(parts, f.name)
		}
	}
	return strings.Join(parts, ",")
}

// active reports whether any DSN parameter is set.
func (d DSN) active() bool {
	return d.Return != "" || d.EnvelopeID != "" || d.Notify != 0 || d.OriginalRecipient
}

// A Result is the outcome of Send, recipient by recipient.
type Result struct {
	// Recipients holds one entry per address of Message.To, in order.
	Recipients []RecipientResult

	// Reply is the server's reply to the end of the message data, which
	// usually carries its queue id ("2.0.0 Ok: queued as 4Bq1Zk"). It is
	// nil when the data was not sent or no reply arrived.
	Reply *Reply
}

// Accepted returns the recipients the server accepted.
func (r *Result) Accepted() []string {
	var out []string
	for _, rr := range r.Recipients {
		if rr.Err == nil {
			out = append(out, rr.Addr)
		}
	}
	return out
}

// A RecipientResult is the server's answer to one RCPT command.
type RecipientResult struct {
	// Addr is the recipient address as given in Message.To.
	Addr string
	// Err is nil when the server accepted the recipient, and otherwise
	// its refusal, with Code, EnhancedCode and Temporary telling a
	// permanent failure from one worth retrying later.
	Err *Error
}

// A Reply is a positive server reply.
type Reply struct {
	Code         int          // e.g. 250
	EnhancedCode EnhancedCode // RFC 3463 code, or the zero value
	Message      string       // the text, without codes; server text made safe as in Error
}

// Errors of the message-level API. Compare with errors.Is.
var (
	// ErrExtensionUnsupported is returned, before the message is sent,
	// when the message or a Message option needs an SMTP extension that
	// the server does not offer (8BITMIME, SMTPUTF8, DSN, REQUIRETLS).
	ErrExtensionUnsupported = errors.New("tlsmail: server does not offer a needed SMTP extension")

	// ErrMessageTooLarge is returned, before the message is sent, when
	// its size exceeds the limit the server advertised with SIZE
	// (RFC 1870).
	ErrMessageTooLarge = errors.New("tlsmail: message exceeds the server's size limit")
)

// Send sends m on the Client's connection: MAIL, one RCPT per recipient,
// DATA and the streamed body, with the parameters m asks for. It returns
// per-recipient results and the final reply; err is nil only when the
// message was accepted for delivery, to every recipient or, with
// m.PartialDelivery, to those the server accepted (see Result). A refused
// recipient under all-or-nothing, or all recipients refused, is an *Error
// (the first refusal), after which the transaction is reset and the
// Client can send again. ctx bounds the whole exchange.
//
// When the server offers PIPELINING (RFC 2920), MAIL, the RCPTs and DATA
// go in one group and every reply is checked. A message with one
// recipient, or with PartialDelivery, is committed without waiting for
// the RCPT replies, since a refusal then leaves nobody to deliver to
// against the caller's wish; an all-or-nothing message with several
// recipients waits for them before its content. With CHUNKING (RFC 3030)
// the content is sent as BDAT chunks, without dot-stuffing; a message
// that fits in one chunk and may be committed blind rides with its
// envelope, so that it costs one round trip.
//
// Send requires the Client to be TLS, like Mail. Authenticate first with
// Auth if the server needs it.
func (c *Client) Send(ctx context.Context, m *Message) (*Result, error) {
	return c.send(ctx, m, sendOpts{})
}

// Send dials addr as DialContext does, authenticates with a if it is not
// nil, sends m as Client.Send does and ends the session with QUIT, which
// rides with the end of the message. Because the session ends, DATA goes
// in the envelope's group even for an all-or-nothing message with several
// recipients: if one is refused, the connection is closed before the end
// of data, which delivers the message to nobody (RFC 5321 section 3.8).
func (d *Dialer) Send(ctx context.Context, addr string, a Auth, m *Message) (*Result, error) {
	if err := checkEnvelope(m.From, m.To); err != nil {
		return nil, err
	}
	var res *Result
	err := d.oneSession(ctx, addr, a, func(c *Client) (err error) {
		res, err = c.send(ctx, m, sendOpts{lastUse: true})
		return err
	})
	return res, err
}

// oneSession dials addr, authenticates with a if it is not nil, runs f
// and ends the session with QUIT (which f's last message may already
// have sent along with it) while the server is still responsive, so that
// it does not log a lost connection. After f, QUIT's result changes
// nothing: a message accepted stays accepted.
func (d *Dialer) oneSession(ctx context.Context, addr string, a Auth, f func(c *Client) error) error {
	c, err := d.DialContext(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if a != nil {
		err = c.authenticate(ctx, a)
	}
	if err == nil {
		err = f(c)
	}
	if c.err == nil {
		c.quit(ctx)
	}
	return err
}

// plan is the MAIL and RCPT parameters for one message, decided before
// anything is sent.
type plan struct {
	mailParams string
	rcptParams []string
	sevenBit   bool // enforce 7-bit data while streaming
}

// plan checks m against the server's extensions and builds the
// parameters. Every refusal happens here, before MAIL.
func (c *Client) plan(m *Message, body content) (plan, error) {
	var p plan
	var params []string
	has := func(ext string) bool { _, ok := c.ext[ext]; return ok }
	missing := func(ext, why, rfc string) error {
		return fmt.Errorf("%w: %s needs %s (%s), which %s does not offer; nothing was sent", ErrExtensionUnsupported, why, ext, rfc, c.serverName)
	}

	// SIZE (RFC 1870): declare what is known and refuse what is too big.
	size := body.size
	if m.Size > 0 {
		size = m.Size
	}
	if v, ok := c.ext["SIZE"]; ok && size >= 0 {
		if limit, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && limit > 0 && size > limit {
			return p, fmt.Errorf("%w: the message is %d bytes and %s accepts at most %d (RFC 1870); nothing was sent", ErrMessageTooLarge, size, c.serverName, limit)
		}
		params = append(params, "SIZE="+strconv.FormatInt(size, 10))
	}

	// 8BITMIME (RFC 6152): ask only when the content needs it.
	switch {
	case body.known && body.eightBit && !has("8BITMIME"):
		// Why refuse: sending 8-bit data to a 7-bit server lets a relay
		// mangle it; the caller can re-encode it (quoted-printable).
		return p, missing("8BITMIME", "the message has 8-bit data", "RFC 6152")
	case body.known && body.eightBit, !body.known && has("8BITMIME"):
		params = append(params, "BODY=8BITMIME")
	case !body.known:
		p.sevenBit = true
	}

	// SMTPUTF8 (RFC 6531): for non-ASCII addresses or headers.
	utf8 := body.utf8Head || !wire.IsASCII(m.From)
	for _, r := range m.To {
		utf8 = utf8 || !wire.IsASCII(r)
	}
	if utf8 {
		if !has("SMTPUTF8") {
			return p, missing("SMTPUTF8", "a non-ASCII address or header", "RFC 6531")
		}
		params = append(params, "SMTPUTF8")
	}

	// DSN (RFC 3461).
	if m.DSN.active() {
		if !has("DSN") {
			return p, missing("DSN", "delivery status notifications", "RFC 3461")
		}
		switch m.DSN.Return {
		case "":
		case ReturnFull, ReturnHeaders:
			params = append(params, "RET="+string(m.DSN.Return))
		default:
			return p, fmt.Errorf("%w: DSN.Return %q is neither FULL nor HDRS", ErrInvalidInput, m.DSN.Return)
		}
		if m.DSN.EnvelopeID != "" {
			if err := checkPrintable(m.DSN.EnvelopeID, 100); err != nil {
				return p, fmt.Errorf("%w: DSN.EnvelopeID %v", ErrInvalidInput, err)
			}
			params = append(params, "ENVID="+xtext(m.DSN.EnvelopeID))
		}
		if n := m.DSN.Notify; n&NotifyNever != 0 && n != NotifyNever {
			return p, fmt.Errorf("%w: DSN.Notify combines NotifyNever with other conditions (RFC 3461 section 4.1)", ErrInvalidInput)
		}
	}

	// REQUIRETLS (RFC 8689 section 4.1).
	if m.RequireTLS {
		if !has("REQUIRETLS") {
			// Why refuse: the caller asked that the message never travel
			// in plaintext; sending it without the flag would quietly
			// drop that guarantee.
			return p, missing("REQUIRETLS", "RequireTLS", "RFC 8689")
		}
		params = append(params, "REQUIRETLS")
	}
	p.mailParams = strings.Join(params, " ")

	p.rcptParams = make([]string, len(m.To))
	for i, r := range m.To {
		var rp []string
		if m.DSN.Notify != 0 {
			rp = append(rp, "NOTIFY="+m.DSN.Notify.String())
		}
		if m.DSN.OriginalRecipient {
			rp = append(rp, orcpt(r))
		}
		p.rcptParams[i] = strings.Join(rp, " ")
	}
	return p, nil
}

// checkPrintable checks an ENVID: printable ASCII, bounded (RFC 3461
// section 4.4 allows 100 characters).
func checkPrintable(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("is longer than %d characters", max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("contains %q, which is not printable ASCII", s[i])
		}
	}
	return nil
}

// xtext encodes s as RFC 3461 section 4 xtext: "+", "=" and anything
// outside "!" to "~" become "+XX".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// orcpt returns the ORCPT parameter for addr: "rfc822" with xtext for
// ASCII addresses, "utf-8" with RFC 6533 utf-8-addr-xtext otherwise.
func orcpt(addr string) string {
	if wire.IsASCII(addr) {
		return "ORCPT=rfc822;" + xtext(addr)
	}
	var b strings.Builder
	for _, r := range addr {
		if r < '!' || r > '~' || r == '+' || r == '=' || r == '\\' {
			fmt.Fprintf(&b, `\x{%X}`, r)
		} else {
			b.WriteRune(r)
		}
	}
	return "ORCPT=utf-8;" + b.String()
}

// send runs one mail transaction.
func (c *Client) send(ctx context.Context, m *Message, o sendOpts) (*Result, error) {
	res, errs := c.run(ctx, []*Message{m}, o)
	return res[0], errs[0]
}

func newReply(rep wire.Reply, clean func(string) string) *Reply {
	e := newError("", rep, clean)
	return &Reply{Code: e.Code, EnhancedCode: e.EnhancedCode, Message: e.Message}
}

// writerFunc adapts a func to io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

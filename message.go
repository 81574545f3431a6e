package tlsmail

import (
	"errors"
	"io"
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
	// A Result is only returned when every recipient's reply was read in
	// step; when the session ended before they all came, or they were out
	// of step, Send returns a nil Result rather than a partial list.
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
	// the server does not offer (8BITMIME, SMTPUTF8, DSN, REQUIRETLS);
	// for 8-bit data in a Body that could not be looked at in advance,
	// it is returned when the first 8-bit byte turns up, and the
	// transaction is abandoned so that nothing is delivered. For 8-bit
	// data, encode the content as 7-bit (quoted-printable or base64
	// MIME parts); for SMTPUTF8, use ASCII addresses and headers (RFC
	// 2047 encoded words); otherwise drop the option or use another
	// server.
	ErrExtensionUnsupported = errors.New("tlsmail: server does not offer a needed SMTP extension")

	// ErrMessageTooLarge is returned, before the message is sent, when
	// its size exceeds the limit the server advertised with SIZE
	// (RFC 1870).
	ErrMessageTooLarge = errors.New("tlsmail: message exceeds the server's size limit")
)

// A BatchResult is the outcome of one message of SendBatch.
type BatchResult struct {
	// Result holds the per-recipient outcome and the final reply, as
	// Send returns them; nil when the message was not attempted, its
	// MAIL command was refused, or its recipients' replies are not all
	// known in step.
	Result *Result
	// Err is nil when the message was accepted, as Send's error.
	Err error
}

func newReply(rep wire.Reply, clean func(string) string) *Reply {
	e := newError("", rep, clean)
	return &Reply{Code: e.Code, EnhancedCode: e.EnhancedCode, Message: e.Message}
}

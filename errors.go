package tlsmail

import (
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tlsmail/tlsmail/internal/wire"
)

// Errors returned for policy refusals and protocol failures. Compare with
// errors.Is.
var (
	// ErrPlaintextAuth is returned by Client.Auth, PlainAuth and LoginAuth
	// when the connection is not TLS. tlsmail never sends credentials in
	// plaintext, for any mechanism or host.
	ErrPlaintextAuth = errors.New("tlsmail: refusing to authenticate on a connection that is not TLS; use implicit TLS or call StartTLS first")

	// ErrPlaintextMail is returned by Mail, Rcpt, Data and Verify when the
	// connection is not TLS: envelope and message are never sent in
	// plaintext. The error names the command that was refused.
	ErrPlaintextMail = errors.New("tlsmail: refusing to send mail on a connection that is not TLS; use implicit TLS or call StartTLS first")

	// ErrAuthUnsupported is returned when the server does not advertise
	// AUTH, or not the mechanism the Auth chose, in its current EHLO reply.
	ErrAuthUnsupported = errors.New("tlsmail: server does not offer the authentication mechanism")

	// ErrInvalidInput is returned, before anything is sent, for an address
	// or hello name that contains CR, LF, NUL, other control characters,
	// spaces or angle brackets, or that the server cannot take.
	ErrInvalidInput = errors.New("tlsmail: invalid input")

	// ErrServerClosing matches an *Error with code 421: the server is
	// closing the connection (RFC 5321 section 3.8).
	ErrServerClosing = errors.New("tlsmail: server is closing the connection (421)")

	// ErrProtocol is returned when the server breaks the SMTP protocol: a
	// malformed or oversized reply, a reply code the command cannot take,
	// or a reply that answers no command. The connection is closed. A
	// reply to no command is what a test double that hands over every
	// scripted reply at once produces: test against a real SMTP server
	// on loopback instead (package smtptest).
	ErrProtocol = errors.New("tlsmail: SMTP protocol error")

	// ErrUnknownOutcome is returned when the whole message, end-of-data
	// marker (or BDAT LAST) included, was sent but no reply to it can be
	// trusted: the connection dropped, the reply timed out, or the replies
	// were found out of step (then the error also matches ErrProtocol),
	// including a session that ended without QUIT's 221, the check that
	// the replies before it were in step. The server may well have queued
	// the message, so resending it may deliver a duplicate. It is returned
	// in this form by every entry point, the net/smtp ones included, so
	// that a caller that retries on io.EOF does not resend blindly.
	ErrUnknownOutcome = errors.New("tlsmail: outcome unknown: the message may have been delivered")
)

// An Error is a negative (4xx or 5xx) reply from the server. Find it with
// errors.As.
//
// Clients made by Dial, NewClient and the package-level SendMail return
// replies as *textproto.Error instead, exactly as net/smtp does; see the
// package documentation.
type Error struct {
	// Code is the three-digit reply code, e.g. 550.
	Code int
	// EnhancedCode is the RFC 3463 enhanced status code, e.g. {5, 7, 8},
	// or the zero value when the reply did not carry one.
	EnhancedCode EnhancedCode
	// Message is the reply text, without the codes; lines of a multi-line
	// reply are joined with "\n". Server text is untrusted: control
	// characters and invalid UTF-8 are replaced with U+FFFD, the text is
	// cut to about 1 KiB (saying how much was cut), and any run of
	// characters that repeats credentials sent on the session is replaced
	// by "[withheld]".
	Message string
	// Command is the SMTP verb the reply answered (e.g. "RCPT"), or
	// "greeting". It never contains arguments, so never credentials.
	Command string

	// raw is the reply text as net/smtp's textproto would give it
	// (enhanced code kept), made safe the same way as Message.
	raw string
}

// EnhancedCode is an RFC 3463 enhanced status code: class, subject, detail.
type EnhancedCode [3]int

// String returns the code in dotted form, e.g. "5.7.8", or "" for the zero
// value.
func (e EnhancedCode) String() string {
	if e == (EnhancedCode{}) {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

// newError builds the *Error for a negative reply. clean makes server text
// safe to show: it withholds credentials, then sanitises.
func newError(verb string, rep wire.Reply, clean func(string) string) *Error {
	e := &Error{Code: rep.Code, Command: verb}
	lines := make([]string, len(rep.Lines))
	for i, l := range rep.Lines {
		enh, rest, ok := wire.EnhancedCode(rep.Code, l)
		if ok {
			if i == 0 {
				e.EnhancedCode = EnhancedCode(enh)
			}
			l = rest
		}
		lines[i] = l
	}
	e.Message = clean(strings.Join(lines, "\n"))
	e.raw = clean(strings.Join(rep.Lines, "\n"))
	return e
}

// Error returns e as "tlsmail: VERB: server replied CODE ENH MESSAGE", with
// a note that the server is closing the connection for a 421.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("tlsmail: ")
	if e.Command != "" {
		b.WriteString(e.Command)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "server replied %d", e.Code)
	if enh := e.EnhancedCode.String(); enh != "" {
		b.WriteString(" " + enh)
	}
	if e.Message != "" {
		b.WriteString(" " + strings.ReplaceAll(e.Message, "\n", " / "))
	}
	if e.Code == 421 {
		// Why: the server's text may say anything ("Try again later");
		// the code means the session is over (RFC 5321 section 3.8).
		b.WriteString(" (the server is closing the connection)")
	}
	return b.String()
}

// Temporary reports whether the failure is transient (a 4xx reply), so that
// the same command may succeed later.
func (e *Error) Temporary() bool {
	return e.Code/100 == 4
}

// Is makes errors.Is(err, ErrServerClosing) true for a 421 reply.
func (e *Error) Is(target error) bool {
	return target == ErrServerClosing && e.Code == 421
}

// As lets code written for net/smtp, which sees replies as
// *textproto.Error, keep working with errors.As: it fills in a
// *textproto.Error with the same code and text.
func (e *Error) As(target any) bool {
	if p, ok := target.(**textproto.Error); ok {
		*p = e.textproto()
		return true
	}
	return false
}

// textproto returns e as net/smtp would have returned the reply.
func (e *Error) textproto() *textproto.Error {
	msg := e.raw
	if msg == "" && e.Message != "" {
		// An Error built by hand, not from a reply.
		msg = e.Message
		if enh := e.EnhancedCode.String(); enh != "" {
			msg = enh + " " + msg
		}
	}
	return &textproto.Error{Code: e.Code, Msg: msg}
}

// maxErrorText bounds the server text kept in an error. Why: a hostile
// server could otherwise put 64 KiB of text into every log line.
const maxErrorText = 1024

// sanitize makes untrusted server text safe to print: control characters
// other than the "\n" that joins reply lines, and invalid UTF-8, become
// U+FFFD, and the text is cut to maxErrorText bytes. Why: an ESC or OSC
// sequence, a BEL, a NUL or a bare CR reaching a terminal or a log can
// rewrite what an operator sees (log and terminal injection).
func sanitize(s string) string {
	var b strings.Builder
	cut := 0
	for i, r := range s {
		if b.Len() >= maxErrorText {
			cut = len(s) - i
			break
		}
		switch {
		case r == '\n':
			b.WriteByte('\n')
		case r == utf8.RuneError && isInvalidAt(s, i):
			b.WriteRune(utf8.RuneError)
		case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f, r == '\u2028', r == '\u2029':
			b.WriteRune(utf8.RuneError)
		default:
			b.WriteRune(r)
		}
	}
	if cut > 0 {
		fmt.Fprintf(&b, " [%d more bytes cut]", cut)
	}
	return b.String()
}

// isInvalidAt reports whether the RuneError decoded at s[i] stands for an
// invalid byte rather than an encoded U+FFFD.
func isInvalidAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 1
}

// What became of a message refused for an extension the server lacks.
const (
	nothingSent = "nothing was sent" // refused before MAIL
	abandoned   = "the transaction was abandoned and nothing was delivered"
)

// missingExtension is the error for a message that needs ext (defined in
// rfc), which server does not offer: what says what in the message needs
// it, outcome what became of the message (nothingSent or abandoned).
func missingExtension(what, ext, rfc, server, outcome string) error {
	return fmt.Errorf("%w: %s, which needs %s (%s), and %s does not offer it; %s",
		ErrExtensionUnsupported, what, ext, rfc, server, outcome)
}

// no8BITMIME is the one error for 8-bit data and a server without
// 8BITMIME, whether plan finds the data before anything is sent
// (nothingSent) or the engine finds it while streaming a body it could
// not look at first (abandoned).
func no8BITMIME(server, outcome string) error {
	return missingExtension("the message has 8-bit data", "8BITMIME", "RFC 6152", server, outcome)
}

// prefixed wraps err under a tlsmail prefix without repeating "tlsmail: "
// when err already starts with it. errors.Is and errors.As see err.
type prefixed struct {
	msg string
	err error
}

func (e *prefixed) Error() string { return e.msg }
func (e *prefixed) Unwrap() error { return e.err }

// wrap returns err as "tlsmail: <what>: <err without its tlsmail: prefix>".
func wrap(err error, format string, args ...any) error {
	return &prefixed{msg: "tlsmail: " + fmt.Sprintf(format, args...) + ": " + inner(err), err: err}
}

// inner is err's message without a leading "tlsmail: ", for use inside
// another tlsmail error.
func inner(err error) string {
	return strings.TrimPrefix(err.Error(), "tlsmail: ")
}

// ioFailure is a failed network step: a timeout, a dropped connection or
// another I/O error. Its message names the step and, for a timeout, the
// limit; it unwraps to the cause.
type ioFailure struct {
	msg   string
	cause error
}

func (e *ioFailure) Error() string { return e.msg }
func (e *ioFailure) Unwrap() error { return e.cause }

// netsmtp returns the value net/smtp would have returned for the same
// event, or nil when the failure is tlsmail's own (a timeout, a reply
// over the size limits, a malformed reply).
func (e *ioFailure) netsmtp() error {
	switch {
	case errors.Is(e.cause, os.ErrDeadlineExceeded),
		errors.Is(e.cause, wire.ErrReplyTooLarge), errors.Is(e.cause, wire.ErrMalformedReply):
		return nil
	}
	// io.EOF, io.ErrUnexpectedEOF or the net error, exactly as the
	// connection returned it.
	return e.cause
}

// ioError describes a failed network step, naming it and the timeout.
func ioError(step string, d time.Duration, err error) error {
	var msg string
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) && strings.HasPrefix(step, "writing"):
		msg = fmt.Sprintf("tlsmail: %s: server did not take the data within %v: %v", step, d, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		msg = fmt.Sprintf("tlsmail: %s: no reply from server within %v: %v", step, d, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		msg = fmt.Sprintf("tlsmail: %s: server closed the connection: %v", step, err)
	case errors.Is(err, wire.ErrReplyTooLarge), errors.Is(err, wire.ErrMalformedReply):
		return &ioFailure{msg: fmt.Sprintf("%v: %s: %v", ErrProtocol, step, err), cause: errors.Join(ErrProtocol, err)}
	default:
		msg = fmt.Sprintf("tlsmail: %s: %v", step, err)
	}
	return &ioFailure{msg: msg, cause: err}
}

// unknownOutcome is the failure to read the reply to a message that was
// sent whole. It matches ErrUnknownOutcome and its cause.
type unknownOutcome struct{ cause error }

// Error is the cause, then ErrUnknownOutcome's text: the condition has
// one message, and what to do about it is in ErrUnknownOutcome's doc.
func (e *unknownOutcome) Error() string {
	return "tlsmail: " + inner(e.cause) + "; " + inner(ErrUnknownOutcome)
}

func (e *unknownOutcome) Unwrap() []error { return []error{ErrUnknownOutcome, e.cause} }

// unusableError is returned by every command after a failure that ended
// the session.
type unusableError struct{ err error }

func (e *unusableError) Error() string {
	return "tlsmail: client unusable after earlier failure: " + inner(e.err)
}

func (e *unusableError) Unwrap() error { return e.err }

// netsmtpError turns an error into the value net/smtp would return for the
// same event, for the Clients made by Dial and NewClient and for the
// package-level SendMail: a reply is a bare *textproto.Error, a connection
// the server closed is io.EOF, another I/O failure is the net error itself.
// tlsmail's own conditions (policy refusals, invalid input, size limits,
// timeouts, injection, an unknown outcome) keep their tlsmail errors.
func netsmtpError(err error) error {
	switch e := err.(type) {
	case *Error:
		return e.textproto()
	case *ioFailure:
		if v := e.netsmtp(); v != nil {
			return v
		}
	case *unusableError:
		// Why the same value again: net/smtp would try the command on
		// the dead connection and get the same kind of error.
		if v := netsmtpError(e.err); v != e.err {
			return v
		}
	}
	return err
}

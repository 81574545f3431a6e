package pop3

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tlsmail/tlsmail/internal/authbridge"
)

// Errors returned for policy refusals and protocol failures. Compare with
// errors.Is.
var (
	// ErrSTLSUnsupported is returned in STLS mode when the server's CAPA
	// reply does not list STLS, or the server refuses the STLS command.
	// The client then stops rather than continue in plaintext: the
	// capability may have been stripped, or the refusal forged, by an
	// attacker on the path (RFC 2595 section 4). Use the server's
	// implicit-TLS port (995) if it has one.
	ErrSTLSUnsupported = errors.New("pop3: server does not offer STLS; refusing to continue in plaintext")

	// ErrResponseInjection is returned when the server sent bytes after
	// its +OK to STLS and before the TLS handshake: whoever sent them
	// could have them read as replies from inside TLS. The connection is
	// closed.
	ErrResponseInjection = errors.New("pop3: STLS response injection: server sent data before the TLS handshake")

	// ErrPlaintextServer is returned in ImplicitTLS mode when the server
	// answered with a plaintext POP3 greeting instead of a TLS handshake:
	// the address is most likely the STLS port (110). Use Mode STLS there,
	// or the implicit-TLS port (995).
	ErrPlaintextServer = errors.New("pop3: server answered in plaintext POP3 where implicit TLS was expected")

	// ErrNoGreeting is returned when no greeting arrives within the
	// GreetingTimeout. In STLS mode the address may be an implicit-TLS
	// port (995), where the server waits silently for the client to start
	// TLS.
	ErrNoGreeting = errors.New("pop3: no POP3 greeting from server")

	// ErrProtocol is returned when the server breaks the POP3 protocol: an
	// empty, malformed or oversized status line, a multi-line response
	// without its terminating "." line or longer than allowed, a
	// malformed STAT, LIST or UIDL line, or a message longer than its
	// LIST size. The connection is closed: what follows cannot be
	// trusted to be in step.
	ErrProtocol = errors.New("pop3: protocol error")

	// ErrInvalidInput is returned, before anything is sent, for an
	// argument that contains CR, LF, NUL or a space where the command
	// cannot take one, or a message number below 1.
	ErrInvalidInput = errors.New("pop3: invalid input")

	// ErrAuthUnsupported is returned by Auth when the server offers no
	// mechanism the Auth can use, nor USER and PASS for a password. It
	// also matches the root package's tlsmail.ErrAuthUnsupported.
	ErrAuthUnsupported = errors.New("pop3: server does not offer the authentication mechanism")

	// ErrDeletionsUnknown is returned by Quit when messages were marked
	// for deletion and no reply to QUIT arrived (the connection dropped,
	// the reply timed out, the context was cancelled): the server may or
	// may not have removed them (RFC 1939 section 6). Check the mailbox
	// (UIDL) on the next session before acting on the deletions.
	ErrDeletionsUnknown = errors.New("pop3: outcome of the deletions unknown: no reply to QUIT")

	// ErrBusy is returned by a command issued while the reader returned
	// by Retr or Top is still open: POP3 answers one command at a time.
	// Read it to the end or close it first.
	ErrBusy = errors.New("pop3: a message is still being read; close its reader first")

	// ErrClosed is returned by a command on a Client that was closed, that
	// sent QUIT, or whose connection failed earlier. Dial again.
	ErrClosed = errors.New("pop3: client is closed")
)

// Sentinels matched by an *Error whose response code (RFC 2449 section
// 8, RFC 3206) says why the server refused. Compare with errors.Is.
var (
	// ErrInUse matches the response code [IN-USE]: another session holds
	// the mailbox lock. Try again later; another client may be polling.
	ErrInUse = errors.New("pop3: mailbox in use [IN-USE]")
	// ErrLoginDelay matches [LOGIN-DELAY]: the user logged in too
	// recently. Poll less often (see the LOGIN-DELAY capability).
	ErrLoginDelay = errors.New("pop3: login too soon [LOGIN-DELAY]")
	// ErrSysTemp matches [SYS/TEMP]: a temporary server problem. Retry
	// later.
	ErrSysTemp = errors.New("pop3: temporary server failure [SYS/TEMP]")
	// ErrSysPerm matches [SYS/PERM]: a lasting server problem that
	// retrying will not fix; tell the user or the server's operator.
	ErrSysPerm = errors.New("pop3: permanent server failure [SYS/PERM]")
	// ErrAuthFailed matches [AUTH]: the credentials were refused (RFC
	// 3206 section 4). Check the user name and password or token.
	ErrAuthFailed = errors.New("pop3: credentials refused [AUTH]")
)

// codeSentinels maps response codes to their sentinel.
var codeSentinels = map[string]error{
	"IN-USE":      ErrInUse,
	"LOGIN-DELAY": ErrLoginDelay,
	"SYS/TEMP":    ErrSysTemp,
	"SYS/PERM":    ErrSysPerm,
	"AUTH":        ErrAuthFailed,
}

// An Error is a -ERR reply from the server. Its text is the server's,
// with control characters replaced and every run of the session's
// credentials withheld.
type Error struct {
	// Command is the command refused, e.g. "RETR" or "AUTH"; "" for the
	// greeting.
	Command string
	// Code is the response code in brackets at the start of the text
	// (RFC 2449 section 8), e.g. "IN-USE", "SYS/TEMP" or "AUTH"; "" when
	// the server gave none.
	Code string
	// Text is the rest of the server's text.
	Text string
}

// Error describes the refusal, e.g. `pop3: RETR: server said -ERR [SYS/TEMP]
// try later`.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("pop3: ")
	if e.Command != "" {
		b.WriteString(e.Command + ": ")
	} else {
		b.WriteString("greeting: ")
	}
	b.WriteString("server said -ERR")
	if e.Code != "" {
		b.WriteString(" [" + e.Code + "]")
	}
	if e.Text != "" {
		b.WriteString(" " + e.Text)
	}
	return b.String()
}

// ResponseCode returns Code: the response code in brackets, or "".
func (e *Error) ResponseCode() string { return e.Code }

// Temporary reports whether the refusal is temporary by its response code:
// IN-USE, LOGIN-DELAY and SYS/TEMP (and codes below them, e.g.
// "SYS/TEMP/QUOTA") are.
func (e *Error) Temporary() bool {
	for _, c := range []string{"IN-USE", "LOGIN-DELAY", "SYS/TEMP"} {
		if codeIs(e.Code, c) {
			return true
		}
	}
	return false
}

// Is matches the sentinel of e's response code (ErrInUse, ErrLoginDelay,
// ErrSysTemp, ErrSysPerm, ErrAuthFailed). Codes are hierarchical (RFC
// 2449 section 8): "SYS/TEMP/x" matches ErrSysTemp.
func (e *Error) Is(target error) bool {
	for code, s := range codeSentinels {
		if target == s && codeIs(e.Code, code) {
			return true
		}
	}
	return false
}

// codeIs reports whether code is want or below it in the hierarchy.
func codeIs(code, want string) bool {
	code = strings.ToUpper(code)
	return code == want || strings.HasPrefix(code, want+"/")
}

// parseErr builds an *Error from the text after "-ERR".
func parseErr(cmd, text string, clean func(string) string) *Error {
	text = strings.TrimLeft(text, " ")
	e := &Error{Command: cmd}
	if rest, ok := strings.CutPrefix(text, "["); ok {
		if code, after, ok := strings.Cut(rest, "]"); ok && validCode(code) {
			e.Code = code
			text = strings.TrimLeft(after, " ")
		}
	}
	e.Text = clean(text)
	return e
}

// validCode reports whether s is a response code as RFC 2449 section 8
// writes them: atoms of letters, digits and "-", separated by "/".
func validCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, part := range strings.Split(s, "/") {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// protocolError returns an error matching ErrProtocol.
func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// authUnsupported returns an error matching both ErrAuthUnsupported and
// the root package's tlsmail.ErrAuthUnsupported, so that one check serves
// SMTP and POP3.
func authUnsupported(format string, args ...any) error {
	return &authUnsupportedError{msg: fmt.Sprintf(format, args...)}
}

type authUnsupportedError struct{ msg string }

func (e *authUnsupportedError) Error() string {
	return ErrAuthUnsupported.Error() + ": " + e.msg
}

func (e *authUnsupportedError) Is(target error) bool {
	return target == ErrAuthUnsupported || target == authbridge.ErrAuthUnsupported
}

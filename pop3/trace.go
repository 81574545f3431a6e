package pop3

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"time"

	"github.com/tlsmail/tlsmail/internal/authbridge"
)

// The protocol trace (Dialer.Trace): the same records as the root
// package's, with POP3's lines. Why it can never leak a credential:
// command reduces every AUTH, PASS and APOP line, and every line of an
// AUTH exchange, to its verb and a placeholder, status replaces every
// challenge with a placeholder, and every other line goes through the
// Client's redactor.

// tracer writes the records of one session; a nil *tracer writes nothing.
type tracer struct {
	l     *slog.Logger
	clean func(string) string
}

func newTracer(l *slog.Logger, host string, clean func(string) string) *tracer {
	if l == nil {
		return nil
	}
	if clean == nil {
		clean = authbridge.Sanitize
	}
	return &tracer{l: l.With(slog.String("server", host)), clean: clean}
}

func (t *tracer) log(msg string, attrs ...slog.Attr) {
	t.l.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}

// command records a command line as sent (without CRLF).
func (t *tracer) command(verb, line string) {
	if t == nil {
		return
	}
	switch verb {
	case "AUTH":
		line = authLine(line)
	case "PASS":
		line = "PASS [password withheld]"
	case "APOP":
		user, _, _ := strings.Cut(strings.TrimPrefix(line, "APOP "), " ")
		line = "APOP " + user + " [digest withheld]"
	}
	t.log("command", slog.String("line", t.clean(line)))
}

// authLine is what the trace shows of a line of an AUTH exchange: the
// mechanism, and nothing of any payload, not even its length.
func authLine(line string) string {
	if line == "*" {
		return line
	}
	if rest, ok := strings.CutPrefix(line, "AUTH "); ok {
		mech, payload, _ := strings.Cut(rest, " ")
		if payload == "" {
			return "AUTH " + mech
		}
		return "AUTH " + mech + " [initial response withheld]"
	}
	return "[response withheld]"
}

// status records a status line in answer to verb ("" for the greeting).
func (t *tracer) status(verb, line string, elapsed time.Duration) {
	if t == nil {
		return
	}
	if line == "+" || strings.HasPrefix(line, "+ ") {
		// A SASL challenge: a SCRAM nonce or an OAuth status is the
		// mechanism's business.
		line = "+ [challenge withheld]"
	}
	if verb == "" {
		verb = "greeting"
	}
	t.log("reply", slog.String("command", verb), slog.String("text", t.clean(line)), slog.Duration("elapsed", elapsed))
}

// data records a multi-line response received: its size only.
func (t *tracer) data(verb string, n int64, lines int) {
	if t == nil {
		return
	}
	attrs := []slog.Attr{slog.String("command", verb), slog.Int64("bytes", n)}
	if lines > 0 {
		attrs = append(attrs, slog.Int("lines", lines))
	}
	t.log("data", attrs...)
}

// connect records the TCP connection.
func (t *tracer) connect(addr string, mode Mode, elapsed time.Duration) {
	if t == nil {
		return
	}
	t.log("connect", slog.String("addr", addr), slog.String("mode", mode.String()), slog.Duration("elapsed", elapsed))
}

// handshake records a finished TLS handshake.
func (t *tracer) handshake(cs tls.ConnectionState, stls bool, elapsed time.Duration) {
	if t == nil {
		return
	}
	attrs := []slog.Attr{
		slog.String("version", tls.VersionName(cs.Version)),
		slog.String("cipher", tls.CipherSuiteName(cs.CipherSuite)),
		slog.Bool("resumed", cs.DidResume),
		slog.Bool("stls", stls),
	}
	if len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		attrs = append(attrs, slog.String("peer", leaf.Subject.String()), slog.Time("not_after", leaf.NotAfter))
	}
	attrs = append(attrs, slog.Duration("elapsed", elapsed))
	t.log("tls", attrs...)
}

// failure records a connection or handshake that failed.
func (t *tracer) failure(step string, err error) {
	if t == nil {
		return
	}
	t.log("failure", slog.String("step", step), slog.String("error", t.clean(err.Error())))
}

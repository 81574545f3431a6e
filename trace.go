package tlsmail

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"time"

	"github.com/tlsmail/tlsmail/internal/wire"
)

// The protocol trace (Dialer.Trace, Client.SetTrace). The records, their
// attributes and what is withheld from them are documented once, in the
// package documentation (doc.go, "Trace"); a change here changes that list.
//
// Why the trace can never leak a credential: command and authLine reduce
// every AUTH line to its mechanism and a placeholder, reply replaces
// every challenge (334) with a placeholder, and every other line goes
// through clean, the redactor that serves errors.

// tracer writes the records of one session; a nil *tracer writes
// nothing, so that a session without a trace pays one comparison per
// record.
type tracer struct {
	l       *slog.Logger
	secrets func() *redactor
}

func newTracer(l *slog.Logger, host string, secrets func() *redactor) *tracer {
	if l == nil {
		return nil
	}
	return &tracer{l: l.With(slog.String("server", host)), secrets: secrets}
}

func (t *tracer) log(msg string, attrs ...slog.Attr) {
	t.l.LogAttrs(context.Background(), slog.LevelInfo, msg, attrs...)
}

// clean is server text, or a command, made safe as in errors: runs of a
// credential withheld, control characters and invalid UTF-8 replaced,
// the length bounded.
func (t *tracer) clean(s string) string {
	if t.secrets != nil {
		s, _ = t.secrets().redact(s)
	}
	return sanitize(s)
}

// command records a command line as sent (without CRLF).
func (t *tracer) command(verb, line string) {
	if t == nil {
		return
	}
	if verb == "AUTH" {
		line = authLine(line)
	}
	t.log("command", slog.String("line", t.clean(line)))
}

// authLine is what the trace shows of a line of an AUTH exchange: the
// mechanism, and nothing of any payload.
func authLine(line string) string {
	if line == "*" {
		return line // the cancellation (RFC 4954 section 4) carries nothing
	}
	if rest, ok := strings.CutPrefix(line, "AUTH "); ok {
		mech, payload, _ := strings.Cut(rest, " ")
		if payload == "" {
			return "AUTH " + mech
		}
		return "AUTH " + mech + " [initial response withheld]"
	}
	// Not even the length: it would tell a password's.
	return "[response withheld]"
}

// reply records a reply to verb, elapsed after its command was sent.
func (t *tracer) reply(verb string, rep wire.Reply, elapsed time.Duration) {
	if t == nil {
		return
	}
	var text string
	if rep.Code == 334 {
		// A challenge: its content is the mechanism's business, and
		// some (XOAUTH2's error, a SCRAM server's nonce) are no one
		// else's.
		text = "[challenge withheld]"
	} else {
		lines := make([]string, len(rep.Lines))
		for i, l := range rep.Lines {
			lines[i] = t.clean(l)
		}
		text = strings.Join(lines, "\n")
	}
	t.log("reply", slog.String("command", verb), slog.Int("code", rep.Code),
		slog.String("text", text), slog.Duration("elapsed", elapsed))
}

// data records message content sent.
func (t *tracer) data(via string, n int64, chunks int) {
	if t == nil {
		return
	}
	attrs := []slog.Attr{slog.String("via", via), slog.Int64("bytes", n)}
	if via == "BDAT" {
		attrs = append(attrs, slog.Int("chunks", chunks))
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
func (t *tracer) handshake(cs tls.ConnectionState, starttls bool, elapsed time.Duration) {
	if t == nil {
		return
	}
	attrs := []slog.Attr{
		slog.String("version", tls.VersionName(cs.Version)),
		slog.String("cipher", tls.CipherSuiteName(cs.CipherSuite)),
		slog.Bool("resumed", cs.DidResume),
		slog.Bool("starttls", starttls),
	}
	if len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		attrs = append(attrs,
			slog.String("peer", leaf.Subject.String()),
			slog.Time("not_after", leaf.NotAfter),
			slog.Int("days_left", int(time.Until(leaf.NotAfter).Hours()/24)))
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

// fallback records the switch from implicit TLS to STARTTLS.
func (t *tracer) fallback(from, to string, reason error) {
	if t == nil {
		return
	}
	t.log("fallback", slog.String("from", from), slog.String("to", to), slog.String("reason", t.clean(reason.Error())))
}

// SetTrace makes c record its session to logger from now on, as a
// Dialer's Trace does (see Dialer.Trace); nil stops the trace. It is for
// clients made by NewClient, whose greeting has already been read.
func (c *Client) SetTrace(logger *slog.Logger) {
	c.tr = newTracer(logger, c.serverName, c.secrets)
}

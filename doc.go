// Package tlsmail sends mail over SMTP with TLS always on.
//
// It is a drop-in replacement for net/smtp: the same exported names and
// signatures (Dial, NewClient, SendMail, Client and its methods, Auth,
// ServerInfo, PlainAuth, CRAMMD5Auth), with Auth and ServerInfo being the
// net/smtp types themselves, so a program switches by changing its import
// line. What changes is behind the surface:
//
//   - SendMail and Dial use implicit TLS (RFC 8314, port 465) and verify
//     the server certificate. A Dialer offers STARTTLS (RFC 3207, port
//     587), always required, and an explicit implicit-then-STARTTLS
//     fallback. There is no plaintext mode.
//   - Credentials, envelope addresses and message data are only ever sent
//     over TLS. STARTTLS fails closed: not offered, refused, injected or a
//     failed handshake is an error.
//   - Every step has a timeout and every reply a size limit; a Context
//     variant exists for dialing and sending.
//   - Addresses and hello names with CR, LF, NUL, spaces or angle brackets
//     are rejected before anything is sent, and message data is normalised
//     to CRLF and dot-stuffed so it can never end early.
//
// # Behaving like net/smtp at run time
//
// Dial and NewClient read the server's greeting and nothing more: EHLO is
// sent by the first method that needs it, with "localhost" or the name
// given to Client.Hello, and a refused EHLO is followed by HELO.
//
// Where net/smtp's own names are used (Dial, NewClient, SendMail and the
// methods of the Clients that Dial and NewClient return), errors are the
// values net/smtp returns for the same event, so code that compares them
// with == or type assertions keeps working: a server reply is a bare
// *textproto.Error, a connection the server closed is io.EOF itself, and
// another I/O failure is the connection's error itself. Code that asks
// for more, through a Dialer, DialContext or SendMailContext, gets *Error
// with Command, EnhancedCode and Temporary, and I/O errors that name the
// step and wrap their cause. tlsmail's own conditions (policy refusals,
// invalid input, size limits, timeouts, injection) are the same sentinel
// errors everywhere, and so is ErrUnknownOutcome, which says that a
// message was sent whole but its final reply was lost: it may have been
// delivered.
//
// Server text is untrusted: in every error, its control characters and
// invalid UTF-8 are replaced, it is cut to about 1 KiB, and any run of
// characters that repeats credentials sent on the session is withheld.
//
// # Authentication and the message-level API
//
// PasswordAuth and OAuth2Auth choose the strongest mechanism the server
// offers (SCRAM with channel binding, SCRAM, PLAIN or LOGIN; OAUTHBEARER
// or XOAUTH2); Client.AuthMechanism tells which ran. Client.Send and
// Dialer.Send send a Message with SIZE, DSN and REQUIRETLS, ask for
// 8BITMIME and SMTPUTF8 only when needed, and report a Result per
// recipient.
//
// # Round trips
//
// When the server offers PIPELINING (RFC 2920), SendMail, Send and
// SendBatch send a message's MAIL, RCPT and DATA commands together and
// check every reply; QUIT rides with the end of the last message; with
// CHUNKING (RFC 3030) the content goes as BDAT chunks, and a short message
// with one recipient goes out with its envelope. A message is never
// committed before every reply it depends on is known good: a refused
// recipient of an all-or-nothing message delivers it to nobody.
// SendBatch streams many messages on one connection, and a Pool streams
// many goroutines' messages over a few connections. A Dialer used more
// than once resumes its TLS sessions. Without PIPELINING, commands go one
// at a time with the same results; Mail, Rcpt and Data keep net/smtp's
// one-at-a-time semantics.
//
// # Trace
//
// Dialer.Trace (and Client.SetTrace, for clients made by NewClient) takes
// a *slog.Logger that receives a record of each session. Every record is
// at slog.LevelInfo, has the attribute "server" (the host dialed) and one
// of these messages:
//
//   - "connect": the TCP connection is up; "addr", "mode", "elapsed".
//   - "tls": a TLS handshake finished; "version", "cipher", "resumed",
//     "starttls" (false for implicit TLS), "peer" (the leaf certificate's
//     subject), "not_after", "days_left", "elapsed".
//   - "fallback": implicit TLS failed and the Dialer tries STARTTLS;
//     "from", "to", "reason" (the error).
//   - "command": a command line as sent, without CRLF; "line".
//   - "reply": a reply; "command" (the command it answers, or "greeting",
//     or "end of data"), "code", "text", "elapsed" (since its command was
//     sent, or the wait, for a greeting).
//   - "data": message content went out; "via" (DATA or BDAT), "bytes"
//     (the caller's octets) and, for BDAT, "chunks".
//   - "failure": connecting or a TLS handshake failed; "step" ("connect",
//     "TLS handshake" or "STARTTLS handshake"), "error".
//
// A Pool's Dialer.Trace also gets these, and every record of a pooled
// connection, the session's included, has the attribute "pool_conn" (the
// connection's number in the Pool, from 1):
//
//   - "pool connection opened": the connection is set up (greeting, EHLO,
//     AUTH).
//   - "pool message": a message's outcome; "outcome" ("accepted",
//     "refused", "unknown", "failed", "cancelled", or "retry" when it goes
//     back to the queue for another connection), "attempt" (1, or 2 when
//     sent again), "recipients", and "error" unless accepted.
//   - "pool connection closed": "reason" (such as "idle timeout",
//     "message limit", "age limit", "server sent a reply to no command",
//     "NOOP probe failed", "failed", "pool closed"), "messages" (begun on
//     it), and "error" when the session failed.
//
// No credential reaches the trace. An AUTH command shows its mechanism
// only ("AUTH PLAIN"), followed by "[initial response withheld]" when it
// carries an initial response; each response to a challenge is the line
// "[response withheld]", and each challenge (a 334 reply) has the text
// "[challenge withheld]". The records show that these lines were sent and
// received and nothing of their content, not even their length, which
// would tell a password's. The cancellation "*" shows as sent. Every
// other line, sent or received, passes through the redactor that serves
// errors: a run of characters that repeats a credential sent on the
// session is withheld. Message content shows as its size. A nil Trace
// records nothing and costs a nil check per record.
//
// # Reading mail
//
// Package github.com/tlsmail/tlsmail/pop3 reads a mailbox over POP3 with
// the same rules: implicit TLS (port 995) or STLS that fails closed (port
// 110), certificates always verified, bounded reads, and no credential in
// errors or traces. Its Client.Auth takes this package's Auth values, so
// one credential serves SMTP and POP3.
//
// # Use
//
// The simplest use is unchanged from net/smtp:
//
//	auth := tlsmail.PlainAuth("", "user@example.com", password, "smtp.example.com")
//	err := tlsmail.SendMail("smtp.example.com:465", auth,
//		"user@example.com", []string{"friend@example.net"}, msg)
//
// For a provider that only offers STARTTLS on port 587:
//
//	auth := tlsmail.LoginAuth("user@example.com", password, "smtp.office365.com")
//	d := &tlsmail.Dialer{Mode: tlsmail.STARTTLS}
//	err := d.SendMail("smtp.office365.com:587", auth, from, to, msg)
package tlsmail

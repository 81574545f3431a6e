// Package pop3 reads a mailbox over POP3 (RFC 1939) with the same rules
// as the tlsmail package sends mail: TLS always, certificates always
// verified, STLS that fails closed, credentials that never leak, and
// reads that are bounded and exact.
//
//	c, err := (&pop3.Dialer{}).DialContext(ctx, "pop.example.com:995")
//	if err != nil { ... }
//	defer c.Close()
//	if err := c.Auth(ctx, tlsmail.PasswordAuth(user, password, "pop.example.com")); err != nil { ... }
//	r, err := c.Retr(ctx, 1)   // an io.ReadCloser: the message, streamed
//	...
//	c.Dele(ctx, 1)             // a mark, carried out by Quit
//	err = c.Quit(ctx)          // nil: deleted; ErrDeletionsUnknown: no reply
//
// # Modes
//
// A Dialer's Mode is ImplicitTLS (the zero value, port 995, RFC 8314) or
// STLS (port 110, RFC 2595). There is no plaintext mode. In STLS mode the
// client sends CAPA and, only if the reply lists STLS, the STLS command;
// anything else (STLS missing or refused, bytes after its +OK) ends the
// session with ErrSTLSUnsupported or ErrResponseInjection, and the
// capabilities learned in plaintext are discarded and asked for again
// under TLS. ImplicitTLS pointed at a plaintext port fails at once with
// ErrPlaintextServer; STLS pointed at an implicit-TLS port fails with
// ErrNoGreeting (within 3 seconds on port 995, where a POP3 server would
// greet at once); both errors name the likely port.
//
// # Authentication
//
// Client.Auth takes the tlsmail package's Auth values (PlainAuth,
// LoginAuth, PasswordAuth, the SCRAM family with channel binding,
// XOAuth2Auth, OAuthBearerAuth, OAuth2Auth) and runs them with AUTH (RFC
// 5034), so one credential serves SMTP and POP3. USER and PASS are used
// only when the server offers no SASL mechanism the Auth can use; APOP
// only through Client.APOP.
//
// # Reading
//
// Retr and Top return the message as a stream: dot-stuffing removed,
// line endings as sent, bounded by the size LIST gave, with a missing
// terminating line an error. Status lines are bounded at 512 octets
// (RFC 2449 section 4), message lines at MaxLineLength, listings at 64
// MiB. Every step has a timeout (Dialer.CommandTimeout) and takes a
// context; a cancelled context returns at once and closes the session.
//
// # Errors
//
// A -ERR reply is an *Error, whose Code is the response code (RFC 2449
// section 8, RFC 3206) and which matches ErrInUse, ErrLoginDelay,
// ErrSysTemp, ErrSysPerm or ErrAuthFailed under errors.Is. A broken
// protocol is ErrProtocol. Any error that is not an *Error closes the
// session. Server text in errors has the session's credentials withheld.
//
// # Trace
//
// Dialer.Trace receives the records of the tlsmail package's trace:
// "connect", "tls", "command" (AUTH payloads, PASS and the APOP digest
// replaced by placeholders), "reply" (challenges replaced), "data" (a
// multi-line response's size and line count, never its content) and
// "failure".
//
// Package pop3test runs a POP3 server in a test.
package pop3

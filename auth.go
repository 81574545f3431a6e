package tlsmail

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/smtp"
	"strconv"
	"strings"
)

// Auth is implemented by an SMTP authentication mechanism. It is
// net/smtp.Auth itself, so any net/smtp Auth, including smtp.PlainAuth and
// custom mechanisms written for net/smtp, works with tlsmail unchanged.
//
// As with net/smtp's, two Auths that PlainAuth, LoginAuth, CRAMMD5Auth,
// PasswordAuth or a SCRAM constructor made from the same arguments are
// equal under reflect.DeepEqual, and Auths from different arguments are
// not; the password inside is masked, so that neither fmt nor a
// reflection-based dumper shows it. The OAuth Auths hold a TokenSource,
// which is a func, and reflect.DeepEqual finds no two non-nil funcs
// equal: two of them are DeepEqual only if their TokenSource is nil.
type Auth = smtp.Auth

// ServerInfo records information about an SMTP server. It is
// net/smtp.ServerInfo itself. Client.Auth fills in TLS truthfully and only
// ever runs a mechanism when TLS is true.
type ServerInfo = smtp.ServerInfo

// PlainAuth returns an Auth that implements the PLAIN authentication
// mechanism as defined in RFC 4616. The returned Auth uses the given
// username and password to authenticate to host and act as identity.
// Usually identity should be the empty string, to act as username.
//
// PlainAuth will only send the credentials if the connection is using TLS
// and the server name matches host. Unlike net/smtp's, it makes no
// exception for localhost.
func PlainAuth(identity, username, password, host string) Auth {
	return &plainAuth{identity: identity, username: username, password: hide(password), host: host}
}

type plainAuth struct {
	identity, username, host string
	password                 secret
}

func (a *plainAuth) Start(server *ServerInfo) (string, []byte, error) {
	if err := checkServer(server, a.host); err != nil {
		return "", nil, err
	}
	resp := []byte(a.identity + "\x00" + a.username + "\x00" + a.password.reveal())
	return "PLAIN", resp, nil
}

func (a *plainAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if more {
		// PLAIN is one message; a challenge after it is not part of RFC 4616.
		return nil, errors.New("unexpected server challenge during PLAIN")
	}
	return nil, nil
}

// secrets lists the forms in which a server might quote the password back;
// see Client.noteSent.
func (a *plainAuth) secrets() []string { return secretForms(a.password.reveal()) }

// Format, String and GoString describe the Auth by mechanism and username,
// the same for every fmt verb. Why a Formatter and not only a Stringer: fmt
// calls String only for %v, %s, %q, %x and %X (and GoString for %#v), and
// for any other verb, such as %d, prints the fields. Why value receivers: a
// plainAuth value, not only a pointer, prints the same way.
func (a plainAuth) Format(f fmt.State, verb rune) { formatSafe(f, a.String()) }
func (a plainAuth) String() string                { return "tlsmail.PlainAuth(" + strconv.Quote(a.username) + ")" }
func (a plainAuth) GoString() string              { return a.String() }

// secretForms is how a password may come back in a server's reply: as
// is, or base64-encoded.
func secretForms(p string) []string {
	return []string{p, base64.StdEncoding.EncodeToString([]byte(p))}
}

// checkServer is the guard for mechanisms that send the secret itself.
func checkServer(server *ServerInfo, host string) error {
	if !server.TLS {
		// Why: these mechanisms send the password itself.
		return ErrPlaintextAuth
	}
	if server.Name != host {
		// Why: the credentials were meant for host; a Client connected
		// elsewhere (a misconfiguration, or a fallback to another name)
		// must not receive them.
		return fmt.Errorf("tlsmail: credentials are for host %q but the client is connected to %q", host, server.Name)
	}
	return nil
}

// LoginAuth returns an Auth that implements the LOGIN mechanism
// (draft-murchison-sasl-login), which some servers, notably Microsoft 365,
// offer instead of or besides PLAIN. Like PlainAuth it sends the password
// only over TLS and only to host.
func LoginAuth(username, password, host string) Auth {
	return &loginAuth{username: username, password: hide(password), host: host}
}

type loginAuth struct {
	username, host string
	password       secret
	step           int
}

func (a *loginAuth) Start(server *ServerInfo) (string, []byte, error) {
	if err := checkServer(server, a.host); err != nil {
		return "", nil, err
	}
	a.step = 0
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	// The prompts are "Username:" and "Password:" by convention; go by
	// the prompt when it says, by order otherwise.
	prompt := strings.ToLower(string(fromServer))
	a.step++
	if a.step > 2 {
		// Why: LOGIN has exactly two prompts; a server that keeps asking
		// "Password:" gets no further copies of the password.
		return nil, errors.New("unexpected third challenge during LOGIN")
	}
	switch {
	case strings.Contains(prompt, "user"):
		return []byte(a.username), nil
	case strings.Contains(prompt, "pass"):
		return []byte(a.password.reveal()), nil
	case a.step == 1:
		return []byte(a.username), nil
	case a.step == 2:
		return []byte(a.password.reveal()), nil
	}
	return nil, errors.New("unexpected server challenge during LOGIN")
}

func (a *loginAuth) secrets() []string { return secretForms(a.password.reveal()) }

// Format, String and GoString keep the password out of fmt's output, as
// for plainAuth.
func (a loginAuth) Format(f fmt.State, verb rune) { formatSafe(f, a.String()) }
func (a loginAuth) String() string                { return "tlsmail.LoginAuth(" + strconv.Quote(a.username) + ")" }
func (a loginAuth) GoString() string              { return a.String() }

// CRAMMD5Auth returns an Auth that implements the CRAM-MD5 authentication
// mechanism as defined in RFC 2195. The returned Auth uses the given
// username and secret to authenticate to the server using the
// challenge-response mechanism. Client.Auth still runs it only over TLS.
func CRAMMD5Auth(username, secret string) Auth {
	return &cramMD5Auth{username: username, secret: hide(secret)}
}

type cramMD5Auth struct {
	username string
	secret   secret
}

func (a *cramMD5Auth) Start(server *ServerInfo) (string, []byte, error) {
	return "CRAM-MD5", nil, nil
}

func (a *cramMD5Auth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	mac := hmac.New(md5.New, []byte(a.secret.reveal()))
	mac.Write(fromServer)
	return []byte(a.username + " " + hex.EncodeToString(mac.Sum(nil))), nil
}

func (a *cramMD5Auth) secrets() []string { return secretForms(a.secret.reveal()) }

// Format, String and GoString keep the secret out of fmt's output, as for
// plainAuth.
func (a cramMD5Auth) Format(f fmt.State, verb rune) { formatSafe(f, a.String()) }
func (a cramMD5Auth) String() string                { return "tlsmail.CRAMMD5Auth(" + strconv.Quote(a.username) + ")" }
func (a cramMD5Auth) GoString() string              { return a.String() }

// session methods give Client.Auth a fresh copy per exchange (see
// sessionAuth): LOGIN counts its prompts, and a shared value would mix
// up two connections' counts.
func (a *plainAuth) session(*tls.ConnectionState) Auth   { c := *a; return &c }
func (a *loginAuth) session(*tls.ConnectionState) Auth   { c := *a; c.step = 0; return &c }
func (a *cramMD5Auth) session(*tls.ConnectionState) Auth { c := *a; return &c }

// errServerUnverified is wrapped by the error of a mechanism that could not
// verify the server: a SCRAM server signature that is wrong or was never
// sent. Such a server is not the one the credentials are for, so a Client
// does not carry on the session with it.
var errServerUnverified = errors.New("the server did not prove it knows the password")

// The client side of AUTH (RFC 4954): Client.Auth, SendMail and the
// Dialer's sessions all authenticate through authenticate.

// authenticate runs one AUTH exchange with a on c's session.
func (c *Client) authenticate(ctx context.Context, a Auth) error {
	if err := c.session(ctx); err != nil {
		return err
	}
	if !c.isTLS {
		// Why every mechanism, localhost included: a hash-based mechanism
		// still exposes the user name and an offline-crackable exchange.
		return wrap(ErrPlaintextAuth, "AUTH")
	}
	a = c.authSession(a)
	mech, resp, err := a.Start(&ServerInfo{Name: c.serverName, TLS: c.isTLS, Auth: append([]string(nil), c.auth...)})
	if err != nil {
		return wrap(err, "AUTH")
	}
	if !c.advertised(mech) {
		return fmt.Errorf("%w: %q not in server's list %q", ErrAuthUnsupported, mech, c.auth)
	}
	c.authMech = mech
	if h, ok := a.(secretHolder); ok {
		c.secrets().add(h.secrets()...)
	}
	line, enc, pending := authCommand(mech, resp)
	if enc != "" {
		c.noteSent(a, mech, nil, resp, enc)
	}
	return c.authChallenges(ctx, a, mech, line, pending)
}

// authSession returns the Auth that runs this connection's exchange: for
// a mechanism of this package a fresh copy made for the connection, for
// another a itself.
func (c *Client) authSession(a Auth) Auth {
	s, ok := a.(sessionAuth)
	if !ok {
		return a
	}
	// Why a fresh copy: one Auth value may serve many connections at
	// once, and the exchange's state (nonces, the channel binding)
	// belongs to this connection alone.
	var st *tls.ConnectionState
	if cs, ok := c.TLSConnectionState(); ok {
		st = &cs
	}
	return s.session(st)
}

// authCommand forms the AUTH command line for mech with the initial
// response resp (nil for none). It returns the line, the response as
// encoded on the line ("" if it is not there), and pending: a response
// too long for the line, to be sent as the answer to the server's first
// challenge, which must be empty.
func authCommand(mech string, resp []byte) (line, enc string, pending []byte) {
	line = "AUTH " + mech
	switch {
	case resp == nil:
		return line, "", nil
	case len(resp) == 0:
		// RFC 4954 section 4: an empty initial response is sent as "=".
		return line + " =", "", nil
	}
	enc = base64.StdEncoding.EncodeToString(resp)
	if len(line)+1+len(enc) > maxCommandLine {
		// RFC 4954 section 4: an initial response that would make the
		// command longer than SMTP allows (RFC 5321 section 4.5.3.1.4)
		// is sent as the answer to an empty challenge instead. OAuth
		// tokens are often this long.
		return line, "", resp
	}
	return line + " " + enc, enc, nil
}

// maxCommandLine is the longest command line, CRLF excluded (RFC 5321
// section 4.5.3.1.4: 512 octets with it).
const maxCommandLine = 510

// maxAuthChallenges bounds the 334 challenges answered in one AUTH
// exchange; the mechanisms in this package need at most two.
const maxAuthChallenges = 10

// authChallenges sends the AUTH command line and answers each 334
// challenge with a's response until the server's final reply (RFC 4954
// section 4). pending is an initial response that did not fit on line.
func (c *Client) authChallenges(ctx context.Context, a Auth, mech, line string, pending []byte) error {
	for challenges := 0; ; challenges++ {
		rep, err := c.exchange(ctx, "AUTH", c.timeouts.command, []int{235, 334}, line)
		if err != nil {
			// On a final negative reply nothing more is sent: "*" only
			// answers a 334 (RFC 4954 section 4).
			return c.oauthFailure(a, err)
		}
		if rep.Code == 235 {
			return c.authAccepted(a, mech, []byte(strings.Join(rep.Lines, "\n")), pending)
		}
		if challenges == maxAuthChallenges {
			// Why: each round has its own timeout, so a server that
			// keeps challenging would keep the client busy forever.
			c.cancelAuth(ctx)
			return fmt.Errorf("tlsmail: AUTH %s: server sent more than %d challenges", mech, maxAuthChallenges)
		}
		msg, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.Join(rep.Lines, "")))
		if err != nil {
			c.cancelAuth(ctx)
			return fmt.Errorf("tlsmail: AUTH %s: server sent a challenge that is not base64", mech)
		}
		var resp []byte
		if pending != nil {
			if len(msg) != 0 {
				c.cancelAuth(ctx)
				return fmt.Errorf("tlsmail: AUTH %s: server sent a non-empty challenge where the initial response was due", mech)
			}
			resp, pending = pending, nil
		} else if resp, err = a.Next(msg, true); err != nil {
			if errors.Is(err, errServerUnverified) {
				// Why no "*" and no further command: the server could not
				// prove it knows the password, so it is not the server
				// the credentials are for.
				return c.fail(wrap(err, "AUTH %s", mech))
			}
			c.cancelAuth(ctx)
			return wrap(c.withholdServerText(err), "AUTH %s", mech)
		}
		line = base64.StdEncoding.EncodeToString(resp)
		c.noteSent(a, mech, msg, resp, line)
	}
}

// authAccepted ends an exchange the server accepted with 235, whose text
// is msg: the mechanism has the last word.
func (c *Client) authAccepted(a Auth, mech string, msg, pending []byte) error {
	_, err := a.Next(msg, false)
	if err == nil && pending != nil {
		// Why: a server that accepts credentials it has not seen is not
		// authenticating anyone, and the session's identity is unknown.
		err = errors.New("server accepted before the credentials were sent")
	}
	if err != nil {
		// The server accepted us but the mechanism could not verify the
		// server (e.g. a SCRAM server signature): the session is not
		// trustworthy.
		return c.fail(wrap(c.withholdServerText(err), "AUTH %s: the server accepted, yet the mechanism failed", mech))
	}
	return nil
}

// oauthFailure returns err, the final negative reply to an exchange with
// a, as an *OAuthError when a is an OAuth mechanism that received the
// server's JSON status, and as itself otherwise.
func (c *Client) oauthFailure(a Auth, err error) error {
	o, ok := a.(oauthFailer)
	var e *Error
	if !ok || o.oauthError() == nil || !errors.As(err, &e) {
		return err
	}
	oe := *o.oauthError()
	// Why: these fields are server text, which may quote the token the
	// server refused, and being exported they are shown by %+v,
	// encoding/json and dumpers, whatever Error prints.
	oe.Status, _ = c.secrets().redact(oe.Status)
	oe.Scope, _ = c.secrets().redact(oe.Scope)
	oe.Schemes, _ = c.secrets().redact(oe.Schemes)
	oe.Reply = e
	return &oe
}

// withholdServerText returns err, a mechanism's error, with credentials
// withheld from the server text it quotes, if any. Why: a server may
// quote back what it was sent, or the password a previous exchange on
// the session sent, and an error goes into logs.
func (c *Client) withholdServerText(err error) error {
	var se *serverTextError
	if errors.As(err, &se) {
		se.text, _ = c.secrets().redact(se.text)
	}
	return err
}

// A sessionAuth is a mechanism of this package: Client.Auth runs each
// exchange on a fresh copy made for the connection, given its TLS state
// (nil when not TLS) for channel binding.
type sessionAuth interface {
	Auth
	session(state *tls.ConnectionState) Auth
}

// oauthFailer is an OAuth mechanism that may have received the server's
// JSON status.
type oauthFailer interface{ oauthError() *OAuthError }

// secretHolder is implemented by this package's mechanisms, which know
// what their secret is.
type secretHolder interface{ secrets() []string }

// noteSent remembers an AUTH response, encoded, and for another package's
// mechanism also the parts of it that look secret, so that a server
// quoting it back (some quote the command they reject), even in part,
// cannot put credentials into an error, and from there into a log.
func (c *Client) noteSent(a Auth, mech string, challenge, resp []byte, encoded string) {
	c.secrets().add(encoded)
	if _, ok := a.(secretHolder); !ok {
		c.secrets().add(foreignSecrets(mech, challenge, resp)...)
	}
}

// cancelAuth answers a 334 challenge the mechanism gave up on with "*"
// (RFC 4954 section 4) and reads the server's 501.
func (c *Client) cancelAuth(ctx context.Context) {
	_, err := c.exchange(ctx, "AUTH", c.timeouts.command, []int{501}, "*")
	var e *Error
	if err != nil && !errors.As(err, &e) {
		c.fail(err)
	}
}

// advertised reports whether the server's current EHLO reply lists mech.
func (c *Client) advertised(mech string) bool {
	for _, m := range c.auth {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

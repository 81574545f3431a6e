package pop3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/smtp"
	"strings"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/internal/authbridge"
)

// maxCommand is the longest command line, CRLF included (RFC 2449
// section 4). RFC 5034 section 4 sends an initial response that would
// make AUTH longer as the answer to an empty challenge instead.
const maxCommand = 255

// maxAuthChallenges bounds the challenges answered in one exchange; the
// root package's mechanisms need at most two.
const maxAuthChallenges = 10

// Auth authenticates with a, an Auth of the root package (tlsmail.PlainAuth,
// LoginAuth, PasswordAuth, ScramSHA256Auth and the other SCRAM variants,
// XOAuth2Auth, OAuthBearerAuth, OAuth2Auth) or any net/smtp.Auth, so that
// one credential value serves SMTP and POP3. It runs SASL with the AUTH
// command (RFC 5034) when the server's CAPA lists the mechanism a chooses
// (a is given the SASL list, so PasswordAuth picks the strongest, SCRAM
// with channel binding first). Only when the server offers no SASL
// mechanism a can use, and a is a password Auth (PlainAuth without an
// identity, LoginAuth, PasswordAuth), does it send USER and PASS, and
// only if CAPA lists USER or the server has no CAPA. APOP is never chosen
// here; see APOP.
//
// Like the root package's mechanisms, Auth only sends credentials over
// TLS (always the case here) and to the host a was made for. A -ERR
// reply is an *Error (its Code "AUTH" means the credentials were refused,
// RFC 3206; compare errors.Is(err, ErrAuthFailed)), a mechanism that
// cannot verify the server (SCRAM) ends the session, and no error or trace
// shows the credentials.
func (c *Client) Auth(ctx context.Context, a tlsmail.Auth) error {
	if err := c.ready("AUTH", stateAuthorization); err != nil {
		return err
	}
	if !c.tls {
		// Cannot happen through a Dialer; kept as the last line of
		// defence, as in the root package.
		return authbridge.ErrPlaintextAuth
	}
	if a == nil {
		return fmt.Errorf("%w: nil Auth", ErrInvalidInput)
	}
	cs := c.TLSConnectionState()
	sa := authbridge.Session(a, &cs)
	sasl := c.caps["SASL"]
	var saslErr error
	if len(sasl) > 0 {
		mech, resp, err := sa.Start(&smtp.ServerInfo{Name: c.host, TLS: true, Auth: append([]string(nil), sasl...)})
		switch {
		case err == nil && (mech == "" || strings.ContainsAny(mech, " \r\n\x00")):
			// Why before anything else: a foreign Auth's name goes on the
			// command line, and CR or LF there would inject a command.
			return fmt.Errorf("%w: mechanism name %q", ErrInvalidInput, mech)
		case err == nil && offered(sasl, mech):
			return c.sasl(ctx, sa, mech, resp)
		case err == nil:
			saslErr = authUnsupported("%q not in the server's SASL list %q", mech, sasl)
		default:
			saslErr = err
		}
	}
	// USER and PASS only when SASL offered nothing: they send the
	// password itself, which a SASL mechanism may not.
	if user, pass, host, ok := authbridge.Password(a); ok {
		_, userOffered := c.caps["USER"]
		if userOffered || !c.capaOK {
			if host != c.host {
				// Why: the same guard as the root package's mechanisms;
				// credentials made for one host go to no other.
				return fmt.Errorf("pop3: credentials are for host %q but the client is connected to %q", host, c.host)
			}
			return c.userPass(ctx, user, pass)
		}
	}
	if saslErr != nil {
		if errors.Is(saslErr, authbridge.ErrAuthUnsupported) {
			return fmt.Errorf("%w; USER is not offered either", saslErr)
		}
		return fmt.Errorf("pop3: AUTH: %w", c.scrubErr(saslErr))
	}
	return authUnsupported("the server offers no SASL mechanism (CAPA: %s) and %s has no password for USER/PASS", capsList(c.caps), describe(a))
}

// describe names an Auth without fmt walking its fields.
func describe(a tlsmail.Auth) string {
	if s, ok := a.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", a)
}

func capsList(caps map[string][]string) string {
	if len(caps) == 0 {
		return "none"
	}
	var names []string
	for k := range caps {
		names = append(names, k)
	}
	return strings.Join(names, " ")
}

func offered(list []string, mech string) bool {
	for _, m := range list {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

// scrubErr withholds credentials from a mechanism's error text.
func (c *Client) scrubErr(err error) error {
	msg := err.Error()
	if clean := c.redact(msg); clean != msg {
		return &scrubbed{msg: clean, err: err}
	}
	return err
}

// scrubbed is an error whose text had credentials withheld; it still
// unwraps to the original for errors.Is.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// addSecrets records credential forms to withhold from server text.
func (c *Client) addSecrets(s ...string) {
	for _, v := range s {
		if v != "" {
			c.secrets = append(c.secrets, v)
		}
	}
}

// sasl runs one AUTH exchange (RFC 5034 section 4) with sa, whose Start
// chose mech and the initial response resp.
func (c *Client) sasl(ctx context.Context, sa tlsmail.Auth, mech string, resp []byte) error {
	c.addSecrets(authbridge.Secrets(sa)...)
	foreign := authbridge.Secrets(sa) == nil
	note := func(challenge, resp []byte, enc string) {
		c.addSecrets(enc)
		if foreign {
			c.addSecrets(authbridge.ForeignSecrets(mech, challenge, resp)...)
		}
	}
	line := "AUTH " + mech
	var pending []byte
	switch {
	case resp == nil:
	case len(resp) == 0:
		line += " =" // RFC 5034 section 4: an empty initial response
	default:
		enc := base64.StdEncoding.EncodeToString(resp)
		note(nil, resp, enc)
		if len(line)+1+len(enc)+2 > maxCommand {
			pending = resp
		} else {
			line += " " + enc
		}
	}
	for challenges := 0; ; challenges++ {
		var text string
		var cont bool
		err := c.io(ctx, "AUTH "+mech, c.timeouts.command, func() error {
			if err := c.send("AUTH", line); err != nil {
				return err
			}
			var err error
			text, cont, err = c.status("AUTH", true)
			return err
		})
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				if m, status, scope, ok := authbridge.OAuthStatus(sa); ok {
					return &OAuthError{Mechanism: m, Status: c.redact(status), Scope: c.redact(scope), Reply: e}
				}
			}
			return err
		}
		if !cont {
			return c.authAccepted(sa, mech, pending)
		}
		if challenges == maxAuthChallenges {
			// Why: each round has its own timeout, so a server that keeps
			// challenging would otherwise keep the client busy forever.
			return c.cancelAuth(ctx, mech, fmt.Errorf("pop3: AUTH %s: server sent more than %d challenges", mech, maxAuthChallenges))
		}
		msg, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
		if err != nil {
			return c.cancelAuth(ctx, mech, fmt.Errorf("pop3: AUTH %s: server sent a challenge that is not base64", mech))
		}
		var out []byte
		if pending != nil {
			if len(msg) != 0 {
				return c.cancelAuth(ctx, mech, fmt.Errorf("pop3: AUTH %s: server sent a non-empty challenge where the initial response was due", mech))
			}
			out, pending = pending, nil
		} else if out, err = sa.Next(msg, true); err != nil {
			if authbridge.ServerUnverified(err) {
				// Why no "*" and no further command: the server could not
				// prove it knows the password, so it is not the server
				// the credentials are for.
				return c.fail(fmt.Errorf("pop3: AUTH %s: %w", mech, c.scrubErr(err)))
			}
			return c.cancelAuth(ctx, mech, fmt.Errorf("pop3: AUTH %s: %w", mech, c.scrubErr(err)))
		}
		line = base64.StdEncoding.EncodeToString(out)
		note(msg, out, line)
	}
}

// authAccepted ends an exchange the server accepted: the mechanism has
// the last word (a SCRAM client checks it verified the server).
func (c *Client) authAccepted(sa tlsmail.Auth, mech string, pending []byte) error {
	_, err := sa.Next(nil, false)
	if err == nil && pending != nil {
		// Why: a server that accepts credentials it has not seen is not
		// authenticating anyone.
		err = errors.New("server accepted before the credentials were sent")
	}
	if err != nil {
		return c.fail(fmt.Errorf("pop3: AUTH %s: the server accepted, yet the mechanism failed: %w", mech, c.scrubErr(err)))
	}
	c.state, c.authMech = stateTransaction, strings.ToUpper(mech)
	return nil
}

// cancelAuth answers a challenge the mechanism gave up on with "*" (RFC
// 5034 section 4), reads the server's -ERR, and returns err.
func (c *Client) cancelAuth(ctx context.Context, mech string, err error) error {
	ioErr := c.io(ctx, "AUTH "+mech, c.timeouts.command, func() error {
		if err := c.send("AUTH", "*"); err != nil {
			return err
		}
		_, _, err := c.status("AUTH", true)
		return err
	})
	var e *Error
	if ioErr == nil {
		// A server that accepts a cancelled exchange is broken.
		c.fail(protocolError("AUTH %s: the server accepted a cancelled exchange", mech))
	} else if !errors.As(ioErr, &e) {
		c.fail(ioErr)
	}
	return err
}

// userPass authenticates with USER and PASS (RFC 1939 section 7).
func (c *Client) userPass(ctx context.Context, user, pass string) error {
	if err := checkArg("user name", user); err != nil {
		return err
	}
	if err := checkArg("password", pass); err != nil {
		return err
	}
	c.addSecrets(pass, base64.StdEncoding.EncodeToString([]byte(pass)))
	if _, err := c.simple(ctx, "USER", "USER "+user); err != nil {
		return err
	}
	if _, err := c.simple(ctx, "PASS", "PASS "+pass); err != nil {
		return err
	}
	c.state, c.authMech = stateTransaction, "USER"
	return nil
}

// APOP authenticates with APOP (RFC 1939 section 7): an MD5 digest of the
// greeting's timestamp and secret, so the secret itself is not sent. Auth
// never uses APOP; call this only when a server requires it, since MD5
// with a shared secret is weak and the server must store the secret in
// plaintext. It needs a timestamp (<...@...>) in the greeting.
func (c *Client) APOP(ctx context.Context, username, secret string) error {
	if err := c.ready("APOP", stateAuthorization); err != nil {
		return err
	}
	if err := checkArg("user name", username); err != nil {
		return err
	}
	if strings.ContainsAny(username, " ") {
		return fmt.Errorf("%w: APOP user name contains a space", ErrInvalidInput)
	}
	ts := apopTimestamp(c.banner)
	if ts == "" {
		return errors.New("pop3: APOP: the server's greeting has no timestamp, so it does not support APOP; use Auth")
	}
	c.addSecrets(secret)
	sum := md5.Sum([]byte(ts + secret))
	digest := hex.EncodeToString(sum[:])
	c.addSecrets(digest)
	if _, err := c.simple(ctx, "APOP", "APOP "+username+" "+digest); err != nil {
		return err
	}
	c.state, c.authMech = stateTransaction, "APOP"
	return nil
}

// apopTimestamp returns the msg-id in angle brackets from the greeting's
// text (RFC 1939 section 7), or "".
func apopTimestamp(banner string) string {
	i := strings.IndexByte(banner, '<')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(banner[i:], '>')
	if j < 0 {
		return ""
	}
	ts := banner[i : i+j+1]
	if !strings.Contains(ts, "@") {
		return ""
	}
	return ts
}

// An OAuthError is an OAuth 2.0 token the server refused, with the status
// it sent (RFC 7628 section 3.2.2) and its -ERR reply. It never contains
// the token. Unwrap returns the reply.
type OAuthError struct {
	// Mechanism is "XOAUTH2" or "OAUTHBEARER".
	Mechanism string
	// Status is the server's status, e.g. "invalid_token" or "401".
	Status string
	// Scope is the scope the server says a token needs, if it said.
	Scope string
	// Reply is the server's -ERR reply.
	Reply *Error
}

// Error describes the refusal.
func (e *OAuthError) Error() string {
	s := "pop3: AUTH " + e.Mechanism + ": the server refused the token"
	if e.Status != "" {
		s += fmt.Sprintf(" (status %q", e.Status)
		if e.Scope != "" {
			s += fmt.Sprintf(", scope %q", e.Scope)
		}
		s += ")"
	}
	if e.Reply != nil {
		s += ": " + strings.TrimPrefix(e.Reply.Error(), "pop3: ")
	}
	return s
}

// Unwrap returns the -ERR reply.
func (e *OAuthError) Unwrap() error {
	if e.Reply == nil {
		return nil
	}
	return e.Reply
}

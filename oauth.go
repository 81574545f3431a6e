package tlsmail

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A TokenSource returns a current OAuth 2.0 access token. The OAuth
// mechanisms call it once for every authentication, so a long-running
// program that reuses one Auth always sends a fresh token: let the
// source cache and refresh.
//
// A golang.org/x/oauth2 TokenSource plugs in with a few lines in the
// caller's code (tlsmail itself depends on nothing outside the standard
// library):
//
//	ts := conf.TokenSource(ctx, tok) // an oauth2.TokenSource
//	auth := tlsmail.XOAuth2Auth("user@example.com", func() (string, error) {
//		t, err := ts.Token()
//		if err != nil {
//			return "", err
//		}
//		return t.AccessToken, nil
//	}, "smtp.gmail.com")
//
// Being a func, a TokenSource makes the Auth that holds it unequal under
// reflect.DeepEqual to every other, even one made with the same
// TokenSource (see Auth).
type TokenSource func() (string, error)

// StaticToken returns a TokenSource that always returns token: for a
// short-lived program that already holds an access token.
func StaticToken(token string) TokenSource {
	return func() (string, error) { return token, nil }
}

// XOAuth2Auth returns an Auth that implements the XOAUTH2 mechanism of
// Google and Microsoft: the user name and a bearer token from token,
// fetched afresh for each authentication. Like PlainAuth it sends the
// token only over TLS and only to host.
//
// When the server refuses the token it sends a JSON status; the error is
// then an *OAuthError carrying the server's status and scope, never the
// token.
func XOAuth2Auth(username string, token TokenSource, host string) Auth {
	return &oauthAuth{mech: "XOAUTH2", username: username, token: token, host: host}
}

// OAuthBearerAuth returns an Auth that implements OAUTHBEARER (RFC 7628),
// the standard form of XOAUTH2, with the same guarantees.
func OAuthBearerAuth(username string, token TokenSource, host string) Auth {
	return &oauthAuth{mech: "OAUTHBEARER", username: username, token: token, host: host}
}

// OAuth2Auth returns an Auth for a user name and an OAuth 2.0 token that
// picks the mechanism from the server's list: OAUTHBEARER (RFC 7628) when
// offered, else XOAUTH2. Client.AuthMechanism reports the choice.
func OAuth2Auth(username string, token TokenSource, host string) Auth {
	return &oauthAuth{username: username, token: token, host: host}
}

// oauthAuth is XOAUTH2 or OAUTHBEARER; mech "" chooses at Start.
type oauthAuth struct {
	mech, username, host string
	token                TokenSource

	used    string // the mechanism this exchange runs
	sent    secret // the token sent in this exchange
	failure *OAuthError
}

func (a *oauthAuth) session(*tls.ConnectionState) Auth {
	return &oauthAuth{mech: a.mech, username: a.username, host: a.host, token: a.token}
}

func (a *oauthAuth) Start(server *ServerInfo) (string, []byte, error) {
	if err := checkServer(server, a.host); err != nil {
		return "", nil, err
	}
	a.used, a.failure = a.mech, nil
	if a.used == "" {
		a.used = "XOAUTH2"
		if offered(server, "OAUTHBEARER") || !offered(server, "XOAUTH2") {
			a.used = "OAUTHBEARER"
		}
	}
	if a.token == nil {
		return "", nil, errors.New("no TokenSource")
	}
	tok, err := a.token()
	if err != nil {
		return "", nil, fmt.Errorf("getting an OAuth token: %w", err)
	}
	if tok == "" || strings.ContainsAny(tok, "\x00\x01\r\n") {
		return "", nil, errors.New("the TokenSource returned an empty or malformed token")
	}
	a.sent = hide(tok)
	if a.used == "XOAUTH2" {
		return a.used, []byte("user=" + a.username + "\x01auth=Bearer " + tok + "\x01\x01"), nil
	}
	// RFC 7628 section 3.1: gs2-header, then key/value pairs.
	return a.used, []byte("n,a=" + saslName(a.username) + ",\x01host=" + a.host + "\x01auth=Bearer " + tok + "\x01\x01"), nil
}

func (a *oauthAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	if a.failure != nil {
		// Why: the exchange is over; a second challenge is not part of
		// either mechanism.
		return nil, errors.New("unexpected second challenge after an OAuth error")
	}
	// The server refused the token: its challenge is a JSON status
	// (RFC 7628 section 3.2.2), which must be answered with a dummy
	// response before the final reply arrives.
	a.failure = parseOAuthStatus(a.used, fromServer)
	if a.used == "OAUTHBEARER" {
		return []byte{0x01}, nil // RFC 7628 section 3.2.3
	}
	return []byte{}, nil
}

// oauthError returns the server's status after a refused token.
func (a *oauthAuth) oauthError() *OAuthError { return a.failure }

func (a *oauthAuth) secrets() []string {
	if len(a.sent.masked) == 0 {
		return nil
	}
	return secretForms(a.sent.reveal())
}

func (a oauthAuth) String() string {
	name := "OAuth2Auth"
	switch a.mech {
	case "XOAUTH2":
		name = "XOAuth2Auth"
	case "OAUTHBEARER":
		name = "OAuthBearerAuth"
	}
	return "tlsmail." + name + "(" + strconv.Quote(a.username) + ")"
}

func (a oauthAuth) GoString() string { return a.String() }

// Format prints the same as String for every verb, so that no verb can
// show the token.
func (a oauthAuth) Format(f fmt.State, verb rune) { formatSafe(f, a.String()) }

// offered reports whether the server advertised mech.
func offered(server *ServerInfo, mech string) bool {
	for _, m := range server.Auth {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

// saslName escapes "," and "=" in a user name (RFC 5802 section 5.1,
// used by RFC 7628's gs2 header too).
func saslName(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

// An OAuthError is an OAuth 2.0 authentication the server refused, with
// the status it gave (RFC 7628 section 3.2.2) and its final reply. It
// never contains the token: Status, Scope and Schemes are the server's
// text with every run of the session's credentials, the token included,
// replaced by "[withheld]", so that %+v, encoding/json and dumpers, which
// show these exported fields, show no token either. Unwrap returns the
// final reply, an *Error.
type OAuthError struct {
	// Mechanism is "XOAUTH2" or "OAUTHBEARER".
	Mechanism string
	// Status is the server's status, e.g. "invalid_token" or "401".
	Status string
	// Scope is the scope the server says a token needs, if it said.
	Scope string
	// Schemes lists the authentication schemes the server accepts, if
	// it said (usually "bearer").
	Schemes string
	// Reply is the server's final reply, usually 535 5.7.8 or 334.
	Reply *Error
}

// Error describes the refusal: the status, the scope and the reply.
func (e *OAuthError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tlsmail: AUTH %s: the server refused the token", e.Mechanism)
	if e.Status != "" {
		fmt.Fprintf(&b, " (status %q", e.Status)
		if e.Scope != "" {
			fmt.Fprintf(&b, ", scope %q", e.Scope)
		}
		b.WriteString(")")
	}
	if e.Reply != nil {
		b.WriteString(": " + inner(e.Reply))
	}
	return b.String()
}

// Unwrap returns the final reply.
func (e *OAuthError) Unwrap() error {
	if e.Reply == nil {
		return nil
	}
	return e.Reply
}

// parseOAuthStatus reads the JSON a server sends when it refuses a
// token. Server text is untrusted: each field is sanitised, and a
// challenge that is not JSON is kept as the status.
func parseOAuthStatus(mech string, challenge []byte) *OAuthError {
	var v struct {
		Status  string `json:"status"`
		Scope   string `json:"scope"`
		Schemes string `json:"schemes"`
	}
	e := &OAuthError{Mechanism: mech}
	if err := json.Unmarshal(challenge, &v); err != nil {
		e.Status = sanitize(string(challenge[:min(len(challenge), 200)]))
		return e
	}
	e.Status, e.Scope, e.Schemes = sanitize(v.Status), sanitize(v.Scope), sanitize(v.Schemes)
	return e
}

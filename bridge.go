package tlsmail

import (
	"crypto/tls"
	"errors"

	"github.com/tlsmail/tlsmail/internal/authbridge"
)

// The root package's side of internal/authbridge: the pop3 package runs
// this package's mechanisms, redaction and TLS completion through these
// functions, so that one credential serves SMTP and POP3 with the same
// guarantees and no new public API.
func init() {
	authbridge.Session = func(a Auth, st *tls.ConnectionState) Auth {
		if s, ok := a.(sessionAuth); ok {
			return s.session(st)
		}
		return a
	}
	authbridge.Secrets = func(a Auth) []string {
		if h, ok := a.(secretHolder); ok {
			return h.secrets()
		}
		return nil
	}
	authbridge.ForeignSecrets = foreignSecrets
	authbridge.Password = func(a Auth) (string, string, string, bool) {
		switch a := a.(type) {
		case *plainAuth:
			return a.username, a.password.reveal(), a.host, a.identity == "" || a.identity == a.username
		case *loginAuth:
			return a.username, a.password.reveal(), a.host, true
		case *passwordAuth:
			return a.username, a.password.reveal(), a.host, true
		}
		return "", "", "", false
	}
	authbridge.ServerUnverified = func(err error) bool { return errors.Is(err, errServerUnverified) }
	authbridge.OAuthStatus = func(a Auth) (string, string, string, bool) {
		if o, ok := a.(oauthFailer); ok && o.oauthError() != nil {
			e := o.oauthError()
			return e.Mechanism, e.Status, e.Scope, true
		}
		return "", "", "", false
	}
	authbridge.Redact = func(secrets []string, text string) string {
		r := &redactor{}
		r.add(secrets...)
		s, _ := r.redact(text)
		return s
	}
	authbridge.Sanitize = sanitize
	authbridge.CompleteConfig = completeConfig
	authbridge.ErrPlaintextAuth = ErrPlaintextAuth
	authbridge.ErrAuthUnsupported = ErrAuthUnsupported
}

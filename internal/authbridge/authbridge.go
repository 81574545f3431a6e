// Package authbridge lets the pop3 package run the root package's
// authentication mechanisms the way the root package's own Client does,
// without adding public API to the root package: the root package fills
// in these functions when it is initialised (bridge.go), and pop3, which
// imports the root package, calls them.
package authbridge

import (
	"crypto/tls"
	"net/smtp"
)

// Session returns the Auth that runs one exchange on one connection: for
// a mechanism of the root package a fresh copy given the connection's TLS
// state (nil when not TLS) for channel binding, for another a itself.
var Session func(a smtp.Auth, state *tls.ConnectionState) smtp.Auth

// Secrets returns the forms of a's secret (password, token) that a server
// might quote back, or nil when a is not a mechanism of the root package.
var Secrets func(a smtp.Auth) []string

// ForeignSecrets returns the parts of an AUTH response from a mechanism
// of another package to treat as secret.
var ForeignSecrets func(mech string, challenge, resp []byte) []string

// Password returns the user name and password of a root-package password
// mechanism (PlainAuth, LoginAuth, PasswordAuth) and the host it is for,
// so that a POP3 client can use USER and PASS when the server offers no
// SASL mechanism; ok is false for any other Auth.
var Password func(a smtp.Auth) (username, password, host string, ok bool)

// ServerUnverified reports whether err, a mechanism's error, says the
// server could not prove it knows the password (a SCRAM signature).
var ServerUnverified func(err error) bool

// OAuthStatus returns the status and scope a server sent when it refused
// the token of a root-package OAuth mechanism, with ok false otherwise.
var OAuthStatus func(a smtp.Auth) (mech, status, scope string, ok bool)

// Redact returns text with every run of the given secrets withheld, as
// the root package withholds credentials from server text.
var Redact func(secrets []string, text string) string

// Sanitize makes untrusted server text safe to print, as the root
// package does for its errors.
var Sanitize func(s string) string

// CompleteConfig clones a TLS configuration and completes the clone
// (ServerName, TLS 1.2 minimum) as the root package's Dialer does.
var CompleteConfig func(config *tls.Config, serverName string) *tls.Config

// ErrPlaintextAuth and ErrAuthUnsupported are the root package's
// sentinels, for pop3 to wrap.
var ErrPlaintextAuth, ErrAuthUnsupported error

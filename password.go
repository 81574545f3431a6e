package tlsmail

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// PasswordAuth returns an Auth for a user name and password that picks
// the strongest mechanism the server advertised after TLS:
// SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS (when the connection can provide
// the tls-exporter channel binding, RFC 9266), SCRAM-SHA-256,
// SCRAM-SHA-1, then PLAIN or LOGIN, and CRAM-MD5 only when it is the only
// one offered. Client.AuthMechanism reports the choice.
//
// On a connection that cannot bind (TLS 1.2 without the extended master
// secret), the -PLUS variants are skipped: PasswordAuth uses SCRAM-SHA-256
// or SCRAM-SHA-1 without the binding if the server offers either, else
// PLAIN, LOGIN or CRAM-MD5 if it offers one, and refuses a server that
// offers nothing but -PLUS variants. It does not refuse a server that
// offers PLAIN beside its -PLUS variants. Why: the list of mechanisms
// arrives over TLS, so only the TLS peer can have shortened it, and the
// one peer the binding guards against, a man-in-the-middle holding a
// certificate the client trusts, can as easily offer PLAIN alone, which
// PasswordAuth accepts from any server; refusing would stop no attacker
// and only fail against servers that let clients that cannot bind use
// PLAIN. A caller who needs the binding uses ScramSHA256PlusAuth, which
// never runs without it.
//
// Like PlainAuth, it only authenticates to host, and only over TLS.
//
// SCRAM prepares the user name and password with SASLprep (RFC 4013): it
// maps non-ASCII spaces to spaces, removes characters that are mapped to
// nothing, and refuses prohibited characters and malformed right-to-left
// text. It does not apply Unicode normalisation form KC, which the
// standard library lacks: a password with characters NFKC would change
// (full-width forms, ligatures, decomposed accents) is used as given.
func PasswordAuth(username, password, host string) Auth {
	return &passwordAuth{username: username, password: hide(password), host: host}
}

type passwordAuth struct {
	username, host string
	password       secret

	state  *tls.ConnectionState
	chosen Auth // the mechanism of this exchange
}

func (a *passwordAuth) session(state *tls.ConnectionState) Auth {
	return &passwordAuth{username: a.username, password: a.password, host: a.host, state: state}
}

// choose returns the mechanism to use against server.
func (a *passwordAuth) choose(server *ServerInfo) (Auth, error) {
	_, bindErr := channelBinding(a.state)
	var plusOnly []string
	for _, m := range []struct {
		name string
		auth *scramAuth
	}{
		{"SCRAM-SHA-256-PLUS", &scramAuth{hashName: "SHA-256", plus: true}},
		{"SCRAM-SHA-1-PLUS", &scramAuth{hashName: "SHA-1", plus: true}},
		{"SCRAM-SHA-256", &scramAuth{hashName: "SHA-256"}},
		{"SCRAM-SHA-1", &scramAuth{hashName: "SHA-1"}},
	} {
		if !offered(server, m.name) {
			continue
		}
		if m.auth.plus && bindErr != nil {
			plusOnly = append(plusOnly, m.name)
			continue
		}
		m.auth.username, m.auth.password, m.auth.state = a.username, a.password, a.state
		return m.auth, nil
	}
	// Why PLAIN, LOGIN or CRAM-MD5 even when -PLUS was offered: see
	// PasswordAuth; the list came over TLS, so no attacker removed
	// anything from it.
	switch {
	case len(plusOnly) > 0 && !offered(server, "PLAIN") && !offered(server, "LOGIN") && !offered(server, "CRAM-MD5"):
		// Why refuse: the server asks for the binding, and dropping it
		// silently would give up the protection it was configured for.
		return nil, fmt.Errorf("the server offers only %s, which needs channel binding, and %v", strings.Join(plusOnly, ", "), bindErr)
	case offered(server, "PLAIN"):
		return &plainAuth{username: a.username, password: a.password, host: a.host}, nil
	case offered(server, "LOGIN"):
		return &loginAuth{username: a.username, password: a.password, host: a.host}, nil
	case offered(server, "CRAM-MD5"):
		return &cramMD5Auth{username: a.username, secret: a.password}, nil
	}
	return nil, fmt.Errorf("%w: no password mechanism among %q", ErrAuthUnsupported, server.Auth)
}

func (a *passwordAuth) Start(server *ServerInfo) (string, []byte, error) {
	// Why check here for every mechanism, SCRAM included: the
	// credentials were given for host, and even a SCRAM exchange gives an
	// impostor the user name and an offline-crackable proof.
	if err := checkServer(server, a.host); err != nil {
		return "", nil, err
	}
	m, err := a.choose(server)
	if err != nil {
		return "", nil, err
	}
	a.chosen = m
	return m.Start(server)
}

func (a *passwordAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if a.chosen == nil {
		return nil, errors.New("PasswordAuth: Next before Start")
	}
	return a.chosen.Next(fromServer, more)
}

func (a *passwordAuth) secrets() []string { return secretForms(a.password.reveal()) }

func (a passwordAuth) String() string {
	return "tlsmail.PasswordAuth(" + strconv.Quote(a.username) + ")"
}

func (a passwordAuth) GoString() string { return a.String() }

// Format prints the same as String for every verb, so that no verb can
// show the password.
func (a passwordAuth) Format(f fmt.State, verb rune) { formatSafe(f, a.String()) }

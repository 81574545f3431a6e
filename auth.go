package tlsmail

import (
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

package tlsmail

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// ScramSHA1Auth returns an Auth that implements SCRAM-SHA-1 (RFC 5802),
// for servers that offer no SCRAM-SHA-256. Like ScramSHA256Auth, the
// password never crosses the connection and the server must prove it knows
// it. Prefer SCRAM-SHA-256 where offered.
func ScramSHA1Auth(username, password string) Auth {
	return &scramAuth{username: username, password: hide(password), hashName: "SHA-1"}
}

// ScramSHA256Auth returns an Auth that implements SCRAM-SHA-256 (RFC 7677,
// RFC 5802) without channel binding. The password never crosses the
// connection, and the server must prove it knows the password too: if its
// final signature does not verify, authentication fails. A server that
// asks for fewer than 4096 or more than 2,097,152 (2^21) PBKDF2
// iterations is refused: too few make the exchange cheap to crack, too
// many keep the client busy. User name and
// password are prepared with SASLprep (RFC 4013) as far as the standard
// library allows; see PasswordAuth for what is not normalised.
func ScramSHA256Auth(username, password string) Auth {
	return &scramAuth{username: username, password: hide(password), hashName: "SHA-256"}
}

// ScramSHA256PlusAuth returns an Auth that implements SCRAM-SHA-256-PLUS:
// SCRAM-SHA-256 bound to the TLS connection with the tls-exporter channel
// binding (RFC 9266), so that a man-in-the-middle holding a certificate
// the client trusts still cannot relay the exchange. The binding needs
// TLS 1.3, or TLS 1.2 with the extended master secret extension; on a
// connection without either, authentication fails rather than run
// without the binding.
func ScramSHA256PlusAuth(username, password string) Auth {
	return &scramAuth{username: username, password: hide(password), hashName: "SHA-256", plus: true}
}

// scramAuth is one SCRAM variant. Client.Auth runs each exchange on a
// copy made by session; used directly (with net/smtp's Client, say) the
// value holds the state of one exchange at a time.
type scramAuth struct {
	username string
	password secret
	hashName string // "SHA-1" or "SHA-256"; "" means SHA-256
	plus     bool   // the -PLUS variant: channel binding required

	// Set by session: the TLS connection, for channel binding.
	state *tls.ConnectionState

	clientNonce string // fixed nonce for tests; empty means random

	// The exchange.
	step            int
	gs2Header       string
	cbData          []byte
	clientFirstBare string
	serverSignature []byte
	verified        bool
}

func (a *scramAuth) session(state *tls.ConnectionState) Auth {
	return &scramAuth{username: a.username, password: a.password, hashName: a.hashName, plus: a.plus, state: state, clientNonce: a.clientNonce}
}

func (a *scramAuth) hash() (func() hash.Hash, int) {
	if a.hashName == "SHA-1" {
		return sha1.New, sha1.Size
	}
	return sha256.New, sha256.Size
}

func (a *scramAuth) mechanism() string {
	name := "SCRAM-SHA-256"
	if a.hashName == "SHA-1" {
		name = "SCRAM-SHA-1"
	}
	if a.plus {
		name += "-PLUS"
	}
	return name
}

// minScramIterations is the least PBKDF2 iteration count accepted from a
// server: the minimum of RFC 5802 section 5.1 and RFC 7677 section 4.
const minScramIterations = 4096

// maxScramIterations is the greatest PBKDF2 iteration count accepted from
// a server. Deployed servers use 4096 (Dovecot, Cyrus SASL, PostgreSQL)
// to 15000 (MongoDB); OWASP's 2023 advice for PBKDF2 password storage is
// 600,000 iterations with SHA-256 and 1,300,000 with SHA-1. 2^21 admits
// all of these, and costs at most about half a second of one core
// (PBKDF2-HMAC-SHA-256 runs about 4 million iterations a second on a
// current x86 core); a count a hostile server picks could otherwise keep
// the client computing for hours.
const maxScramIterations = 1 << 21

// tlsExporterLabel is the exporter label of RFC 9266 section 2.
const tlsExporterLabel = "EXPORTER-Channel-Binding"

// channelBinding returns the tls-exporter binding of the connection, or
// an error saying why there is none.
func channelBinding(state *tls.ConnectionState) ([]byte, error) {
	if state == nil {
		return nil, errors.New("the connection is not TLS")
	}
	if state.Version < tls.VersionTLS13 && state.Version != tls.VersionTLS12 {
		return nil, errors.New("the connection's TLS version is too old")
	}
	// Why rely on the exporter's own check: RFC 9266 section 4.2 allows
	// tls-exporter on TLS 1.2 only with the extended master secret, and
	// crypto/tls refuses to export keying material without it.
	b, err := state.ExportKeyingMaterial(tlsExporterLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("TLS 1.2 without extended master secret cannot provide the tls-exporter channel binding (RFC 9266 section 4.2): %w", err)
	}
	return b, nil
}

func (a *scramAuth) Start(server *ServerInfo) (string, []byte, error) {
	mech := a.mechanism()
	user, err := saslPrep(a.username)
	if err != nil {
		return "", nil, fmt.Errorf("%s: user name %w", mech, err)
	}
	if _, err := saslPrep(a.password.reveal()); err != nil {
		return "", nil, fmt.Errorf("%s: password %w", mech, err)
	}
	a.step, a.verified, a.serverSignature, a.cbData = 0, false, nil, nil
	// The gs2 header (RFC 5802 sections 6 and 7): "p=" binds the channel;
	// "y" says the client could bind but the server did not offer -PLUS,
	// so that a server that did offer it sees the downgrade; "n" says
	// the client cannot bind.
	switch {
	case a.plus:
		cb, err := channelBinding(a.state)
		if err != nil {
			// Why refuse rather than run without the binding: the caller
			// asked for the protection the binding gives.
			return "", nil, fmt.Errorf("%s needs channel binding: %w", mech, err)
		}
		a.gs2Header, a.cbData = "p=tls-exporter,,", cb
	case a.state != nil && !offered(server, mech+"-PLUS"):
		if _, err := channelBinding(a.state); err == nil {
			a.gs2Header = "y,,"
		} else {
			a.gs2Header = "n,,"
		}
	default:
		a.gs2Header = "n,,"
	}
	nonce := a.clientNonce
	if nonce == "" {
		b := make([]byte, 24)
		rand.Read(b)
		nonce = base64.RawStdEncoding.EncodeToString(b)
	}
	a.clientFirstBare = "n=" + saslName(user) + ",r=" + nonce
	return mech, []byte(a.gs2Header + a.clientFirstBare), nil
}

func (a *scramAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	a.step++
	switch {
	case a.step == 1 && more:
		return a.clientFinal(string(fromServer))
	case a.step == 2 && more:
		if err := a.verify(string(fromServer)); err != nil {
			return nil, err
		}
		return []byte{}, nil
	case !more:
		if a.verified {
			return nil, nil
		}
		// Why: SCRAM's point is mutual authentication; a server that
		// accepts without proving the password is not the real one.
		return nil, fmt.Errorf("%s: server did not send its signature (%w)", a.mechanism(), errServerUnverified)
	}
	return nil, fmt.Errorf("%s: unexpected server challenge", a.mechanism())
}

func (a *scramAuth) clientFinal(serverFirst string) ([]byte, error) {
	mech := a.mechanism()
	var nonce, salt64, iterStr string
	for _, f := range strings.Split(serverFirst, ",") {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "r":
			nonce = v
		case "s":
			salt64 = v
		case "i":
			iterStr = v
		case "m":
			return nil, fmt.Errorf("%s: server requires an unsupported extension", mech)
		}
	}
	clientNonce := a.clientFirstBare[strings.Index(a.clientFirstBare, ",r=")+len(",r="):]
	if !strings.HasPrefix(nonce, clientNonce) || len(nonce) == len(clientNonce) {
		// Why: a server nonce that does not extend ours could replay an
		// old exchange (RFC 5802 section 5.1).
		return nil, fmt.Errorf("%s: server nonce does not extend ours", mech)
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || len(salt) == 0 {
		return nil, fmt.Errorf("%s: bad salt from server", mech)
	}
	iter, err := strconv.Atoi(iterStr)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: unacceptable iteration count %q", mech, iterStr)
	case iter < minScramIterations:
		// Why a floor: fewer iterations make the exchange, which a
		// server or an eavesdropper on a broken TLS session records,
		// cheap to crack offline.
		return nil, fmt.Errorf("%s: the server asks for %d iterations, fewer than the minimum of %d (RFC 7677 section 4)", mech, iter, minScramIterations)
	case iter > maxScramIterations:
		// Why a ceiling: the count is the server's to choose, and the
		// client computes that many hashes before the server has proved
		// anything.
		return nil, fmt.Errorf("%s: the server asks for %d iterations, more than the limit of %d", mech, iter, maxScramIterations)
	}
	password, err := saslPrep(a.password.reveal())
	if err != nil {
		return nil, fmt.Errorf("%s: password %w", mech, err)
	}
	h, size := a.hash()
	salted, err := pbkdf2.Key(h, password, salt, iter, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", mech, err)
	}
	clientKey := hmacSum(h, salted, "Client Key")
	sh := h()
	sh.Write(clientKey)
	storedKey := sh.Sum(nil)
	cbind := append([]byte(a.gs2Header), a.cbData...)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(cbind) + ",r=" + nonce
	authMessage := a.clientFirstBare + "," + serverFirst + "," + withoutProof
	sig := hmacSum(h, storedKey, authMessage)
	proof := make([]byte, len(clientKey))
	for i := range clientKey {
		proof[i] = clientKey[i] ^ sig[i]
	}
	a.serverSignature = hmacSum(h, hmacSum(h, salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func (a *scramAuth) verify(serverFinal string) error {
	mech := a.mechanism()
	if e, ok := strings.CutPrefix(serverFinal, "e="); ok {
		return &serverTextError{mech: mech, text: e}
	}
	v, ok := strings.CutPrefix(serverFinal, "v=")
	if !ok {
		return fmt.Errorf("%s: malformed server final message", mech)
	}
	got, err := base64.StdEncoding.DecodeString(v)
	// Why hmac.Equal: a constant-time comparison of the whole signature;
	// a server that does not know the password cannot produce it.
	if err != nil || !hmac.Equal(got, a.serverSignature) {
		return fmt.Errorf("%s: server signature does not verify (%w)", mech, errServerUnverified)
	}
	a.verified = true
	return nil
}

// A serverTextError is a mechanism's error that quotes the server: the
// server-error attribute of SCRAM's server-final message (RFC 5802
// section 7). Client.authenticate withholds credentials from its text
// (see Client.withholdServerText) before the error goes anywhere.
type serverTextError struct {
	mech, text string
}

// Error quotes at most the first 100 bytes of the server's text, made
// safe for a log by sanitize.
func (e *serverTextError) Error() string {
	return fmt.Sprintf("%s: server error %q", e.mech, sanitize(e.text[:min(len(e.text), 100)]))
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func (a *scramAuth) secrets() []string { return secretForms(a.password.reveal()) }

func (a scramAuth) String() string {
	name := "ScramSHA256Auth"
	switch {
	case a.hashName == "SHA-1":
		name = "ScramSHA1Auth"
	case a.plus:
		name = "ScramSHA256PlusAuth"
	}
	return "tlsmail." + name + "(" + strconv.Quote(a.username) + ")"
}

func (a scramAuth) GoString() string { return a.String() }

// Format prints the same as String for every verb, so that no verb can
// show the password.
func (a scramAuth) Format(f fmt.State, verb rune) { formatSafe(f, a.String()) }

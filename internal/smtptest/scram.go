package smtptest

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"
	"unicode/utf8"
)

// scramHashes maps the SCRAM mechanism names (without "-PLUS") to their
// hash functions.
var scramHashes = map[string]func() hash.Hash{
	"SCRAM-SHA-1":   sha1.New,
	"SCRAM-SHA-256": sha256.New,
}

// cbType is the only channel binding type the -PLUS mechanisms accept.
const cbType = "tls-exporter"

// scramError is an RFC 5802 section 7 server-error-value; the 535 reply
// of a failed exchange ends with it.
type scramError string

const (
	scramInvalidEncoding       scramError = "invalid-encoding"
	scramExtensionsUnsupported scramError = "extensions-not-supported"
	scramInvalidProof          scramError = "invalid-proof"
	scramCBMismatch            scramError = "channel-bindings-dont-match"
	scramServerSupportsCB      scramError = "server-does-support-channel-binding"
	scramCBNotSupported        scramError = "channel-binding-not-supported"
	scramCBTypeUnsupported     scramError = "unsupported-channel-binding-type"
	scramInvalidUsername       scramError = "invalid-username-encoding"
	scramOtherError            scramError = "other-error"
)

// scramClientFirst is a parsed client-first-message.
type scramClientFirst struct {
	gs2Header string // "n,,", "y,a=x,", "p=tls-exporter,,", ...
	cbFlag    string // "n", "y" or "p=<cb-name>"
	authzid   string // decoded, "" if none
	bare      string // client-first-message-bare, as sent
	user      string // decoded
	nonce     string
}

// parseScramClientFirst parses a client-first-message (RFC 5802 section
// 7).
func parseScramClientFirst(msg string) (cf scramClientFirst, e scramError) {
	if !utf8.ValidString(msg) {
		return cf, scramInvalidEncoding
	}
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return cf, scramInvalidEncoding
	}
	switch {
	case flag == "n", flag == "y":
	case strings.HasPrefix(flag, "p=") && len(flag) > 2:
		for _, c := range []byte(flag[2:]) {
			// cb-name = 1*(ALPHA / DIGIT / "." / "-")
			if !isAlnum(c) && c != '.' && c != '-' {
				return cf, scramInvalidEncoding
			}
		}
	default:
		return cf, scramInvalidEncoding
	}
	authz, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return cf, scramInvalidEncoding
	}
	if authz != "" {
		a, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return cf, scramInvalidEncoding
		}
		if cf.authzid, ok = decodeSaslname(a); !ok {
			return cf, scramInvalidUsername
		}
	}
	cf.cbFlag = flag
	cf.gs2Header = msg[:len(msg)-len(bare)]
	cf.bare = bare

	attrs := strings.Split(bare, ",")
	if strings.HasPrefix(attrs[0], "m=") {
		// A mandatory extension this server does not know (RFC 5802
		// section 5.1: it MUST fail).
		return cf, scramExtensionsUnsupported
	}
	if len(attrs) < 2 {
		return cf, scramInvalidEncoding
	}
	name, ok := strings.CutPrefix(attrs[0], "n=")
	if !ok {
		return cf, scramInvalidEncoding
	}
	if cf.user, ok = decodeSaslname(name); !ok {
		return cf, scramInvalidUsername
	}
	if cf.nonce, ok = strings.CutPrefix(attrs[1], "r="); !ok || !isScramPrintable(cf.nonce) {
		return cf, scramInvalidEncoding
	}
	if !validScramExtensions(attrs[2:]) {
		return cf, scramInvalidEncoding
	}
	return cf, ""
}

// scramClientFinal is a parsed client-final-message.
type scramClientFinal struct {
	withoutProof string // client-final-message-without-proof, as sent
	cbind        string // the c= value, base64 as sent
	nonce        string
	proof        []byte
}

// parseScramClientFinal parses a client-final-message (RFC 5802 section
// 7): c=, r=, optional extensions, and p= last.
func parseScramClientFinal(msg string) (cf scramClientFinal, e scramError) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return cf, scramInvalidEncoding
	}
	cf.withoutProof = msg[:i]
	proof, err := base64.StdEncoding.Strict().DecodeString(msg[i+3:])
	if err != nil || len(proof) == 0 {
		return cf, scramInvalidEncoding
	}
	cf.proof = proof
	attrs := strings.Split(cf.withoutProof, ",")
	if len(attrs) < 2 {
		return cf, scramInvalidEncoding
	}
	var ok bool
	if cf.cbind, ok = strings.CutPrefix(attrs[0], "c="); !ok {
		return cf, scramInvalidEncoding
	}
	if cf.nonce, ok = strings.CutPrefix(attrs[1], "r="); !ok || !isScramPrintable(cf.nonce) {
		return cf, scramInvalidEncoding
	}
	if !validScramExtensions(attrs[2:]) {
		return cf, scramInvalidEncoding
	}
	return cf, ""
}

// isScramPrintable reports whether s is a non-empty run of RFC 5802
// "printable": %x21-2B / %x2D-7E (printable ASCII without ',').
func isScramPrintable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// validScramExtensions reports whether each attribute is an optional
// extension, attr-val = ALPHA "=" value; unknown ones are ignored.
func validScramExtensions(attrs []string) bool {
	for _, a := range attrs {
		if len(a) < 2 || a[1] != '=' || !isAlphaKey(a[:1]) {
			return false
		}
	}
	return true
}

// scramSaltedPassword is Hi(password, salt, i) of RFC 5802 section 2.2,
// which is PBKDF2 with HMAC-H and the length of H's output.
func scramSaltedPassword(h func() hash.Hash, password string, salt []byte, iter int) ([]byte, error) {
	return pbkdf2.Key(h, password, salt, iter, h().Size())
}

func scramHMAC(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// scramVerify checks a ClientProof against the salted password and the
// AuthMessage (RFC 5802 section 3) and returns the ServerSignature.
func scramVerify(h func() hash.Hash, salted []byte, authMessage string, proof []byte) (serverSig []byte, ok bool) {
	clientKey := scramHMAC(h, salted, "Client Key")
	sum := h()
	sum.Write(clientKey)
	storedKey := sum.Sum(nil)
	clientSig := scramHMAC(h, storedKey, authMessage)
	serverSig = scramHMAC(h, scramHMAC(h, salted, "Server Key"), authMessage)
	if len(proof) != len(clientSig) {
		return serverSig, false
	}
	// ClientKey = ClientProof XOR ClientSignature; the proof is good if
	// H(ClientKey) is the StoredKey. Compared in constant time, as a
	// real server must, so that timing reveals nothing of StoredKey.
	recovered := make([]byte, len(proof))
	subtle.XORBytes(recovered, proof, clientSig)
	sum = h()
	sum.Write(recovered)
	return serverSig, subtle.ConstantTimeCompare(sum.Sum(nil), storedKey) == 1
}

// authSCRAM runs a SCRAM exchange (RFC 5802, RFC 7677) after the client's
// first message. Success ends with the server-final-message in a 334
// challenge, the client's empty response and 235 (RFC 4954 section 4,
// additional data with success); failure ends with a 535 whose text
// ends with the RFC 5802 server-error-value, without an extra round
// trip (RFC 5802 section 5.1 makes the server-final-message optional on
// failure).
func (s *Session) authSCRAM(mech string, first []byte) error {
	var cb []byte
	if strings.HasSuffix(mech, "-PLUS") {
		cb = s.channelBinding()
	}
	user, failure, err := ScramExchange(ScramServer{
		Users: s.srv.users, Salt: s.srv.scramSalt, Iterations: s.srv.scramIters,
		ChannelBinding: cb, OffersPlus: s.offersPlus(),
	}, mech, first, s.challenge)
	switch {
	case err != nil || failure == "" && user == "":
		return err
	case failure != "":
		return s.authFailed(failure)
	}
	return s.authSucceeded(user, mech)
}

// ScramServer is what the server side of a SCRAM exchange needs to know;
// see ScramExchange.
type ScramServer struct {
	Users          map[string]string // user name to password
	Salt           []byte            // one salt for every user
	Iterations     int
	ChannelBinding []byte // the connection's tls-exporter data; nil if none
	OffersPlus     bool   // a -PLUS mechanism was advertised
}

// ScramExchange runs the server side of a SCRAM exchange for mech (e.g.
// "SCRAM-SHA-256-PLUS") after the client's first message, for the test
// servers of any protocol. challenge sends a server message and returns
// the client's decoded response; ok false ends the exchange with err
// (the client cancelled, or the connection failed). The result is the
// authenticated user, or failure, an RFC 5802 server-error-value to put
// in the protocol's refusal.
func ScramExchange(srv ScramServer, mech string, first []byte, challenge func(string) ([]byte, bool, error)) (user, failure string, err error) {
	plus := strings.HasSuffix(mech, "-PLUS")
	h := scramHashes[strings.TrimSuffix(mech, "-PLUS")]
	if h == nil {
		return "", string(scramOtherError), nil
	}
	cf, e := parseScramClientFirst(string(first))
	if e != "" {
		return "", string(e), nil
	}

	// The channel binding flag (RFC 5802 section 6).
	var cbData []byte
	switch {
	case plus:
		name, ok := strings.CutPrefix(cf.cbFlag, "p=")
		if !ok {
			// A -PLUS mechanism without binding is a contradiction.
			return "", string(scramOtherError), nil
		}
		if name != cbType {
			return "", string(scramCBTypeUnsupported), nil
		}
		if cbData = srv.ChannelBinding; cbData == nil {
			return "", string(scramCBNotSupported), nil
		}
	case strings.HasPrefix(cf.cbFlag, "p="):
		// Binding asked for with a mechanism that has none.
		return "", string(scramCBNotSupported), nil
	case cf.cbFlag == "y" && srv.OffersPlus:
		// "y" says the client could bind but believes the server
		// cannot. This server offered a -PLUS mechanism, so someone
		// removed it from the list on the way: a downgrade, which the
		// server MUST fail.
		return "", string(scramServerSupportsCB), nil
	}
	if cf.authzid != "" && cf.authzid != cf.user {
		// Acting for someone else is not allowed, as with PLAIN.
		return "", string(scramOtherError), nil
	}

	// An unknown user goes through the whole exchange, with the same
	// salt and iteration count and the same work, and fails only at the
	// proof, so that the exchange does not reveal which users exist.
	pass, known := srv.Users[cf.user]
	salted, err := scramSaltedPassword(h, pass, srv.Salt, srv.Iterations)
	if err != nil {
		return "", string(scramOtherError), nil
	}
	var nb [18]byte
	rand.Read(nb[:])
	nonce := cf.nonce + base64.StdEncoding.EncodeToString(nb[:])
	serverFirst := "r=" + nonce + ",s=" + base64.StdEncoding.EncodeToString(srv.Salt) + ",i=" + strconv.Itoa(srv.Iterations)

	resp, ok, err := challenge(serverFirst)
	if !ok {
		return "", "", err
	}
	fin, e := parseScramClientFinal(string(resp))
	if e != "" {
		return "", string(e), nil
	}
	// c= must repeat the GS2 header exactly, followed for -PLUS by the
	// binding data of this very TLS connection; a man in the middle
	// terminating TLS has different data (RFC 5802 section 6, RFC 9266).
	want := base64.StdEncoding.EncodeToString(append([]byte(cf.gs2Header), cbData...))
	if fin.cbind != want {
		return "", string(scramCBMismatch), nil
	}
	if fin.nonce != nonce {
		return "", string(scramOtherError), nil
	}
	authMessage := cf.bare + "," + serverFirst + "," + fin.withoutProof
	serverSig, good := scramVerify(h, salted, authMessage, fin.proof)
	if !good || !known {
		return "", string(scramInvalidProof), nil
	}

	final, ok, err := challenge("v=" + base64.StdEncoding.EncodeToString(serverSig))
	if !ok {
		return "", "", err
	}
	if len(final) != 0 {
		// The client answers additional data with success by an empty
		// response (RFC 4954 section 4, RFC 5034 section 4).
		return "", string(scramOtherError), nil
	}
	return cf.user, "", nil
}

// offersPlus reports whether a channel-binding mechanism is advertised
// in the current state.
func (s *Session) offersPlus() bool {
	for _, m := range s.mechanisms() {
		if isPlus(m) {
			return true
		}
	}
	return false
}

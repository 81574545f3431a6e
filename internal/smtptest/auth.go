package smtptest

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Default JSON error documents of the OAuth mechanisms, sent when a
// token is refused; Options.OAuthErrorJSON replaces both.
const (
	oauthBearerErrorJSON = `{"status":"invalid_token","scope":"https://mail.example/","schemes":"bearer"}`
	xoauth2ErrorJSON     = `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`
)

// authAdvertised reports whether AUTH is offered in the current state.
func (s *Session) authAdvertised() bool {
	if len(s.srv.mechs) == 0 {
		return false
	}
	o := &s.srv.opts
	if s.TLS() {
		return !o.AuthOnlyBeforeTLS
	}
	return o.AuthBeforeTLS || o.AuthOnlyBeforeTLS
}

// mechanisms returns the mechanisms advertised and accepted in the
// current state: none when AUTH is not offered, and no channel-binding
// ("-PLUS") mechanism unless the session can bind to its TLS connection.
func (s *Session) mechanisms() []string {
	if !s.authAdvertised() {
		return nil
	}
	var out []string
	for _, m := range s.srv.mechs {
		if isPlus(m) && s.channelBinding() == nil {
			continue
		}
		out = append(out, m)
	}
	return out
}

func isPlus(mech string) bool {
	return strings.HasSuffix(strings.ToUpper(mech), "-PLUS")
}

// channelBinding returns the "tls-exporter" channel binding data of the
// session (RFC 9266), or nil when there is none: on a plaintext session,
// or when the TLS connection cannot export keying material (TLS 1.2
// without Extended Master Secret, where RFC 9266 forbids it and crypto/tls
// refuses).
func (s *Session) channelBinding() []byte {
	s.wmu.Lock()
	c := s.conn
	s.wmu.Unlock()
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	cb, err := st.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		return nil
	}
	return cb
}

// readAuthLine reads a client response inside an AUTH exchange. It
// returns ok=false when the exchange is over (the hook took the line, the
// client cancelled, or a reply was already sent) or err on connection
// failure.
func (s *Session) readAuthLine() (line string, ok bool, err error) {
	line, tooLong, err := s.readLine()
	if err != nil {
		return "", false, err
	}
	s.srv.record(s, line)
	if tooLong {
		return "", false, s.Reply("500 5.5.2 Line too long")
	}
	if h := s.srv.opts.Handler; h != nil && h(s, line) {
		return "", false, nil
	}
	// Every response in the exchange waits for the challenge before it
	// (RFC 2920 section 3.1: AUTH ends a group).
	s.checkEarly("AUTH response", "", false)
	if line == "*" {
		return "", false, s.Reply("501 5.7.0 Authentication aborted")
	}
	return line, true, nil
}

// decodeSASL decodes a base64 client response; "=" stands for an empty
// response.
func decodeSASL(line string) ([]byte, bool) {
	line = strings.TrimSpace(line)
	if line == "=" {
		return []byte{}, true
	}
	b, err := base64.StdEncoding.DecodeString(line)
	return b, err == nil
}

// challenge sends a 334 continuation with the base64 of c and reads the
// decoded response.
func (s *Session) challenge(c string) (resp []byte, ok bool, err error) {
	if err := s.Reply("334 " + base64.StdEncoding.EncodeToString([]byte(c))); err != nil {
		return nil, false, err
	}
	line, ok, err := s.readAuthLine()
	if !ok || err != nil {
		return nil, false, err
	}
	resp, ok = decodeSASL(line)
	if !ok {
		return nil, false, s.Reply("501 5.5.2 Cannot decode response")
	}
	return resp, true, nil
}

// authFailed sends the 535 reply of a failed authentication; reason ends
// the text (for SCRAM, the RFC 5802 server-error value).
func (s *Session) authFailed(reason string) error {
	return s.Reply("535 5.7.8 Error: authentication failed: " + reason)
}

// authSucceeded records the identity and sends 235.
func (s *Session) authSucceeded(user, mech string) error {
	s.authUser, s.authMech = user, mech
	return s.Reply("235 2.7.0 Authentication successful")
}

func (s *Session) cmdAUTH(arg string) error {
	s.inAuth = true
	defer func() { s.inAuth = false }()
	mech, initial, hasInitial := strings.Cut(arg, " ")
	initial = strings.TrimSpace(initial)
	hasInitial = hasInitial && initial != ""
	switch {
	case mech == "":
		return s.Reply("501 5.5.4 Syntax: AUTH mechanism")
	case s.authUser != "":
		return s.Reply("503 5.5.1 Error: already authenticated")
	case !s.greeted:
		return s.Reply("503 5.5.1 Error: send HELO/EHLO first")
	case s.inTx:
		return s.Reply("503 5.5.1 Error: MAIL transaction in progress")
	}
	mech = strings.ToUpper(mech)
	known := false
	for _, m := range s.srv.mechs {
		if strings.EqualFold(m, mech) {
			known = true
		}
	}
	if !known {
		return s.Reply("504 5.5.4 Unrecognized authentication type")
	}
	o := &s.srv.opts
	if !s.TLS() && !o.AuthBeforeTLS && !o.AuthOnlyBeforeTLS {
		return s.Reply("538 5.7.11 Encryption required for requested authentication mechanism")
	}
	offered := false
	for _, m := range s.mechanisms() {
		if strings.EqualFold(m, mech) {
			offered = true
		}
	}
	if !offered {
		// Not offered in this state, for example a -PLUS mechanism on a
		// plaintext session.
		return s.Reply("504 5.5.4 Unrecognized authentication type")
	}

	switch mech {
	case "PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER":
	default:
		if _, ok := scramHashes[strings.TrimSuffix(mech, "-PLUS")]; !ok {
			// Advertised by configuration but not implemented.
			return s.Reply("504 5.5.4 Unrecognized authentication type")
		}
	}

	var initialResp []byte
	if hasInitial {
		var ok bool
		if initialResp, ok = decodeSASL(initial); !ok {
			return s.Reply("501 5.5.2 Cannot decode response")
		}
	}
	// firstResponse returns the initial response, or asks for one with
	// an empty challenge (RFC 4954 section 4).
	firstResponse := func() ([]byte, bool, error) {
		if hasInitial {
			return initialResp, true, nil
		}
		return s.challenge("")
	}

	switch mech {
	case "PLAIN":
		resp, ok, err := firstResponse()
		if !ok {
			return err
		}
		var user string
		good := false
		parts := strings.Split(string(resp), "\x00")
		if len(parts) == 3 {
			user = parts[1]
			pass, exists := s.srv.users[user]
			good = exists && pass == parts[2] && (parts[0] == "" || parts[0] == user)
		}
		if !good {
			return s.authFailed("authentication failure")
		}
		return s.authSucceeded(user, mech)
	case "LOGIN":
		name := initialResp
		if !hasInitial {
			var ok bool
			var err error
			if name, ok, err = s.challenge("Username:"); !ok {
				return err
			}
		}
		pass, ok, err := s.challenge("Password:")
		if !ok {
			return err
		}
		user := string(name)
		want, exists := s.srv.users[user]
		if !exists || want != string(pass) {
			return s.authFailed("authentication failure")
		}
		return s.authSucceeded(user, mech)
	case "CRAM-MD5":
		if hasInitial {
			return s.Reply("501 5.5.4 Syntax: CRAM-MD5 takes no initial response")
		}
		var rnd [8]byte
		rand.Read(rnd[:])
		chal := fmt.Sprintf("<%d.%d@%s>", binary.BigEndian.Uint64(rnd[:])>>1, time.Now().UnixNano(), s.srv.hostname)
		resp, ok, err := s.challenge(chal)
		if !ok {
			return err
		}
		r := string(resp)
		var user string
		good := false
		if i := strings.LastIndexByte(r, ' '); i >= 0 {
			user = r[:i]
			if pass, exists := s.srv.users[user]; exists {
				mac := hmac.New(md5.New, []byte(pass))
				mac.Write([]byte(chal))
				want := hex.EncodeToString(mac.Sum(nil))
				good = hmac.Equal([]byte(want), []byte(strings.ToLower(r[i+1:])))
			}
		}
		if !good {
			return s.authFailed("authentication failure")
		}
		return s.authSucceeded(user, mech)
	case "XOAUTH2", "OAUTHBEARER":
		resp, ok, err := firstResponse()
		if !ok {
			return err
		}
		return s.authOAuth(mech, resp)
	}
	// The SCRAM family, whose names were checked above.
	resp, ok, err := firstResponse()
	if !ok {
		return err
	}
	return s.authSCRAM(mech, resp)
}

// authOAuth finishes XOAUTH2 or OAUTHBEARER given the client's first
// response.
func (s *Session) authOAuth(mech string, resp []byte) error {
	var user, token string
	var ok bool
	if mech == "XOAUTH2" {
		user, token, ok = parseXOAUTH2(string(resp))
	} else {
		user, token, ok = parseOAuthBearer(string(resp))
	}
	if !ok {
		return s.authFailed("malformed " + mech + " response")
	}
	owner, known := s.srv.tokens[token]
	if known && (user == "" || user == owner) {
		return s.authSucceeded(owner, mech)
	}

	// A refused token: the error is sent as a challenge, because SMTP
	// cannot carry data with a failure, the client answers with a dummy
	// response, and only then does the exchange fail (RFC 7628 section
	// 3.2.2; Google's XOAUTH2 does the same with an empty response).
	doc, dummy := oauthBearerErrorJSON, "\x01"
	if mech == "XOAUTH2" {
		doc, dummy = xoauth2ErrorJSON, ""
	}
	if s.srv.opts.OAuthErrorJSON != "" {
		doc = s.srv.opts.OAuthErrorJSON
	}
	got, ok, err := s.challenge(doc)
	if !ok {
		return err
	}
	if string(got) != dummy {
		// Why a distinct reply: a client that answers the error
		// challenge with anything else has misread the exchange, and a
		// test should be able to tell.
		if mech == "XOAUTH2" {
			return s.Reply("501 5.5.2 Error: the response to the XOAUTH2 error challenge must be empty")
		}
		return s.Reply("501 5.5.2 Error: the response to the OAUTHBEARER error challenge must be %x01")
	}
	return s.Reply("535 5.7.8 Username and Password not accepted")
}

// parseXOAUTH2 parses the XOAUTH2 initial response,
// "user=" user "\x01auth=Bearer " token "\x01\x01".
func parseXOAUTH2(msg string) (user, token string, ok bool) {
	body, ok := strings.CutSuffix(msg, "\x01\x01")
	if !ok {
		return "", "", false
	}
	userField, authField, ok := strings.Cut(body, "\x01")
	if !ok {
		return "", "", false
	}
	user, ok = strings.CutPrefix(userField, "user=")
	if !ok || user == "" {
		return "", "", false
	}
	auth, ok := strings.CutPrefix(authField, "auth=")
	if !ok {
		return "", "", false
	}
	token, ok = bearerToken(auth)
	return user, token, ok
}

// parseOAuthBearer parses an OAUTHBEARER client response (RFC 7628
// section 3.1): a GS2 header with an optional authorization identity,
// then key=value pairs each ended by %x01, then a final %x01. The
// returned user is the authorization identity, "" if none.
func parseOAuthBearer(msg string) (user, token string, ok bool) {
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok || (flag != "n" && flag != "y") {
		// "p" is refused: OAUTHBEARER has no channel binding.
		return "", "", false
	}
	authz, rest, ok := strings.Cut(rest, ",")
	if !ok {
		return "", "", false
	}
	if authz != "" {
		a, ok := strings.CutPrefix(authz, "a=")
		if !ok {
			return "", "", false
		}
		if user, ok = decodeSaslname(a); !ok {
			return "", "", false
		}
	}
	rest, ok = strings.CutPrefix(rest, "\x01")
	if !ok {
		return "", "", false
	}
	pairs, ok := strings.CutSuffix(rest, "\x01")
	if !ok {
		return "", "", false
	}
	// pairs is now *(key "=" value %x01).
	if pairs == "" || !strings.HasSuffix(pairs, "\x01") {
		return "", "", false
	}
	seen := make(map[string]bool)
	for _, kv := range strings.Split(strings.TrimSuffix(pairs, "\x01"), "\x01") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !isAlphaKey(k) || seen[k] || !isKVValue(v) {
			return "", "", false
		}
		seen[k] = true
		switch k {
		case "auth":
			if token, ok = bearerToken(v); !ok {
				return "", "", false
			}
		case "port":
			if v == "" || strings.Trim(v, "0123456789") != "" {
				return "", "", false
			}
		}
	}
	return user, token, seen["auth"]
}

// bearerToken parses `"Bearer" 1*SP b64token` (RFC 6750 section 2.1; the
// scheme is case-insensitive).
func bearerToken(v string) (string, bool) {
	if len(v) < 7 || !strings.EqualFold(v[:6], "Bearer") || v[6] != ' ' {
		return "", false
	}
	tok := strings.TrimLeft(v[6:], " ")
	if tok == "" {
		return "", false
	}
	// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	body := strings.TrimRight(tok, "=")
	if body == "" {
		return "", false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !isAlnum(c) && !strings.ContainsRune("-._~+/", rune(c)) {
			return "", false
		}
	}
	return tok, true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isAlphaKey reports whether k is an RFC 7628 key, 1*ALPHA.
func isAlphaKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// isKVValue reports whether v is an RFC 7628 value:
// *(VCHAR / SP / HTAB / CR / LF).
func isKVValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 0x20 && c <= 0x7e || c == '\t' || c == '\r' || c == '\n') {
			return false
		}
	}
	return true
}

// decodeSaslname undoes the escaping of RFC 5802 section 7 saslname:
// "=2C" is ',' and "=3D" is '='; any other '=' , a raw ',', NUL or
// invalid UTF-8 makes the name malformed, and so does an empty name.
func decodeSaslname(s string) (string, bool) {
	if s == "" || !utf8.ValidString(s) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '=':
			switch {
			case strings.HasPrefix(s[i:], "=2C"):
				b.WriteByte(',')
			case strings.HasPrefix(s[i:], "=3D"):
				b.WriteByte('=')
			default:
				return "", false
			}
			i += 2
		case ',', 0:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

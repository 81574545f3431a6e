package tlsmail

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// TestScramSHA256Vector runs the exchange of RFC 7677 section 3.
func TestScramSHA256Vector(t *testing.T) {
	a := &scramAuth{username: "user", password: hide("pencil"), clientNonce: "rOprNGfwEbeRWgbNEkqO"}
	mech, first, err := a.Start(&ServerInfo{Name: "h", TLS: true, Auth: []string{"SCRAM-SHA-256"}})
	if err != nil || mech != "SCRAM-SHA-256" || string(first) != "n,,n=user,r=rOprNGfwEbeRWgbNEkqO" {
		t.Fatalf("Start = %q, %q, %v", mech, first, err)
	}
	final, err := a.Next([]byte("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), true)
	want := "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	if err != nil || string(final) != want {
		t.Fatalf("client-final = %q, %v; want %q", final, err, want)
	}
	if resp, err := a.Next([]byte("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="), true); err != nil || len(resp) != 0 {
		t.Fatalf("server-final: %q, %v", resp, err)
	}
	if _, err := a.Next([]byte("2.7.0 Authentication successful"), false); err != nil {
		t.Fatalf("235: %v", err)
	}
}

func TestScramSHA256RejectsBadServers(t *testing.T) {
	start := func() *scramAuth {
		a := &scramAuth{username: "user", password: hide("pencil"), clientNonce: "abc"}
		a.Start(&ServerInfo{TLS: true})
		return a
	}
	for name, serverFirst := range map[string]string{
		"nonce not extended":           "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"foreign nonce":                "r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"nonce shorter than ours":      "r=ab,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"ours inside another nonce":    "r=xabcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"ours with different case":     "r=ABCdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"empty nonce":                  "r=,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"no nonce":                     "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"low iterations":               "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
		"one below 4096 iterations":    "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095",
		"zero iterations":              "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
		"negative iterations":          "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-4096",
		"no iteration count":           "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==",
		"iteration count not a number": "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096x",
		"huge iterations":              "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999",
		"one above the ceiling":        "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=2097153",
		"bad salt":                     "r=abcdef,s=!!!,i=4096",
		"empty salt":                   "r=abcdef,s=,i=4096",
		"no salt":                      "r=abcdef,i=4096",
		"extension":                    "m=x,r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	} {
		if resp, err := start().Next([]byte(serverFirst), true); err == nil || resp != nil {
			t.Errorf("%s: accepted %q, answering %q", name, serverFirst, resp)
		}
	}
	// The least the guards let through: ours extended by one character,
	// exactly 4096 iterations.
	if _, err := start().Next([]byte("r=abcd,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), true); err != nil {
		t.Errorf("nonce extended by one character and 4096 iterations: %v", err)
	}
	// A server that cannot prove it knows the password.
	a := start()
	if _, err := a.Next([]byte("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Next([]byte("v=AAAA"), true); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("forged server signature accepted: %v", err)
	}
	// A server that says 235 without its signature.
	a = start()
	a.Next([]byte("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), true)
	if _, err := a.Next(nil, false); !errors.Is(err, errServerUnverified) {
		t.Errorf("success without server signature: %v", err)
	}
}

func TestPlainAndLoginGuards(t *testing.T) {
	for _, a := range []Auth{PlainAuth("", "u", "p", "mail.example.com"), LoginAuth("u", "p", "mail.example.com")} {
		if _, _, err := a.Start(&ServerInfo{Name: "mail.example.com", TLS: false}); !errors.Is(err, ErrPlaintextAuth) {
			t.Errorf("%v without TLS: %v", a, err)
		}
		if _, _, err := a.Start(&ServerInfo{Name: "localhost", TLS: false}); !errors.Is(err, ErrPlaintextAuth) {
			t.Errorf("%v on localhost without TLS: %v", a, err)
		}
		if _, _, err := a.Start(&ServerInfo{Name: "evil.example.com", TLS: true}); err == nil {
			t.Errorf("%v sent to another host", a)
		}
	}
	_, resp, err := PlainAuth("admin", "u", "p", "h").Start(&ServerInfo{Name: "h", TLS: true})
	if err != nil || string(resp) != "admin\x00u\x00p" {
		t.Errorf("PLAIN response %q, %v", resp, err)
	}
}

func TestCRAMMD5Vector(t *testing.T) {
	// RFC 2195 section 2.
	a := CRAMMD5Auth("tim", "tanstaaftanstaaf")
	resp, err := a.Next([]byte("<1896.697170952@postoffice.reston.mci.net>"), true)
	if err != nil || string(resp) != "tim b913a602c7eda7a495b4e6e7334d3890" {
		t.Errorf("CRAM-MD5 = %q, %v", resp, err)
	}
}

// TestScramSHA256ForgedSignature: a server-final message of the right
// length that is not the server signature of RFC 7677 section 3 is
// refused, and the 235 that follows it too.
func TestScramSHA256ForgedSignature(t *testing.T) {
	good, _ := base64.StdEncoding.DecodeString("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	for name, sig := range map[string][]byte{
		"genuine":            good,
		"first byte changed": flip(0),
		"last byte changed":  flip(len(good) - 1),
		"zeros":              make([]byte, len(good)),
		"another server key": hmacSum(sha256.New, hmacSum(sha256.New, []byte("another salted password"), "Server Key"), "auth message"),
	} {
		a := &scramAuth{username: "user", password: hide("pencil"), clientNonce: "rOprNGfwEbeRWgbNEkqO"}
		a.Start(&ServerInfo{Name: "h", TLS: true})
		if _, err := a.Next([]byte("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), true); err != nil {
			t.Fatal(err)
		}
		if len(sig) != len(good) {
			t.Fatalf("%s: %d bytes; the forgery must have the length of the real signature", name, len(sig))
		}
		_, err := a.Next([]byte("v="+base64.StdEncoding.EncodeToString(sig)), true)
		_, err235 := a.Next([]byte("2.7.0 Authentication successful"), false)
		if name == "genuine" {
			if err != nil || err235 != nil {
				t.Errorf("genuine signature: %v, then 235: %v", err, err235)
			}
			continue
		}
		if !errors.Is(err, errServerUnverified) || !strings.Contains(err.Error(), "signature") {
			t.Errorf("%s: server-final accepted: %v", name, err)
		}
		if !errors.Is(err235, errServerUnverified) {
			t.Errorf("%s: 235 after a forged signature: %v", name, err235)
		}
	}
}

// TestScramSHA256Saslname: "=" and "," in the username are escaped as
// "=3D" and "=2C" (RFC 5802 section 5.1), each once, and nothing else is.
func TestScramSHA256Saslname(t *testing.T) {
	for user, want := range map[string]string{
		"a,b=c":        "n,,n=a=2Cb=3Dc,r=nonce",
		"=,":           "n,,n==3D=2C,r=nonce",
		"=2C":          "n,,n==3D2C,r=nonce",
		"plain.user@x": "n,,n=plain.user@x,r=nonce",
	} {
		a := &scramAuth{username: user, password: hide("pencil"), clientNonce: "nonce"}
		if _, first, err := a.Start(&ServerInfo{Name: "h", TLS: true}); err != nil || string(first) != want {
			t.Errorf("user %q: client-first %q, %v; want %q", user, first, err, want)
		}
	}
}

// TestScramSHA256Nonce: the client nonce is random, different for every
// exchange, and long enough not to be guessed.
func TestScramSHA256Nonce(t *testing.T) {
	a := ScramSHA256Auth("user", "pencil")
	seen := map[string]bool{}
	for range 3 {
		_, first, err := a.Start(&ServerInfo{Name: "h", TLS: true})
		if err != nil {
			t.Fatal(err)
		}
		_, nonce, ok := strings.Cut(string(first), ",r=")
		if !ok || len(nonce) < 24 || strings.Contains(nonce, ",") || seen[nonce] {
			t.Fatalf("client-first %q", first)
		}
		seen[nonce] = true
	}
}

// scramServer returns options for a test server that offers only
// SCRAM-SHA-256 and runs the server side of RFC 5802 section 5 for
// username and password, written here from the RFC and independent of
// scramAuth. first, if not nil, replaces the server-first message, given
// the client's nonce; final, if not nil, replaces the reply to a
// client-final message whose proof verified, given the genuine server
// signature. A 334 reply is followed by 235 for an empty response and 501
// for "*". The server also checks that the client-first message names
// username in saslname form (RFC 5802 section 5.1) and answers 535 if not.
func scramServer(username, password string, first func(clientNonce string) string, final func(sig []byte) string) *smtptest.Options {
	const salt64, iter = "QSXCR+Q6sek8bf92", 4096
	salt, _ := base64.StdEncoding.DecodeString(salt64)
	var clientFirstBare, serverFirst string
	state := "" // "", "proof" (client-final expected) or "done" (empty response expected)
	return &smtptest.Options{AuthMechanisms: []string{"SCRAM-SHA-256"}, Handler: func(s *smtptest.Session, line string) bool {
		switch {
		case strings.HasPrefix(line, "AUTH SCRAM-SHA-256 "):
			msg, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "AUTH SCRAM-SHA-256 "))
			// Over TLS 1.3 the client can bind the channel but this server
			// offers no -PLUS mechanism, so RFC 5802 section 6 wants "y".
			bare, ok := strings.CutPrefix(string(msg), "y,,")
			name, nonce, _ := strings.Cut(strings.TrimPrefix(bare, "n="), ",r=")
			name = strings.NewReplacer("=2C", ",", "=3D", "=").Replace(name)
			if !ok || !strings.HasPrefix(bare, "n=") || name != username || nonce == "" {
				s.Reply("535 5.7.8 Authentication credentials invalid")
				return true
			}
			clientFirstBare = bare
			serverFirst = "r=" + nonce + "3rfcNHYJY1ZVvWVs7j,s=" + salt64 + ",i=" + strconv.Itoa(iter)
			if first != nil {
				serverFirst = first(nonce)
			}
			state = "proof"
			s.Reply("334 " + base64.StdEncoding.EncodeToString([]byte(serverFirst)))
		case state != "" && line == "*":
			state = ""
			s.Reply("501 5.7.0 Authentication aborted")
		case state == "proof":
			state = ""
			clientFinal, _ := base64.StdEncoding.DecodeString(line)
			withoutProof, proof64, _ := strings.Cut(string(clientFinal), ",p=")
			proof, _ := base64.StdEncoding.DecodeString(proof64)
			authMessage := clientFirstBare + "," + serverFirst + "," + withoutProof
			salted, _ := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
			mac := func(key []byte, msg string) []byte {
				m := hmac.New(sha256.New, key)
				m.Write([]byte(msg))
				return m.Sum(nil)
			}
			clientKey := mac(salted, "Client Key")
			storedKey := sha256.Sum256(clientKey)
			clientSig := mac(storedKey[:], authMessage)
			if len(proof) != len(clientSig) {
				s.Reply("535 5.7.8 Authentication credentials invalid")
				return true
			}
			for i := range proof {
				proof[i] ^= clientSig[i]
			}
			if got := sha256.Sum256(proof); got != storedKey || !strings.HasPrefix(serverFirst, "r=") ||
				withoutProof != "c=eSws,"+strings.SplitN(serverFirst, ",", 2)[0] {
				s.Reply("535 5.7.8 Authentication credentials invalid")
				return true
			}
			sig := mac(mac(salted, "Server Key"), authMessage)
			reply := "334 " + base64.StdEncoding.EncodeToString([]byte("v="+base64.StdEncoding.EncodeToString(sig)))
			if final != nil {
				reply = final(sig)
			}
			if strings.HasPrefix(reply, "334 ") {
				state = "done"
			}
			s.Reply(reply)
		case state == "done":
			state = ""
			if line != "" {
				s.Reply("501 5.5.2 Expected an empty response")
			} else {
				s.Reply("235 2.7.0 Authentication successful")
			}
		default:
			return false
		}
		return true
	}}
}

// TestScramSHA256Client runs SCRAM-SHA-256 through Client.Auth against
// genuine and hostile servers. A server that cannot prove it knows the
// password is not the server the password is for, so the Client must
// refuse it, hang up and send nothing more: no envelope, no message.
func TestScramSHA256Client(t *testing.T) {
	const user, pass = "a,b=c", "Sc1entia-potentia-est"
	const mail = "tls: MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8"
	forged := func(sig []byte) string {
		f := bytes.Clone(sig)
		f[len(f)/2] ^= 0x80
		return "334 " + b64("v="+base64.StdEncoding.EncodeToString(f))
	}
	for _, tc := range []struct {
		name  string
		first func(clientNonce string) string
		final func(sig []byte) string
		ok    bool // Auth succeeds
		// closes is whether the Client must have hung up when Auth
		// returns; then Mail must fail and send nothing.
		closes bool
		// proof is whether the client-final message is sent; after is
		// what the server must receive after it (or after the AUTH
		// command, without one), Mail included.
		proof    bool
		after    []string
		contains string
	}{
		{name: "genuine server", ok: true, proof: true, after: []string{"tls: ", mail}},
		{name: "forged signature", final: forged, closes: true, proof: true, contains: "signature"},
		{name: "235 without a signature", final: func([]byte) string { return "235 2.7.0 Authentication successful" },
			closes: true, proof: true, contains: "signature"},
		{name: "server error", final: func([]byte) string { return "334 " + b64("e=other-error") },
			proof: true, after: []string{"tls: *", mail}, contains: "other-error"},
		{name: "nonce not extending ours", first: func(n string) string { return "r=x" + n + ",s=QSXCR+Q6sek8bf92,i=4096" },
			after: []string{"tls: *", mail}, contains: "nonce"},
		{name: "4095 iterations", first: func(n string) string { return "r=" + n + "x,s=QSXCR+Q6sek8bf92,i=4095" },
			after: []string{"tls: *", mail}, contains: "iteration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, scramServer(user, pass, tc.first, tc.final))
			c, err := testDialer(srv, ImplicitTLS).Dial(srv.ImplicitAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Auth(ScramSHA256Auth(user, pass))
			if tc.ok != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("Auth: %v", err)
			}
			if err := c.Mail("a@example.com"); tc.closes == (err == nil) {
				t.Errorf("Mail after Auth: %v", err)
			}
			if tc.closes {
				// The server's session ends only when the client hangs up.
				if err := srv.WaitIdle(2 * time.Second); err != nil {
					t.Errorf("connection still open after Auth failed: %v", err)
				}
			}
			c.Close()
			got := transcript(t, srv)
			if len(got) < 2 || got[0] != "tls: EHLO localhost" || !strings.HasPrefix(got[1], "tls: AUTH SCRAM-SHA-256 ") {
				t.Fatalf("server received %q", got)
			}
			first, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(got[1], "tls: AUTH SCRAM-SHA-256 "))
			if nonce, ok := strings.CutPrefix(string(first), "y,,n=a=2Cb=3Dc,r="); !ok || len(nonce) < 24 || strings.Contains(nonce, ",") {
				t.Errorf("client-first message %q", first)
			}
			rest := got[2:]
			if tc.proof {
				var final []byte
				if len(rest) > 0 {
					final, _ = base64.StdEncoding.DecodeString(strings.TrimPrefix(rest[0], "tls: "))
					rest = rest[1:]
				}
				if !strings.HasPrefix(string(final), "c=eSws,r=") || !strings.Contains(string(final), ",p=") {
					t.Errorf("client-final message %q", final)
				}
			}
			if !slices.Equal(rest, tc.after) {
				t.Errorf("server received %q; want %q after the AUTH exchange", got, tc.after)
			}
		})
	}
}

// scriptedAuth is a server offering mechs whose AUTH exchange is
// scripted: the first reply answers the AUTH command, each next one the
// client's next line, each made from that line. Once the script is over,
// lines get the server's default handling.
func scriptedAuth(mechs []string, replies ...func(line string) string) *smtptest.Options {
	// Why a mutex: the hook runs on the connection's goroutine.
	var mu sync.Mutex
	next := -1
	return &smtptest.Options{AuthMechanisms: mechs, Handler: func(s *smtptest.Session, line string) bool {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasPrefix(line, "AUTH ") {
			next = 0
		}
		if next < 0 {
			return false
		}
		s.Reply(replies[next](line))
		if next++; next == len(replies) {
			next = -1
		}
		return true
	}}
}

// fixed is a scripted reply that does not depend on the client's line.
func fixed(reply string) func(string) string { return func(string) string { return reply } }

// TestAuthCommand checks how the AUTH line carries the initial response
// (RFC 4954 section 4): none, "=" for an empty one, base64 on the line,
// and, when the line would pass 512 octets with CRLF (RFC 5321 section
// 4.5.3.1.4), not on the line but pending for the first challenge.
func TestAuthCommand(t *testing.T) {
	// "AUTH XOAUTH2 " is 13 octets: 372 bytes encode to 496, a line of
	// 509; 375 bytes encode to 500, a line of 513.
	fits, over := bytes.Repeat([]byte("x"), 372), bytes.Repeat([]byte("x"), 375)
	for _, tc := range []struct {
		name, mech    string
		resp          []byte
		line, enc     string
		pending       []byte
		wantPendingOK bool
	}{
		{"no initial response", "LOGIN", nil, "AUTH LOGIN", "", nil, false},
		{"empty initial response", "EXTERNAL", []byte{}, "AUTH EXTERNAL =", "", nil, false},
		{"short", "PLAIN", []byte("\x00u\x00p"), "AUTH PLAIN AHUAcA==", "AHUAcA==", nil, false},
		{"longest that fits", "XOAUTH2", fits, "AUTH XOAUTH2 " + base64.StdEncoding.EncodeToString(fits), base64.StdEncoding.EncodeToString(fits), nil, false},
		{"too long", "XOAUTH2", over, "AUTH XOAUTH2", "", over, true},
	} {
		line, enc, pending := authCommand(tc.mech, tc.resp)
		if line != tc.line || enc != tc.enc || !bytes.Equal(pending, tc.pending) || (pending != nil) != tc.wantPendingOK {
			t.Errorf("%s: authCommand = %q, %q, %q; want %q, %q, %q", tc.name, line, enc, pending, tc.line, tc.enc, tc.pending)
		}
		if len(line)+2 > 512 {
			t.Errorf("%s: a line of %d octets with CRLF", tc.name, len(line)+2)
		}
	}
}

// TestOAuthErrorWithholdsToken: a server that quotes the refused token in
// the status, scope and schemes of its JSON gets an *OAuthError with the
// token withheld from each field, so that neither Error, %+v, %#v nor
// encoding/json shows it.
func TestOAuthErrorWithholdsToken(t *testing.T) {
	const tok = "ya29.Tok3n-Secret-XYZ"
	status := `{"status":"invalid_token ` + tok + `","scope":"https://mail.example/ ` + tok + `","schemes":"bearer ` + tok + `"}`
	srv := smtptest.NewServer(t, scriptedAuth([]string{"XOAUTH2"},
		fixed("334 "+b64(status)),
		fixed("535 5.7.8 Username and Password not accepted")))
	c := dialerClient(t, srv)
	err := c.Auth(XOAuth2Auth("jdoe", StaticToken(tok), "127.0.0.1"))
	var oe *OAuthError
	if !errors.As(err, &oe) {
		t.Fatalf("Auth = %v; want an *OAuthError", err)
	}
	for _, f := range []struct{ name, got, want string }{
		{"Status", oe.Status, "invalid_token [withheld]"},
		{"Scope", oe.Scope, "https://mail.example/ [withheld]"},
		{"Schemes", oe.Schemes, "bearer [withheld]"},
	} {
		if f.got != f.want {
			t.Errorf("OAuthError.%s = %q; want %q", f.name, f.got, f.want)
		}
	}
	if want := `tlsmail: AUTH XOAUTH2: the server refused the token (status "invalid_token [withheld]", scope "https://mail.example/ [withheld]"): AUTH: server replied 535 5.7.8 Username and Password not accepted`; err.Error() != want {
		t.Errorf("error %q; want %q", err, want)
	}
	j, _ := json.Marshal(oe)
	for _, out := range []string{err.Error(), fmt.Sprintf("%+v", oe), fmt.Sprintf("%#v", *oe), string(j)} {
		for _, r := range secretRuns(tok) {
			if strings.Contains(out, r) {
				t.Errorf("the error shows %q: %s", r, out)
				break
			}
		}
	}
}

// TestAcceptedBeforeCredentials: a server that answers 235 to an AUTH
// command whose initial response was held back for being too long has
// accepted credentials it never saw. The Client refuses the session and
// never sends the token.
func TestAcceptedBeforeCredentials(t *testing.T) {
	long := "tok-" + strings.Repeat("t", 600)
	srv := smtptest.NewServer(t, scriptedAuth([]string{"XOAUTH2"}, fixed("235 2.7.0 Accepted")))
	c := dialerClient(t, srv)
	err := c.Auth(XOAuth2Auth("jdoe", StaticToken(long), "127.0.0.1"))
	if want := "tlsmail: AUTH XOAUTH2: the server accepted, yet the mechanism failed: server accepted before the credentials were sent"; err == nil || err.Error() != want {
		t.Fatalf("Auth = %v; want %q", err, want)
	}
	if err := c.Noop(); err == nil {
		t.Error("the session went on after a 235 to no credentials")
	}
	c.Close()
	for _, l := range transcript(t, srv) {
		if strings.Contains(l, b64("user=jdoe\x01auth=Bearer tok-")[:20]) {
			t.Errorf("the token was sent: %.80q", l)
		}
	}
}

// TestScramServerErrorWithheld: the text of a SCRAM server-final error
// (e=, RFC 5802 section 7) goes through the session's redactor, so a
// server that quotes the password gets it withheld from the error.
func TestScramServerErrorWithheld(t *testing.T) {
	const pass = "Scr4m-Pass-Quoted"
	srv := smtptest.NewServer(t, scriptedAuth([]string{"SCRAM-SHA-256"},
		func(line string) string {
			first, _ := base64.StdEncoding.DecodeString(strings.Fields(line)[2])
			_, nonce, _ := strings.Cut(string(first), ",r=")
			return "334 " + b64("r="+nonce+"srv,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
		},
		fixed("334 "+b64("e=invalid-proof: expected "+pass)),
		fixed("501 5.7.0 Authentication aborted")))
	c := dialerClient(t, srv)
	err := c.Auth(ScramSHA256Auth("jdoe", pass))
	if want := `tlsmail: AUTH SCRAM-SHA-256: SCRAM-SHA-256: server error "invalid-proof: expected [withheld]"`; err == nil || err.Error() != want {
		t.Fatalf("Auth = %v; want %q", err, want)
	}
	// The "*" was answered, and the session goes on.
	if err := c.Noop(); err != nil {
		t.Errorf("Noop after the server's error: %v", err)
	}
}

// TestScramIterationLimits checks the iteration counts a server may ask
// for: at least minScramIterations (RFC 7677 section 4), at most
// maxScramIterations, refused before any hashing otherwise.
func TestScramIterationLimits(t *testing.T) {
	for _, tc := range []struct{ iter, want string }{
		{"4095", "SCRAM-SHA-256: the server asks for 4095 iterations, fewer than the minimum of 4096 (RFC 7677 section 4)"},
		{"2097153", "SCRAM-SHA-256: the server asks for 2097153 iterations, more than the limit of 2097152"},
		{"4000000000", "SCRAM-SHA-256: the server asks for 4000000000 iterations, more than the limit of 2097152"},
		{"99999999999999999999", `SCRAM-SHA-256: unacceptable iteration count "99999999999999999999"`},
		{"4096x", `SCRAM-SHA-256: unacceptable iteration count "4096x"`},
	} {
		a := &scramAuth{username: "user", password: hide("pencil"), clientNonce: "abc"}
		a.Start(&ServerInfo{TLS: true})
		start := time.Now()
		_, err := a.Next([]byte("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i="+tc.iter), true)
		if err == nil || err.Error() != tc.want {
			t.Errorf("i=%s: %v; want %q", tc.iter, err, tc.want)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("i=%s: refused after %v, as if hashing first", tc.iter, d)
		}
	}
}

package tlsmail

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// TestScramSHA1Vector runs the exchange of RFC 5802 section 5.
func TestScramSHA1Vector(t *testing.T) {
	a := &scramAuth{username: "user", password: hide("pencil"), hashName: "SHA-1", clientNonce: "fyko+d2lbbFgONRv9qkxdawL"}
	mech, first, err := a.Start(&ServerInfo{Name: "h", TLS: true})
	if err != nil || mech != "SCRAM-SHA-1" || string(first) != "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL" {
		t.Fatalf("Start = %q, %q, %v", mech, first, err)
	}
	final, err := a.Next([]byte("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"), true)
	if want := "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="; err != nil || string(final) != want {
		t.Fatalf("client-final = %q, %v; want %q", final, err, want)
	}
	if _, err := a.Next([]byte("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="), true); err != nil {
		t.Fatalf("server-final: %v", err)
	}
	if _, err := a.Next([]byte("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="), false); err != nil {
		t.Fatalf("235: %v", err)
	}
}

// TestSASLPrep runs the examples of RFC 4013 section 3, except the two
// that need NFKC, which are used as given (documented).
func TestSASLPrep(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"I\u00adX", "IX", ""},
		{"user", "user", ""},
		{"USER", "USER", ""},
		{"a\u00a0b", "a b", ""},               // non-ASCII space mapped to SPACE
		{"\u00aa", "\u00aa", ""},              // NFKC would give "a": not applied
		{"\u2168", "\u2168", ""},              // NFKC would give "IX": not applied
		{"\u0007", "", "U+0007"},              // prohibited
		{"a\ue000", "", "U+E000"},             // private use
		{"\u0627\u0031", "", "right-to-left"}, // bidi
		{"\u05d0b\u05d0", "", "mixes"},
		{"\u05d0\u05d1", "\u05d0\u05d1", ""},
	} {
		got, err := saslPrep(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("saslPrep(%+q) = %+q, %v; want %+q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// mechServer is a test server offering mechs, with a user "jdoe" whose
// password is "s3cret-pass" and a token "good-token" for "jdoe".
func mechServer(t *testing.T, mechs ...string) *smtptest.Server {
	return smtptest.NewServer(t, &smtptest.Options{
		AuthMechanisms: mechs,
		Users:          map[string]string{"jdoe": "s3cret-pass"},
		Tokens:         map[string]string{"good-token": "jdoe"},
	})
}

// TestMechanismsAgainstTheServer logs in with every mechanism against a
// server that verifies each for real, and sends a message, so that the
// server records who logged in and how.
func TestMechanismsAgainstTheServer(t *testing.T) {
	all := []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "XOAUTH2", "OAUTHBEARER"}
	tok := StaticToken("good-token")
	for _, tc := range []struct {
		name  string
		mechs []string
		auth  Auth
		want  string
	}{
		{"PLAIN", all, PlainAuth("", "jdoe", "s3cret-pass", "127.0.0.1"), "PLAIN"},
		{"SCRAM-SHA-1", all, ScramSHA1Auth("jdoe", "s3cret-pass"), "SCRAM-SHA-1"},
		{"SCRAM-SHA-256", all, ScramSHA256Auth("jdoe", "s3cret-pass"), "SCRAM-SHA-256"},
		{"SCRAM-SHA-256-PLUS", all, ScramSHA256PlusAuth("jdoe", "s3cret-pass"), "SCRAM-SHA-256-PLUS"},
		{"XOAUTH2", all, XOAuth2Auth("jdoe", tok, "127.0.0.1"), "XOAUTH2"},
		{"OAUTHBEARER", all, OAuthBearerAuth("jdoe", tok, "127.0.0.1"), "OAUTHBEARER"},
		{"OAuth2Auth prefers OAUTHBEARER", all, OAuth2Auth("jdoe", tok, "127.0.0.1"), "OAUTHBEARER"},
		{"OAuth2Auth with XOAUTH2 only", []string{"PLAIN", "XOAUTH2"}, OAuth2Auth("jdoe", tok, "127.0.0.1"), "XOAUTH2"},
		{"PasswordAuth: SCRAM-PLUS first", all, PasswordAuth("jdoe", "s3cret-pass", "127.0.0.1"), "SCRAM-SHA-256-PLUS"},
		{"PasswordAuth: SCRAM-SHA-1-PLUS", []string{"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256"}, PasswordAuth("jdoe", "s3cret-pass", "127.0.0.1"), "SCRAM-SHA-1-PLUS"},
		{"PasswordAuth: SCRAM-SHA-256", []string{"PLAIN", "LOGIN", "SCRAM-SHA-1", "SCRAM-SHA-256"}, PasswordAuth("jdoe", "s3cret-pass", "127.0.0.1"), "SCRAM-SHA-256"},
		{"PasswordAuth: SCRAM-SHA-1", []string{"PLAIN", "SCRAM-SHA-1"}, PasswordAuth("jdoe", "s3cret-pass", "127.0.0.1"), "SCRAM-SHA-1"},
		{"PasswordAuth: PLAIN before LOGIN and CRAM-MD5", []string{"CRAM-MD5", "LOGIN", "PLAIN"}, PasswordAuth("jdoe", "s3cret-pass", "127.0.0.1"), "PLAIN"},
		{"PasswordAuth: LOGIN before CRAM-MD5", []string{"CRAM-MD5", "LOGIN"}, PasswordAuth("jdoe", "s3cret-pass", "127.0.0.1"), "LOGIN"},
		{"PasswordAuth: CRAM-MD5 alone", []string{"CRAM-MD5"}, PasswordAuth("jdoe", "s3cret-pass", "127.0.0.1"), "CRAM-MD5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := mechServer(t, tc.mechs...)
			c := dialerClient(t, srv)
			if err := c.Auth(tc.auth); err != nil {
				t.Fatalf("Auth: %v", err)
			}
			if got := c.AuthMechanism(); got != tc.want {
				t.Errorf("AuthMechanism() = %q; want %q", got, tc.want)
			}
			sendOne(t, c, "jdoe@example.com", []string{"b@example.com"}, "x")
			c.Quit()
			srv.WaitIdle(2e9)
			m := srv.Messages()
			if len(m) != 1 || m[0].AuthUser != "jdoe" || m[0].AuthMechanism != tc.want {
				t.Fatalf("server recorded %+v", m)
			}
		})
	}
}

// TestAuthWrongSecrets checks that a wrong password or token fails with
// the server's reply, for every mechanism, and never shows the secret.
func TestAuthWrongSecrets(t *testing.T) {
	for _, a := range []Auth{
		ScramSHA1Auth("jdoe", "wrong-pass-1"), ScramSHA256Auth("jdoe", "wrong-pass-1"),
		ScramSHA256PlusAuth("jdoe", "wrong-pass-1"), PasswordAuth("jdoe", "wrong-pass-1", "127.0.0.1"),
	} {
		srv := mechServer(t, "PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")
		c := dialerClient(t, srv)
		err := c.Auth(a)
		var e *Error
		if !errors.As(err, &e) || e.Code != 535 {
			t.Errorf("%v: Auth = %v; want 535", a, err)
		}
		if err != nil && strings.Contains(err.Error(), "wrong-pass") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// TestOAuthRefusedToken checks the OAuth error exchange: the client
// answers the JSON challenge as each mechanism requires, and the error
// carries the server's status and scope, never the token.
func TestOAuthRefusedToken(t *testing.T) {
	for _, tc := range []struct {
		auth          Auth
		mech, dummy   string
		status, scope string
	}{
		{XOAuth2Auth("jdoe", StaticToken("bad-token-123"), "127.0.0.1"), "XOAUTH2", "tls: ", "401", "https://mail.google.com/"},
		{OAuthBearerAuth("jdoe", StaticToken("bad-token-123"), "127.0.0.1"), "OAUTHBEARER", "tls: AQ==", "invalid_token", "https://mail.example/"},
	} {
		srv := mechServer(t, "XOAUTH2", "OAUTHBEARER")
		c := dialerClient(t, srv)
		err := c.Auth(tc.auth)
		var oe *OAuthError
		if !errors.As(err, &oe) || oe.Mechanism != tc.mech || oe.Status != tc.status || oe.Scope != tc.scope || oe.Reply == nil || oe.Reply.Code != 535 {
			t.Fatalf("%s: Auth = %#v; want *OAuthError %s %s", tc.mech, err, tc.status, tc.scope)
		}
		if !strings.Contains(err.Error(), tc.status) || !strings.Contains(err.Error(), tc.scope) {
			t.Errorf("error %q lacks status or scope", err)
		}
		if strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, err), "bad-token") {
			t.Errorf("error shows the token: %v", err)
		}
		// The session goes on: the refusal was an ordinary reply.
		if err := c.Noop(); err != nil {
			t.Errorf("Noop after refused token: %v", err)
		}
		c.Quit()
		got := transcript(t, srv)
		if len(got) != 5 || !strings.HasPrefix(got[1], "tls: AUTH "+tc.mech+" ") || got[2] != tc.dummy || got[3] != "tls: NOOP" {
			t.Errorf("%s: server received %q; want EHLO, AUTH with the response, %q, NOOP, QUIT", tc.mech, got, tc.dummy)
		}
	}
}

// TestTokenSourcePerConnection checks that a reused Auth asks its
// TokenSource for a token on every connection.
func TestTokenSourcePerConnection(t *testing.T) {
	var calls atomic.Int32
	src := func() (string, error) { calls.Add(1); return "good-token", nil }
	a := XOAuth2Auth("jdoe", src, "127.0.0.1")
	srv := mechServer(t, "XOAUTH2")
	d := testDialer(srv, ImplicitTLS)
	for i := 0; i < 3; i++ {
		if err := d.SendMail(srv.ImplicitAddr, a, "jdoe@example.com", []string{"b@example.com"}, []byte(testMsg)); err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("TokenSource called %d times for 3 connections", n)
	}
	failing := XOAuth2Auth("jdoe", func() (string, error) { return "", errors.New("refresh failed") }, "127.0.0.1")
	err := d.SendMail(srv.ImplicitAddr, failing, "jdoe@example.com", []string{"b@example.com"}, []byte(testMsg))
	if err == nil || !strings.Contains(err.Error(), "refresh failed") {
		t.Errorf("SendMail with a failing TokenSource = %v", err)
	}
}

// TestLongInitialResponse checks RFC 4954 section 4: an initial response
// that would make the AUTH line longer than 512 octets is sent after an
// empty challenge instead.
func TestLongInitialResponse(t *testing.T) {
	long := strings.Repeat("t", 600)
	srv := smtptest.NewServer(t, &smtptest.Options{AuthMechanisms: []string{"XOAUTH2"}, Tokens: map[string]string{long: "jdoe"}})
	c := dialerClient(t, srv)
	if err := c.Auth(XOAuth2Auth("jdoe", StaticToken(long), "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	got := transcript(t, srv)
	if len(got) != 4 || got[1] != "tls: AUTH XOAUTH2" || len(got[2]) < 800 {
		t.Errorf("server received %.200q", got)
	}
	for _, l := range got {
		if len(l) > 512 && strings.HasPrefix(l, "tls: AUTH") {
			t.Errorf("AUTH line of %d octets", len(l))
		}
	}
}

// TestChannelBindingRequired checks that -PLUS never runs without the
// binding: on a connection that cannot provide it, SCRAM-SHA-256-PLUS
// fails, and PasswordAuth refuses a server that offers only -PLUS.
func TestChannelBindingRequired(t *testing.T) {
	// No TLS state: the binding is impossible.
	a := ScramSHA256PlusAuth("jdoe", "pw").(*scramAuth).session(nil)
	if _, _, err := a.Start(&ServerInfo{Name: "h", TLS: true, Auth: []string{"SCRAM-SHA-256-PLUS"}}); err == nil || !strings.Contains(err.Error(), "channel binding") {
		t.Errorf("SCRAM-SHA-256-PLUS without a binding: %v", err)
	}
	p := PasswordAuth("jdoe", "pw", "h").(*passwordAuth).session(nil)
	_, _, err := p.Start(&ServerInfo{Name: "h", TLS: true, Auth: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"}})
	if err == nil || !strings.Contains(err.Error(), "only SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS") {
		t.Errorf("PasswordAuth against -PLUS only without a binding: %v", err)
	}
	// With PLAIN also offered, PasswordAuth may use it.
	p = PasswordAuth("jdoe", "pw", "h").(*passwordAuth).session(nil)
	if mech, _, err := p.Start(&ServerInfo{Name: "h", TLS: true, Auth: []string{"SCRAM-SHA-256-PLUS", "PLAIN"}}); err != nil || mech != "PLAIN" {
		t.Errorf("PasswordAuth = %q, %v; want PLAIN", mech, err)
	}
	// The "y" flag: the client could bind, the server offered no -PLUS
	// (RFC 5802 section 6); "n" when the server did offer it.
	srv := mechServer(t, "SCRAM-SHA-256")
	c := dialerClient(t, srv)
	st, _ := c.TLSConnectionState()
	s := ScramSHA256Auth("jdoe", "pw").(*scramAuth).session(&st)
	if _, first, _ := s.Start(&ServerInfo{Auth: []string{"SCRAM-SHA-256"}}); !strings.HasPrefix(string(first), "y,,") {
		t.Errorf("client-first %q; want the y flag", first)
	}
	s = ScramSHA256Auth("jdoe", "pw").(*scramAuth).session(&st)
	if _, first, _ := s.Start(&ServerInfo{Auth: []string{"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"}}); !strings.HasPrefix(string(first), "n,,") {
		t.Errorf("client-first %q; want the n flag", first)
	}
	if st.Version != tls.VersionTLS13 {
		t.Errorf("test server negotiated %x; the binding tests assume TLS 1.3", st.Version)
	}
}

// TestPasswordAuthOnlyToItsHost checks that the automatic choice keeps
// PlainAuth's host binding for every mechanism, SCRAM included.
func TestPasswordAuthOnlyToItsHost(t *testing.T) {
	srv := mechServer(t, "SCRAM-SHA-256", "PLAIN")
	c := dialerClient(t, srv)
	if err := c.Auth(PasswordAuth("jdoe", "s3cret-pass", "smtp.elsewhere.example")); err == nil {
		t.Fatal("PasswordAuth authenticated to another host")
	}
	c.Quit()
	if got := transcript(t, srv); len(got) != 2 || got[1] != "tls: QUIT" {
		t.Errorf("server received %q; want no AUTH", got)
	}
}

// TestOAuthBearerInitialResponse checks the exact client response of RFC
// 7628 section 3.1 (the section 4.1 example without the optional port).
func TestOAuthBearerInitialResponse(t *testing.T) {
	a := OAuthBearerAuth("user@example.com", StaticToken("vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="), "server.example.com")
	mech, resp, err := a.Start(&ServerInfo{Name: "server.example.com", TLS: true, Auth: []string{"OAUTHBEARER"}})
	want := "n,a=user@example.com,\x01host=server.example.com\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
	if err != nil || mech != "OAUTHBEARER" || string(resp) != want {
		t.Errorf("Start = %q, %q, %v; want %q", mech, resp, err, want)
	}
	a = XOAuth2Auth("someuser@example.com", StaticToken("ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg"), "smtp.gmail.com")
	_, resp, err = a.Start(&ServerInfo{Name: "smtp.gmail.com", TLS: true})
	// Google's documented XOAUTH2 format.
	if want := "user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg\x01\x01"; err != nil || string(resp) != want {
		t.Errorf("XOAUTH2 response %q, %v; want %q", resp, err, want)
	}
	if _, _, err := a.Start(&ServerInfo{Name: "evil.example", TLS: true}); err == nil {
		t.Error("XOAUTH2 token sent to another host")
	}
}

// TestScramPlusOnTLS12 checks the binding on TLS 1.2, which crypto/tls
// negotiates with extended master secret, so tls-exporter is allowed
// (RFC 9266 section 4.2).
func TestScramPlusOnTLS12(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{MaxTLSVersion: tls.VersionTLS12,
		AuthMechanisms: []string{"SCRAM-SHA-256-PLUS"}, Users: map[string]string{"jdoe": "s3cret-pass"}})
	c := dialerClient(t, srv)
	if st, _ := c.TLSConnectionState(); st.Version != tls.VersionTLS12 {
		t.Fatalf("negotiated %x", st.Version)
	}
	if err := c.Auth(PasswordAuth("jdoe", "s3cret-pass", "127.0.0.1")); err != nil || c.AuthMechanism() != "SCRAM-SHA-256-PLUS" {
		t.Fatalf("Auth = %v, mechanism %q", err, c.AuthMechanism())
	}
}

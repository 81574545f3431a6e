package integration

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
)

// The mechanisms that pick themselves and the token mechanisms, against
// Dovecot 2.3 behind Postfix. SCRAM-SHA-1 and SCRAM-SHA-256 with each TLS
// mode are in TestAuthMechanisms and TestWrongPassword.

// TestPasswordAuthChoosesSCRAM: Dovecot 2.3 offers SCRAM-SHA-1 and
// SCRAM-SHA-256 but no -PLUS variant (channel binding came with Dovecot
// 2.4), so PasswordAuth must pick SCRAM-SHA-256, and Postfix must log it.
func TestPasswordAuthChoosesSCRAM(t *testing.T) {
	s := needServer(t)
	for _, mode := range []tlsmail.Mode{tlsmail.ImplicitTLS, tlsmail.STARTTLS} {
		t.Run(mode.String(), func(t *testing.T) {
			addr := s.ImplicitAddr
			if mode == tlsmail.STARTTLS {
				addr = s.STARTTLSAddr
			}
			var rec portRecorder
			d := tlsmail.Dialer{Mode: mode, NetDialContext: rec.dial}
			off := s.logOffset(t)
			ctx := testContext(t, time.Minute)
			c, err := d.DialContext(ctx, addr)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if _, mechs := c.Extension("AUTH"); strings.Contains(mechs, "-PLUS") {
				t.Logf("the server now offers %q; the expected choice below may need updating", mechs)
			}
			if err := c.Auth(tlsmail.PasswordAuth(s.User, s.Password, host(t, addr))); err != nil {
				t.Fatalf("Auth: %v", err)
			}
			if got := c.AuthMechanism(); got != "SCRAM-SHA-256" {
				t.Errorf("AuthMechanism() = %q, want SCRAM-SHA-256", got)
			}
			rcpt := s.Rcpts[0]
			id, msg := newMessage(t, s, []string{rcpt}, "PasswordAuth over "+mode.String(), "PasswordAuth chose a mechanism.")
			if _, err := c.Send(ctx, &tlsmail.Message{From: s.User, To: []string{rcpt}, Body: strings.NewReader(string(msg))}); err != nil {
				t.Fatalf("Send: %v", err)
			}
			if err := c.Quit(); err != nil {
				t.Errorf("Quit: %v", err)
			}
			sess := s.session(t, off, rec.only(t))
			qid := sess.checkAccepted(t, "SCRAM-SHA-256", mode == tlsmail.STARTTLS)
			if h := s.checkDelivered(t, rcpt, id, msg, false); h.QueueID != qid {
				t.Errorf("stored message has queue id %s, the session queued %s", h.QueueID, qid)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// OAuth 2.0: Dovecot's oauth2 passdb asks a token introspection endpoint
// (RFC 7662) whether a token is good. start.sh fixed its address in
// Dovecot's configuration (TLSMAIL_OAUTH_PORT); the tests serve it.
// ---------------------------------------------------------------------------

// introspector is the token introspection endpoint Dovecot asks.
type introspector struct {
	good map[string]string // token -> user name

	mu     sync.Mutex
	asked  []string // tokens Dovecot asked about, in order
	faults []string // requests not in the form start.sh configured
}

// serveIntrospection listens on the port Dovecot was configured with until
// the test ends. Dovecot POSTs "token=..." (introspection_mode = post); the
// answer is {"active":true,"username":USER} for a good token and
// {"active":false} for any other, as RFC 7662 section 2.2 says.
func (s *server) serveIntrospection(t *testing.T, good map[string]string) *introspector {
	t.Helper()
	if s.OAuthPort == "" {
		t.Fatalf("the env file has no TLSMAIL_OAUTH_PORT: the server was started by an older start.sh; restart it")
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", s.OAuthPort))
	if err != nil {
		t.Fatalf("cannot serve token introspection on the port Dovecot expects: %v", err)
	}
	in := &introspector{good: good}
	hs := &http.Server{Handler: in, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return in
}

func (in *introspector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/introspect" {
		in.faults = append(in.faults, r.Method+" "+r.URL.Path)
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if err := r.ParseForm(); err != nil {
		in.faults = append(in.faults, "bad form: "+err.Error())
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	tok := r.PostForm.Get("token")
	in.asked = append(in.asked, tok)
	resp := map[string]any{"active": false}
	if user, ok := in.good[tok]; ok {
		resp = map[string]any{"active": true, "username": user, "scope": "mail"}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// check fails the test unless Dovecot asked about exactly these tokens in
// well-formed requests.
func (in *introspector) check(t *testing.T, want ...string) {
	t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.faults) > 0 {
		t.Errorf("unexpected introspection requests: %q", in.faults)
	}
	if strings.Join(in.asked, "\n") != strings.Join(want, "\n") {
		t.Errorf("Dovecot asked about %d tokens, want %d (the expected ones in order)", len(in.asked), len(want))
	}
	in.asked = nil
}

// newToken returns a random access token.
func newToken(prefix string) string {
	b := make([]byte, 18)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// TestOAuth logs in with XOAUTH2, OAUTHBEARER and OAuth2Auth's own choice,
// over each TLS mode, and delivers.
func TestOAuth(t *testing.T) {
	s := needServer(t)
	tok := newToken("good-")
	in := s.serveIntrospection(t, map[string]string{tok: s.User})
	for _, mode := range []tlsmail.Mode{tlsmail.ImplicitTLS, tlsmail.STARTTLS} {
		addr := s.ImplicitAddr
		if mode == tlsmail.STARTTLS {
			addr = s.STARTTLSAddr
		}
		h := host(t, addr)
		for _, mech := range []struct {
			name, want string // the test's name, the mechanism on the wire
			auth       tlsmail.Auth
		}{
			{"XOAUTH2", "XOAUTH2", tlsmail.XOAuth2Auth(s.User, tlsmail.StaticToken(tok), h)},
			{"OAUTHBEARER", "OAUTHBEARER", tlsmail.OAuthBearerAuth(s.User, tlsmail.StaticToken(tok), h)},
			// Both are offered: OAuth2Auth prefers the standard one.
			{"OAuth2Auth", "OAUTHBEARER", tlsmail.OAuth2Auth(s.User, tlsmail.StaticToken(tok), h)},
		} {
			t.Run(mode.String()+"/"+mech.name, func(t *testing.T) {
				rcpt := s.Rcpts[1]
				id, msg := newMessage(t, s, []string{rcpt}, "AUTH "+mech.name+" over "+mode.String(), "Authenticated with a token.")
				var rec portRecorder
				d := tlsmail.Dialer{Mode: mode, NetDialContext: rec.dial}
				off := s.logOffset(t)
				ctx := testContext(t, time.Minute)
				c, err := d.DialContext(ctx, addr)
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				if err := c.Auth(mech.auth); err != nil {
					t.Fatalf("Auth: %v", err)
				}
				if got := c.AuthMechanism(); got != mech.want {
					t.Errorf("AuthMechanism() = %q, want %s", got, mech.want)
				}
				res, err := c.Send(ctx, &tlsmail.Message{From: s.User, To: []string{rcpt}, Body: strings.NewReader(string(msg))})
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if err := c.Quit(); err != nil {
					t.Errorf("Quit: %v", err)
				}
				sess := s.session(t, off, rec.only(t))
				qid := sess.checkAccepted(t, mech.want, mode == tlsmail.STARTTLS)
				if res.Reply == nil || !strings.Contains(res.Reply.Message, "queued as "+qid) {
					t.Errorf("Result.Reply = %+v, want one that says \"queued as %s\"", res.Reply, qid)
				}
				if h := s.checkDelivered(t, rcpt, id, msg, false); h.QueueID != qid {
					t.Errorf("stored message has queue id %s, the session queued %s", h.QueueID, qid)
				}
				in.check(t, tok)
			})
		}
	}
}

// TestOAuthBadToken: Dovecot asks the endpoint, which says the token is not
// active. The login must fail with the server's refusal, never showing the
// token, without delay (auth_failure_delay = 0, no anvil auth penalty) and
// with nothing sent after AUTH.
func TestOAuthBadToken(t *testing.T) {
	s := needServer(t)
	good := newToken("good-")
	in := s.serveIntrospection(t, map[string]string{good: s.User})
	h := host(t, s.ImplicitAddr)
	for _, mech := range []struct {
		name string
		auth func(tok string) tlsmail.Auth
	}{
		{"XOAUTH2", func(tok string) tlsmail.Auth { return tlsmail.XOAuth2Auth(s.User, tlsmail.StaticToken(tok), h) }},
		{"OAUTHBEARER", func(tok string) tlsmail.Auth {
			return tlsmail.OAuthBearerAuth(s.User, tlsmail.StaticToken(tok), h)
		}},
	} {
		t.Run(mech.name, func(t *testing.T) {
			// Several failures in a row: a penalty would show as a
			// growing delay.
			for i := range 3 {
				bad := newToken("bad-")
				before := s.counts(t)
				off := s.logOffset(t)
				id, msg := newMessage(t, s, []string{s.Rcpts[0]}, "must not be sent", "nothing")
				sess, err := s.sendRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, mech.auth(bad), []string{s.Rcpts[0]}, msg)
				if err == nil {
					t.Fatal("SendMail with a bad token succeeded")
				}
				t.Logf("attempt %d refused after %v: %v", i+1, sess.Elapsed, err)
				if strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), strings.TrimPrefix(bad, "bad-")) {
					t.Errorf("the error reveals the token: %v", err)
				}
				var oe *tlsmail.OAuthError
				var e *tlsmail.Error
				switch {
				case errors.As(err, &oe):
					if i == 0 {
						t.Logf("OAuthError: Mechanism=%q Status=%q Scope=%q Schemes=%q Reply=%+v",
							oe.Mechanism, oe.Status, oe.Scope, oe.Schemes, oe.Reply)
					}
					if oe.Mechanism != mech.name {
						t.Errorf("OAuthError.Mechanism = %q, want %s", oe.Mechanism, mech.name)
					}
					if oe.Reply == nil || oe.Reply.Code != 535 {
						t.Errorf("OAuthError.Reply = %+v, want a 535", oe.Reply)
					}
				case errors.As(err, &e):
					if i == 0 {
						t.Logf("no OAuthError; reply %d %s %q", e.Code, e.EnhancedCode, e.Message)
					}
					if e.Code != 535 {
						t.Errorf("got %d %s, want 535", e.Code, e.EnhancedCode)
					}
				default:
					t.Fatalf("neither an *OAuthError nor an *Error: %v", err)
				}
				if errors.As(err, &e) && (e.Code != 535 || [3]int(e.EnhancedCode) != [3]int{5, 7, 8} || e.Command != "AUTH") {
					t.Errorf("final reply: %s %d %s, want AUTH 535 5.7.8", e.Command, e.Code, e.EnhancedCode)
				}
				if sess.Elapsed >= 2*time.Second {
					t.Errorf("attempt %d took %v: Dovecot penalises failed logins from 127.0.0.1", i+1, sess.Elapsed)
				}
				sess.onlyCommands(t, "ehlo", "auth", "quit")
				if sess.Stats["auth"] != "0/1" {
					t.Errorf("Postfix counted auth=%s, want 0/1 (one failed attempt)", sess.Stats["auth"])
				}
				if logHas(sess.Lines, bad) {
					t.Errorf("the Postfix log shows the token")
				}
				in.check(t, bad) // refused by the endpoint, not before it
				s.noQueuedMessage(t, off, id)
				s.noDelivery(t, before, id)
			}
		})
	}
}

package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
)

// Each test sends real mail through the Postfix instance of
// postfix/start.sh and checks what arrived in the Maildir byte for byte, or,
// for the refusals, that the library failed the right way, what Postfix saw
// on the connection, and that nothing was delivered anywhere.

// newMessage returns a complete message with CRLF line ends and a unique
// Message-ID. It has every header Postfix would otherwise consider adding
// (From, To, Date, Message-ID).
func newMessage(t *testing.T, s *server, to []string, subject string, body ...string) (id string, msg []byte) {
	t.Helper()
	id = uniqueID(t)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: tlsmail integration test <%s>\r\n", s.User)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(to, ", "))
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s>\r\n", id)
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: 8bit\r\n")
	b.WriteString("\r\n")
	for _, l := range body {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	return id, b.Bytes()
}

// plain returns PLAIN credentials for the server, bound to the host of addr
// (the name the Client is connected to and verified the certificate for).
func (s *server) plain(t *testing.T, addr string) tlsmail.Auth {
	return tlsmail.PlainAuth("", s.User, s.Password, host(t, addr))
}

// ctx returns a context that bounds one exchange with the server.
func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// sendRecorded sends msg with a Dialer that records its connection, and
// returns what Postfix logged about that connection.
func (s *server) sendRecorded(t *testing.T, d tlsmail.Dialer, addr string, a tlsmail.Auth, to []string, msg []byte) (smtpSession, error) {
	t.Helper()
	var rec portRecorder
	d.NetDialContext = rec.dial
	off := s.logOffset(t)
	start := time.Now()
	err := d.SendMailContext(testContext(t, 2*time.Minute), addr, a, s.User, to, msg)
	elapsed := time.Since(start)
	sess := s.session(t, off, rec.only(t))
	sess.Elapsed = elapsed
	return sess, err
}

// checkAccepted checks the Postfix log of a session that submitted one
// message: authenticated with mech, its content sent with BDAT (Postfix
// offers CHUNKING on every port but one), one queue id, and no command
// pipelined where RFC 2920 forbids it.
func (sess smtpSession) checkAccepted(t *testing.T, mech string, starttls bool) string {
	t.Helper()
	return sess.checkAcceptedWith(t, mech, starttls, "bdat")
}

// checkAcceptedWith is checkAccepted for content sent with verb, "bdat"
// or "data": SendMail sends a message to several recipients with DATA
// even where CHUNKING is offered, so that the 354 vouches for the RCPT
// replies before the message is committed.
func (sess smtpSession) checkAcceptedWith(t *testing.T, mech string, starttls bool, verb string) string {
	t.Helper()
	other := map[string]string{"bdat": "data", "data": "bdat"}[verb]
	if n, err := strconv.Atoi(sess.Stats[verb]); err != nil || n < 1 || sess.Stats["auth"] != "1" || sess.Stats["mail"] != "1" || sess.Stats[other] != "" {
		t.Errorf("Postfix's account of the session: %v, want auth=1 mail=1, %s and no %s", sess.Stats, verb, other)
	}
	sess.pipelinedProperly(t)
	if got, want := sess.Stats["starttls"] == "1", starttls; got != want {
		t.Errorf("Postfix's account of the session: starttls=%q, want STARTTLS used: %v", sess.Stats["starttls"], want)
	}
	if len(sess.Queue) != 1 {
		t.Fatalf("Postfix queued %d messages from the session, want 1; log:\n%s", len(sess.Queue), strings.Join(sess.Lines, "\n"))
	}
	if mech != "" && !logHas(sess.Lines, "sasl_method="+mech+",") {
		t.Errorf("Postfix did not log sasl_method=%s for the session; log:\n%s", mech, strings.Join(sess.Lines, "\n"))
	}
	return sess.Queue[0]
}

// abandonedAfterData checks the Postfix log of a SendMail whose
// all-or-nothing message had a refused recipient: DATA rode with the
// envelope (RFC 2920 section 3.1), Postfix opened data mode for the
// recipient it accepted, and the client closed the connection before the
// end of data, so that nothing was queued (RFC 5321 section 3.8). No BDAT
// went out and Postfix counted no DATA as done ("0/1").
func (sess smtpSession) abandonedAfterData(t *testing.T) {
	t.Helper()
	if sess.Stats["data"] != "0/1" || sess.Stats["bdat"] != "" {
		t.Errorf("Postfix's account of the session: %v, want data=0/1 (DATA begun, never ended) and no bdat", sess.Stats)
	}
	if !logHas(sess.Lines, "lost connection after DATA") {
		t.Errorf("Postfix did not log a connection lost in data mode; log:\n%s", strings.Join(sess.Lines, "\n"))
	}
}

func logHas(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// Delivery.
// ---------------------------------------------------------------------------

// TestSendMailImplicitTLS uses the package-level SendMail, which verifies
// the certificate against the system roots (SSL_CERT_FILE, set in TestMain).
func TestSendMailImplicitTLS(t *testing.T) {
	s := needServer(t)
	rcpt := s.Rcpts[0]
	id, msg := newMessage(t, s, []string{rcpt}, "SendMail over implicit TLS", "Hello over implicit TLS.")
	if err := tlsmail.SendMail(s.ImplicitAddr, s.plain(t, s.ImplicitAddr), s.User, []string{rcpt}, msg); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	s.checkDelivered(t, rcpt, id, msg, false)
}

func TestDialerSTARTTLS(t *testing.T) {
	s := needServer(t)
	rcpt := s.Rcpts[1]
	id, msg := newMessage(t, s, []string{rcpt}, "Dialer with STARTTLS", "Hello over STARTTLS.")
	d := tlsmail.Dialer{Mode: tlsmail.STARTTLS}
	sess, err := s.sendRecorded(t, d, s.STARTTLSAddr, s.plain(t, s.STARTTLSAddr), []string{rcpt}, msg)
	if err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	qid := sess.checkAccepted(t, "PLAIN", true)
	if h := s.checkDelivered(t, rcpt, id, msg, false); h.QueueID != qid {
		t.Errorf("stored message has queue id %s, the session queued %s", h.QueueID, qid)
	}
}

// TestDial checks what the Client reports after each way of connecting.
func TestDial(t *testing.T) {
	s := needServer(t)
	for _, tc := range []struct {
		name string
		mode tlsmail.Mode
		addr string
	}{
		{"ImplicitTLS", tlsmail.ImplicitTLS, s.ImplicitAddr},
		{"STARTTLS", tlsmail.STARTTLS, s.STARTTLSAddr},
		{"ImplicitTLSOrSTARTTLS", tlsmail.ImplicitTLSOrSTARTTLS, s.ImplicitAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tlsmail.Dialer{Mode: tc.mode, FallbackAddr: s.STARTTLSAddr}
			c, err := d.DialContext(testContext(t, 30*time.Second), tc.addr)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			wantMode := tc.mode
			if wantMode == tlsmail.ImplicitTLSOrSTARTTLS {
				wantMode = tlsmail.ImplicitTLS // the implicit port is up: no fallback
			}
			if m, ok := c.Mode(); !ok || m != wantMode {
				t.Errorf("Mode() = %v, %v; want %v, true", m, ok, wantMode)
			}
			st, ok := c.TLSConnectionState()
			if !ok || !st.HandshakeComplete {
				t.Fatalf("TLSConnectionState: ok=%v, handshake complete=%v", ok, st.HandshakeComplete)
			}
			if st.Version < tls.VersionTLS12 {
				t.Errorf("TLS version %s, want at least TLS 1.2", tls.VersionName(st.Version))
			}
			if len(st.VerifiedChains) == 0 {
				t.Errorf("certificate chain was not verified")
			}
			if ok, mechs := c.Extension("AUTH"); !ok {
				t.Errorf("no AUTH after TLS")
			} else {
				for _, m := range []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"} {
					if !strings.Contains(" "+mechs+" ", " "+m+" ") {
						t.Errorf("AUTH %q lacks %s", mechs, m)
					}
				}
			}
			for _, ext := range []string{"SMTPUTF8", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES"} {
				if ok, _ := c.Extension(ext); !ok {
					t.Errorf("server does not advertise %s", ext)
				}
			}
			if ok, _ := c.Extension("STARTTLS"); ok {
				t.Errorf("STARTTLS still advertised on a TLS connection")
			}
			if err := c.Quit(); err != nil {
				t.Errorf("Quit: %v", err)
			}
		})
	}
}

// TestFallbackToSTARTTLS points ImplicitTLSOrSTARTTLS at a closed port, so
// that it must fall back to STARTTLS on FallbackAddr, and then sends with
// the Client's own methods.
func TestFallbackToSTARTTLS(t *testing.T) {
	s := needServer(t)
	rcpt := s.Rcpts[2]
	id, msg := newMessage(t, s, []string{rcpt}, "ImplicitTLSOrSTARTTLS fallback", "Hello after falling back to STARTTLS.")
	d := tlsmail.Dialer{Mode: tlsmail.ImplicitTLSOrSTARTTLS, FallbackAddr: s.STARTTLSAddr, Timeout: 5 * time.Second}
	c, err := d.DialContext(testContext(t, 30*time.Second), closedAddr(t))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if m, ok := c.Mode(); !ok || m != tlsmail.STARTTLS {
		t.Fatalf("Mode() = %v, %v; want STARTTLS, true", m, ok)
	}
	if err := c.Auth(s.plain(t, s.STARTTLSAddr)); err != nil {
		t.Fatalf("Auth: %v", err)
	}
	if err := c.Mail(s.User); err != nil {
		t.Fatalf("Mail: %v", err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		t.Fatalf("Rcpt: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("Data: %v", err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatalf("Data write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Data close: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("Quit: %v", err)
	}
	s.checkDelivered(t, rcpt, id, msg, false)
}

// TestAuthMechanisms authenticates with each mechanism over each TLS mode
// and checks in the Postfix log that the server saw that mechanism.
func TestAuthMechanisms(t *testing.T) {
	s := needServer(t)
	for _, mode := range []tlsmail.Mode{tlsmail.ImplicitTLS, tlsmail.STARTTLS} {
		addr := s.ImplicitAddr
		if mode == tlsmail.STARTTLS {
			addr = s.STARTTLSAddr
		}
		for _, mech := range []struct {
			name string
			auth tlsmail.Auth
		}{
			{"PLAIN", tlsmail.PlainAuth("", s.User, s.Password, host(t, addr))},
			{"LOGIN", tlsmail.LoginAuth(s.User, s.Password, host(t, addr))},
			{"CRAM-MD5", tlsmail.CRAMMD5Auth(s.User, s.Password)},
			{"SCRAM-SHA-1", tlsmail.ScramSHA1Auth(s.User, s.Password)},
			{"SCRAM-SHA-256", tlsmail.ScramSHA256Auth(s.User, s.Password)},
		} {
			t.Run(mode.String()+"/"+mech.name, func(t *testing.T) {
				rcpt := s.Rcpts[0]
				id, msg := newMessage(t, s, []string{rcpt}, "AUTH "+mech.name+" over "+mode.String(), "Authenticated with "+mech.name+".")
				sess, err := s.sendRecorded(t, tlsmail.Dialer{Mode: mode}, addr, mech.auth, []string{rcpt}, msg)
				if err != nil {
					t.Fatalf("SendMail with %s: %v", mech.name, err)
				}
				qid := sess.checkAccepted(t, mech.name, mode == tlsmail.STARTTLS)
				if h := s.checkDelivered(t, rcpt, id, msg, false); h.QueueID != qid {
					t.Errorf("stored message has queue id %s, the session queued %s", h.QueueID, qid)
				}
			})
		}
	}
}

// TestServerNameAndTLSConfig connects by the certificate's DNS name (mapped
// to 127.0.0.1 by NetDialContext, since the name does not resolve) with an
// explicit TLSConfig that trusts only the test CA, not the system roots.
func TestServerNameAndTLSConfig(t *testing.T) {
	s := needServer(t)
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", s.CAFile)
	}
	_, port, _ := net.SplitHostPort(s.ImplicitAddr)
	addr := net.JoinHostPort(s.ServerName, port)
	d := tlsmail.Dialer{
		TLSConfig: &tls.Config{RootCAs: roots},
		NetDialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if a != addr {
				return nil, fmt.Errorf("unexpected dial to %s", a)
			}
			var nd net.Dialer
			return nd.DialContext(ctx, network, s.ImplicitAddr)
		},
	}
	rcpt := s.Rcpts[1]
	id, msg := newMessage(t, s, []string{rcpt}, "By server name", "Verified as "+s.ServerName+".")
	a := tlsmail.PlainAuth("", s.User, s.Password, s.ServerName)
	if err := d.SendMailContext(testContext(t, time.Minute), addr, a, s.User, []string{rcpt}, msg); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	s.checkDelivered(t, rcpt, id, msg, false)
}

func TestMultipleRecipients(t *testing.T) {
	s := needServer(t)
	id, msg := newMessage(t, s, s.Rcpts, "Three recipients", "One transaction, three Maildirs.")
	sess, err := s.sendRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, s.plain(t, s.ImplicitAddr), s.Rcpts, msg)
	if err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	// DATA, not BDAT: see checkAcceptedWith.
	qid := sess.checkAcceptedWith(t, "PLAIN", false, "data")
	if want := fmt.Sprint(len(s.Rcpts)); sess.Stats["rcpt"] != want {
		t.Errorf("Postfix counted rcpt=%s, want %s", sess.Stats["rcpt"], want)
	}
	for _, rcpt := range s.Rcpts {
		if h := s.checkDelivered(t, rcpt, id, msg, true); h.QueueID != qid {
			t.Errorf("%s: stored message has queue id %s, the session queued %s", rcpt, h.QueueID, qid)
		}
	}
}

// trickyLines are the lines that trip up SMTP clients: leading dots
// (which must be stuffed and unstuffed over DATA, and left alone over
// BDAT), a lone "." line (which must not end the message), lines of 990
// characters, trailing white space, and UTF-8.
func trickyLines() []string {
	long := strings.Repeat("0123456789", 99) // 990 characters
	return []string{
		"The next line is a lone dot; the message goes on after it.",
		".",
		"..",
		"...",
		".leading dot",
		"..two leading dots",
		". dot space",
		"",
		"",
		"trailing spaces   ",
		"\ttab first, trailing tab\t",
		" .space then dot",
		long,
		"." + long[1:],
		strings.Repeat("x", 989) + ".",
		"UTF-8: Grüße aus Köln, naïve café, Ελληνικά, русский, 日本語, emoji 📬✓",
		"Lone CR and LF do not appear; this line ends the message with a dot line:",
		".",
	}
}

// TestMessageContent sends the lines that trip up SMTP clients: leading
// dots (which must be stuffed and unstuffed), a lone "." line (which must
// not end the message), lines of 990 characters, trailing white space,
// and UTF-8 in headers and body (8BITMIME, SMTPUTF8).
func TestMessageContent(t *testing.T) {
	s := needServer(t)
	body := trickyLines()
	subject := "Grüße, 日本語 and dots ✓"
	for _, mode := range []tlsmail.Mode{tlsmail.ImplicitTLS, tlsmail.STARTTLS} {
		t.Run(mode.String(), func(t *testing.T) {
			addr := s.ImplicitAddr
			if mode == tlsmail.STARTTLS {
				addr = s.STARTTLSAddr
			}
			rcpt := s.Rcpts[2]
			id, msg := newMessage(t, s, []string{rcpt}, subject, body...)
			sess, err := s.sendRecorded(t, tlsmail.Dialer{Mode: mode}, addr, s.plain(t, addr), []string{rcpt}, msg)
			if err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			sess.checkAccepted(t, "PLAIN", mode == tlsmail.STARTTLS)
			h := s.checkDelivered(t, rcpt, id, msg, false)
			t.Logf("Received protocol: %s", h.Protocol)
		})
	}
}

// TestLFLineEnds sends a message with bare LF line ends, which SendMail
// documents it normalises to CRLF; Postfix must store the same lines.
func TestLFLineEnds(t *testing.T) {
	s := needServer(t)
	rcpt := s.Rcpts[0]
	id, msg := newMessage(t, s, []string{rcpt}, "LF line ends", "first line", ".dot line", ".", "last line")
	lf := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	if err := tlsmail.SendMail(s.ImplicitAddr, s.plain(t, s.ImplicitAddr), s.User, []string{rcpt}, lf); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	s.checkDelivered(t, rcpt, id, msg, false)
}

// TestLargeMessage sends 5 MB, under Postfix's 10 MiB message_size_limit.
func TestLargeMessage(t *testing.T) {
	s := needServer(t)
	const size = 5 << 20
	var lines []string
	n := 0
	raw := make([]byte, 57)
	for i := 0; n < size; i++ {
		rand.Read(raw)
		l := base64.StdEncoding.EncodeToString(raw) // 76 characters
		if i%1000 == 999 {
			l = "." + l // a stuffed line now and then
		}
		lines = append(lines, l)
		n += len(l) + 2
	}
	rcpt := s.Rcpts[1]
	id, msg := newMessage(t, s, []string{rcpt}, "5 MB", lines...)
	sess, err := s.sendRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, s.plain(t, s.ImplicitAddr), []string{rcpt}, msg)
	if err != nil {
		t.Fatalf("SendMail of %d bytes: %v", len(msg), err)
	}
	t.Logf("sent %d bytes in %v", len(msg), sess.Elapsed)
	sess.checkAccepted(t, "PLAIN", false)
	s.checkDelivered(t, rcpt, id, msg, false)
}

// ---------------------------------------------------------------------------
// Refusals: the right error, nothing sent that should not be, nothing
// delivered.
// ---------------------------------------------------------------------------

// TestImplicitTLSAtSTARTTLSPort: the server greets in plaintext where a TLS
// handshake was expected. The library must say so, quickly.
func TestImplicitTLSAtSTARTTLSPort(t *testing.T) {
	s := needServer(t)
	before := s.counts(t)
	id, msg := newMessage(t, s, []string{s.Rcpts[0]}, "must not be sent", "nothing")
	sess, err := s.sendRecorded(t, tlsmail.Dialer{Mode: tlsmail.ImplicitTLS}, s.STARTTLSAddr, s.plain(t, s.STARTTLSAddr), []string{s.Rcpts[0]}, msg)
	elapsed := sess.Elapsed
	if err == nil {
		t.Fatal("SendMail with implicit TLS to the STARTTLS port succeeded")
	}
	t.Logf("error (after %v): %v", elapsed, err)
	if !errors.Is(err, tlsmail.ErrPlaintextServer) {
		t.Errorf("errors.Is(err, ErrPlaintextServer) = false; err = %v", err)
	}
	if elapsed >= 5*time.Second {
		t.Errorf("took %v, want < 5s", elapsed)
	}
	sess.onlyCommands(t, "unknown")
	if logHas(sess.Lines, "sasl_") {
		t.Errorf("Postfix logged SASL activity:\n%s", strings.Join(sess.Lines, "\n"))
	}
	s.noDelivery(t, before, id)
}

// TestSTARTTLSAtPlaintextPort: the server does not offer STARTTLS. The
// library must stop after EHLO, never authenticating or sending anything.
func TestSTARTTLSAtPlaintextPort(t *testing.T) {
	s := needServer(t)
	before := s.counts(t)
	off := s.logOffset(t)
	id, msg := newMessage(t, s, []string{s.Rcpts[0]}, "must not be sent", "nothing")
	sess, err := s.sendRecorded(t, tlsmail.Dialer{Mode: tlsmail.STARTTLS}, s.PlainAddr, s.plain(t, s.PlainAddr), []string{s.Rcpts[0]}, msg)
	if err == nil {
		t.Fatal("SendMail with STARTTLS to the plaintext-only port succeeded")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, tlsmail.ErrSTARTTLSUnsupported) {
		t.Errorf("errors.Is(err, ErrSTARTTLSUnsupported) = false; err = %v", err)
	}
	// Only EHLO (and perhaps QUIT): no AUTH, no MAIL, no STARTTLS attempt.
	sess.onlyCommands(t, "ehlo", "quit")
	if logHas(sess.Lines, "sasl_") || logHas(sess.Lines, "AUTH") {
		t.Errorf("Postfix logged authentication activity:\n%s", strings.Join(sess.Lines, "\n"))
	}
	s.noQueuedMessage(t, off, id)
	s.noDelivery(t, before, id)
}

// TestSTARTTLSAtImplicitPort: the server waits silently for a TLS
// handshake; the library gives up after GreetingTimeout with ErrNoGreeting.
func TestSTARTTLSAtImplicitPort(t *testing.T) {
	s := needServer(t)
	before := s.counts(t)
	id, msg := newMessage(t, s, []string{s.Rcpts[0]}, "must not be sent", "nothing")
	d := tlsmail.Dialer{Mode: tlsmail.STARTTLS, GreetingTimeout: time.Second}
	start := time.Now()
	err := d.SendMailContext(testContext(t, 30*time.Second), s.ImplicitAddr, s.plain(t, s.ImplicitAddr), s.User, []string{s.Rcpts[0]}, msg)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("SendMail with STARTTLS to the implicit-TLS port succeeded")
	}
	t.Logf("error (after %v): %v", elapsed, err)
	if !errors.Is(err, tlsmail.ErrNoGreeting) {
		t.Errorf("errors.Is(err, ErrNoGreeting) = false; err = %v", err)
	}
	if !strings.Contains(err.Error(), "implicit TLS") {
		t.Errorf("the error does not name implicit TLS: %v", err)
	}
	if elapsed >= 5*time.Second {
		t.Errorf("took %v with GreetingTimeout 1s, want < 5s", elapsed)
	}
	s.noDelivery(t, before, id)
}

func TestWrongPassword(t *testing.T) {
	s := needServer(t)
	const bad = "not-the-password"
	h := host(t, s.ImplicitAddr)
	for _, mech := range []struct {
		name string
		auth tlsmail.Auth
	}{
		{"PLAIN", tlsmail.PlainAuth("", s.User, bad, h)},
		{"LOGIN", tlsmail.LoginAuth(s.User, bad, h)},
		{"CRAM-MD5", tlsmail.CRAMMD5Auth(s.User, bad)},
		{"SCRAM-SHA-1", tlsmail.ScramSHA1Auth(s.User, bad)},
		{"SCRAM-SHA-256", tlsmail.ScramSHA256Auth(s.User, bad)},
	} {
		t.Run(mech.name, func(t *testing.T) {
			before := s.counts(t)
			off := s.logOffset(t)
			id, msg := newMessage(t, s, []string{s.Rcpts[0]}, "must not be sent", "nothing")
			sess, err := s.sendRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, mech.auth, []string{s.Rcpts[0]}, msg)
			if err == nil {
				t.Fatal("SendMail with a wrong password succeeded")
			}
			t.Logf("error: %v", err)
			var e *tlsmail.Error
			if !errors.As(err, &e) {
				t.Fatalf("errors.As(err, *tlsmail.Error) = false; err = %v", err)
			}
			if e.Code != 535 || [3]int(e.EnhancedCode) != [3]int{5, 7, 8} {
				t.Errorf("got %d %s, want 535 5.7.8", e.Code, e.EnhancedCode)
			}
			if e.Command != "AUTH" {
				t.Errorf("Command = %q, want AUTH", e.Command)
			}
			if strings.Contains(err.Error(), bad) {
				t.Errorf("the error reveals the password: %v", err)
			}
			sess.onlyCommands(t, "ehlo", "auth", "quit")
			if sess.Stats["auth"] != "0/1" {
				t.Errorf("Postfix counted auth=%s, want 0/1 (one failed attempt)", sess.Stats["auth"])
			}
			s.noQueuedMessage(t, off, id)
			s.noDelivery(t, before, id)
		})
	}
}

// TestRelayDenied sends to a local recipient and one outside the test
// domain. Postfix refuses the outside one with 554 5.7.1, and the library
// must then abandon the whole message, local recipient included.
func TestRelayDenied(t *testing.T) {
	s := needServer(t)
	before := s.counts(t)
	off := s.logOffset(t)
	to := []string{s.Rcpts[0], "someone@example.com"}
	id, msg := newMessage(t, s, to, "must not be sent", "nothing")
	sess, err := s.sendRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, s.plain(t, s.ImplicitAddr), to, msg)
	if err == nil {
		t.Fatal("SendMail to a recipient outside the test domain succeeded")
	}
	t.Logf("error: %v", err)
	var e *tlsmail.Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(err, *tlsmail.Error) = false; err = %v", err)
	}
	if e.Code != 554 || [3]int(e.EnhancedCode) != [3]int{5, 7, 1} {
		t.Errorf("got %d %s, want 554 5.7.1", e.Code, e.EnhancedCode)
	}
	if e.Command != "RCPT" {
		t.Errorf("Command = %q, want RCPT", e.Command)
	}
	if !strings.Contains(e.Message, "Relay access denied") {
		t.Errorf("Message = %q, want Postfix's \"Relay access denied\"", e.Message)
	}
	if sess.Stats["auth"] != "1" || sess.Stats["rcpt"] != "1/2" {
		t.Errorf("Postfix's account of the session: %v, want auth=1 rcpt=1/2", sess.Stats)
	}
	sess.abandonedAfterData(t)
	s.noQueuedMessage(t, off, id)
	s.noDelivery(t, before, id)
}

// TestNoAuthRefused sends without authenticating: Postfix refuses every
// recipient of an unauthenticated client.
func TestNoAuthRefused(t *testing.T) {
	s := needServer(t)
	before := s.counts(t)
	off := s.logOffset(t)
	id, msg := newMessage(t, s, []string{s.Rcpts[0]}, "must not be sent", "nothing")
	sess, err := s.sendRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, nil, []string{s.Rcpts[0]}, msg)
	if err == nil {
		t.Fatal("SendMail without authentication succeeded")
	}
	t.Logf("error: %v", err)
	var e *tlsmail.Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(err, *tlsmail.Error) = false; err = %v", err)
	}
	if e.Code != 554 || [3]int(e.EnhancedCode) != [3]int{5, 7, 1} || e.Command != "RCPT" {
		t.Errorf("got %s %d %s, want RCPT 554 5.7.1", e.Command, e.Code, e.EnhancedCode)
	}
	if _, ok := sess.Stats["auth"]; ok {
		t.Errorf("Postfix saw AUTH: %v", sess.Stats)
	}
	s.noQueuedMessage(t, off, id)
	s.noDelivery(t, before, id)
}

// TestPlainAuthOtherHost: credentials bound to another host name are never
// sent; Postfix sees no AUTH command at all.
func TestPlainAuthOtherHost(t *testing.T) {
	s := needServer(t)
	before := s.counts(t)
	id, msg := newMessage(t, s, []string{s.Rcpts[0]}, "must not be sent", "nothing")
	a := tlsmail.PlainAuth("", s.User, s.Password, "smtp.example.com")
	sess, err := s.sendRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, a, []string{s.Rcpts[0]}, msg)
	if err == nil {
		t.Fatal("PlainAuth for another host authenticated")
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), s.Password) {
		t.Errorf("the error reveals the password: %v", err)
	}
	sess.onlyCommands(t, "ehlo", "quit")
	s.noDelivery(t, before, id)
}

package smtptest

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand"
	"net"
	"net/textproto"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// client is a minimal hand-rolled SMTP client that checks replies byte
// for byte.
type client struct {
	t   testing.TB
	raw net.Conn
	c   net.Conn // raw or TLS
	tp  *textproto.Conn
}

func newClient(t testing.TB, raw, c net.Conn) *client {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	cl := &client{t: t, raw: raw, c: c, tp: textproto.NewConn(c)}
	t.Cleanup(func() { raw.Close() })
	return cl
}

func dialPlain(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, c, c)
}

// tlsClient is tls.Client with ServerName defaulting to the host of the
// remote address, as tls.Dial does.
func tlsClient(raw net.Conn, cfg *tls.Config) *tls.Conn {
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg = cfg.Clone()
		host, _, _ := net.SplitHostPort(raw.RemoteAddr().String())
		cfg.ServerName = host
	}
	return tls.Client(raw, cfg)
}

func dialTLS(t testing.TB, addr string, cfg *tls.Config) *client {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tlsClient(raw, cfg)
	if err := tc.Handshake(); err != nil {
		raw.Close()
		t.Fatalf("TLS handshake: %v", err)
	}
	return newClient(t, raw, tc)
}

// readLine reads one line and insists that it ends in CRLF.
func (c *client) readLine() (string, error) {
	s, err := c.tp.R.ReadString('\n')
	if err != nil {
		return s, err
	}
	if !strings.HasSuffix(s, "\r\n") {
		return s, fmt.Errorf("reply line %q does not end in CRLF", s)
	}
	return s[:len(s)-2], nil
}

// reply reads one (possibly multi-line) reply.
func (c *client) reply() []string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.readLine()
		if err != nil {
			c.t.Fatalf("reading reply (so far %q): %v", lines, err)
		}
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

func (c *client) expect(want ...string) {
	c.t.Helper()
	if got := c.reply(); !reflect.DeepEqual(got, want) {
		c.t.Fatalf("reply = %q, want %q", got, want)
	}
}

func (c *client) send(line string) {
	c.t.Helper()
	if err := c.tp.PrintfLine("%s", line); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends line and expects the reply lines want.
func (c *client) cmd(line string, want ...string) {
	c.t.Helper()
	c.send(line)
	c.expect(want...)
}

// expectEOF expects the server to close the connection.
func (c *client) expectEOF() {
	c.t.Helper()
	b, err := c.tp.R.ReadByte()
	if err == nil {
		c.t.Fatalf("read %q, want EOF", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("timeout waiting for the server to close")
	}
}

// expectSilence expects no bytes from the server for d.
func (c *client) expectSilence(d time.Duration) {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(d))
	b, err := c.tp.R.ReadByte()
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("read %q, %v; want silence", b, err)
	}
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
}

// startTLS upgrades the connection after a 220 reply to STARTTLS.
func (c *client) startTLS(cfg *tls.Config) {
	c.t.Helper()
	if n := c.tp.R.Buffered(); n != 0 {
		c.t.Fatalf("%d unexpected plaintext bytes buffered before handshake", n)
	}
	tc := tlsClient(c.raw, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("STARTTLS handshake: %v", err)
	}
	c.c = tc
	c.tp = textproto.NewConn(tc)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func tlsConfigFor(srv *Server, name string) *tls.Config {
	cfg := srv.ClientTLSConfig()
	cfg.ServerName = name
	return cfg
}

var defaultEHLOTLS = []string{
	"250-mx.test",
	"250-PIPELINING",
	"250-SIZE 67108864",
	"250-8BITMIME",
	"250-ENHANCEDSTATUSCODES",
	"250-SMTPUTF8",
	"250 AUTH PLAIN LOGIN CRAM-MD5",
}

var defaultEHLOPlain = []string{
	"250-mx.test",
	"250-PIPELINING",
	"250-SIZE 67108864",
	"250-8BITMIME",
	"250-ENHANCEDSTATUSCODES",
	"250-SMTPUTF8",
	"250 STARTTLS",
}

func checkTranscript(t *testing.T, srv *Server, want ...string) {
	t.Helper()
	if got := srv.Transcript(); !reflect.DeepEqual(got, want) {
		t.Fatalf("transcript:\n got %q\nwant %q", got, want)
	}
}

func waitIdle(t *testing.T, srv *Server) {
	t.Helper()
	if err := srv.WaitIdle(3 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestImplicitTLSSendAuthPlain(t *testing.T) {
	srv := NewServer(t, nil)
	c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig()) // verifies the IP SAN
	if v := c.c.(*tls.Conn).ConnectionState().Version; v < tls.VersionTLS12 {
		t.Errorf("TLS version %x", v)
	}
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO client.example", defaultEHLOTLS...)
	c.cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "235 2.7.0 Authentication successful")
	c.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
	// DSN is not advertised by default, so its parameters are refused.
	c.cmd("RCPT TO:<c@example.net> NOTIFY=NEVER", "555 5.5.4 Unsupported option: NOTIFY=NEVER")
	c.cmd("RCPT TO:<c@example.net>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.sendRaw("Subject: hi\r\n\r\nhello\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as 1")
	c.cmd("QUIT", "221 2.0.0 Bye")
	c.expectEOF()
	waitIdle(t, srv)

	checkTranscript(t, srv,
		"tls: EHLO client.example",
		"tls: AUTH PLAIN AHVzZXIAcGFzcw==",
		"tls: MAIL FROM:<a@example.org> BODY=8BITMIME SMTPUTF8",
		"tls: RCPT TO:<b@example.net>",
		"tls: RCPT TO:<c@example.net> NOTIFY=NEVER",
		"tls: RCPT TO:<c@example.net>",
		"tls: DATA",
		"tls: QUIT",
	)
	want := []Message{{
		From:          "a@example.org",
		To:            []string{"b@example.net", "c@example.net"},
		MailParams:    "BODY=8BITMIME SMTPUTF8",
		RcptParams:    []string{"", ""},
		Data:          []byte("Subject: hi\r\n\r\nhello\r\n"),
		Raw:           []byte("Subject: hi\r\n\r\nhello\r\n.\r\n"),
		TLS:           true,
		AuthUser:      "user",
		AuthMechanism: "PLAIN",
		Session:       1,
		QueueID:       "1",
	}}
	got := srv.Messages()
	if len(got) == 1 {
		if got[0].TLSVersion < tls.VersionTLS12 || got[0].CipherSuite == 0 {
			t.Errorf("TLS parameters not recorded: %x %x", got[0].TLSVersion, got[0].CipherSuite)
		}
		want[0].TLSVersion, want[0].CipherSuite = got[0].TLSVersion, got[0].CipherSuite
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("messages:\n got %+v\nwant %+v", got, want)
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("Connections = %d", n)
	}

	// Snapshots are copies.
	srv.Messages()[0].To[0] = "changed"
	srv.Transcript()[0] = "changed"
	if srv.Messages()[0].To[0] != "b@example.net" || srv.Transcript()[0] != "tls: EHLO client.example" {
		t.Error("snapshot aliases server state")
	}

	srv.Reset()
	if len(srv.Transcript()) != 0 || len(srv.Messages()) != 0 {
		t.Error("Reset did not clear")
	}
	// Numbering restarts after Reset.
	c = dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("HELO client.example", "250 mx.test")
	c.cmd("MAIL FROM:<>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.sendRaw(".\r\n")
	c.expect("250 2.0.0 Ok: queued as 1")
	m := srv.Messages()
	if len(m) != 1 || m[0].From != "" || len(m[0].Data) != 0 || string(m[0].Raw) != ".\r\n" || m[0].AuthUser != "" || m[0].MailParams != "" {
		t.Fatalf("null-sender empty message: %+v", m)
	}
	if n := srv.Connections(); n != 2 {
		t.Errorf("Connections = %d", n)
	}
}

func TestSTARTTLSLoginAndCRAMMD5(t *testing.T) {
	srv := NewServer(t, nil)
	c := dialPlain(t, srv.StartTLSAddr)
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO client.example", defaultEHLOPlain...)
	c.cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "538 5.7.11 Encryption required for requested authentication mechanism")
	c.cmd("STARTTLS extra", "501 5.5.4 Syntax: STARTTLS")
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	c.startTLS(tlsConfigFor(srv, "mx.test"))
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("AUTH LOGIN", "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("EHLO client.example", defaultEHLOTLS...)
	c.cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(b64("user"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("pass"), "235 2.7.0 Authentication successful")
	c.cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "503 5.5.1 Error: already authenticated")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.sendRaw("x\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as 1")
	c.cmd("QUIT", "221 2.0.0 Bye")
	c.expectEOF()

	// CRAM-MD5 on a second connection, over STARTTLS as well.
	c = dialPlain(t, srv.StartTLSAddr)
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO client.example", defaultEHLOPlain...)
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	c.startTLS(tlsConfigFor(srv, "localhost"))
	c.cmd("EHLO client.example", defaultEHLOTLS...)
	c.send("AUTH CRAM-MD5")
	r := c.reply()
	if len(r) != 1 || !strings.HasPrefix(r[0], "334 ") {
		t.Fatalf("CRAM-MD5 challenge reply %q", r)
	}
	chal, err := base64.StdEncoding.DecodeString(r[0][4:])
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^<\d+\.\d+@mx\.test>$`).Match(chal) {
		t.Fatalf("challenge %q", chal)
	}
	mac := hmac.New(md5.New, []byte("pass"))
	mac.Write(chal)
	resp := b64("user " + hex.EncodeToString(mac.Sum(nil)))
	c.cmd(resp, "235 2.7.0 Authentication successful")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.sendRaw("y\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as 2")
	c.cmd("QUIT", "221 2.0.0 Bye")
	c.expectEOF()
	waitIdle(t, srv)

	checkTranscript(t, srv,
		"plain: EHLO client.example",
		"plain: AUTH PLAIN AHVzZXIAcGFzcw==",
		"plain: STARTTLS extra",
		"plain: STARTTLS",
		"tls: MAIL FROM:<a@example.org>",
		"tls: AUTH LOGIN",
		"tls: EHLO client.example",
		"tls: STARTTLS",
		"tls: AUTH LOGIN",
		"tls: dXNlcg==",
		"tls: cGFzcw==",
		"tls: AUTH PLAIN AHVzZXIAcGFzcw==",
		"tls: MAIL FROM:<a@example.org>",
		"tls: RCPT TO:<b@example.net>",
		"tls: DATA",
		"tls: QUIT",
		"plain: EHLO client.example",
		"plain: STARTTLS",
		"tls: EHLO client.example",
		"tls: AUTH CRAM-MD5",
		"tls: "+resp,
		"tls: MAIL FROM:<a@example.org>",
		"tls: RCPT TO:<b@example.net>",
		"tls: DATA",
		"tls: QUIT",
	)
	msgs := srv.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	for i, want := range []string{"x\r\n", "y\r\n"} {
		m := msgs[i]
		if string(m.Data) != want || !m.TLS || m.AuthUser != "user" {
			t.Errorf("message %d: %+v", i, m)
		}
	}
}

func TestAuthVariants(t *testing.T) {
	srv := NewServer(t, &Options{Users: map[string]string{"alice": "s3cret", "bob": ""}})
	c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("AUTH PLAIN", "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("EHLO c", defaultEHLOTLS...)
	c.cmd("AUTH", "501 5.5.4 Syntax: AUTH mechanism")
	c.cmd("AUTH XOAUTH2", "504 5.5.4 Unrecognized authentication type")
	c.cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "535 5.7.8 Error: authentication failed: authentication failure")
	c.cmd("AUTH PLAIN =", "535 5.7.8 Error: authentication failed: authentication failure")
	c.cmd("AUTH PLAIN !!!", "501 5.5.2 Cannot decode response")
	c.cmd("AUTH PLAIN "+b64("mallory\x00alice\x00s3cret"), "535 5.7.8 Error: authentication failed: authentication failure")
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd("*", "501 5.7.0 Authentication aborted")
	c.cmd("AUTH PLAIN", "334 ")
	c.cmd("not base64", "501 5.5.2 Cannot decode response")
	c.cmd("AUTH LOGIN "+b64("alice"), "334 UGFzc3dvcmQ6")
	c.cmd(b64("wrong"), "535 5.7.8 Error: authentication failed: authentication failure")
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd("*", "501 5.7.0 Authentication aborted")
	c.send("AUTH CRAM-MD5")
	c.cmd(cramResponse(t, c.reply(), "alice", "wrong"), "535 5.7.8 Error: authentication failed: authentication failure")
	c.send("AUTH CRAM-MD5")
	c.cmd(cramResponse(t, c.reply(), "nobody", "s3cret"), "535 5.7.8 Error: authentication failed: authentication failure")
	c.cmd("AUTH CRAM-MD5 "+b64("x"), "501 5.5.4 Syntax: CRAM-MD5 takes no initial response")
	c.send("AUTH CRAM-MD5")
	if r := c.reply(); len(r) != 1 || !strings.HasPrefix(r[0], "334 ") {
		t.Fatalf("challenge reply %q", r)
	}
	c.cmd("*", "501 5.7.0 Authentication aborted")
	// Authentication is refused inside a mail transaction.
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("AUTH PLAIN "+b64("\x00alice\x00s3cret"), "503 5.5.1 Error: MAIL transaction in progress")
	c.cmd("RSET", "250 2.0.0 Ok")
	// PLAIN with the response after an empty challenge, and a matching authzid.
	c.cmd("auth plain", "334 ")
	c.cmd(b64("alice\x00alice\x00s3cret"), "235 2.7.0 Authentication successful")
	c.cmd("QUIT", "221 2.0.0 Bye")

	// LOGIN with an initial response, and an empty password for bob.
	c = dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", defaultEHLOTLS...)
	c.cmd("AUTH LOGIN "+b64("bob"), "334 UGFzc3dvcmQ6")
	c.cmd("", "235 2.7.0 Authentication successful")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.sendRaw(".\r\n")
	c.expect("250 2.0.0 Ok: queued as 1")
	if m := srv.Messages(); len(m) != 1 || m[0].AuthUser != "bob" {
		t.Fatalf("messages %+v", m)
	}

	// CRAM-MD5 for alice; the digest may be upper-case hex.
	c = dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", defaultEHLOTLS...)
	c.send("AUTH CRAM-MD5")
	r := c.reply()
	raw, _ := base64.StdEncoding.DecodeString(cramResponse(t, r, "alice", "s3cret"))
	sp := bytes.LastIndexByte(raw, ' ')
	c.cmd(b64(string(raw[:sp+1])+strings.ToUpper(string(raw[sp+1:]))), "235 2.7.0 Authentication successful")
}

// cramResponse answers a "334 <challenge>" reply.
func cramResponse(t *testing.T, reply []string, user, pass string) string {
	t.Helper()
	if len(reply) != 1 || !strings.HasPrefix(reply[0], "334 ") {
		t.Fatalf("challenge reply %q", reply)
	}
	chal, err := base64.StdEncoding.DecodeString(reply[0][4:])
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(md5.New, []byte(pass))
	mac.Write(chal)
	return b64(user + " " + hex.EncodeToString(mac.Sum(nil)))
}

// startData opens a transaction and sends DATA on a plaintext session.
func startData(t *testing.T, srv *Server) *client {
	t.Helper()
	c := dialPlain(t, srv.StartTLSAddr)
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("HELO c", "250 mx.test")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	return c
}

func TestDotStuffingAndStrictEndOfData(t *testing.T) {
	tests := []struct {
		name      string
		raw, data string
	}{
		{"empty", ".\r\n", ""},
		{"empty line", "\r\n.\r\n", "\r\n"},
		{"stuffed", "line1\r\n..dot\r\n...two\r\n.x\r\n\r\n.\r\n", "line1\r\n.dot\r\n..two\r\nx\r\n\r\n"},
		{"only dots", "..\r\n...\r\n.\r\n", ".\r\n..\r\n"},
		{"bare LF dot", "a\n.\nb\r\n.\r\n", "a\n.\nb\r\n"},
		{"bare LF after CRLF", "a\r\n.\n.\r\nc\r\n.\r\n", "a\r\n\n.\r\nc\r\n"},
		{"bare CR", "x\r.\r\n.\r\n", "x\r.\r\n"},
		{"dot CR x", ".\r.\r\n.\r\n", "\r.\r\n"},
		{"dot CR CR LF", ".\r\r\n.\r\n", "\r\r\n"},
		{"CRCRLF then dot", "a\r\r\n.\r\n", "a\r\r\n"},
		{"no final CRLF before dot", "abc.\r\n.\r\n", "abc.\r\n"},
		{"binary", "\x00\xff\r\n\x1b.\r\n.\r\n", "\x00\xff\r\n\x1b.\r\n"},
	}
	srv := NewServer(t, &Options{AllowPipeliningViolations: true}) // the cases write whole sessions at once
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.Reset()
			c := startData(t, srv)
			c.sendRaw(tc.raw)
			c.expect("250 2.0.0 Ok: queued as 1")
			m := srv.Messages()
			if len(m) != 1 {
				t.Fatalf("%d messages", len(m))
			}
			if string(m[0].Raw) != tc.raw {
				t.Errorf("Raw = %q, want %q", m[0].Raw, tc.raw)
			}
			if string(m[0].Data) != tc.data {
				t.Errorf("Data = %q, want %q", m[0].Data, tc.data)
			}
			if m[0].TLS {
				t.Error("TLS = true on plaintext session")
			}
		})
	}

	t.Run("not ended by LF dot LF", func(t *testing.T) {
		srv.Reset()
		c := startData(t, srv)
		c.sendRaw("hello\n.\n")
		c.expectSilence(150 * time.Millisecond)
		c.sendRaw("\r.\n")
		c.expectSilence(50 * time.Millisecond)
		c.sendRaw("x\r\n.\r")
		c.expectSilence(50 * time.Millisecond)
		c.sendRaw("x\r\n") // ".\rx\r\n" is a stuffed line, not the end
		c.expectSilence(50 * time.Millisecond)
		// Split the terminator across writes.
		c.sendRaw(".")
		time.Sleep(10 * time.Millisecond)
		c.sendRaw("\r")
		time.Sleep(10 * time.Millisecond)
		c.sendRaw("\nQUIT\r\n") // pipelined after the data
		c.expect("250 2.0.0 Ok: queued as 1")
		c.expect("221 2.0.0 Bye")
		c.expectEOF()
		m := srv.Messages()
		want := "hello\n.\n\r.\nx\r\n\rx\r\n"
		if len(m) != 1 || string(m[0].Data) != want {
			t.Fatalf("messages %+v, want Data %q", m, want)
		}
		if string(m[0].Raw) != "hello\n.\n\r.\nx\r\n.\rx\r\n.\r\n" {
			t.Errorf("Raw = %q", m[0].Raw)
		}
		checkTranscript(t, srv,
			"plain: HELO c",
			"plain: MAIL FROM:<a@example.org>",
			"plain: RCPT TO:<b@example.net>",
			"plain: DATA",
			"plain: QUIT",
		)
	})

	t.Run("pipelined transaction", func(t *testing.T) {
		srv.Reset()
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.sendRaw("EHLO c\r\nMAIL FROM:<a@x> SMTPUTF8\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n")
		c.expect(defaultEHLOPlain...)
		c.expect("250 2.1.0 Ok")
		c.expect("250 2.1.5 Ok")
		c.expect("250 2.1.5 Ok")
		c.expect("354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw("big\r\n" + strings.Repeat("0123456789", 2000) + "\r\n.\r\nMAIL FROM:<d@x>\n")
		c.expect("250 2.0.0 Ok: queued as 1")
		c.expect("250 2.1.0 Ok") // bare LF accepted for commands
		m := srv.Messages()
		if len(m) != 1 || len(m[0].Data) != 5+20002 || !reflect.DeepEqual(m[0].To, []string{"b@x", "c@x"}) || m[0].MailParams != "SMTPUTF8" {
			t.Fatalf("message %+v", m)
		}
	})

	t.Run("too big", func(t *testing.T) {
		srv := NewServer(t, &Options{dataLimit: 100})
		c := startData(t, srv)
		c.sendRaw(strings.Repeat("x", 60) + "\r\n" + strings.Repeat("y", 60) + "\r\n.\r\n")
		c.expect("552 5.3.4 Error: message file too big")
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok") // transaction was reset
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw("small\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as 1")
		if m := srv.Messages(); len(m) != 1 || string(m[0].Data) != "small\r\n" {
			t.Fatalf("messages %+v", m)
		}
	})
}

func TestCommandErrors(t *testing.T) {
	srv := NewServer(t, nil)
	c := dialPlain(t, srv.StartTLSAddr)
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: send HELO/EHLO first")
	c.cmd("EHLO", "501 5.5.4 Syntax: EHLO hostname")
	c.cmd("HELO", "501 5.5.4 Syntax: HELO hostname")
	c.cmd("ehlo c", defaultEHLOPlain...)
	c.cmd("RCPT TO:<b@example.net>", "503 5.5.1 Error: need MAIL command")
	c.cmd("DATA", "503 5.5.1 Error: need RCPT command")
	c.cmd("MAIL FROM:a@example.org", "501 5.5.4 Syntax: MAIL FROM:<address>")
	c.cmd("MAIL TO:<a@example.org>", "501 5.5.4 Syntax: MAIL FROM:<address>")
	c.cmd("MAIL FROM:<a@example.org", "501 5.5.4 Syntax: MAIL FROM:<address>")
	c.cmd("MAIL", "501 5.5.4 Syntax: MAIL FROM:<address>")
	c.cmd(`mail from: <"odd>local"@example.org>  SIZE=10 `, "250 2.1.0 Ok")
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: nested MAIL command")
	c.cmd("DATA", "503 5.5.1 Error: need RCPT command")
	c.cmd("RCPT TO:<>", "501 5.5.4 Syntax: RCPT TO:<address>")
	c.cmd("RCPT b@example.net", "501 5.5.4 Syntax: RCPT TO:<address>")
	c.cmd("rcpt to:<b@example.net>", "250 2.1.5 Ok")
	c.cmd("DATA now", "501 5.5.4 Syntax: DATA")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("RCPT TO:<b@example.net>", "503 5.5.1 Error: need MAIL command")
	c.cmd("NOOP", "250 2.0.0 Ok")
	c.cmd("NOOP with args", "250 2.0.0 Ok")
	c.cmd("VRFY user", "252 2.0.0 Cannot VRFY user")
	c.cmd("HELP", "502 5.5.2 Error: command not recognized")
	c.cmd("", "500 5.5.2 Error: bad syntax")
	c.cmd(strings.Repeat("A", 5000), "500 5.5.2 Line too long")
	c.cmd("NOOP "+strings.Repeat("A", 4092), "500 5.5.2 Line too long") // 4097 bytes
	c.cmd("NOOP "+strings.Repeat("A", 4091), "250 2.0.0 Ok")            // exactly 4096
	c.sendRaw("NOOP " + strings.Repeat("A", 4091) + "\n")               // 4096 with bare LF
	c.expect("250 2.0.0 Ok")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("EHLO again", defaultEHLOPlain...) // resets the transaction
	c.cmd("RCPT TO:<b@example.net>", "503 5.5.1 Error: need MAIL command")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("HELO again", "250 mx.test")
	c.cmd("RCPT TO:<b@example.net>", "503 5.5.1 Error: need MAIL command")
	c.cmd("quit", "221 2.0.0 Bye")
	c.expectEOF()

	tr := srv.Transcript()
	if len(tr) != 35 {
		t.Fatalf("transcript has %d lines", len(tr))
	}
	if want := "plain: " + strings.Repeat("A", 4096); tr[24] != want {
		t.Errorf("too-long line recorded as %d bytes", len(tr[24]))
	}
	if tr[23] != "plain: " {
		t.Errorf("empty line recorded as %q", tr[23])
	}
	if got := srv.Messages(); len(got) != 0 {
		t.Errorf("messages %+v", got)
	}
}

// plainEHLONoSTARTTLS is the EHLO reply on a plaintext session without
// STARTTLS or AUTH.
var plainEHLONoSTARTTLS = []string{
	"250-mx.test",
	"250-PIPELINING",
	"250-SIZE 67108864",
	"250-8BITMIME",
	"250-ENHANCEDSTATUSCODES",
	"250 SMTPUTF8",
}

func TestFaultOptions(t *testing.T) {
	t.Run("StripSTARTTLS", func(t *testing.T) {
		srv := NewServer(t, &Options{StripSTARTTLS: true})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", plainEHLONoSTARTTLS...)
		c.cmd("STARTTLS", "502 5.5.1 STARTTLS not available")
		c.cmd("EHLO c", plainEHLONoSTARTTLS...)
		checkTranscript(t, srv, "plain: EHLO c", "plain: STARTTLS", "plain: EHLO c")
	})

	t.Run("STARTTLSReply", func(t *testing.T) {
		srv := NewServer(t, &Options{STARTTLSReply: "454 4.7.0 TLS not available due to local problem"})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", defaultEHLOPlain...)
		c.cmd("STARTTLS", "454 4.7.0 TLS not available due to local problem")
		c.cmd("EHLO c", defaultEHLOPlain...)
		c.cmd("MAIL FROM:<a@x>", "250 2.1.0 Ok")
		checkTranscript(t, srv, "plain: EHLO c", "plain: STARTTLS", "plain: EHLO c", "plain: MAIL FROM:<a@x>")
	})

	t.Run("InjectAfterSTARTTLS", func(t *testing.T) {
		srv := NewServer(t, &Options{InjectAfterSTARTTLS: "250-injected\r\n250 more\r\n"})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", defaultEHLOPlain...)
		c.send("STARTTLS")
		c.expect("220 2.0.0 Ready to start TLS")
		// The injected bytes arrive in plaintext, before the handshake.
		c.expect("250-injected", "250 more")
		c.startTLS(tlsConfigFor(srv, "mx.test"))
		c.cmd("EHLO c", defaultEHLOTLS...)
		checkTranscript(t, srv, "plain: EHLO c", "plain: STARTTLS", "tls: EHLO c")
	})

	t.Run("BufferedCommandsSurviveSTARTTLS", func(t *testing.T) {
		srv := NewServer(t, &Options{BufferedCommandsSurviveSTARTTLS: true, AllowPipeliningViolations: true})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", defaultEHLOPlain...)
		c.sendRaw("STARTTLS\r\nNOOP\r\n") // one write
		c.expect("220 2.0.0 Ready to start TLS")
		c.startTLS(tlsConfigFor(srv, "mx.test"))
		// The NOOP sent in plaintext is answered under TLS, unasked.
		c.expect("250 2.0.0 Ok")
		c.cmd("EHLO c", defaultEHLOTLS...)
		checkTranscript(t, srv, "plain: EHLO c", "plain: STARTTLS", "tls: NOOP", "tls: EHLO c")
		if got, want := srv.PipeliningViolations(), []string{"STARTTLS: 6 bytes sent before the reply"}; !reflect.DeepEqual(got, want) {
			t.Errorf("violations = %q, want %q", got, want)
		}
	})

	t.Run("BufferedCommandsDiscardedByDefault", func(t *testing.T) {
		srv := NewServer(t, &Options{AllowPipeliningViolations: true})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", defaultEHLOPlain...)
		c.sendRaw("STARTTLS\r\nNOOP\r\n")
		c.expect("220 2.0.0 Ready to start TLS")
		c.startTLS(tlsConfigFor(srv, "mx.test"))
		c.cmd("EHLO c", defaultEHLOTLS...)
		checkTranscript(t, srv, "plain: EHLO c", "plain: STARTTLS", "tls: EHLO c")
	})

	t.Run("PlaintextOnImplicit", func(t *testing.T) {
		srv := NewServer(t, &Options{PlaintextOnImplicit: true})
		c := dialPlain(t, srv.ImplicitAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", defaultEHLOPlain...)
		c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
		c.startTLS(srv.ClientTLSConfig())
		c.cmd("EHLO c", defaultEHLOTLS...)

		// A TLS client pointed at it fails its handshake (it gets the
		// plaintext greeting instead of a ServerHello).
		raw, err := net.Dial("tcp", srv.ImplicitAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tlsClient(raw, srv.ClientTLSConfig()).Handshake(); err == nil {
			t.Fatal("TLS handshake against plaintext port succeeded")
		}
	})

	t.Run("Greeting and Hostname", func(t *testing.T) {
		srv := NewServer(t, &Options{Greeting: "554 5.3.2 no service", Hostname: "smtp.example", Extensions: []string{}, StripSTARTTLS: true})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("554 5.3.2 no service")
		c.cmd("EHLO c", "250 smtp.example")
		c.cmd("HELO c", "250 smtp.example")
		c.cmd("QUIT", "221 2.0.0 Bye")

		srv = NewServer(t, &Options{Hostname: "smtp.example", Extensions: []string{"X-ONE", "SIZE 5"}})
		c = dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
		c.expect("220 smtp.example ESMTP tlsmail-test")
		c.cmd("EHLO c", "250-smtp.example", "250-X-ONE", "250-SIZE 5", "250 AUTH PLAIN LOGIN CRAM-MD5")
		c.send("AUTH CRAM-MD5")
		r := c.reply()
		chal, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(r[0], "334 "))
		if !strings.HasSuffix(string(chal), "@smtp.example>") {
			t.Errorf("challenge %q", chal)
		}
	})

	t.Run("AuthBeforeTLS", func(t *testing.T) {
		srv := NewServer(t, &Options{AuthBeforeTLS: true})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", append(append([]string{}, defaultEHLOPlain[:6]...), "250-STARTTLS", "250 AUTH PLAIN LOGIN CRAM-MD5")...)
		c.cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "235 2.7.0 Authentication successful")
		c.cmd("MAIL FROM:<a@x>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@x>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw("hi\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as 1")
		if m := srv.Messages(); len(m) != 1 || m[0].TLS || m[0].AuthUser != "user" || m[0].AuthMechanism != "PLAIN" {
			t.Fatalf("messages %+v", m)
		}
		c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
		c.startTLS(srv.ClientTLSConfig())
		c.cmd("EHLO c", defaultEHLOTLS...)
		// Authentication is forgotten across STARTTLS.
		c.cmd("MAIL FROM:<a@x>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@x>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw("hi\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as 2")
		if m := srv.Messages(); len(m) != 2 || !m[1].TLS || m[1].AuthUser != "" || m[1].AuthMechanism != "" {
			t.Fatalf("messages %+v", m)
		}
		c.cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "235 2.7.0 Authentication successful")
	})

	t.Run("AuthOnlyBeforeTLS", func(t *testing.T) {
		srv := NewServer(t, &Options{AuthOnlyBeforeTLS: true, AuthMechanisms: []string{"LOGIN"}})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", append(append([]string{}, defaultEHLOPlain[:6]...), "250-STARTTLS", "250 AUTH LOGIN")...)
		c.cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "504 5.5.4 Unrecognized authentication type")
		c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
		c.startTLS(srv.ClientTLSConfig())
		c.cmd("EHLO c", plainEHLONoSTARTTLS...)
		c.cmd("AUTH LOGIN", "504 5.5.4 Unrecognized authentication type")
	})

	t.Run("AuthMechanisms", func(t *testing.T) {
		srv := NewServer(t, &Options{AuthMechanisms: []string{"PLAIN", "GSSAPI"}})
		c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", append(append([]string{}, defaultEHLOTLS[:6]...), "250 AUTH PLAIN GSSAPI")...)
		c.cmd("AUTH LOGIN", "504 5.5.4 Unrecognized authentication type")
		c.cmd("AUTH GSSAPI abc", "504 5.5.4 Unrecognized authentication type") // advertised, not implemented
		c.cmd("AUTH plain "+b64("\x00user\x00pass"), "235 2.7.0 Authentication successful")

		srv = NewServer(t, &Options{AuthMechanisms: []string{}})
		c = dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", plainEHLONoSTARTTLS...)
		c.cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "504 5.5.4 Unrecognized authentication type")
	})
}

func TestCertificates(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		srv := NewServer(t, nil)
		for _, name := range []string{"", "localhost", "mx.test"} {
			c := dialTLS(t, srv.ImplicitAddr, tlsConfigFor(srv, name))
			c.expect("220 mx.test ESMTP tlsmail-test")
			leaf := c.c.(*tls.Conn).ConnectionState().PeerCertificates[0]
			for _, h := range []string{"localhost", "mx.test", "127.0.0.1", "::1"} {
				if err := leaf.VerifyHostname(h); err != nil {
					t.Error(err)
				}
			}
		}
		block, rest := pem.Decode(srv.CACertPEM())
		if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
			t.Fatalf("CACertPEM: %q", srv.CACertPEM())
		}
		ca, err := x509.ParseCertificate(block.Bytes)
		if err != nil || !ca.IsCA {
			t.Fatalf("CA: %v %v", ca, err)
		}
		if !srv.RootCAs().Equal(func() *x509.CertPool { p := x509.NewCertPool(); p.AppendCertsFromPEM(srv.CACertPEM()); return p }()) {
			t.Error("RootCAs and CACertPEM disagree")
		}
		if a, b := srv.ClientTLSConfig(), srv.ClientTLSConfig(); a == b || a.ServerName != "" {
			t.Error("ClientTLSConfig must be a new value without ServerName")
		}
		// All servers of a process share one CA, so that it can be
		// installed once as a system root (SSL_CERT_FILE); their leaf
		// certificates differ.
		other := NewServer(t, nil)
		shared, err := CACertPEM()
		if err != nil || !bytes.Equal(other.CACertPEM(), srv.CACertPEM()) || !bytes.Equal(shared, srv.CACertPEM()) {
			t.Error("servers do not share the process CA")
		}
		if bytes.Equal(other.tlsConfig.Certificates[0].Certificate[0], srv.tlsConfig.Certificates[0].Certificate[0]) {
			t.Error("two servers share a leaf certificate")
		}
	})

	for _, tc := range []struct {
		kind  CertKind
		check func(error) bool
	}{
		{CertWrongName, func(err error) bool { var e x509.HostnameError; return errors.As(err, &e) }},
		{CertExpired, func(err error) bool {
			var e x509.CertificateInvalidError
			return errors.As(err, &e) && e.Reason == x509.Expired
		}},
		{CertUntrusted, func(err error) bool { var e x509.UnknownAuthorityError; return errors.As(err, &e) }},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			srv := NewServer(t, &Options{Cert: tc.kind})
			for _, addr := range []string{srv.ImplicitAddr, srv.StartTLSAddr} {
				raw, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				raw.SetDeadline(time.Now().Add(5 * time.Second))
				if addr == srv.StartTLSAddr {
					c := newClient(t, raw, raw)
					c.expect("220 mx.test ESMTP tlsmail-test")
					c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
				}
				cfg := tlsConfigFor(srv, "mx.test")
				if tc.kind == CertWrongName {
					cfg.ServerName = ""
				}
				err = tlsClient(raw, cfg).Handshake()
				if err == nil || !tc.check(err) {
					t.Fatalf("handshake error %v (%T)", err, err)
				}
			}
			waitIdle(t, srv) // the server dropped the connections
			// Without verification the certificate is usable.
			cfg := &tls.Config{InsecureSkipVerify: true}
			c := dialTLS(t, srv.ImplicitAddr, cfg)
			c.expect("220 mx.test ESMTP tlsmail-test")
			leaf := c.c.(*tls.Conn).ConnectionState().PeerCertificates[0]
			wantDNS := []string{"localhost", "mx.test"}
			if tc.kind == CertWrongName {
				wantDNS = []string{"wrong.example"}
			}
			if !reflect.DeepEqual(leaf.DNSNames, wantDNS) {
				t.Errorf("DNSNames %q", leaf.DNSNames)
			}
		})
	}
}

func TestTLSVersions(t *testing.T) {
	srv := NewServer(t, &Options{MinTLSVersion: tls.VersionTLS10, MaxTLSVersion: tls.VersionTLS11})
	cfg := srv.ClientTLSConfig()
	cfg.MinVersion = tls.VersionTLS10
	c := dialTLS(t, srv.ImplicitAddr, cfg)
	if v := c.c.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS11 {
		t.Fatalf("version %x", v)
	}
	c.expect("220 mx.test ESMTP tlsmail-test")

	// MaxTLSVersion alone also works.
	srv2 := NewServer(t, &Options{MaxTLSVersion: tls.VersionTLS11})
	cfg2 := srv2.ClientTLSConfig()
	cfg2.MinVersion = tls.VersionTLS10
	c = dialTLS(t, srv2.ImplicitAddr, cfg2)
	c.expect("220 mx.test ESMTP tlsmail-test")

	// A client with Go's default minimum (TLS 1.2) refuses.
	raw, err := net.Dial("tcp", srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tlsClient(raw, srv.ClientTLSConfig()).Handshake(); err == nil {
		t.Fatal("handshake with TLS 1.2+ client succeeded against TLS 1.1 server")
	}

	srv3 := NewServer(t, &Options{MinTLSVersion: tls.VersionTLS13})
	cfg = srv3.ClientTLSConfig()
	cfg.MaxVersion = tls.VersionTLS12
	raw, err = net.Dial("tcp", srv3.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tlsClient(raw, cfg).Handshake(); err == nil {
		t.Fatal("TLS 1.2 handshake succeeded against TLS 1.3-only server")
	}
}

func TestHooks(t *testing.T) {
	t.Run("Handler", func(t *testing.T) {
		var tlsSeen []bool
		var mu sync.Mutex
		srv := NewServer(t, &Options{Handler: func(s *Session, line string) bool {
			mu.Lock()
			tlsSeen = append(tlsSeen, s.TLS())
			mu.Unlock()
			switch {
			case line == "EHLO c":
				s.Reply("250-hooked", "250 AUTH PLAIN")
				return true
			case line == "SECRET":
				// The hook may speak any bytes.
				s.WriteRaw([]byte("299 raw\r\n"))
				return true
			case line == b64("user"):
				// Taking over a SASL response abandons the exchange.
				s.Reply("421 4.7.0 hook says no")
				return true
			case line == "DROP":
				s.Close()
				return true
			}
			return false
		}})
		c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", "250-hooked", "250 AUTH PLAIN")
		c.cmd("EHLO d", append(append([]string{}, defaultEHLOTLS[:6]...), "250 AUTH PLAIN LOGIN CRAM-MD5")...)
		c.cmd("SECRET", "299 raw")
		c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
		c.cmd(b64("user"), "421 4.7.0 hook says no")
		c.cmd("NOOP", "250 2.0.0 Ok") // back in command state
		c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
		c.cmd(b64("other"), "334 UGFzc3dvcmQ6")
		c.cmd(b64("x"), "535 5.7.8 Error: authentication failed: authentication failure")
		c.send("DROP")
		c.expectEOF()
		waitIdle(t, srv)
		checkTranscript(t, srv,
			"tls: EHLO c", "tls: EHLO d", "tls: SECRET",
			"tls: AUTH LOGIN", "tls: dXNlcg==", "tls: NOOP",
			"tls: AUTH LOGIN", "tls: b3RoZXI=", "tls: eA==", "tls: DROP",
		)
		mu.Lock()
		defer mu.Unlock()
		if len(tlsSeen) != 10 {
			t.Fatalf("handler called %d times", len(tlsSeen))
		}
		for _, v := range tlsSeen {
			if !v {
				t.Error("Session.TLS() false on implicit TLS session")
			}
		}
	})

	t.Run("Handler StartTLS", func(t *testing.T) {
		srv := NewServer(t, &Options{Handler: func(s *Session, line string) bool {
			if line != "STARTTLS" || s.TLS() {
				return false
			}
			s.Reply("220-two", "220 lines")
			if err := s.StartTLS(); err != nil {
				s.Close()
			}
			return true
		}})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("MAIL FROM:<a@x>", "503 5.5.1 Error: send HELO/EHLO first")
		c.cmd("EHLO c", defaultEHLOPlain...)
		c.cmd("STARTTLS", "220-two", "220 lines")
		c.startTLS(srv.ClientTLSConfig())
		c.cmd("STARTTLS", "503 5.5.1 Error: TLS already active")
		c.cmd("MAIL FROM:<a@x>", "503 5.5.1 Error: send HELO/EHLO first")
	})

	t.Run("OnData", func(t *testing.T) {
		var got []*Message
		srv := NewServer(t, &Options{OnData: func(s *Session, m *Message) bool {
			got = append(got, m) // only touched on session goroutines, sequentially
			switch string(m.Data) {
			case "reject\r\n":
				s.Reply("451 4.3.0 try later")
				return true
			case "drop\r\n":
				s.Close()
				return true
			}
			return false
		}})
		c := startData(t, srv)
		c.sendRaw("reject\r\n.\r\n")
		c.expect("451 4.3.0 try later")
		c.cmd("RCPT TO:<b@x>", "503 5.5.1 Error: need MAIL command") // transaction reset
		c.cmd("MAIL FROM:<a@x>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@x>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw("keep\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as 1")
		c.cmd("MAIL FROM:<a@x>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@x>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw("drop\r\n.\r\n")
		c.expectEOF()
		waitIdle(t, srv)
		m := srv.Messages()
		if len(m) != 1 || string(m[0].Data) != "keep\r\n" {
			t.Fatalf("messages %+v", m)
		}
		if len(got) != 3 || got[0].From != "a@example.org" || string(got[0].Raw) != "reject\r\n.\r\n" {
			t.Fatalf("hook saw %+v", got)
		}
	})

	t.Run("OnAccept raw", func(t *testing.T) {
		var mu sync.Mutex
		var seen []string
		srv := NewServer(t, &Options{OnAccept: func(conn net.Conn) bool {
			mu.Lock()
			seen = append(seen, conn.LocalAddr().String())
			mu.Unlock()
			if _, ok := conn.(*tls.Conn); ok {
				panic("OnAccept got a TLS connection")
			}
			conn.Write([]byte("220 raw hello\r\n"))
			return true
		}})
		for _, addr := range []string{srv.ImplicitAddr, srv.StartTLSAddr} {
			c := dialPlain(t, addr)
			c.expect("220 raw hello")
			c.expectEOF()
		}
		waitIdle(t, srv)
		mu.Lock()
		defer mu.Unlock()
		if !reflect.DeepEqual(seen, []string{srv.ImplicitAddr, srv.StartTLSAddr}) {
			t.Errorf("OnAccept saw %q", seen)
		}
		if srv.Connections() != 2 || len(srv.Transcript()) != 0 {
			t.Errorf("Connections %d, transcript %q", srv.Connections(), srv.Transcript())
		}

		// Returning false continues normally.
		srv = NewServer(t, &Options{OnAccept: func(net.Conn) bool { return false }})
		c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
		c.expect("220 mx.test ESMTP tlsmail-test")
	})
}

// closeWithin runs srv.Close and fails if it takes longer than d.
func closeWithin(t *testing.T, srv *Server, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		srv.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatal("Close did not return")
	}
}

func TestStallReleasedByClose(t *testing.T) {
	t.Run("OnAccept", func(t *testing.T) {
		returned := make(chan struct{})
		srv, err := Start(&Options{OnAccept: func(conn net.Conn) bool {
			io.Copy(io.Discard, conn) // stall until the connection is closed
			close(returned)
			return true
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c := dialPlain(t, srv.ImplicitAddr)
		c.sendRaw("\x16\x03\x01 hello?")
		c.expectSilence(100 * time.Millisecond)
		if err := srv.WaitIdle(50 * time.Millisecond); err == nil {
			t.Fatal("WaitIdle returned nil with a stalled connection")
		}
		closeWithin(t, srv, 2*time.Second)
		<-returned
		c.expectEOF()
		if err := srv.WaitIdle(0); err != nil {
			t.Fatalf("WaitIdle after Close: %v", err)
		}
	})

	t.Run("Session.Stall", func(t *testing.T) {
		stalled := make(chan struct{})
		srv, err := Start(&Options{Handler: func(s *Session, line string) bool {
			if line != "DATA" {
				return false
			}
			close(stalled)
			s.Stall()
			return true
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.send("DATA")
		<-stalled
		c.send("NOOP")
		c.expectSilence(100 * time.Millisecond)
		closeWithin(t, srv, 2*time.Second)
		c.expectEOF()
		// Stall also returns when the client goes away.
		srv2, err := Start(&Options{Handler: func(s *Session, line string) bool {
			s.Stall()
			return true
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer srv2.Close()
		c = dialPlain(t, srv2.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.send("HELLO")
		c.expectSilence(50 * time.Millisecond)
		c.raw.Close()
		if err := srv2.WaitIdle(2 * time.Second); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("idle and mid-handshake clients", func(t *testing.T) {
		srv, err := Start(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		idle := dialPlain(t, srv.StartTLSAddr)
		idle.expect("220 mx.test ESMTP tlsmail-test")
		half := dialPlain(t, srv.ImplicitAddr) // never starts its handshake
		_ = half
		data := startData(t, srv)
		data.sendRaw("partial")
		time.Sleep(20 * time.Millisecond)
		closeWithin(t, srv, 2*time.Second)
		idle.expectEOF()
		data.expectEOF()
		if n := srv.Connections(); n != 3 {
			t.Errorf("Connections = %d", n)
		}
		srv.Close() // idempotent
		if _, err := net.Dial("tcp", srv.StartTLSAddr); err == nil {
			t.Error("listener still accepting after Close")
		}
	})
}

func TestWaitIdle(t *testing.T) {
	srv := NewServer(t, nil)
	if err := srv.WaitIdle(0); err != nil {
		t.Fatal(err)
	}
	c := dialPlain(t, srv.StartTLSAddr)
	c.expect("220 mx.test ESMTP tlsmail-test")
	start := time.Now()
	if err := srv.WaitIdle(50 * time.Millisecond); err == nil {
		t.Fatal("WaitIdle returned nil with an open connection")
	} else if time.Since(start) < 40*time.Millisecond {
		t.Fatalf("WaitIdle returned early: %v", err)
	}
	raw := c.raw
	go func() {
		time.Sleep(30 * time.Millisecond)
		raw.Close()
	}()
	if err := srv.WaitIdle(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	// And again with a fresh connection (the idle signal is rearmed).
	c = dialPlain(t, srv.StartTLSAddr)
	c.expect("220 mx.test ESMTP tlsmail-test")
	if err := srv.WaitIdle(20 * time.Millisecond); err == nil {
		t.Fatal("WaitIdle returned nil with an open connection")
	}
	c.cmd("QUIT", "221 2.0.0 Bye")
	waitIdle(t, srv)
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		srv, err := Start(&Options{Handler: func(s *Session, line string) bool {
			if line == "STALL" {
				s.Stall()
				return true
			}
			return false
		}})
		if err != nil {
			t.Fatal(err)
		}
		var clients []net.Conn
		c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.send("STALL")
		clients = append(clients, c.raw)
		c = startData(t, srv)
		clients = append(clients, c.raw)
		c = dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("QUIT", "221 2.0.0 Bye")
		clients = append(clients, c.raw)
		raw, err := net.Dial("tcp", srv.ImplicitAddr)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, raw)
		time.Sleep(10 * time.Millisecond)
		srv.Close()
		for _, c := range clients {
			c.Close()
		}
	}
	CheckGoroutines(t, before)
}

// TestHostileInput throws random bytes and command fragments at the
// server: it must neither panic nor hang, and keep serving.
func TestHostileInput(t *testing.T) {
	srv := NewServer(t, &Options{AllowPipeliningViolations: true,
		AuthBeforeTLS:   true,
		dataLimit:       4096,
		AuthMechanisms:  []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"},
		ScramIterations: 1,
		Extensions:      allExts,
		Strict8Bit:      true,
		RcptReply: func(addr string) string {
			if strings.HasPrefix(addr, "c") {
				return "550 5.1.1 no"
			}
			return ""
		},
	})
	pieces := []string{
		"AUTH SCRAM-SHA-256 " + b64("n,,n=user,r=abc") + "\r\n", "AUTH SCRAM-SHA-1\r\n", b64("c=biws,r=abc,p=AAAA") + "\r\n",
		"AUTH XOAUTH2 " + xoauth2("user", "bad") + "\r\n", "AUTH OAUTHBEARER\r\n", "AQ==\r\n",
		"MAIL FROM:<a@x> SIZE=10 BODY=8BITMIME\r\n", "RCPT TO:<c@x> NOTIFY=NEVER\r\n", "RCPT TO:<d@x> ORCPT=rfc822;d@x\r\n",
		"MAIL FROM:<\xc3\xa9@x> SMTPUTF8 ENVID=+41\r\n",
		"EHLO x\r\n", "HELO x\r\n", "MAIL FROM:<a@x>\r\n", "RCPT TO:<b@x>\r\n", "DATA\r\n",
		"AUTH PLAIN\r\n", "AUTH LOGIN\r\n", "AUTH CRAM-MD5\r\n", "AUTH PLAIN =\r\n", "*\r\n",
		".\r\n", "..\r\n", "\r\n", "\n", "\r", ".", "<", ">", ":", " ", "\x00", "\xff",
		"RSET\r\n", "NOOP\r\n", "STARTTLS x\r\n", "MAIL FROM:<\r\n", "RCPT TO:<\"\\>\r\n",
		"AUTH LOGIN =\r\n", "AUTH\r\n", "=\r\n", "AAAA\r\n",
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 60; i++ {
		c := dialPlain(t, srv.StartTLSAddr)
		var b strings.Builder
		for j := 0; j < 200; j++ {
			if rng.Intn(4) == 0 {
				n := rng.Intn(300)
				for k := 0; k < n; k++ {
					b.WriteByte(byte(rng.Intn(256)))
				}
			} else {
				b.WriteString(pieces[rng.Intn(len(pieces))])
			}
		}
		if rng.Intn(3) == 0 {
			b.WriteString(strings.Repeat("Z", rng.Intn(20000)))
		}
		go func(conn net.Conn) { io.Copy(io.Discard, conn) }(c.raw) // keep replies flowing
		c.raw.Write([]byte(b.String()))
		c.raw.Close()
	}
	waitIdle(t, srv)
	c := dialPlain(t, srv.StartTLSAddr)
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("NOOP", "250 2.0.0 Ok")
}

func TestConcurrentClients(t *testing.T) {
	srv := NewServer(t, nil)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() { // concurrent readers of the snapshots
		for {
			select {
			case <-stop:
				return
			default:
				srv.Transcript()
				srv.Messages()
				srv.Connections()
				srv.WaitIdle(0)
				runtime.Gosched()
			}
		}
	}()
	const n = 12
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rt := &recordingTB{TB: t}
			defer func() {
				if r := recover(); r != nil && r != errFatal {
					panic(r)
				}
				if rt.err != nil {
					errs <- rt.err
				}
			}()
			var c *client
			if i%2 == 0 {
				c = dialTLS(rt, srv.ImplicitAddr, srv.ClientTLSConfig())
				c.expect("220 mx.test ESMTP tlsmail-test")
			} else {
				c = dialPlain(rt, srv.StartTLSAddr)
				c.expect("220 mx.test ESMTP tlsmail-test")
				c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
				c.startTLS(srv.ClientTLSConfig())
			}
			c.cmd("EHLO c", defaultEHLOTLS...)
			c.cmd("AUTH PLAIN "+b64("\x00user\x00pass"), "235 2.7.0 Authentication successful")
			c.cmd(fmt.Sprintf("MAIL FROM:<%d@x>", i), "250 2.1.0 Ok")
			c.cmd("RCPT TO:<b@x>", "250 2.1.5 Ok")
			c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
			c.sendRaw(fmt.Sprintf("message %d\r\n.\r\n", i))
			r := c.reply()
			if len(r) != 1 || !strings.HasPrefix(r[0], "250 2.0.0 Ok: queued as ") {
				rt.Fatalf("reply %q", r)
			}
			c.cmd("QUIT", "221 2.0.0 Bye")
		}(i)
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitIdle(t, srv)
	if m := srv.Messages(); len(m) != n {
		t.Fatalf("%d messages", len(m))
	}
	if len(srv.Transcript()) != n*6+n/2 {
		t.Fatalf("transcript has %d lines", len(srv.Transcript()))
	}
}

var errFatal = errors.New("fatal")

// recordingTB lets client helpers run on goroutines other than the test's.
type recordingTB struct {
	testing.TB
	err error
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Fatal(args ...any) {
	r.err = errors.New(fmt.Sprint(args...))
	panic(errFatal)
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.err = fmt.Errorf(format, args...)
	panic(errFatal)
}

func TestStartNilAndNewServer(t *testing.T) {
	srv, err := Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, a := range []string{srv.ImplicitAddr, srv.StartTLSAddr} {
		if !strings.HasPrefix(a, "127.0.0.1:") || strings.HasSuffix(a, ":0") {
			t.Errorf("address %q", a)
		}
	}
	if srv.ImplicitAddr == srv.StartTLSAddr {
		t.Error("same address for both listeners")
	}
	if s := CertKind(9).String(); s != "CertKind(9)" {
		t.Error(s)
	}
	// Options are copied: changing them afterwards has no effect.
	opts := &Options{Users: map[string]string{"a": "b"}}
	srv2 := NewServer(t, opts)
	opts.Users["a"] = "changed"
	opts.Greeting = "554 changed"
	c := dialTLS(t, srv2.ImplicitAddr, srv2.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", defaultEHLOTLS...)
	c.cmd("AUTH PLAIN "+b64("\x00a\x00b"), "235 2.7.0 Authentication successful")
}

// scramClient is the client side of SCRAM (RFC 5802), computed in the
// test with crypto/pbkdf2 and crypto/hmac, independently of the server.
type scramClient struct {
	h      func() hash.Hash
	name   string // the n= value, escaped as it goes on the wire
	pass   string
	gs2    string // GS2 header, "n,," unless set
	cbData []byte // channel binding data for c=, after the header

	// Overrides for broken clients.
	cbind       string // c= value instead of the right one
	nonce       string // r= value in the final message instead of the server's
	flipProof   bool   // corrupt the proof
	clientNonce string // the client nonce; a fixed one if empty

	bare      string
	serverSig []byte
}

func (sc *scramClient) first() string {
	if sc.gs2 == "" {
		sc.gs2 = "n,,"
	}
	if sc.clientNonce == "" {
		sc.clientNonce = "fyko+d2lbbFgONRv9qkxdawL"
	}
	sc.bare = "n=" + sc.name + ",r=" + sc.clientNonce
	return sc.gs2 + sc.bare
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// serverFirstRE matches the server-first message for the fixed client
// nonce: the server appends 18 random bytes in base64 and sends its
// 16-byte salt.
var serverFirstRE = regexp.MustCompile(`^r=fyko\+d2lbbFgONRv9qkxdawL[A-Za-z0-9+/]{24},s=[A-Za-z0-9+/]{22}==,i=(\d+)$`)

// final answers serverFirst.
func (sc *scramClient) final(t *testing.T, serverFirst string) string {
	t.Helper()
	m := serverFirstRE.FindStringSubmatch(serverFirst)
	if m == nil {
		t.Fatalf("server-first message %q", serverFirst)
	}
	attrs := strings.Split(serverFirst, ",")
	nonce := strings.TrimPrefix(attrs[0], "r=")
	salt, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(attrs[1], "s="))
	if err != nil {
		t.Fatal(err)
	}
	var iter int
	fmt.Sscan(m[1], &iter)
	salted, err := pbkdf2.Key(sc.h, sc.pass, salt, iter, sc.h().Size())
	if err != nil {
		t.Fatal(err)
	}
	clientKey := hmacSum(sc.h, salted, "Client Key")
	d := sc.h()
	d.Write(clientKey)
	storedKey := d.Sum(nil)
	cbind := sc.cbind
	if cbind == "" {
		cbind = base64.StdEncoding.EncodeToString(append([]byte(sc.gs2), sc.cbData...))
	}
	if sc.nonce != "" {
		nonce = sc.nonce
	}
	withoutProof := "c=" + cbind + ",r=" + nonce
	authMessage := sc.bare + "," + serverFirst + "," + withoutProof
	clientSig := hmacSum(sc.h, storedKey, authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ clientSig[i]
	}
	if sc.flipProof {
		proof[0] ^= 1
	}
	sc.serverSig = hmacSum(sc.h, hmacSum(sc.h, salted, "Server Key"), authMessage)
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
}

// scramStart sends AUTH with the client-first message as initial
// response and returns the decoded server-first message.
func scramStart(t *testing.T, c *client, mech string, sc *scramClient) string {
	t.Helper()
	c.send("AUTH " + mech + " " + b64(sc.first()))
	r := c.reply()
	if len(r) != 1 || !strings.HasPrefix(r[0], "334 ") {
		t.Fatalf("reply to client-first %q", r)
	}
	sf, err := base64.StdEncoding.DecodeString(r[0][4:])
	if err != nil {
		t.Fatal(err)
	}
	return string(sf)
}

// scramLogin runs a whole successful exchange and checks every reply.
func scramLogin(t *testing.T, c *client, mech string, sc *scramClient) {
	t.Helper()
	final := sc.final(t, scramStart(t, c, mech, sc))
	c.cmd(b64(final), "334 "+b64("v="+base64.StdEncoding.EncodeToString(sc.serverSig)))
	c.cmd("", "235 2.7.0 Authentication successful")
}

// exporter returns the tls-exporter channel binding of the client's side
// of the connection (RFC 9266).
func exporter(t *testing.T, c *client) []byte {
	t.Helper()
	st := c.c.(*tls.Conn).ConnectionState()
	cb, err := st.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	return cb
}

const scramFail = "535 5.7.8 Error: authentication failed: "

var allScram = []string{"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"}

func scramHash(mech string) func() hash.Hash {
	if strings.HasPrefix(mech, "SCRAM-SHA-1") {
		return sha1.New
	}
	return sha256.New
}

// dialSCRAM connects over implicit TLS and says EHLO to a server offering
// mechs.
func dialSCRAM(t *testing.T, srv *Server, mechs ...string) *client {
	t.Helper()
	c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", append(append([]string{}, defaultEHLOTLS[:6]...), "250 AUTH "+strings.Join(mechs, " "))...)
	return c
}

func TestSCRAM(t *testing.T) {
	users := map[string]string{"user": "pencil", "a,b=c": "p,w=", "nopass": ""}
	srv := NewServer(t, &Options{AuthMechanisms: allScram, Users: users})

	for _, mech := range allScram {
		plus := strings.HasSuffix(mech, "-PLUS")
		h := scramHash(mech)
		// newClient returns a correct client for user on c.
		newSC := func(c *client, name, pass string) *scramClient {
			sc := &scramClient{h: h, name: name, pass: pass}
			if plus {
				sc.gs2, sc.cbData = "p=tls-exporter,,", exporter(t, c)
			}
			return sc
		}
		t.Run(mech, func(t *testing.T) {
			srv.Reset()
			c := dialSCRAM(t, srv, allScram...)
			sc := newSC(c, "user", "pencil")
			sf := scramStart(t, c, mech, sc)
			if m := serverFirstRE.FindStringSubmatch(sf); m == nil || m[1] != "4096" {
				t.Fatalf("server-first %q", sf)
			}
			final := sc.final(t, sf)
			// Success: the server signature as additional data in a
			// 334, the client's empty response, then 235.
			c.cmd(b64(final), "334 "+b64("v="+base64.StdEncoding.EncodeToString(sc.serverSig)))
			c.cmd("", "235 2.7.0 Authentication successful")
			c.cmd("AUTH "+mech, "503 5.5.1 Error: already authenticated")
			c.cmd("MAIL FROM:<a@x>", "250 2.1.0 Ok")
			c.cmd("RCPT TO:<b@x>", "250 2.1.5 Ok")
			c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
			c.sendRaw("hi\r\n.\r\n")
			c.expect("250 2.0.0 Ok: queued as 1")
			if m := srv.Messages(); len(m) != 1 || m[0].AuthUser != "user" || m[0].AuthMechanism != mech {
				t.Fatalf("messages %+v", m)
			}
			wantTr := []string{"tls: EHLO c", "tls: AUTH " + mech + " " + b64(sc.gs2+sc.bare), "tls: " + b64(final), "tls: "}
			if tr := srv.Transcript(); !reflect.DeepEqual(tr[:4], wantTr) {
				t.Errorf("transcript %q, want %q", tr[:4], wantTr)
			}

			// The server asks for the client-first message when there
			// is no initial response; a name with escaped ',' and '='.
			c = dialSCRAM(t, srv, allScram...)
			sc = newSC(c, "a=2Cb=3Dc", "p,w=")
			c.cmd("AUTH "+mech, "334 ")
			c.send(b64(sc.first()))
			rep := c.reply()
			sf2, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(rep[0], "334 "))
			if string(sf2)[strings.Index(string(sf2), ",s="):] != sf[strings.Index(sf, ",s="):] {
				t.Errorf("salt or iterations differ between users: %q, %q", sf2, sf)
			}
			final = sc.final(t, string(sf2))
			c.cmd(b64(final), "334 "+b64("v="+base64.StdEncoding.EncodeToString(sc.serverSig)))
			c.cmd("=", "235 2.7.0 Authentication successful") // "=" is also an empty response
			c.cmd("MAIL FROM:<a@x>", "250 2.1.0 Ok")
			c.cmd("RCPT TO:<b@x>", "250 2.1.5 Ok")
			c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
			c.sendRaw(".\r\n")
			c.expect("250 2.0.0 Ok: queued as 2")
			if m := srv.Messages(); len(m) != 2 || m[1].AuthUser != "a,b=c" {
				t.Fatalf("messages %+v", m)
			}

			// An empty password, and a matching authorization identity.
			c = dialSCRAM(t, srv, allScram...)
			sc = newSC(c, "nopass", "")
			sc.gs2 = strings.Replace(sc.gs2, ",,", ",a=nopass,", 1)
			scramLogin(t, c, mech, sc)

			fails := []struct {
				name     string
				user     string
				pass     string
				modify   func(sc *scramClient)
				want     string
				plusOnly bool
			}{
				{"wrong password", "user", "pencil2", nil, "invalid-proof", false},
				{"unknown user", "nobody", "pencil", nil, "invalid-proof", false},
				{"unknown user, empty password", "nobody", "", nil, "invalid-proof", false},
				{"forged proof", "user", "pencil", func(sc *scramClient) { sc.flipProof = true }, "invalid-proof", false},
				{"other nonce", "user", "pencil", func(sc *scramClient) { sc.nonce = "fyko+d2lbbFgONRv9qkxdawLxxxxxxxxxxxxxxxxxxxxxxxx" }, "other-error", false},
				{"client nonce only", "user", "pencil", func(sc *scramClient) { sc.nonce = "fyko+d2lbbFgONRv9qkxdawL" }, "other-error", false},
				{"c= of another header", "user", "pencil", func(sc *scramClient) { sc.cbind = b64("y,,") }, "channel-bindings-dont-match", false},
				{"c= with binding data", "user", "pencil", func(sc *scramClient) { sc.cbind = b64(sc.gs2 + strings.Repeat("x", 32)) }, "channel-bindings-dont-match", false},
				{"c= without binding data", "user", "pencil", func(sc *scramClient) { sc.cbind = b64(sc.gs2) }, "channel-bindings-dont-match", true},
				{"c= with other binding data", "user", "pencil", func(sc *scramClient) { sc.cbData[31] ^= 1 }, "channel-bindings-dont-match", true},
			}
			for _, f := range fails {
				if f.plusOnly && !plus {
					continue
				}
				c := dialSCRAM(t, srv, allScram...)
				sc := newSC(c, f.user, f.pass)
				if f.modify != nil {
					f.modify(sc)
				}
				final := sc.final(t, scramStart(t, c, mech, sc))
				c.cmd(b64(final), scramFail+f.want)
				c.cmd("NOOP", "250 2.0.0 Ok") // back in command state
			}

			// The client must answer the server signature with an empty
			// response; until then it is not authenticated.
			c = dialSCRAM(t, srv, allScram...)
			sc = newSC(c, "user", "pencil")
			final = sc.final(t, scramStart(t, c, mech, sc))
			c.cmd(b64(final), "334 "+b64("v="+base64.StdEncoding.EncodeToString(sc.serverSig)))
			c.cmd(b64("x"), scramFail+"other-error")
			c.cmd("MAIL FROM:<a@x>", "250 2.1.0 Ok")
			c.cmd("RSET", "250 2.0.0 Ok")
			// Cancelling at each step.
			scramStart(t, c, mech, sc)
			c.cmd("*", "501 5.7.0 Authentication aborted")
			final = sc.final(t, scramStart(t, c, mech, sc))
			c.cmd(b64(final), "334 "+b64("v="+base64.StdEncoding.EncodeToString(sc.serverSig)))
			c.cmd("*", "501 5.7.0 Authentication aborted")
			c.cmd("AUTH "+mech, "334 ")
			c.cmd("*", "501 5.7.0 Authentication aborted")
			// Malformed client-final messages.
			for _, bad := range []string{"", "c=biws", "c=biws,r=x,p=!!", "r=x,c=biws,p=AAAA", "c=biws,p=AAAA", "c=biws,r=a b,p=AAAA", "c=biws,r=x,7=x,p=AAAA", "c=biws,r=x,p="} {
				scramStart(t, c, mech, sc)
				c.cmd(b64(bad), scramFail+"invalid-encoding")
			}
			scramStart(t, c, mech, sc)
			c.cmd("!!", "501 5.5.2 Cannot decode response")
			// The binding data belongs to this connection: data from
			// another connection, as a man in the middle who terminates
			// TLS would have, does not match.
			if plus {
				other := dialSCRAM(t, srv, allScram...)
				sc := newSC(c, "user", "pencil")
				sc.cbData = exporter(t, other)
				final := sc.final(t, scramStart(t, c, mech, sc))
				c.cmd(b64(final), scramFail+"channel-bindings-dont-match")
			}
		})
	}

	t.Run("client-first", func(t *testing.T) {
		c := dialSCRAM(t, srv, allScram...)
		for _, tc := range []struct{ mech, msg, want string }{
			// Channel binding flags (RFC 5802 section 6).
			{"SCRAM-SHA-256", "p=tls-exporter,,n=user,r=abc", "channel-binding-not-supported"},
			{"SCRAM-SHA-1", "p=tls-exporter,,n=user,r=abc", "channel-binding-not-supported"},
			{"SCRAM-SHA-256", "y,,n=user,r=abc", "server-does-support-channel-binding"},
			{"SCRAM-SHA-1", "y,a=user,n=user,r=abc", "server-does-support-channel-binding"},
			{"SCRAM-SHA-256-PLUS", "n,,n=user,r=abc", "other-error"},
			{"SCRAM-SHA-256-PLUS", "y,,n=user,r=abc", "other-error"},
			{"SCRAM-SHA-256-PLUS", "p=tls-unique,,n=user,r=abc", "unsupported-channel-binding-type"},
			{"SCRAM-SHA-1-PLUS", "p=tls-server-end-point,,n=user,r=abc", "unsupported-channel-binding-type"},
			// Syntax.
			{"SCRAM-SHA-256", "", "invalid-encoding"},
			{"SCRAM-SHA-256", "n", "invalid-encoding"},
			{"SCRAM-SHA-256", "n,", "invalid-encoding"},
			{"SCRAM-SHA-256", "x,,n=user,r=abc", "invalid-encoding"},
			{"SCRAM-SHA-256", "p=,,n=user,r=abc", "invalid-encoding"},
			{"SCRAM-SHA-256", "p=a_b,,n=user,r=abc", "invalid-encoding"},
			{"SCRAM-SHA-256", "n,b=user,n=user,r=abc", "invalid-encoding"},
			{"SCRAM-SHA-256", "n,,n=user", "invalid-encoding"},
			{"SCRAM-SHA-256", "n,,r=abc,n=user", "invalid-encoding"},
			{"SCRAM-SHA-256", "n,,n=user,r=", "invalid-encoding"},
			{"SCRAM-SHA-256", "n,,n=user,r=a\x7fb", "invalid-encoding"},
			{"SCRAM-SHA-256", "n,,n=user,r=abc,ext", "invalid-encoding"},
			{"SCRAM-SHA-256", "n,,n=\xff,r=abc", "invalid-encoding"},
			{"SCRAM-SHA-256", "n,,m=x,n=user,r=abc", "extensions-not-supported"},
			{"SCRAM-SHA-256", "n,,n=,r=abc", "invalid-username-encoding"},
			{"SCRAM-SHA-256", "n,,n=a=2Db,r=abc", "invalid-username-encoding"},
			{"SCRAM-SHA-256", "n,,n=a=2,r=abc", "invalid-username-encoding"},
			{"SCRAM-SHA-256", "n,,n=a=2c,r=abc", "invalid-username-encoding"},
			{"SCRAM-SHA-256", "n,,n=a\x00b,r=abc", "invalid-username-encoding"},
			{"SCRAM-SHA-256", "n,a=a=,n=user,r=abc", "invalid-username-encoding"},
			// Acting for another user.
			{"SCRAM-SHA-256", "n,a=nopass,n=user,r=abc", "other-error"},
		} {
			ir := b64(tc.msg)
			if ir == "" {
				ir = "=" // an empty initial response (RFC 4954 section 4)
			}
			c.cmd("AUTH "+tc.mech+" "+ir, scramFail+tc.want)
		}
		c.cmd("AUTH SCRAM-SHA-256 !!", "501 5.5.2 Cannot decode response")
		// Unknown optional extensions are ignored.
		sc := &scramClient{h: sha256.New, name: "user", pass: "pencil"}
		c.send("AUTH SCRAM-SHA-256 " + b64(sc.first()+",x=ext"))
		if r := c.reply(); len(r) != 1 || !strings.HasPrefix(r[0], "334 ") {
			t.Fatalf("extension refused: %q", r)
		}
		c.cmd("*", "501 5.7.0 Authentication aborted")
	})

	t.Run("y without -PLUS offered", func(t *testing.T) {
		// "y" is the right flag when the server offers no binding.
		srv := NewServer(t, &Options{AuthMechanisms: []string{"SCRAM-SHA-256"}})
		c := dialSCRAM(t, srv, "SCRAM-SHA-256")
		scramLogin(t, c, "SCRAM-SHA-256", &scramClient{h: sha256.New, name: "user", pass: "pass", gs2: "y,,"})
	})

	t.Run("plaintext", func(t *testing.T) {
		// -PLUS needs TLS: neither advertised nor accepted without it,
		// so "y" is fine there too.
		srv := NewServer(t, &Options{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, AuthBeforeTLS: true})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", append(append([]string{}, defaultEHLOPlain[:6]...), "250-STARTTLS", "250 AUTH SCRAM-SHA-256")...)
		c.cmd("AUTH SCRAM-SHA-256-PLUS "+b64("p=tls-exporter,,n=user,r=abc"), "504 5.5.4 Unrecognized authentication type")
		scramLogin(t, c, "SCRAM-SHA-256", &scramClient{h: sha256.New, name: "user", pass: "pass", gs2: "y,,"})

		// Only -PLUS configured: no AUTH line at all before TLS.
		srv = NewServer(t, &Options{AuthMechanisms: []string{"SCRAM-SHA-1-PLUS"}, AuthBeforeTLS: true})
		c = dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", defaultEHLOPlain...)
		c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
		c.startTLS(srv.ClientTLSConfig())
		c.cmd("EHLO c", append(append([]string{}, defaultEHLOTLS[:6]...), "250 AUTH SCRAM-SHA-1-PLUS")...)
		// After STARTTLS the binding is that of the new TLS session.
		scramLogin(t, c, "SCRAM-SHA-1-PLUS", &scramClient{h: sha1.New, name: "user", pass: "pass", gs2: "p=tls-exporter,,", cbData: exporter(t, c)})
	})

	t.Run("TLS 1.2", func(t *testing.T) {
		srv := NewServer(t, &Options{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS"}, MaxTLSVersion: tls.VersionTLS12})
		c := dialSCRAM(t, srv, "SCRAM-SHA-256-PLUS")
		if v := c.c.(*tls.Conn).ConnectionState().Version; v != tls.VersionTLS12 {
			t.Fatalf("version %x", v)
		}
		scramLogin(t, c, "SCRAM-SHA-256-PLUS", &scramClient{h: sha256.New, name: "user", pass: "pass", gs2: "p=tls-exporter,,", cbData: exporter(t, c)})
	})

	t.Run("ScramIterations", func(t *testing.T) {
		srv := NewServer(t, &Options{AuthMechanisms: []string{"SCRAM-SHA-1"}, ScramIterations: 1})
		c := dialSCRAM(t, srv, "SCRAM-SHA-1")
		sc := &scramClient{h: sha1.New, name: "user", pass: "pass"}
		sf := scramStart(t, c, "SCRAM-SHA-1", sc)
		if m := serverFirstRE.FindStringSubmatch(sf); m == nil || m[1] != "1" {
			t.Fatalf("server-first %q", sf)
		}
		final := sc.final(t, sf)
		c.cmd(b64(final), "334 "+b64("v="+base64.StdEncoding.EncodeToString(sc.serverSig)))
		c.cmd("", "235 2.7.0 Authentication successful")
		// Each server has its own salt.
		srv2 := NewServer(t, &Options{AuthMechanisms: []string{"SCRAM-SHA-1"}, ScramIterations: 1})
		c = dialSCRAM(t, srv2, "SCRAM-SHA-1")
		if sf2 := scramStart(t, c, "SCRAM-SHA-1", sc); strings.Split(sf2, ",")[1] == strings.Split(sf, ",")[1] {
			t.Errorf("two servers share the salt %q", strings.Split(sf, ",")[1])
		}
	})

	t.Run("Handler inside the exchange", func(t *testing.T) {
		srv := NewServer(t, &Options{AuthMechanisms: []string{"SCRAM-SHA-256"}, Handler: func(s *Session, line string) bool {
			if strings.HasPrefix(line, "Yz1") { // the client-final message, "c=..."
				s.Reply("454 4.7.0 hooked")
				return true
			}
			return false
		}})
		c := dialSCRAM(t, srv, "SCRAM-SHA-256")
		sc := &scramClient{h: sha256.New, name: "user", pass: "pass"}
		c.cmd(b64(sc.final(t, scramStart(t, c, "SCRAM-SHA-256", sc))), "454 4.7.0 hooked")
		c.cmd("NOOP", "250 2.0.0 Ok")
	})
}

// TestScramVectors checks the server's SCRAM arithmetic and parsers
// against the exchanges of RFC 5802 section 5 (SHA-1) and RFC 7677
// section 3 (SHA-256), whose nonces and salts the server cannot be made
// to choose over the wire.
func TestScramVectors(t *testing.T) {
	for _, v := range []struct {
		h                                     func() hash.Hash
		clientFirst, serverFirst, clientFinal string
		serverFinal                           string
	}{
		{
			sha1.New,
			"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
			"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
			"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
			"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
		},
		{
			sha256.New,
			"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
			"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
			"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
			"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
		},
	} {
		cf, e := parseScramClientFirst(v.clientFirst)
		if e != "" || cf.gs2Header != "n,," || cf.user != "user" || cf.bare != strings.TrimPrefix(v.clientFirst, "n,,") {
			t.Fatalf("client-first %+v %q", cf, e)
		}
		fin, e := parseScramClientFinal(v.clientFinal)
		if e != "" || fin.cbind != b64(cf.gs2Header) || !strings.HasPrefix(fin.nonce, cf.nonce) {
			t.Fatalf("client-final %+v %q", fin, e)
		}
		salt, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.Split(v.serverFirst, ",")[1], "s="))
		salted, err := scramSaltedPassword(v.h, "pencil", salt, 4096)
		if err != nil {
			t.Fatal(err)
		}
		authMessage := cf.bare + "," + v.serverFirst + "," + fin.withoutProof
		sig, ok := scramVerify(v.h, salted, authMessage, fin.proof)
		if !ok || "v="+base64.StdEncoding.EncodeToString(sig) != v.serverFinal {
			t.Errorf("verify = %v, v=%s; want %s", ok, base64.StdEncoding.EncodeToString(sig), v.serverFinal)
		}
		bad := append([]byte(nil), fin.proof...)
		bad[len(bad)-1] ^= 0x80
		if _, ok := scramVerify(v.h, salted, authMessage, bad); ok {
			t.Error("corrupted proof verified")
		}
		if _, ok := scramVerify(v.h, salted, authMessage, fin.proof[1:]); ok {
			t.Error("short proof verified")
		}
	}
}

func xoauth2(user, token string) string {
	return b64("user=" + user + "\x01auth=Bearer " + token + "\x01\x01")
}

func TestOAuth(t *testing.T) {
	const (
		bearerJSON  = `{"status":"invalid_token","scope":"https://mail.example/","schemes":"bearer"}`
		xoauth2JSON = `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`
		notAccepted = "535 5.7.8 Username and Password not accepted"
	)
	mechs := []string{"XOAUTH2", "OAUTHBEARER"}
	srv := NewServer(t, &Options{AuthMechanisms: mechs, Tokens: map[string]string{"ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg": "alice@example.org", "t2==": "bob"}})
	dial := func() *client { return dialSCRAM(t, srv, mechs...) }

	t.Run("XOAUTH2", func(t *testing.T) {
		srv.Reset()
		c := dial()
		c.cmd("AUTH XOAUTH2 "+xoauth2("alice@example.org", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"), "235 2.7.0 Authentication successful")
		c.cmd("MAIL FROM:<alice@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@x>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw(".\r\n")
		c.expect("250 2.0.0 Ok: queued as 1")
		if m := srv.Messages(); len(m) != 1 || m[0].AuthUser != "alice@example.org" || m[0].AuthMechanism != "XOAUTH2" {
			t.Fatalf("messages %+v", m)
		}

		// Without an initial response; the scheme is case-insensitive.
		c = dial()
		c.cmd("AUTH XOAUTH2", "334 ")
		c.cmd(b64("user=bob\x01auth=bearer t2==\x01\x01"), "235 2.7.0 Authentication successful")

		// A bad token: the error JSON as a challenge, the client's empty
		// response, then 535.
		c = dial()
		for _, resp := range []string{
			xoauth2("alice@example.org", "expired"),
			xoauth2("bob", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"), // alice's token
			xoauth2("Alice@example.org", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
		} {
			c.cmd("AUTH XOAUTH2 "+resp, "334 "+b64(xoauth2JSON))
			c.cmd("", notAccepted)
		}
		// The wrong response to the error challenge.
		c.cmd("AUTH XOAUTH2 "+xoauth2("bob", "nope"), "334 "+b64(xoauth2JSON))
		c.cmd("AQ==", "501 5.5.2 Error: the response to the XOAUTH2 error challenge must be empty")
		c.cmd("AUTH XOAUTH2 "+xoauth2("bob", "nope"), "334 "+b64(xoauth2JSON))
		c.cmd("*", "501 5.7.0 Authentication aborted")
		// Malformed responses fail at once.
		for _, bad := range []string{
			"user=bob\x01auth=Bearer t2==\x01",     // one final %x01
			"user=bob\x01auth=Bearer t2==",         // none
			"auth=Bearer t2==\x01user=bob\x01\x01", // order
			"user=\x01auth=Bearer t2==\x01\x01",
			"user=bob\x01auth=Basic t2==\x01\x01",
			"user=bob\x01auth=Digest t2==\x01\x01",
			"user=bob\x01auth=Bearer\x01\x01",
			"user=bob\x01auth=Bearer \x01\x01",
			"user=bob\x01auth=Bearert2==\x01\x01",
			"user=bob\x01auth=Bearer t2==\r\n\x01\x01",
			"user=bob\x01auth=Bearer t=2\x01\x01",
			"user=bob\x01auth=Bearer t2==\x01host=x\x01\x01",
			"user=bob\x01Bearer t2==\x01\x01",
		} {
			c.cmd("AUTH XOAUTH2 "+b64(bad), "535 5.7.8 Error: authentication failed: malformed XOAUTH2 response")
		}
		c.cmd("AUTH XOAUTH2 "+xoauth2("bob", "t2=="), "235 2.7.0 Authentication successful")
	})

	t.Run("OAUTHBEARER", func(t *testing.T) {
		srv.Reset()
		c := dial()
		tok := "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
		c.cmd("AUTH OAUTHBEARER "+b64("n,a=alice@example.org,\x01host=mx.test\x01port=465\x01auth=Bearer "+tok+"\x01\x01"), "235 2.7.0 Authentication successful")
		c.cmd("MAIL FROM:<alice@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@x>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw(".\r\n")
		c.expect("250 2.0.0 Ok: queued as 1")
		if m := srv.Messages(); len(m) != 1 || m[0].AuthUser != "alice@example.org" || m[0].AuthMechanism != "OAUTHBEARER" {
			t.Fatalf("messages %+v", m)
		}
		// host and port are optional, and so is the authorization
		// identity, whose ',' and '=' are escaped; unknown keys are
		// ignored.
		for _, ok := range []string{
			"n,,\x01auth=Bearer t2==\x01\x01",
			"y,a=bob,\x01auth=Bearer t2==\x01\x01",
			"n,,\x01host=mx.test\x01auth=Bearer t2==\x01xtra=what ever\t\x01\x01",
		} {
			c := dial()
			c.cmd("AUTH OAUTHBEARER", "334 ")
			c.cmd(b64(ok), "235 2.7.0 Authentication successful")
		}
		srv2 := NewServer(t, &Options{AuthMechanisms: []string{"OAUTHBEARER"}, Tokens: map[string]string{"t": "a,b=c"}})
		c = dialSCRAM(t, srv2, "OAUTHBEARER")
		c.cmd("AUTH OAUTHBEARER "+b64("n,a=a=2Cb=3Dc,\x01auth=Bearer t\x01\x01"), "235 2.7.0 Authentication successful")

		// A bad token: RFC 7628 section 3.2.2's error challenge, the
		// dummy response %x01, then 535.
		c = dial()
		for _, resp := range []string{
			"n,a=alice@example.org,\x01auth=Bearer expired\x01\x01",
			"n,a=bob,\x01auth=Bearer " + tok + "\x01\x01", // alice's token, claimed by bob
			"n,,\x01auth=Bearer expired\x01\x01",
		} {
			c.cmd("AUTH OAUTHBEARER "+b64(resp), "334 "+b64(bearerJSON))
			c.cmd("AQ==", notAccepted)
		}
		c.cmd("AUTH OAUTHBEARER "+b64("n,,\x01auth=Bearer expired\x01\x01"), "334 "+b64(bearerJSON))
		c.cmd("", "501 5.5.2 Error: the response to the OAUTHBEARER error challenge must be %x01")
		c.cmd("AUTH OAUTHBEARER "+b64("n,,\x01auth=Bearer expired\x01\x01"), "334 "+b64(bearerJSON))
		c.cmd(b64("\x01\x01"), "501 5.5.2 Error: the response to the OAUTHBEARER error challenge must be %x01")
		c.cmd("AUTH OAUTHBEARER "+b64("n,,\x01auth=Bearer expired\x01\x01"), "334 "+b64(bearerJSON))
		c.cmd("*", "501 5.7.0 Authentication aborted")
		for _, bad := range []string{
			"\x01", // the dummy response as a first message
			"p=tls-exporter,,\x01auth=Bearer t2==\x01\x01", // no channel binding in OAUTHBEARER
			"x,,\x01auth=Bearer t2==\x01\x01",
			"n,\x01auth=Bearer t2==\x01\x01",
			"n,b=bob,\x01auth=Bearer t2==\x01\x01",
			"n,a=b=ob,\x01auth=Bearer t2==\x01\x01",
			"n,,auth=Bearer t2==\x01\x01",
			"n,,\x01auth=Bearer t2==\x01",
			"n,,\x01auth=Bearer t2==",
			"n,,\x01\x01",
			"n,,\x01host=mx.test\x01\x01",
			"n,,\x01auth=Bearer t2==\x01auth=Bearer t2==\x01\x01",
			"n,,\x01port=x25\x01auth=Bearer t2==\x01\x01",
			"n,,\x01po rt=25\x01auth=Bearer t2==\x01\x01",
			"n,,\x01host=\x00\x01auth=Bearer t2==\x01\x01",
			"n,,\x01auth=Basic dXNlcjpwYXNz\x01\x01",
			"n,,\x01auth=Bearer\tt2==\x01\x01",
			"n,,\x01auth=Digest t2==\x01\x01",
			"n,,\x01auth=Bearer t 2\x01\x01",
		} {
			c.cmd("AUTH OAUTHBEARER "+b64(bad), "535 5.7.8 Error: authentication failed: malformed OAUTHBEARER response")
		}
	})

	t.Run("OAuthErrorJSON", func(t *testing.T) {
		const doc = `{"status":"insufficient_scope","scope":"smtp"}`
		srv := NewServer(t, &Options{AuthMechanisms: mechs, OAuthErrorJSON: doc})
		c := dialSCRAM(t, srv, mechs...)
		c.cmd("AUTH OAUTHBEARER "+b64("n,,\x01auth=Bearer x\x01\x01"), "334 "+b64(doc))
		c.cmd("AQ==", notAccepted)
		c.cmd("AUTH XOAUTH2 "+xoauth2("user", "x"), "334 "+b64(doc))
		c.cmd("", notAccepted)
		// The default Tokens.
		c.cmd("AUTH XOAUTH2 "+xoauth2("user", "token"), "235 2.7.0 Authentication successful")
	})
}

// allExts offers every extension whose parameters the server knows.
var allExts = []string{"SIZE 1000", "8BITMIME", "SMTPUTF8", "DSN", "REQUIRETLS", "ENHANCEDSTATUSCODES"}

func TestMailParams(t *testing.T) {
	srv := NewServer(t, &Options{Extensions: allExts})
	c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", "250-mx.test", "250-SIZE 1000", "250-8BITMIME", "250-SMTPUTF8", "250-DSN", "250-REQUIRETLS", "250-ENHANCEDSTATUSCODES", "250 AUTH PLAIN LOGIN CRAM-MD5")
	const ok = "250 2.1.0 Ok"
	for _, tc := range []struct{ params, want string }{
		{"", ok},
		// SIZE (RFC 1870).
		{"SIZE=0", ok},
		{"SIZE=1000", ok},
		{"size=999", ok},
		{"SIZE=1001", "552 5.3.4 Message size exceeds fixed maximum message size"},
		{"SIZE=99999999999999999999", "552 5.3.4 Message size exceeds fixed maximum message size"}, // 20 digits, past uint64
		{"SIZE=123456789012345678901", "501 5.5.4 Bad SIZE parameter syntax"},                      // 21 digits
		{"SIZE", "501 5.5.4 Bad SIZE parameter syntax"},
		{"SIZE=", "501 5.5.4 Bad SIZE parameter syntax"},
		{"SIZE=1k", "501 5.5.4 Bad SIZE parameter syntax"},
		{"SIZE=-1", "501 5.5.4 Bad SIZE parameter syntax"},
		// BODY (RFC 6152).
		{"BODY=7BIT", ok},
		{"BODY=8BITMIME", ok},
		{"body=8bitmime", ok},
		{"BODY=BINARYMIME", "555 5.5.4 Unsupported option: BODY=BINARYMIME"},
		{"BODY", "501 5.5.4 Bad BODY parameter syntax"},
		{"BODY=", "501 5.5.4 Bad BODY parameter syntax"},
		// SMTPUTF8 (RFC 6531).
		{"SMTPUTF8", ok},
		{"SMTPUTF8=yes", "501 5.5.4 Bad SMTPUTF8 parameter syntax"},
		// DSN (RFC 3461).
		{"RET=FULL", ok},
		{"RET=hdrs", ok},
		{"RET=ALL", "501 5.5.4 Bad RET parameter syntax"},
		{"RET", "501 5.5.4 Bad RET parameter syntax"},
		{"ENVID=QQ+2B+3D1", ok},
		{"ENVID=a+2bc", "501 5.5.4 Bad ENVID parameter syntax"}, // lower-case hex
		{"ENVID=a+2", "501 5.5.4 Bad ENVID parameter syntax"},
		{"ENVID=a+", "501 5.5.4 Bad ENVID parameter syntax"},
		{"ENVID=a=b", "501 5.5.4 Bad ENVID parameter syntax"},
		{"ENVID=a\x7fb", "501 5.5.4 Bad ENVID parameter syntax"},
		{"ENVID=\xc3\xa9", "501 5.5.4 Bad ENVID parameter syntax"},
		{"ENVID=", "501 5.5.4 Bad ENVID parameter syntax"},
		// REQUIRETLS (RFC 8689).
		{"REQUIRETLS", ok},
		{"REQUIRETLS=YES", "501 5.5.4 Bad REQUIRETLS parameter syntax"},
		// AUTH (RFC 4954 section 5).
		{"AUTH=<>", ok},
		{"AUTH=alice+40example.org", ok},
		{"AUTH=", "501 5.5.4 Bad AUTH parameter syntax"},
		{"AUTH=alice+4", "501 5.5.4 Bad AUTH parameter syntax"},
		// All at once, and more than one space between them.
		{"SIZE=10  BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ REQUIRETLS AUTH=<>", ok},
		// Unknown, repeated.
		{"FOO=bar", "555 5.5.4 Unsupported option: FOO=bar"},
		{"X-FOO", "555 5.5.4 Unsupported option: X-FOO"},
		{"=x", "555 5.5.4 Unsupported option: =x"},
		{"-X", "555 5.5.4 Unsupported option: -X"},
		{"S_ZE=1", "555 5.5.4 Unsupported option: S_ZE=1"},
		{"NOTIFY=NEVER", "555 5.5.4 Unsupported option: NOTIFY=NEVER"}, // an RCPT parameter
		{"SIZE=10 FOO", "555 5.5.4 Unsupported option: FOO"},
		{"SIZE=10 SIZE=20", "501 5.5.4 Duplicate SIZE parameter"},
		{"SMTPUTF8 smtputf8", "501 5.5.4 Duplicate SMTPUTF8 parameter"},
	} {
		line := "MAIL FROM:<a@example.org>"
		if tc.params != "" {
			line += " " + tc.params
		}
		c.cmd(line, tc.want)
		if tc.want == ok {
			c.cmd("RSET", "250 2.0.0 Ok")
		} else {
			// A refused MAIL starts no transaction.
			c.cmd("RCPT TO:<b@x>", "503 5.5.1 Error: need MAIL command")
		}
	}

	// Parameters of extensions the server does not offer.
	bare := NewServer(t, &Options{Extensions: []string{}, AuthMechanisms: []string{}})
	c = dialTLS(t, bare.ImplicitAddr, bare.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", "250 mx.test")
	for _, p := range []string{"SIZE=1", "BODY=7BIT", "BODY=8BITMIME", "SMTPUTF8", "RET=FULL", "ENVID=x", "REQUIRETLS", "AUTH=<>"} {
		c.cmd("MAIL FROM:<a@example.org> "+p, "555 5.5.4 Unsupported option: "+p)
	}
	c.cmd("MAIL FROM:<a@example.org>", ok)

	// AUTH= follows AUTH, which by default is only offered under TLS;
	// REQUIRETLS is refused on a plaintext session even when offered.
	c = dialPlain(t, srv.StartTLSAddr)
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", "250-mx.test", "250-SIZE 1000", "250-8BITMIME", "250-SMTPUTF8", "250-DSN", "250-REQUIRETLS", "250-ENHANCEDSTATUSCODES", "250 STARTTLS")
	c.cmd("MAIL FROM:<a@example.org> AUTH=<>", "555 5.5.4 Unsupported option: AUTH=<>")
	c.cmd("MAIL FROM:<a@example.org> REQUIRETLS", "530 5.7.10 REQUIRETLS needs a TLS session")
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	c.startTLS(srv.ClientTLSConfig())
	c.cmd("EHLO c", "250-mx.test", "250-SIZE 1000", "250-8BITMIME", "250-SMTPUTF8", "250-DSN", "250-REQUIRETLS", "250-ENHANCEDSTATUSCODES", "250 AUTH PLAIN LOGIN CRAM-MD5")
	c.cmd("MAIL FROM:<a@example.org> REQUIRETLS AUTH=<>", ok)

	// "SIZE" without a number, or with 0, sets no limit.
	for _, ext := range []string{"SIZE", "SIZE 0"} {
		srv := NewServer(t, &Options{Extensions: []string{ext}})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", "250-mx.test", "250-"+ext, "250 STARTTLS")
		c.cmd("MAIL FROM:<a@example.org> SIZE=99999999999999999999", ok)
	}
}

func TestRcptParams(t *testing.T) {
	srv := NewServer(t, &Options{Extensions: allExts})
	c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", "250-mx.test", "250-SIZE 1000", "250-8BITMIME", "250-SMTPUTF8", "250-DSN", "250-REQUIRETLS", "250-ENHANCEDSTATUSCODES", "250 AUTH PLAIN LOGIN CRAM-MD5")
	const ok = "250 2.1.5 Ok"
	c.cmd("MAIL FROM:<a@example.org> RET=HDRS ENVID=x", "250 2.1.0 Ok")
	var accepted, params []string
	for i, tc := range []struct{ params, want string }{
		{"", ok},
		{"NOTIFY=NEVER", ok},
		{"NOTIFY=SUCCESS,FAILURE,DELAY", ok},
		{"notify=delay,success", ok},
		{"NOTIFY=NEVER,SUCCESS", "501 5.5.4 Bad NOTIFY parameter syntax"},
		{"NOTIFY=SUCCESS,SUCCESS", "501 5.5.4 Bad NOTIFY parameter syntax"},
		{"NOTIFY=SUCCESS,", "501 5.5.4 Bad NOTIFY parameter syntax"},
		{"NOTIFY=SOMETIMES", "501 5.5.4 Bad NOTIFY parameter syntax"},
		{"NOTIFY=", "501 5.5.4 Bad NOTIFY parameter syntax"},
		{"NOTIFY", "501 5.5.4 Bad NOTIFY parameter syntax"},
		{"ORCPT=rfc822;b@example.net", ok},
		{"ORCPT=rfc822;b+2Bc@example.net NOTIFY=FAILURE", ok},
		{"ORCPT=rfc822", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=;b@example.net", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=rfc822;", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=rfc(822);b@example.net", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=rfc822;b+zz@example.net", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=utf-8;j\xc3\xb6rg@example.net", "501 5.5.4 Bad ORCPT parameter syntax"}, // raw UTF-8 needs SMTPUTF8
		{"ORCPT=utf-8;j\\x{F6}rg@example.net", ok},
		{"NOTIFY=NEVER NOTIFY=NEVER", "501 5.5.4 Duplicate NOTIFY parameter"},
		{"FOO=1", "555 5.5.4 Unsupported option: FOO=1"},
		{"SIZE=1", "555 5.5.4 Unsupported option: SIZE=1"}, // a MAIL parameter
		{"NOTIFY=NEVER BAR", "555 5.5.4 Unsupported option: BAR"},
	} {
		addr := fmt.Sprintf("r%d@example.net", i)
		line := "RCPT TO:<" + addr + ">"
		if tc.params != "" {
			line += " " + tc.params
		}
		c.cmd(line, tc.want)
		if tc.want == ok {
			accepted = append(accepted, addr)
			params = append(params, tc.params)
		}
	}
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.sendRaw(".\r\n")
	c.expect("250 2.0.0 Ok: queued as 1")
	m := srv.Messages()
	if len(m) != 1 || !reflect.DeepEqual(m[0].To, accepted) || !reflect.DeepEqual(m[0].RcptParams, params) || m[0].MailParams != "RET=HDRS ENVID=x" {
		t.Fatalf("message %+v\nwant To %q RcptParams %q", m, accepted, params)
	}
	// Snapshots are copies.
	srv.Messages()[0].RcptParams[1] = "changed"
	if srv.Messages()[0].RcptParams[1] != "NOTIFY=NEVER" {
		t.Error("RcptParams aliases server state")
	}

	// With SMTPUTF8 on MAIL, a "utf-8" ORCPT may be raw UTF-8 (RFC 6533).
	c.cmd("MAIL FROM:<a@example.org> SMTPUTF8", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<j\xc3\xb6rg@example.net> ORCPT=utf-8;j\xc3\xb6rg@example.net", ok)
	c.cmd("RCPT TO:<x@example.net> ORCPT=rfc822;j\xc3\xb6rg@example.net", "501 5.5.4 Bad ORCPT parameter syntax")
	c.cmd("RCPT TO:<x@example.net> ORCPT=utf-8;j\xc3rg@example.net", "501 5.5.4 Bad ORCPT parameter syntax") // not UTF-8

	// Without DSN the DSN parameters are unknown.
	srv = NewServer(t, nil)
	c = dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", defaultEHLOTLS...)
	c.cmd("MAIL FROM:<a@example.org> RET=FULL", "555 5.5.4 Unsupported option: RET=FULL")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	for _, p := range []string{"NOTIFY=NEVER", "ORCPT=rfc822;b@example.net"} {
		c.cmd("RCPT TO:<b@example.net> "+p, "555 5.5.4 Unsupported option: "+p)
	}
}

func TestSizeLimitOnData(t *testing.T) {
	// "SIZE 100" limits the data too, counted as RFC 1870 counts it:
	// without dot-stuffing and without the final ".".
	srv := NewServer(t, &Options{Extensions: []string{"SIZE 100"}})
	c := startData(t, srv)
	exact := "..x\r\n" + strings.Repeat("y", 94) + "\r\n" // 100 bytes of content, 101 sent
	c.sendRaw(exact + ".\r\n")
	c.expect("250 2.0.0 Ok: queued as 1")
	c.cmd("MAIL FROM:<a@example.org> SIZE=100", "250 2.1.0 Ok")
	c.cmd("MAIL FROM:<a@example.org>", "503 5.5.1 Error: nested MAIL command")
	c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.sendRaw("x" + exact + ".\r\n")
	c.expect("552 5.3.4 Error: message file too big")
	c.cmd("MAIL FROM:<a@example.org> SIZE=101", "552 5.3.4 Message size exceeds fixed maximum message size")
	m := srv.Messages()
	if len(m) != 1 || len(m[0].Data) != 100 || string(m[0].Raw) != exact+".\r\n" {
		t.Fatalf("messages %+v", m)
	}
	// A SIZE above the built-in limit does not raise it.
	srv = NewServer(t, &Options{Extensions: []string{"SIZE 1000"}, dataLimit: 10})
	c = startData(t, srv)
	c.sendRaw("0123456789x\r\n.\r\n")
	c.expect("552 5.3.4 Error: message file too big")
}

func TestRcptReply(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := NewServer(t, &Options{RcptReply: func(addr string) string {
		mu.Lock()
		seen = append(seen, addr)
		mu.Unlock()
		switch addr {
		case "unknown@example.net":
			return "550 5.1.1 <unknown@example.net>: Recipient address rejected: User unknown"
		case "full@example.net":
			return "452 4.2.2 Mailbox full"
		case "multi@example.net":
			return "450-4.7.1 first line\r\n450 4.7.1 second line"
		case "fwd@example.net":
			return "251 2.1.5 User not local; will forward to <fwd@example.org>"
		}
		return ""
	}})
	c := startData(t, srv) // b@example.net accepted
	c.sendRaw(".\r\n")
	c.expect("250 2.0.0 Ok: queued as 1")
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<unknown@example.net>", "550 5.1.1 <unknown@example.net>: Recipient address rejected: User unknown")
	c.cmd("RCPT TO:<full@example.net>", "452 4.2.2 Mailbox full")
	c.cmd("RCPT TO:<multi@example.net>", "450-4.7.1 first line", "450 4.7.1 second line")
	c.cmd("DATA", "503 5.5.1 Error: need RCPT command") // nobody accepted
	c.cmd("RCPT TO:<fwd@example.net>", "251 2.1.5 User not local; will forward to <fwd@example.org>")
	c.cmd("RCPT TO:<ok@example.net>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<bad@example.net> FOO=1", "555 5.5.4 Unsupported option: FOO=1") // refused before the hook
	c.cmd("RCPT TO:<>", "501 5.5.4 Syntax: RCPT TO:<address>")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.sendRaw("x\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as 2")
	m := srv.Messages()
	if len(m) != 2 || !reflect.DeepEqual(m[1].To, []string{"fwd@example.net", "ok@example.net"}) || !reflect.DeepEqual(m[1].RcptParams, []string{"", ""}) {
		t.Fatalf("messages %+v", m)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"b@example.net", "unknown@example.net", "full@example.net", "multi@example.net", "fwd@example.net", "ok@example.net"}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("RcptReply saw %q, want %q", seen, want)
	}
}

func TestStrict8Bit(t *testing.T) {
	const eightBit = "Subject: caf\xc3\xa9\r\n\r\nna\xefve\r\n"
	srv := NewServer(t, &Options{Strict8Bit: true})
	c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", defaultEHLOTLS...)
	send := func(mail, data, want string) {
		t.Helper()
		c.cmd(mail, "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw(data + ".\r\n")
		c.expect(want)
	}
	refused := "554 5.6.1 8-bit data without BODY=8BITMIME"
	send("MAIL FROM:<a@example.org>", eightBit, refused)
	c.cmd("RCPT TO:<b@example.net>", "503 5.5.1 Error: need MAIL command") // the transaction was reset
	send("MAIL FROM:<a@example.org> BODY=7BIT", eightBit, refused)
	send("MAIL FROM:<a@example.org> SMTPUTF8", eightBit, refused)
	send("MAIL FROM:<a@example.org> BODY=8BITMIME", eightBit, "250 2.0.0 Ok: queued as 1")
	send("MAIL FROM:<a@example.org>", "plain\r\n\x00\x7f\r\n", "250 2.0.0 Ok: queued as 2")
	if m := srv.Messages(); len(m) != 2 || string(m[0].Data) != eightBit {
		t.Fatalf("messages %+v", m)
	}

	nonASCII := "553 5.6.7 Non-ASCII address without SMTPUTF8"
	c.cmd("MAIL FROM:<j\xc3\xb6rg@example.org>", nonASCII)
	c.cmd("MAIL FROM:<j\xc3\xb6rg@example.org> BODY=8BITMIME", nonASCII)
	c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@example.net>", nonASCII)
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("MAIL FROM:<j\xc3\xb6rg@example.org> SMTPUTF8", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@example.net>", "250 2.1.5 Ok")

	// By default both are accepted.
	srv = NewServer(t, nil)
	c = dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.cmd("EHLO c", defaultEHLOTLS...)
	c.cmd("MAIL FROM:<j\xc3\xb6rg@example.org>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@example.net>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.sendRaw(eightBit + ".\r\n")
	c.expect("250 2.0.0 Ok: queued as 1")
}

func TestQueueID(t *testing.T) {
	var mu sync.Mutex
	var hookSaw []string
	srv := NewServer(t, &Options{OnData: func(s *Session, m *Message) bool {
		mu.Lock()
		hookSaw = append(hookSaw, m.QueueID)
		mu.Unlock()
		m.QueueID = "hook" // overwritten when recorded
		return string(m.Data) == "drop\r\n" && s.Reply("451 4.3.0 dropped") == nil
	}})
	for i, data := range []string{"one\r\n", "drop\r\n", "two\r\n"} {
		c := startData(t, srv)
		c.sendRaw(data + ".\r\n")
		want := []string{"250 2.0.0 Ok: queued as 1", "451 4.3.0 dropped", "250 2.0.0 Ok: queued as 2"}[i]
		c.expect(want)
	}
	m := srv.Messages()
	if len(m) != 2 || m[0].QueueID != "1" || m[1].QueueID != "2" || string(m[1].Data) != "two\r\n" {
		t.Fatalf("messages %+v", m)
	}
	mu.Lock()
	if !reflect.DeepEqual(hookSaw, []string{"", "", ""}) {
		t.Errorf("OnData saw queue IDs %q", hookSaw)
	}
	mu.Unlock()
	srv.Reset()
	c := startData(t, srv)
	c.sendRaw(".\r\n")
	c.expect("250 2.0.0 Ok: queued as 1")
	if m := srv.Messages(); len(m) != 1 || m[0].QueueID != "1" {
		t.Fatalf("after Reset: %+v", m)
	}
}

// FuzzParsers feeds arbitrary client messages to the parsers of SASL
// responses and command parameters: they must not panic, and what they
// accept must be well-formed.
func FuzzParsers(f *testing.F) {
	for _, seed := range []string{
		"n,,n=user,r=abc", "p=tls-exporter,a=a=2Cb,n=user,r=abc,x=y", "c=biws,r=abc,p=AAAA",
		"user=bob\x01auth=Bearer t2==\x01\x01", "n,a=bob,\x01host=x\x01port=1\x01auth=Bearer t\x01\x01",
		"SIZE=10 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=a+2B REQUIRETLS AUTH=<>", "NOTIFY=NEVER ORCPT=rfc822;a@b",
		"", ",", "=", "\x01", "n,,n=,r=", "p=", "a+", "NOTIFY=,",
	} {
		f.Add(seed)
	}
	srv := NewServer(f, &Options{Extensions: allExts})
	s := &Session{srv: srv}
	f.Fuzz(func(t *testing.T, msg string) {
		if cf, e := parseScramClientFirst(msg); e == "" {
			if !strings.HasSuffix(msg, cf.bare) || cf.gs2Header+cf.bare != msg || cf.user == "" || !isScramPrintable(cf.nonce) {
				t.Errorf("client-first %q parsed as %+v", msg, cf)
			}
		}
		if fin, e := parseScramClientFinal(msg); e == "" && (len(fin.proof) == 0 || !strings.HasPrefix(msg, fin.withoutProof+",p=")) {
			t.Errorf("client-final %q parsed as %+v", msg, fin)
		}
		if user, token, ok := parseXOAUTH2(msg); ok && (user == "" || token == "" || msg != "user="+user+"\x01auth="+msg[len("user="+user+"\x01auth="):]) {
			t.Errorf("XOAUTH2 %q parsed as %q %q", msg, user, token)
		}
		if _, token, ok := parseOAuthBearer(msg); ok && (token == "" || !strings.HasSuffix(msg, "\x01\x01")) {
			t.Errorf("OAUTHBEARER %q parsed with token %q", msg, token)
		}
		s.mailParams(msg)
		s.checkRcptParams(msg)
		if isXtext(msg) && (msg == "" || strings.ContainsAny(msg, "= \x00\x7f")) {
			t.Errorf("xtext %q", msg)
		}
	})
}

// TestEndedSessionReadsNoMore: after a hook drops, closes or lingers on
// the session, the commands already in the server's buffer are not
// processed: a server whose connection is gone cannot answer them.
func TestEndedSessionReadsNoMore(t *testing.T) {
	for _, end := range []string{"Drop", "Close", "Linger"} {
		t.Run(end, func(t *testing.T) {
			srv := NewServer(t, &Options{Handler: func(s *Session, line string) bool {
				if !strings.HasPrefix(line, "MAIL") {
					return false
				}
				switch end {
				case "Drop":
					s.Drop()
				case "Close":
					s.Close()
				case "Linger":
					s.Reply("421 4.3.2 Service shutting down")
					s.Linger(100 * time.Millisecond)
				}
				return true
			}})
			c := dialPlain(t, srv.StartTLSAddr)
			c.expect("220 mx.test ESMTP tlsmail-test")
			// One write: the server reads all three lines into its buffer at once.
			c.sendRaw("MAIL FROM:<a@example.org>\r\nNOOP\r\nRSET\r\n")
			waitIdle(t, srv)
			checkTranscript(t, srv, "plain: MAIL FROM:<a@example.org>")
		})
	}
}

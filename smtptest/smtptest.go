// Package smtptest runs an SMTP submission server inside a test, the way
// net/http/httptest runs an HTTP server: one call starts it on loopback
// with its own certificate authority, Dialer returns a tlsmail.Dialer that
// trusts it, and the server records exactly what it received.
//
//	func TestWelcomeMail(t *testing.T) {
//		srv := smtptest.NewServer(t, nil) // closed when the test ends
//		d := srv.Dialer(tlsmail.ImplicitTLS)
//		if err := d.SendMail(srv.Addr(tlsmail.ImplicitTLS), tlsmail.PlainAuth("", "user", "pass", "127.0.0.1"),
//			"app@example.org", []string{"new@example.net"}, []byte("Subject: welcome\r\n\r\nHi.\r\n")); err != nil {
//			t.Fatal(err)
//		}
//		m, err := srv.WaitMessage(context.Background())
//		if err != nil {
//			t.Fatal(err)
//		}
//		if m.To[0] != "new@example.net" || !m.TLS || m.AuthUser != "user" {
//			t.Errorf("got %+v", m)
//		}
//	}
//
// Every Server has two listeners on 127.0.0.1: one that speaks TLS from the
// first byte (implicit TLS, RFC 8314, like port 465) and one that greets in
// plaintext and offers STARTTLS (RFC 3207, like port 587); Addr gives the
// address for a tlsmail.Mode. Its certificate names localhost, 127.0.0.1
// and ::1, and is signed by a throwaway CA made when the process first
// needs it (TLSConfig, RootCAs and CACertPEM hand it out).
//
// What the client sends is checked, not just accepted: every SASL
// mechanism tlsmail speaks (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1 and
// SCRAM-SHA-256 with their channel-binding -PLUS variants, XOAUTH2,
// OAUTHBEARER) verifies the credentials in Config.Users and Config.Tokens;
// MAIL and RCPT parameters are checked against the advertised extensions
// (Config.Extensions); BDAT is only accepted with CHUNKING.
//
// Scripted replies (Config.Reply, Config.RcptReplies) and faults
// (Config.Faults: a delay, a dropped connection, any reply at any step)
// let tests exercise a program's error handling and retries.
//
// The server is for tests and examples only: it keeps everything in
// memory, and it records AUTH exchanges as sent, credentials included.
package smtptest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// mechanisms are the SASL mechanisms the server implements, in the order
// it advertises them by default.
var mechanisms = []string{
	"PLAIN", "LOGIN", "CRAM-MD5",
	"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
	"XOAUTH2", "OAUTHBEARER",
}

// defaultExtensions is what a Server advertises when Config.Extensions is
// nil: what Postfix offers on a submission port.
var defaultExtensions = []string{
	"PIPELINING", "SIZE 67108864", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN",
}

// Config configures a Server. The zero value (or a nil *Config) gives a
// well-behaved server that accepts user "user" with password "pass" and
// the OAuth token "token" for user "user".
type Config struct {
	// Hostname is the name in the greeting and in the reply to EHLO;
	// default "mx.test". It does not change the certificate.
	Hostname string

	// Users maps user names to passwords for PLAIN, LOGIN, CRAM-MD5 and
	// SCRAM; nil means {"user": "pass"}. SCRAM uses the password as given,
	// without SASLprep, which is the same for ASCII passwords.
	Users map[string]string
	// Tokens maps OAuth 2.0 access tokens to the user each one
	// authenticates, for XOAUTH2 and OAUTHBEARER; nil means
	// {"token": "user"}. A token used for another user is refused.
	Tokens map[string]string
	// AuthMechanisms lists the SASL mechanisms advertised (after TLS only)
	// and accepted; nil means every one the server implements: PLAIN,
	// LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-1-PLUS, SCRAM-SHA-256,
	// SCRAM-SHA-256-PLUS, XOAUTH2 and OAUTHBEARER. An empty non-nil slice
	// disables AUTH. The -PLUS mechanisms are advertised only when the TLS
	// connection can export keying material (TLS 1.3, or TLS 1.2 with
	// extended master secret), as RFC 9266 requires.
	AuthMechanisms []string

	// Extensions lists the EHLO keywords, one per line of the reply, sent
	// after the hostname line; STARTTLS (before TLS) and AUTH are added by
	// the server. nil means {"PIPELINING", "SIZE 67108864", "8BITMIME",
	// "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING", "DSN"}; add
	// "REQUIRETLS" to offer RFC 8689.
	//
	// The list also decides what the server accepts: "SIZE n" refuses a
	// larger message with 552 (declared or actual); SIZE=, BODY=,
	// SMTPUTF8, the DSN parameters (RET, ENVID, NOTIFY, ORCPT) and
	// REQUIRETLS are accepted on MAIL and RCPT only when their extension
	// is listed ("555 5.5.4 Unsupported option" otherwise); and BDAT only
	// with "CHUNKING". Without "PIPELINING" tlsmail waits for each reply
	// before the next command, so listing it or not tests both paths.
	Extensions []string

	// StripSTARTTLS leaves STARTTLS out of the EHLO reply on the
	// STARTTLS listener and answers the STARTTLS command with "502 5.5.1
	// STARTTLS not available", as a server without TLS does, or one whose
	// offer an attacker on the path removed.
	StripSTARTTLS bool

	// Reply, if set, is called for every command line (not for the
	// client's lines inside an AUTH exchange) and for the Greeting and
	// EndOfData steps, after Faults. If it returns ok and a non-empty
	// reply, that reply is sent instead of the server's own; see Command
	// for what a scripted reply does at each step. It runs on the
	// session's goroutine and may be called from several sessions at
	// once.
	Reply func(cmd Command) (reply string, ok bool)
	// RcptReplies maps recipient addresses (compared without regard to
	// case) to the reply RCPT gets for them instead of "250 2.1.5 Ok",
	// for example "550 5.1.1 <x@example.net>: Recipient address rejected:
	// User unknown". It is consulted after Faults and Reply.
	RcptReplies map[string]string
	// Faults are checked, in order, at every step before Reply; the first
	// that matches and has not used up its Times applies. See Fault.
	Faults []Fault
}

// Message is a message the server accepted, with the envelope and
// session it came with.
type Message struct {
	// From is the address inside MAIL FROM:<...>.
	From string
	// To holds the addresses inside each accepted RCPT TO:<...>, in order.
	To []string
	// MailParams is everything after the closing '>' of MAIL FROM,
	// trimmed, for example "SIZE=120 BODY=8BITMIME".
	MailParams string
	// RcptParams holds, for each address in To, what followed the closing
	// '>' of its RCPT TO, trimmed ("" if nothing), for example
	// "NOTIFY=FAILURE ORCPT=rfc822;b@example.net".
	RcptParams []string
	// Data is the message content as the client meant it: dot-stuffing
	// removed, without the terminating ".\r\n", line endings as received.
	// For BDAT (CHUNKING) it is the chunks put together.
	Data []byte
	// Raw is exactly what the client sent after DATA's 354 reply,
	// dot-stuffing and the terminating ".\r\n" included; for BDAT the
	// same as Data.
	Raw []byte
	// Chunks holds the size of each BDAT chunk, in order; nil for a
	// message sent with DATA.
	Chunks []int
	// TLS reports whether the session was under TLS.
	TLS bool
	// TLSVersion and CipherSuite are what the session negotiated (for
	// example tls.VersionTLS13 and tls.TLS_AES_128_GCM_SHA256; see
	// tls.VersionName and tls.CipherSuiteName); zero without TLS.
	TLSVersion, CipherSuite uint16
	// TLSServerName is the server name the client sent in its TLS
	// handshake (SNI); "" when it sent none (as for an IP address) or
	// without TLS.
	TLSServerName string
	// AuthUser is the user the session authenticated as, "" if it did
	// not. For XOAUTH2 and OAUTHBEARER it is the user of the token.
	AuthUser string
	// AuthMechanism is the SASL mechanism used, in upper case (for
	// example "SCRAM-SHA-256-PLUS"), "" if none.
	AuthMechanism string
	// Session is the number of the connection the message came on: 1 for
	// the first connection the server accepted. Line.Session uses the
	// same numbers.
	Session int
	// QueueID is the identifier in the server's final reply, "250 2.0.0
	// Ok: queued as <QueueID>": "1", "2", ... in the order messages are
	// accepted, restarting at Reset.
	QueueID string
}

// Line is one line the server received from a client, outside message
// data. Lines inside an AUTH exchange are recorded as sent: base64
// credentials, passwords and tokens included.
type Line struct {
	// Session is the number of the connection (see Message.Session).
	Session int
	// TLS reports whether the session was under TLS when the line came.
	TLS bool
	// Text is the line without its line ending, for example
	// "MAIL FROM:<a@example.org> SIZE=120".
	Text string
}

// String returns the line as "tls: <text>" or "plain: <text>".
func (l Line) String() string {
	if l.TLS {
		return "tls: " + l.Text
	}
	return "plain: " + l.Text
}

// Server is a running test SMTP server. Its methods may be called from
// any goroutine. Servers are independent of each other, so parallel tests
// may each start their own.
type Server struct {
	srv     *smtptest.Server
	cfg     Config
	rcpts   map[string]string // Config.RcptReplies with lower-case keys
	done    chan struct{}     // closed by Close; ends Delay faults early
	closing sync.Once

	mu       sync.Mutex
	fired    []int          // times each of cfg.Faults has applied
	lastLine map[int]string // each session's last command line
}

// Start starts a server, or says what is wrong with cfg. cfg may be nil;
// Start copies it, so later changes have no effect. The caller must call
// Close; in a test, NewServer does.
func Start(cfg *Config) (*Server, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      c,
		rcpts:    make(map[string]string, len(c.RcptReplies)),
		done:     make(chan struct{}),
		fired:    make([]int, len(c.Faults)),
		lastLine: make(map[int]string),
	}
	c.Faults = append([]Fault(nil), c.Faults...)
	s.cfg.Faults = c.Faults
	for addr, r := range c.RcptReplies {
		s.rcpts[strings.ToLower(addr)] = r
	}
	mechs := c.AuthMechanisms
	if mechs == nil {
		mechs = mechanisms
	}
	exts := c.Extensions
	if exts == nil {
		exts = defaultExtensions
	}
	inner, err := smtptest.Start(&smtptest.Options{
		Hostname:                  c.Hostname,
		Users:                     c.Users,
		Tokens:                    c.Tokens,
		AuthMechanisms:            append([]string{}, mechs...),
		Extensions:                append([]string{}, exts...),
		StripSTARTTLS:             c.StripSTARTTLS,
		AllowPipeliningViolations: true,
		OnSession:                 s.onSession,
		Handler:                   s.handler,
		SessionRcptReply:          s.rcptReply,
		SessionChunkReply:         s.chunkReply,
		OnData:                    s.onData,
	})
	if err != nil {
		return nil, err
	}
	s.srv = inner
	return s, nil
}

// check reports the first thing wrong with c.
func (c *Config) check() error {
	for _, m := range c.AuthMechanisms {
		known := false
		for _, k := range mechanisms {
			known = known || strings.EqualFold(m, k)
		}
		if !known {
			return fmt.Errorf("smtptest: Config.AuthMechanisms: the server does not implement %q; it implements %s", m, strings.Join(mechanisms, ", "))
		}
	}
	for addr, r := range c.RcptReplies {
		if err := checkReply(r); err != nil {
			return fmt.Errorf("smtptest: Config.RcptReplies[%q]: %w", addr, err)
		}
	}
	for i, f := range c.Faults {
		if err := f.check(); err != nil {
			return fmt.Errorf("smtptest: Config.Faults[%d]: %w", i, err)
		}
	}
	return nil
}

// NewServer starts a server like Start, closes it when the test and its
// subtests end (t.Cleanup), and stops the test with t.Fatal if it cannot
// start. cfg may be nil.
func NewServer(t testing.TB, cfg *Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Close closes both listeners and every open connection, and waits until
// every goroutine of the server has ended. Delays from Faults are cut
// short. Close may be called more than once.
func (s *Server) Close() {
	s.closing.Do(func() { close(s.done) })
	s.srv.Close()
}

// Addr returns the "127.0.0.1:port" address to dial in mode: the
// implicit-TLS listener for tlsmail.ImplicitTLS and
// tlsmail.ImplicitTLSOrSTARTTLS, the STARTTLS listener for
// tlsmail.STARTTLS. It panics for any other Mode.
func (s *Server) Addr(mode tlsmail.Mode) string {
	switch mode {
	case tlsmail.ImplicitTLS, tlsmail.ImplicitTLSOrSTARTTLS:
		return s.srv.ImplicitAddr
	case tlsmail.STARTTLS:
		return s.srv.StartTLSAddr
	}
	panic(fmt.Sprintf("smtptest: Addr: unknown tlsmail.Mode %v", mode))
}

// Dialer returns a new tlsmail.Dialer for mode that trusts the server's
// certificate (TLSConfig is set). For tlsmail.ImplicitTLSOrSTARTTLS its
// FallbackAddr is the STARTTLS listener. Dial it at Addr(mode); the other
// fields keep tlsmail's defaults, so set shorter timeouts on it for tests
// of a server that stalls. It panics for an unknown Mode.
func (s *Server) Dialer(mode tlsmail.Mode) *tlsmail.Dialer {
	d := &tlsmail.Dialer{Mode: mode, TLSConfig: s.TLSConfig()}
	switch mode {
	case tlsmail.ImplicitTLS, tlsmail.STARTTLS:
	case tlsmail.ImplicitTLSOrSTARTTLS:
		d.FallbackAddr = s.srv.StartTLSAddr
	default:
		panic(fmt.Sprintf("smtptest: Dialer: unknown tlsmail.Mode %v", mode))
	}
	return d
}

// TLSConfig returns a new client configuration whose RootCAs trust the
// server's certificate, for a Dialer or Client built by hand. ServerName
// is not set; tlsmail fills it in from the address dialed.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.RootCAs()}
}

// RootCAs returns a new pool holding the CA that signed the server's
// certificate.
func (s *Server) RootCAs() *x509.CertPool {
	return s.srv.RootCAs()
}

// CACertPEM returns the certificate of the CA in RootCAs, PEM-encoded.
// Every Server of a process shares that CA, so a program that calls the
// package-level tlsmail.SendMail or tlsmail.Dial (which trust the system
// roots) can write it to a file and point SSL_CERT_FILE at it before its
// first TLS connection.
func (s *Server) CACertPEM() []byte {
	return s.srv.CACertPEM()
}

// Messages returns a copy of every message accepted so far (since the
// last Reset), in the order they were accepted. A message is recorded
// before the server replies to the end of its data, so it is there by the
// time the client's send returns.
func (s *Server) Messages() []Message {
	in := s.srv.Messages()
	out := make([]Message, len(in))
	for i, m := range in {
		out[i] = message(m)
	}
	return out
}

// WaitMessage returns the next accepted message that WaitMessage has not
// returned yet, waiting until one arrives, ctx is done or the server is
// closed. Called repeatedly it returns every message once, in the order
// they were accepted, whichever goroutine calls it; Messages is not
// affected. After Reset it starts with the next message accepted.
func (s *Server) WaitMessage(ctx context.Context) (Message, error) {
	m, err := s.srv.WaitMessage(ctx)
	if err != nil {
		return Message{}, err
	}
	return message(m), nil
}

// Transcript returns a copy of every line the server received, from every
// session, in the order they came: commands and the client's lines inside
// AUTH exchanges (credentials included, as sent), but not message data.
// Printed with fmt, a Line reads "tls: MAIL FROM:<a@example.org>".
func (s *Server) Transcript() []Line {
	in := s.srv.Lines()
	out := make([]Line, len(in))
	for i, l := range in {
		out[i] = Line{Session: l.Session, TLS: l.TLS, Text: l.Text}
	}
	return out
}

// Connections returns the number of connections accepted so far on both
// listeners; Reset does not change it.
func (s *Server) Connections() int {
	return s.srv.Connections()
}

// Reset forgets the transcript and the messages, restarts the queue IDs
// at 1 and the counts of Fault.Times, so that one server can serve
// several steps of a test. Sessions still open carry on.
func (s *Server) Reset() {
	s.srv.Reset()
	s.mu.Lock()
	clear(s.fired)
	s.mu.Unlock()
}

// WaitIdle waits until no connection is open, so that the transcript is
// complete (a client's QUIT may still be on its way when its send
// returns), and returns an error if ctx ends first.
func (s *Server) WaitIdle(ctx context.Context) error {
	for {
		if s.srv.WaitIdle(10*time.Millisecond) == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("smtptest: connections still open: %w", context.Cause(ctx))
		default:
		}
	}
}

func message(m smtptest.Message) Message {
	return Message{
		From:          m.From,
		To:            m.To,
		MailParams:    m.MailParams,
		RcptParams:    m.RcptParams,
		Data:          m.Data,
		Raw:           m.Raw,
		Chunks:        m.Chunks,
		TLS:           m.TLS,
		TLSVersion:    m.TLSVersion,
		CipherSuite:   m.CipherSuite,
		TLSServerName: m.TLSServerName,
		AuthUser:      m.AuthUser,
		AuthMechanism: m.AuthMechanism,
		Session:       m.Session,
		QueueID:       m.QueueID,
	}
}

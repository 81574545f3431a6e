// Package pop3test runs a POP3 server inside a test, the way
// net/http/httptest runs an HTTP server: one call starts it on loopback
// with a mailbox made of the messages given, Dialer returns a pop3.Dialer
// that trusts its certificate, and the server records what it received.
//
//	func TestBounceProcessing(t *testing.T) {
//		srv := pop3test.NewServer(t, &pop3test.Config{
//			Messages: [][]byte{[]byte("Subject: bounce\r\n\r\nUser unknown.\r\n")},
//		})
//		c, err := srv.Dialer(pop3.ImplicitTLS).Dial(srv.Addr(pop3.ImplicitTLS))
//		...
//	}
//
// Every Server has two listeners on 127.0.0.1: one that speaks TLS from
// the first byte (implicit TLS, RFC 8314, like port 995) and one that
// greets in plaintext and offers STLS (RFC 2595, like port 110); Addr
// gives the address for a pop3.Mode. Its certificate names localhost,
// 127.0.0.1 and ::1 and is signed by a throwaway CA (TLSConfig, RootCAs,
// CACertPEM). Before TLS the STLS listener answers only CAPA, STLS and
// QUIT; any other command is refused and recorded (Transcript), so a test
// can check that a client sent nothing else in plaintext.
//
// What the client sends is checked, not just accepted: every mechanism
// pop3 speaks verifies the credentials in Config.Users and Config.Tokens:
// SASL PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1 and SCRAM-SHA-256 with their
// channel-binding -PLUS variants, XOAUTH2 and OAUTHBEARER (RFC 5034), and
// USER/PASS and APOP (RFC 1939). The mailbox behaves as RFC 1939 says:
// one session at a time holds it ([IN-USE] for the others), DELE marks,
// RSET unmarks, and only QUIT removes the marked messages.
//
// Faults (Config.Faults: a delay, a dropped connection, any reply at any
// step) let tests exercise a program's error handling.
//
// The server is for tests and examples only: it keeps everything in
// memory, and it records AUTH exchanges as sent, credentials included.
package pop3test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
	"github.com/tlsmail/tlsmail/pop3"
)

// Mechanisms are the SASL mechanisms the server implements, in the order
// it advertises them by default.
var Mechanisms = []string{
	"PLAIN", "LOGIN", "CRAM-MD5",
	"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
	"XOAUTH2", "OAUTHBEARER",
}

// Config configures a Server. The zero value (or a nil *Config) gives a
// well-behaved server with an empty mailbox that accepts user "user" with
// password "pass" and the OAuth token "token" for user "user".
type Config struct {
	// Messages is the mailbox, message 1 first, as the server holds it:
	// RETR sends each dot-stuffed and LIST gives its length. A message
	// that does not end in CRLF gets one, since the response's
	// terminating "." must start a line (RFC 1939 section 3). Every user
	// sees the same mailbox.
	Messages [][]byte

	// Users maps user names to passwords, for the password mechanisms,
	// USER/PASS and APOP; nil means {"user": "pass"}.
	Users map[string]string
	// Tokens maps OAuth 2.0 access tokens to the user each authenticates,
	// for XOAUTH2 and OAUTHBEARER; nil means {"token": "user"}.
	Tokens map[string]string

	// SASL lists the mechanisms advertised (in CAPA, after TLS only) and
	// accepted; nil means all of Mechanisms. An empty non-nil slice
	// advertises no SASL capability and refuses AUTH. The -PLUS
	// mechanisms are advertised only on connections that can provide the
	// tls-exporter channel binding (RFC 9266).
	SASL []string
	// NoUSER leaves USER out of CAPA and refuses USER and PASS.
	NoUSER bool
	// NoCAPA answers CAPA with -ERR, as old servers do.
	NoCAPA bool
	// StripSTLS leaves STLS out of CAPA on the STLS listener and answers
	// the STLS command with -ERR, as a server without TLS does, or one
	// whose offer an attacker removed.
	StripSTLS bool
	// Greeting is the text after "+OK " in the greeting; default
	// "pop3test ready <timestamp@pop3test>", whose timestamp allows APOP.
	Greeting string

	// Faults are checked, in order, at every step; the first that
	// matches and has not used up its Times applies. See Fault.
	Faults []Fault
}

// Steps of a session that are not commands, for Fault.At.
const (
	// Greeting is the server's first line, after the TLS handshake on
	// the implicit-TLS listener.
	Greeting = "GREETING"
)

// steps are the values Fault.At may take.
var steps = []string{Greeting, "CAPA", "STLS", "AUTH", "USER", "PASS", "APOP", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP", "QUIT"}

// Fault makes the server misbehave at one step of a session: first it
// waits Delay, then it closes the connection (Drop), sends Reply instead
// of its own answer, or, with neither, carries on as usual.
//
//	// The mailbox is locked by another session.
//	{At: "AUTH", Reply: "-ERR [IN-USE] Mailbox locked"}
//	// The reply to QUIT never arrives: the deletions' outcome is unknown.
//	{At: "QUIT", Drop: true}
//	// The connection breaks in the middle of a message.
//	{At: "RETR", Drop: true}
type Fault struct {
	// At is the step: a command verb ("CAPA", "STLS", "AUTH", "USER",
	// "PASS", "APOP", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE",
	// "RSET", "NOOP", "QUIT", in any case) or Greeting.
	At string
	// Session, if not 0, limits the fault to the session with this number
	// (1 for the first connection the server accepts).
	Session int
	// Times, if not 0, is how many times the fault applies, counted over
	// the server's life. 0 means every time.
	Times int
	// Delay is how long the server waits before it acts. Close cuts it
	// short.
	Delay time.Duration
	// Drop closes the connection without a reply. At RETR and TOP the
	// server first sends "+OK" and the first half of the message, so the
	// client sees a response cut short. At QUIT the marked messages are
	// removed before the drop, as a server that committed and then lost
	// the connection would.
	Drop bool
	// Reply, if set, is written instead of the server's answer, verbatim,
	// with CRLF appended if it does not end in one: one status line such
	// as "-ERR [SYS/TEMP] try later", or any bytes at all, such as a
	// multi-line response without its terminator. The command is then
	// not carried out, except at STLS, where a reply beginning "+OK" is
	// followed by the TLS handshake (so that bytes after the +OK test
	// response injection).
	Reply string
}

func (f *Fault) check() error {
	known := false
	for _, st := range steps {
		known = known || strings.EqualFold(f.At, st)
	}
	switch {
	case !known:
		return fmt.Errorf("unknown step %q; want one of %s", f.At, strings.Join(steps, ", "))
	case !f.Drop && f.Reply == "" && f.Delay == 0:
		return fmt.Errorf("the fault at %s does nothing: set Delay, Drop or Reply", f.At)
	case f.Drop && f.Reply != "":
		return fmt.Errorf("the fault at %s sets both Drop and Reply", f.At)
	}
	return nil
}

// Line is a line the server received.
type Line struct {
	// Session is the number of the connection, from 1.
	Session int
	// TLS reports whether the line arrived under TLS.
	TLS bool
	// Text is the line without its CRLF.
	Text string
}

// String returns the line as "tls: <text>" or "plain: <text>".
func (l Line) String() string {
	if l.TLS {
		return "tls: " + l.Text
	}
	return "plain: " + l.Text
}

// Server is a running test POP3 server. Its methods may be called from any
// goroutine.
type Server struct {
	cfg      Config
	users    map[string]string
	tokens   map[string]string
	tlsCfg   *tls.Config
	roots    *x509.CertPool
	caPEM    []byte
	salt     []byte
	implicit net.Listener
	stls     net.Listener
	done     chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	conns    map[net.Conn]bool
	sessions int
	mailbox  [][]byte // nil entries are removed messages
	locked   bool
	fired    []int
	lines    []Line
	closed   bool
}

// Start starts a server, or says what is wrong with cfg. cfg may be nil;
// Start copies it. The caller must call Close; in a test, NewServer does.
func Start(cfg *Config) (*Server, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	for i, f := range c.Faults {
		if err := f.check(); err != nil {
			return nil, fmt.Errorf("pop3test: Config.Faults[%d]: %w", i, err)
		}
	}
	for _, m := range c.SASL {
		if !contains(Mechanisms, m) {
			return nil, fmt.Errorf("pop3test: Config.SASL: the server does not implement %q; it implements %s", m, strings.Join(Mechanisms, ", "))
		}
	}
	c.Faults = append([]Fault(nil), c.Faults...)
	if c.SASL == nil {
		c.SASL = Mechanisms
	}
	if c.Greeting == "" {
		c.Greeting = "pop3test ready <1896.697170952@pop3test>"
	}
	s := &Server{cfg: c, done: make(chan struct{}), conns: make(map[net.Conn]bool), fired: make([]int, len(c.Faults))}
	s.users, s.tokens = c.Users, c.Tokens
	if s.users == nil {
		s.users = map[string]string{"user": "pass"}
	}
	if s.tokens == nil {
		s.tokens = map[string]string{"token": "user"}
	}
	for _, m := range c.Messages {
		if len(m) == 0 || !strings.HasSuffix(string(m), "\r\n") {
			m = append(append([]byte(nil), m...), '\r', '\n')
		} else {
			m = append([]byte(nil), m...)
		}
		s.mailbox = append(s.mailbox, m)
	}
	leaf, roots, caPEM, err := smtptest.Certificate(smtptest.CertValid)
	if err != nil {
		return nil, fmt.Errorf("pop3test: making the certificate: %w", err)
	}
	s.tlsCfg = &tls.Config{Certificates: []tls.Certificate{leaf}}
	s.roots, s.caPEM = roots, caPEM
	s.salt = []byte("pop3test-salt-16")
	if s.implicit, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("pop3test: %w", err)
	}
	if s.stls, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		s.implicit.Close()
		return nil, fmt.Errorf("pop3test: %w", err)
	}
	s.wg.Add(2)
	go s.accept(s.implicit, true)
	go s.accept(s.stls, false)
	return s, nil
}

// NewServer starts a server like Start, closes it when the test ends
// (t.Cleanup), and stops the test with t.Fatal if it cannot start.
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
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return
	}
	s.closed = true
	close(s.done)
	s.implicit.Close()
	s.stls.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Addr returns the "127.0.0.1:port" address for mode: the implicit-TLS
// listener for pop3.ImplicitTLS, the STLS listener for pop3.STLS. It
// panics for any other Mode.
func (s *Server) Addr(mode pop3.Mode) string {
	switch mode {
	case pop3.ImplicitTLS:
		return s.implicit.Addr().String()
	case pop3.STLS:
		return s.stls.Addr().String()
	}
	panic(fmt.Sprintf("pop3test: Addr: unknown pop3.Mode %v", mode))
}

// Dialer returns a new pop3.Dialer for mode that trusts the server's
// certificate. Dial it at Addr(mode).
func (s *Server) Dialer(mode pop3.Mode) *pop3.Dialer {
	return &pop3.Dialer{Mode: mode, TLSConfig: s.TLSConfig()}
}

// TLSConfig returns a new client configuration whose RootCAs trust the
// server's certificate.
func (s *Server) TLSConfig() *tls.Config { return &tls.Config{RootCAs: s.RootCAs()} }

// RootCAs returns a new pool holding the CA that signed the server's
// certificate.
func (s *Server) RootCAs() *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(s.caPEM)
	return p
}

// CACertPEM returns the PEM form of the CA that signed the server's
// certificate.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// Messages returns the messages still in the mailbox, in order, as the
// server holds them (with the CRLF Start may have added).
func (s *Server) Messages() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, m := range s.mailbox {
		if m != nil {
			out = append(out, append([]byte(nil), m...))
		}
	}
	return out
}

// Transcript returns every line received so far, in arrival order across
// all connections, AUTH exchanges included as sent.
func (s *Server) Transcript() []Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Line(nil), s.lines...)
}

// Connections returns the number of connections accepted so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// WaitIdle waits until every connection accepted so far has ended, or
// ctx is done: after a client's Close, the server may take a moment to
// notice and release the mailbox lock.
func (s *Server) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pop3test: WaitIdle: %d connections still open: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

func (s *Server) accept(ln net.Listener, implicit bool) {
	defer s.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.sessions++
		id := s.sessions
		s.conns[conn] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			sess := &session{srv: s, id: id, raw: conn, conn: conn}
			sess.serve(implicit)
			sess.end()
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
		}()
	}
}

// fault returns the fault that applies to step in session id, if any,
// and counts it.
func (s *Server) fault(id int, step string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.cfg.Faults {
		f := &s.cfg.Faults[i]
		if !strings.EqualFold(f.At, step) || (f.Session != 0 && f.Session != id) || (f.Times != 0 && s.fired[i] >= f.Times) {
			continue
		}
		s.fired[i]++
		return f
	}
	return nil
}

func (s *Server) record(id int, tls bool, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, Line{Session: id, TLS: tls, Text: text})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// Package smtptest provides an in-process SMTP server for tests, in the
// style of net/http/httptest.
//
// A single call to Start (or NewServer in tests) starts two listeners on
// 127.0.0.1: one speaking implicit TLS from the first byte (RFC 8314) and
// one speaking plaintext SMTP that offers STARTTLS (RFC 3207). The server
// uses a throwaway certificate authority generated for each Server, records
// a transcript of every command line it receives and every message it
// accepts, and offers hooks and fault switches for tests against hostile or
// broken servers.
//
// What a client sends is verified, not just accepted: the SASL mechanisms
// (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1 and SCRAM-SHA-256 with their
// channel-binding -PLUS variants, XOAUTH2, OAUTHBEARER) check the
// credentials in Options, MAIL and RCPT parameters are checked
// against the extensions the server advertises, BDAT (RFC 3030) is
// accepted only when CHUNKING is advertised, and commands a client sends
// before it may are recorded as pipelining violations (RFC 2920).
//
// The server is meant for tests and examples only: it has no timeouts of
// its own, keeps everything in memory, and trusts its hooks.
package smtptest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// defaultDataLimit is the largest message the server stores before
// answering 552, counted as RFC 1870 counts SIZE: the content without
// dot-stuffing and without the terminating ".\r\n". A smaller SIZE limit
// in Options.Extensions lowers it.
const defaultDataLimit = 64 << 20

// defaultScramIterations is the SCRAM iteration count when
// Options.ScramIterations is not set: the minimum RFC 7677 section 4
// asks clients to accept.
const defaultScramIterations = 4096

// CertKind selects the certificate a Server presents.
type CertKind int

const (
	// CertValid is a certificate for DNS "localhost", "mx.test" and the IP
	// addresses 127.0.0.1 and ::1, signed by the CA in Server.RootCAs.
	CertValid CertKind = iota
	// CertWrongName is a valid certificate signed by the CA in
	// Server.RootCAs whose only subject alternative name is DNS
	// "wrong.example" (no IP addresses).
	CertWrongName
	// CertExpired has the same names and CA as CertValid, but its NotAfter
	// lies in the past.
	CertExpired
	// CertUntrusted has the same names as CertValid, but is signed by a
	// second CA that is not in Server.RootCAs.
	CertUntrusted
)

// String returns the name of the constant, for test output.
func (k CertKind) String() string {
	switch k {
	case CertValid:
		return "CertValid"
	case CertWrongName:
		return "CertWrongName"
	case CertExpired:
		return "CertExpired"
	case CertUntrusted:
		return "CertUntrusted"
	}
	return fmt.Sprintf("CertKind(%d)", int(k))
}

// Options configures a Server. The zero value (or a nil *Options) gives a
// well-behaved server.
type Options struct {
	// Hostname is the name used in the greeting and the EHLO/HELO reply;
	// default "mx.test". It does not change the certificate names.
	Hostname string
	// Cert selects the certificate the server presents.
	Cert CertKind
	// MinTLSVersion is the server's minimum TLS version; 0 means the Go
	// default, except that when MaxTLSVersion is below TLS 1.2 it means
	// tls.VersionTLS10 (so MaxTLSVersion alone builds an old-TLS-only
	// server).
	MinTLSVersion uint16
	// MaxTLSVersion is the server's maximum TLS version; 0 means the Go
	// default.
	MaxTLSVersion uint16
	// Users maps usernames to passwords; nil means {"user": "pass"}.
	// PLAIN, LOGIN, CRAM-MD5 and the SCRAM mechanisms check against it.
	// SCRAM uses the password bytes as they are, without SASLprep
	// (RFC 4013), which makes no difference for ASCII passwords.
	Users map[string]string
	// Tokens maps OAuth 2.0 access tokens to the username each one
	// authenticates, for XOAUTH2 and OAUTHBEARER; nil means
	// {"token": "user"}.
	Tokens map[string]string
	// AuthMechanisms lists the SASL mechanisms advertised and accepted;
	// nil means {"PLAIN", "LOGIN", "CRAM-MD5"}. An empty non-nil slice
	// disables AUTH. Implemented are PLAIN, LOGIN, CRAM-MD5,
	// SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), their -PLUS
	// variants with the "tls-exporter" channel binding (RFC 9266),
	// XOAUTH2 and OAUTHBEARER (RFC 7628); other names are advertised but
	// answered with 504. Names ending in "-PLUS" are only advertised and
	// accepted under TLS, and only when the connection can export keying
	// material (TLS 1.3, or TLS 1.2 with Extended Master Secret).
	//
	// A successful SCRAM exchange ends with the server signature
	// ("v=...") in a 334 challenge, which the client answers with an
	// empty line, and then 235 (RFC 4954 section 4); a failed one ends at
	// once with "535 5.7.8 Error: authentication failed: <e>", where <e>
	// is the RFC 5802 server-error-value, such as "invalid-proof" or
	// "channel-bindings-dont-match". A refused OAuth token gets the JSON
	// error (see OAuthErrorJSON) in a 334 challenge and, after the
	// client's dummy response (%x01 for OAUTHBEARER, an empty line for
	// XOAUTH2), "535 5.7.8 Username and Password not accepted".
	AuthMechanisms []string
	// ScramIterations is the iteration count the server sends in SCRAM
	// (the i= attribute); 0 or less means 4096. Lower values let tests
	// check that a client refuses them. Every Server salts with its own
	// random salt.
	ScramIterations int
	// OAuthErrorJSON, if set, replaces the JSON document the server sends
	// base64-encoded in a 334 reply when XOAUTH2 or OAUTHBEARER presents
	// a token that is not in Tokens for that user. The defaults are
	// {"status":"invalid_token","scope":"https://mail.example/","schemes":"bearer"}
	// for OAUTHBEARER (RFC 7628 section 3.2.2) and
	// {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}
	// for XOAUTH2.
	OAuthErrorJSON string
	// AuthBeforeTLS also advertises and accepts AUTH on a plaintext
	// session. By default AUTH is only advertised and accepted under TLS,
	// and AUTH on a plaintext session gets "538 5.7.11 Encryption required
	// for requested authentication mechanism".
	AuthBeforeTLS bool
	// AuthOnlyBeforeTLS advertises and accepts AUTH on a plaintext session
	// but not under TLS, modelling capabilities that change across
	// STARTTLS.
	AuthOnlyBeforeTLS bool
	// Extensions lists the EHLO keywords sent after the hostname line; nil
	// means {"PIPELINING", "SIZE 67108864", "8BITMIME",
	// "ENHANCEDSTATUSCODES", "SMTPUTF8"}. The server appends the STARTTLS
	// and AUTH lines itself. The lines are sent as given, in every state.
	//
	// They also decide which MAIL and RCPT parameters are accepted (RFC
	// 5321 section 4.1.1.11): SIZE=n with "SIZE" (RFC 1870; with "SIZE n"
	// and n > 0, a larger declared or actual size gets 552), BODY=7BIT
	// and BODY=8BITMIME with "8BITMIME" (RFC 6152), SMTPUTF8 with
	// "SMTPUTF8" (RFC 6531), RET, ENVID, NOTIFY and ORCPT with "DSN" (RFC
	// 3461), REQUIRETLS with "REQUIRETLS" (RFC 8689; refused with 530
	// outside TLS even when advertised there), and AUTH= whenever AUTH is
	// advertised (RFC 4954 section 5). Any other parameter, or one whose
	// extension is not listed, gets "555 5.5.4 Unsupported option: ...";
	// a listed parameter with a malformed or repeated value gets 501.
	//
	// With "CHUNKING" the server accepts "BDAT <size> [LAST]" (RFC 3030;
	// verb and LAST in any case). It reads exactly size octets after the
	// command line, as they are, and answers "250 2.0.0 <size> octets
	// received", or for the LAST chunk ends the message as at the end of
	// DATA (552, 554, OnData, "250 2.0.0 Ok: queued as <id>") and resets
	// the transaction. BDAT outside a transaction with at least one
	// accepted recipient gets "503 5.5.1 Error: need MAIL and RCPT", and
	// a BDAT line with a valid size but other junk gets
	// "501 5.5.4 Syntax: BDAT size [LAST]" and fails the transaction; in
	// both cases the chunk is read and discarded first, so the session
	// stays in step. A size that is missing or not a decimal number gets
	// the same 501 and the connection is closed, since the chunk cannot
	// be skipped. DATA after BDAT in one transaction gets 503 and leaves
	// the transaction as it is (RFC 3030 section 2 asks for RSET).
	// Without "CHUNKING", BDAT gets "502 5.5.1 BDAT not available" and
	// any chunk that follows is read as commands.
	//
	// Whether "PIPELINING" is listed decides what the server counts as a
	// pipelining violation; see Server.PipeliningViolations.
	Extensions []string
	// Strict8Bit refuses data the envelope did not declare: a message
	// with a byte >= 0x80 whose MAIL command lacked BODY=8BITMIME gets
	// "554 5.6.1 8-bit data without BODY=8BITMIME" and is not recorded
	// (RFC 6152; SMTPUTF8 alone does not declare it), and a non-ASCII
	// address in MAIL or RCPT without SMTPUTF8 on MAIL gets "553 5.6.7
	// Non-ASCII address without SMTPUTF8" (RFC 6531). By default both are
	// accepted, as many servers do, so that tests of other behaviour need
	// not care.
	Strict8Bit bool
	// RcptReply, if set, is called with the address of every RCPT
	// command that passed the server's own checks. If it returns a
	// non-empty string, that string is sent as the whole reply (for
	// example "550 5.1.1 <x@example.org>: Recipient address rejected:
	// User unknown"; separate the lines of a multi-line reply with
	// "\r\n") instead of "250 2.1.5 Ok", and the recipient is recorded
	// only if the reply starts with '2'. It runs on the session's
	// goroutine.
	RcptReply func(addr string) string
	// ChunkReply, if set, is called after each BDAT chunk has been read,
	// with its index in the transaction (0 for the first), its size and
	// whether it is the LAST one. If it returns a non-empty string, that
	// is sent as the whole reply instead of the usual one, and the
	// transaction fails: it is reset, so chunks already in the pipeline
	// get 503 (RFC 3030 section 2), and the message is not recorded.
	ChunkReply func(index int, size int64, last bool) string
	// SessionRcptReply is RcptReply with the session and the RCPT
	// parameters; it is consulted only when RcptReply is nil.
	SessionRcptReply func(s *Session, addr, params string) string
	// SessionChunkReply is ChunkReply with the session; it is consulted
	// only when ChunkReply is nil.
	SessionChunkReply func(s *Session, index int, size int64, last bool) string
	// OnSession, if set, is called once per session before the greeting
	// (after the handshake on the implicit-TLS listener). If it returns
	// true the session ends at once: the hook has replied or closed it.
	OnSession func(s *Session) bool

	// StripSTARTTLS never advertises STARTTLS and answers the STARTTLS
	// command with "502 5.5.1 STARTTLS not available".
	StripSTARTTLS bool
	// STARTTLSReply, if set, is sent as the reply line to STARTTLS instead
	// of the 220 reply, and the session stays plaintext.
	STARTTLSReply string
	// InjectAfterSTARTTLS, if set, is sent as raw bytes in the same write
	// as the "220 2.0.0 Ready to start TLS" reply, before the handshake
	// (response injection, RFC 3207 section 6).
	InjectAfterSTARTTLS string
	// BufferedCommandsSurviveSTARTTLS models the STARTTLS command
	// injection flaw of old servers (CVE-2011-0411, RFC 3207 section 6):
	// command bytes the client sent in plaintext after STARTTLS, in the
	// same write and so already in the server's read buffer, are kept and
	// processed as if they had arrived under TLS once the handshake is
	// done, instead of being discarded. A probe that writes
	// "STARTTLS\r\nNOOP\r\n" at once then gets a reply to NOOP after the
	// handshake without having sent it over TLS. The bytes are recorded in
	// the transcript with the "tls: " prefix, as the server believes them
	// to be, and the write also counts as a pipelining violation (see
	// AllowPipeliningViolations).
	BufferedCommandsSurviveSTARTTLS bool
	// PlaintextOnImplicit makes the implicit-TLS listener behave exactly
	// like the STARTTLS listener, modelling implicit TLS pointed at a
	// submission port that expects STARTTLS.
	PlaintextOnImplicit bool
	// Greeting, if set, replaces the greeting line (for example
	// "554 5.3.2 no service"). The default is
	// "220 <Hostname> ESMTP tlsmail-test".
	Greeting string

	// OnAccept, if set, is called with the raw connection right after
	// Accept on both listeners, before any TLS or greeting. If it returns
	// true the server closes the connection after it returns and does
	// nothing else. It runs on the connection's goroutine; Close closes
	// the connection, so a hook blocked reading from it returns.
	OnAccept func(conn net.Conn) bool
	// Handler, if set, is called for every line read in command state
	// (after the TLS handshake on the implicit listener), including the
	// client's lines inside an AUTH exchange, before default handling.
	// The line is recorded in the transcript first. If Handler returns
	// true the default processing of the line is skipped; for a line
	// inside an AUTH exchange the exchange is abandoned without a reply.
	// A Handler that takes a BDAT line leaves its chunk unread, so the
	// server then reads the chunk's octets as command lines.
	Handler func(s *Session, line string) bool
	// OnData, if set, is called after the end of message data (or the
	// LAST BDAT chunk) has been read and before the reply. If it returns true the hook has replied
	// (or closed the session) and the message is not recorded; if it
	// returns false, *msg (including any changes the hook made) is
	// recorded and acknowledged with 250. The transaction is reset either
	// way. Messages over the size limit get 552, and with Strict8Bit
	// undeclared 8-bit messages get 554, without calling OnData.
	OnData func(s *Session, msg *Message) bool

	// AllowPipeliningViolations keeps NewServer from failing the test
	// when the client broke the pipelining rules (see
	// Server.PipeliningViolations), for tests that do so on purpose.
	AllowPipeliningViolations bool

	// dataLimit overrides defaultDataLimit (for this package's tests).
	dataLimit int
}

// Message is a message accepted by the server.
type Message struct {
	// From is the address inside MAIL FROM:<...>.
	From string
	// To holds the addresses inside RCPT TO:<...>, in order.
	To []string
	// MailParams is everything after the closing '>' of MAIL FROM,
	// trimmed (for example "BODY=8BITMIME SMTPUTF8").
	MailParams string
	// RcptParams holds, for each address in To, everything after the
	// closing '>' of its RCPT TO, trimmed (for example
	// "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.net"), "" if none.
	RcptParams []string
	// Data is the message content with dot-stuffing removed, without the
	// terminating ".\r\n". Line endings are kept as received. For a
	// message sent with BDAT it is the concatenation of the chunks,
	// exactly as received.
	Data []byte
	// Raw is the exact bytes received after the 354 reply, including the
	// terminating ".\r\n". For a message sent with BDAT it holds the same
	// bytes as Data.
	Raw []byte
	// Chunks holds the size of each BDAT chunk of the message, in order,
	// the last being the one sent with LAST (RFC 3030); nil for a
	// message sent with DATA.
	Chunks []int
	// TLS reports whether the session was under TLS when DATA was
	// received.
	TLS bool
	// TLSVersion and CipherSuite are the negotiated TLS parameters of the
	// session (tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256, ...), zero
	// when TLS is false.
	TLSVersion, CipherSuite uint16
	// AuthUser is the authenticated username, or "" if none. For
	// XOAUTH2 and OAUTHBEARER it is the user the token belongs to.
	AuthUser string
	// AuthMechanism is the SASL mechanism of that authentication, in
	// upper case (for example "SCRAM-SHA-256-PLUS"), or "" if none.
	AuthMechanism string
	// TLSServerName is the server name the client asked for in the TLS
	// handshake (SNI), "" if none or when TLS is false.
	TLSServerName string
	// Session is the number of the connection the message arrived on
	// (see Session.ID).
	Session int
	// QueueID is the identifier the server gave the message in its final
	// reply, "250 2.0.0 Ok: queued as <QueueID>". The server numbers
	// messages 1, 2, ... in the order it records them, restarting at
	// Reset; OnData sees an empty QueueID, since the number is only
	// taken when the message is recorded.
	QueueID string
}

func (m Message) clone() Message {
	m.To = append([]string(nil), m.To...)
	m.RcptParams = append([]string(nil), m.RcptParams...)
	m.Data = append([]byte(nil), m.Data...)
	m.Raw = append([]byte(nil), m.Raw...)
	m.Chunks = append([]int(nil), m.Chunks...)
	return m
}

// Server is a running test SMTP server.
type Server struct {
	// ImplicitAddr is the "127.0.0.1:port" address of the listener that
	// speaks TLS from the first byte (RFC 8314), unless
	// Options.PlaintextOnImplicit is set.
	ImplicitAddr string
	// StartTLSAddr is the "127.0.0.1:port" address of the listener that
	// sends a plaintext greeting and offers STARTTLS (RFC 3207).
	StartTLSAddr string

	opts      Options
	hostname  string
	users     map[string]string
	tokens    map[string]string
	mechs     []string
	exts      []string
	dataLimit int
	sizeLimit int64 // from "SIZE n" in exts; 0 means none
	tlsConfig *tls.Config
	caCert    *x509.Certificate
	caPEM     []byte

	scramSalt  []byte // one random salt for every user
	scramIters int

	implicitLn net.Listener
	startTLSLn net.Listener
	wg         sync.WaitGroup
	closeOnce  sync.Once

	mu         sync.Mutex
	closed     bool
	conns      map[net.Conn]struct{}
	active     int
	idle       chan struct{} // closed when active drops to 0
	accepted   int
	transcript []string
	lines      []Line
	messages   []Message
	taken      int           // messages already returned by WaitMessage
	msgAdded   chan struct{} // closed and replaced when a message is recorded or the server closes
	queueID    int
	violations []string
}

// Start starts a server with both listeners on 127.0.0.1:0. opts may be
// nil. The caller must call Close.
func Start(opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	s := &Server{
		opts:      o,
		hostname:  o.Hostname,
		mechs:     o.AuthMechanisms,
		exts:      o.Extensions,
		dataLimit: o.dataLimit,
		conns:     make(map[net.Conn]struct{}),
		msgAdded:  make(chan struct{}),
	}
	if s.hostname == "" {
		s.hostname = "mx.test"
	}
	if s.mechs == nil {
		s.mechs = []string{"PLAIN", "LOGIN", "CRAM-MD5"}
	} else {
		s.mechs = append([]string(nil), s.mechs...)
	}
	if s.exts == nil {
		s.exts = []string{"PIPELINING", "SIZE 67108864", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"}
	} else {
		s.exts = append([]string(nil), s.exts...)
	}
	if s.dataLimit <= 0 {
		s.dataLimit = defaultDataLimit
	}
	s.users = make(map[string]string)
	if o.Users == nil {
		s.users["user"] = "pass"
	} else {
		for u, p := range o.Users {
			s.users[u] = p
		}
	}
	s.tokens = make(map[string]string)
	if o.Tokens == nil {
		s.tokens["token"] = "user"
	} else {
		for tok, u := range o.Tokens {
			s.tokens[tok] = u
		}
	}
	s.sizeLimit = sizeLimit(s.exts)
	if s.sizeLimit > 0 && s.sizeLimit < int64(s.dataLimit) {
		s.dataLimit = int(s.sizeLimit)
	}
	s.scramIters = o.ScramIterations
	if s.scramIters <= 0 {
		s.scramIters = defaultScramIterations
	}
	s.scramSalt = make([]byte, 16)
	rand.Read(s.scramSalt)

	certs, err := newCertSet(o.Cert)
	if err != nil {
		return nil, fmt.Errorf("smtptest: generating certificates: %w", err)
	}
	s.caCert = certs.caCert
	s.caPEM = certs.caPEM
	minV, maxV := o.MinTLSVersion, o.MaxTLSVersion
	if minV == 0 && maxV != 0 && maxV < tls.VersionTLS12 {
		minV = tls.VersionTLS10
	}
	s.tlsConfig = &tls.Config{
		Certificates: []tls.Certificate{certs.leaf},
		MinVersion:   minV,
		MaxVersion:   maxV,
	}

	s.implicitLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("smtptest: %w", err)
	}
	s.startTLSLn, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.implicitLn.Close()
		return nil, fmt.Errorf("smtptest: %w", err)
	}
	s.ImplicitAddr = s.implicitLn.Addr().String()
	s.StartTLSAddr = s.startTLSLn.Addr().String()

	s.wg.Add(2)
	go s.acceptLoop(s.implicitLn, !o.PlaintextOnImplicit)
	go s.acceptLoop(s.startTLSLn, false)
	return s, nil
}

// NewServer starts a server like Start, registers Close with t.Cleanup,
// and calls t.Fatal if the server cannot be started. opts may be nil.
func NewServer(t testing.TB, opts *Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		// Why by default: every test that drives a client against this
		// server also checks that the client kept to RFC 2920's grouping
		// rules, which no single test could cover.
		if v := s.PipeliningViolations(); len(v) > 0 && (opts == nil || !opts.AllowPipeliningViolations) {
			t.Errorf("smtptest: the client broke the pipelining rules (RFC 2920 section 3.1): %q", v)
		}
	})
	return s
}

func (s *Server) acceptLoop(ln net.Listener, implicitTLS bool) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient failure (for example EMFILE): back off briefly
			// unless the server is closing.
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.accepted++
		id := s.accepted
		if s.active == 0 {
			s.idle = make(chan struct{})
		}
		s.active++
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c, implicitTLS, id)
	}
}

func (s *Server) connDone(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.active--
	if s.active == 0 {
		close(s.idle)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// Close closes both listeners and all open connections, and waits for all
// of the server's goroutines to exit. It may be called more than once.
// Hooks that block on anything other than their connection delay Close.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.msgAdded)
		s.msgAdded = make(chan struct{})
		conns := make([]net.Conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		s.implicitLn.Close()
		s.startTLSLn.Close()
		for _, c := range conns {
			c.Close()
		}
	})
	s.wg.Wait()
}

// RootCAs returns a new pool holding the throwaway CA that signed the
// server's certificate (for CertUntrusted, the CA that did not sign it).
func (s *Server) RootCAs() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.caCert)
	return p
}

// CACertPEM returns the certificate of the CA in RootCAs, PEM-encoded,
// for example to write a file for SSL_CERT_FILE.
func (s *Server) CACertPEM() []byte {
	return append([]byte(nil), s.caPEM...)
}

// ClientTLSConfig returns a new client configuration that trusts RootCAs.
// ServerName is not set.
func (s *Server) ClientTLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.RootCAs()}
}

// Transcript returns a copy of every line received from clients so far,
// in arrival order across all connections, each as "plain: <line>" or
// "tls: <line>" depending on whether the session was under TLS when the
// line arrived, without its line ending. Message data lines and BDAT
// chunks are not included; BDAT command lines are. A line is recorded before the server replies to it.
func (s *Server) Transcript() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.transcript...)
}

// Messages returns a copy of the messages accepted so far, in order. A
// message is recorded before the server replies to the end of its data.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = m.clone()
	}
	return out
}

// Reset clears the transcript, the accepted messages and the pipelining
// violations, and restarts the "queued as" numbering.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transcript = nil
	s.lines = nil
	s.messages = nil
	s.taken = 0
	s.queueID = 0
	s.violations = nil
}

// PipeliningViolations returns a copy of the pipelining violations seen
// so far, in order, across all connections. The server records one when,
// about to reply to a command after which a client must wait (RFC 2920
// section 3.1: EHLO, HELO, STARTTLS, AUTH and each response inside an
// AUTH exchange, NOOP, VRFY, EXPN, TURN, and DATA when the reply is
// 354), it has already read bytes the client sent after that command,
// for example "DATA: 23 bytes sent before the 354 reply". When
// Options.Extensions lacks PIPELINING, bytes already read after any
// command (other than QUIT), after the end of data, or after a BDAT
// command and its chunk are a violation too, and the entry ends in
// " (PIPELINING not advertised)". Replies a Handler makes itself are not
// checked.
//
// Detection is best-effort: the server only sees bytes that arrived by
// the time it last read from the connection, which in practice means
// bytes the client wrote together with the command (in the same TCP
// segment or TLS record). A client that writes a command and its
// successor in separate writes without waiting may go unnoticed.
func (s *Server) PipeliningViolations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

func (s *Server) addViolation(v string) {
	s.mu.Lock()
	s.violations = append(s.violations, v)
	s.mu.Unlock()
}

// WaitIdle waits until no connection is open, that is until every session
// goroutine has finished, and returns an error if that takes longer than
// timeout. Connections not yet accepted by the server are not counted.
func (s *Server) WaitIdle(timeout time.Duration) error {
	s.mu.Lock()
	if s.active == 0 {
		s.mu.Unlock()
		return nil
	}
	ch := s.idle
	s.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		s.mu.Lock()
		n := s.active
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		return fmt.Errorf("smtptest: %d connection(s) still open after %v", n, timeout)
	}
}

// Connections returns the total number of connections accepted so far on
// both listeners.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Line is one line received from a client, as recorded in the
// transcript.
type Line struct {
	Session int    // the Session.ID of the connection
	TLS     bool   // whether the session was under TLS
	Text    string // the line without its line ending
}

// Lines returns a copy of the transcript with each line's session; it
// holds the same lines as Transcript, in the same order.
func (s *Server) Lines() []Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Line(nil), s.lines...)
}

// WaitMessage returns the first accepted message that WaitMessage has not
// returned yet, waiting for it if needed, until ctx is done or the server
// is closed. Reset starts again with the next message recorded.
func (s *Server) WaitMessage(ctx context.Context) (Message, error) {
	for {
		s.mu.Lock()
		if s.taken < len(s.messages) {
			m := s.messages[s.taken].clone()
			s.taken++
			s.mu.Unlock()
			return m, nil
		}
		closed, ch := s.closed, s.msgAdded
		s.mu.Unlock()
		if closed {
			return Message{}, errors.New("smtptest: server closed while waiting for a message")
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return Message{}, fmt.Errorf("smtptest: no message arrived: %w", context.Cause(ctx))
		}
	}
}

func (s *Server) record(sess *Session, line string) {
	isTLS := sess.TLS()
	prefix := "plain: "
	if isTLS {
		prefix = "tls: "
	}
	s.mu.Lock()
	s.transcript = append(s.transcript, prefix+line)
	s.lines = append(s.lines, Line{Session: sess.id, TLS: isTLS, Text: line})
	s.mu.Unlock()
}

// addMessage gives m the next queue ID, records it and returns the ID.
func (s *Server) addMessage(m Message) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueID++
	m.QueueID = strconv.Itoa(s.queueID)
	s.messages = append(s.messages, m)
	close(s.msgAdded)
	s.msgAdded = make(chan struct{})
	return m.QueueID
}

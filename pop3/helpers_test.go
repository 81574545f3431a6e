package pop3

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// A scripted server for the tests that need bytes no real server would
// send: one connection, played by a func, with every byte the client sent
// recorded for exact comparison.

var testCert = func() func() (tls.Certificate, *x509.CertPool) {
	var once sync.Once
	var leaf tls.Certificate
	var roots *x509.CertPool
	return func() (tls.Certificate, *x509.CertPool) {
		once.Do(func() {
			var err error
			leaf, roots, _, err = smtptest.Certificate(smtptest.CertValid)
			if err != nil {
				panic(err)
			}
		})
		return leaf, roots
	}
}()

type peer struct {
	t      testing.TB
	raw    net.Conn
	conn   net.Conn
	br     *bufio.Reader
	mu     sync.Mutex
	got    []string // lines received, "plain: " or "tls: " prefixed
	tls    bool
	failed error
}

type scripted struct {
	ln   net.Listener
	done chan struct{}
	p    *peer
}

// serve starts a one-connection server that runs fn; implicit makes it
// handshake TLS first. The returned server's wait returns the lines the
// client sent.
func serve(t testing.TB, implicit bool, fn func(p *peer)) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		conn, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		p := &peer{t: t, raw: conn, conn: conn, br: bufio.NewReader(conn)}
		s.p = p
		defer conn.Close()
		if implicit {
			p.handshake()
		}
		fn(p)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-s.done
	})
	return s
}

func (s *scripted) addr() string { return s.ln.Addr().String() }

// lines waits for the script to end and returns what the client sent.
func (s *scripted) lines() []string {
	<-s.done
	if s.p == nil {
		return nil
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return append([]string(nil), s.p.got...)
}

func (p *peer) handshake() {
	leaf, _ := testCert()
	tc := tls.Server(p.raw, &tls.Config{Certificates: []tls.Certificate{leaf}})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		p.failed = err
		return
	}
	tc.SetDeadline(time.Time{})
	p.conn, p.tls = tc, true
	p.br = bufio.NewReader(tc)
}

// send writes s exactly.
func (p *peer) send(s string) {
	p.conn.Write([]byte(s))
}

// read reads one line from the client, records and returns it without
// CRLF; "" and false at EOF.
func (p *peer) read() (string, bool) {
	p.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := p.br.ReadString('\n')
	if err != nil {
		return "", false
	}
	p.mu.Lock()
	prefix := "plain: "
	if p.tls {
		prefix = "tls: "
	}
	p.got = append(p.got, prefix+strings.TrimSuffix(l, "\r\n"))
	p.mu.Unlock()
	return strings.TrimSuffix(l, "\r\n"), true
}

// expect reads a line and answers it with reply (sent exactly).
func (p *peer) expect(want, reply string) {
	got, ok := p.read()
	if !ok {
		return
	}
	if want != "" && got != want {
		p.t.Errorf("server got %q, want %q", got, want)
	}
	p.send(reply)
}

// drain reads until the client closes.
func (p *peer) drain() {
	for {
		if _, ok := p.read(); !ok {
			return
		}
	}
}

const (
	greeting  = "+OK ready <1.2@test>\r\n"
	capsTLS   = "+OK\r\nUSER\r\nUIDL\r\nTOP\r\nSASL PLAIN\r\n.\r\n"
	plainLine = "AUTH PLAIN AHVzZXIAcGFzcw=="
	userPass  = "pass"
	loginDone = "+OK logged in\r\n"
)

// login plays greeting, CAPA and AUTH PLAIN for a client that uses
// testAuth.
func (p *peer) login() {
	p.send(greeting)
	p.expect("CAPA", capsTLS)
	p.expect(plainLine, loginDone)
}

var testAuth = tlsmail.PlainAuth("", "user", userPass, "127.0.0.1")

func testDialer(mode Mode) *Dialer {
	_, roots := testCert()
	return &Dialer{Mode: mode, TLSConfig: &tls.Config{RootCAs: roots}, CommandTimeout: 10 * time.Second, GreetingTimeout: 10 * time.Second}
}

// loggedIn dials s with implicit TLS and authenticates.
func loggedIn(t *testing.T, s *scripted) *Client {
	t.Helper()
	c, err := testDialer(ImplicitTLS).Dial(s.addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Auth(t.Context(), testAuth); err != nil {
		t.Fatal(err)
	}
	return c
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func isProtocol(err error) bool { return errors.Is(err, ErrProtocol) }

var _ = io.EOF

func bufioReader(s string) *bufio.Reader { return bufio.NewReaderSize(strings.NewReader(s), 128) }

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// tlsListen serves TLS handshakes with cfg on loopback until the test ends.
func tlsListen(t *testing.T, cfg *tls.Config) (string, func()) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	stop := func() { ln.Close(); <-done }
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

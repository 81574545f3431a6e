package tlsmail

// The hostile-server suite. Each case runs one attack against a fresh
// smtptest.Server and checks five things: the error (its kind and the step
// it names), how long the client took, exactly which command lines reached
// the server (message data never appears there; a data byte the server read
// as a command would), how many messages the server accepted, and that
// nothing was left behind: the client closed its connection by itself and
// every goroutine it started has exited.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/smtp"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
	"github.com/tlsmail/tlsmail/internal/wire"
)

const (
	advLong  = 5 * time.Second         // timeouts that must not be what ends a case
	advShort = 250 * time.Millisecond  // timeouts a stall case waits out
	advSlack = 1500 * time.Millisecond // scheduling allowance (-race, 2 cores, other packages' tests)
	advFast  = 2 * time.Second         // bound for cases that must fail at once, well under advLong
)

// advEnv is what a case's server hooks and operation share.
type advEnv struct {
	t       *testing.T
	srv     *smtptest.Server
	d       *Dialer
	ctx     context.Context
	cancel  context.CancelFunc
	release chan struct{} // closed when the operation has returned
	client  *Client       // set by operations that keep a Client
	alloc   uint64        // bytes allocated during a measured operation
	written atomic.Int64  // bytes a raw hook managed to write
}

func (e *advEnv) addr() string {
	if e.d.Mode == STARTTLS {
		return e.srv.StartTLSAddr
	}
	return e.srv.ImplicitAddr
}

type advCase struct {
	name   string
	server func(e *advEnv) *smtptest.Options // nil: a well-behaved server
	dialer func(d *Dialer)                   // nil: implicit TLS, trusts the server, advLong timeouts
	op     func(e *advEnv) error

	ok       bool             // the operation must succeed; otherwise it must fail
	is       []error          // errors.Is must hold for each
	as       func(error) bool // extra test of the error
	contains []string         // substrings of err.Error(): the step, the cause
	max      time.Duration    // longest the operation may take; 0 means advFast
	want     []string         // exactly the lines the server received
	messages int              // messages the server accepted
	check    func(t *testing.T, e *advEnv, err error)

	// syncIs: the error identities in is hold only when replies are read
	// one at a time. Pipelined, a reply out of place may be read as a
	// refusal of the next command of the group; the send must still fail.
	syncIs bool
}

// TestAdversarial runs every case twice: against a server without
// PIPELINING, where the client sends one command at a time and the exact
// transcript is checked, and against one with PIPELINING, where the
// commands of a group go out together. Pipelined, the client must reach
// the same verdict: success or failure, the same error identities, no
// more messages delivered, no hang, the connection closed.
func TestAdversarial(t *testing.T) {
	bigMessage() // made once, before any case is timed
	for _, tc := range adversarialCases() {
		t.Run("sync/"+tc.name, func(t *testing.T) { runAdversarial(t, tc, false) })
		t.Run("pipelined/"+tc.name, func(t *testing.T) { runAdversarial(t, tc, true) })
	}
}

// defaultExtensions is smtptest's default EHLO list.
var defaultExtensions = []string{"PIPELINING", "SIZE 67108864", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"}

// withPipelining returns opts with PIPELINING in or out of its EHLO list.
func withPipelining(opts *smtptest.Options, on bool) *smtptest.Options {
	o := smtptest.Options{}
	if opts != nil {
		o = *opts
	}
	exts := o.Extensions
	if exts == nil {
		exts = defaultExtensions
	}
	exts = slices.DeleteFunc(slices.Clone(exts), func(x string) bool { return x == "PIPELINING" })
	if on {
		exts = append([]string{"PIPELINING"}, exts...)
	}
	o.Extensions = exts
	return &o
}

func runAdversarial(t *testing.T, tc advCase, pipelined bool) {
	base := runtime.NumGoroutine()
	e := &advEnv{t: t, release: make(chan struct{})}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	defer e.cancel()
	var opts *smtptest.Options
	if tc.server != nil {
		opts = tc.server(e)
	}
	srv, err := smtptest.Start(withPipelining(opts, pipelined))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	e.srv = srv
	e.d = &Dialer{
		TLSConfig:       srv.ClientTLSConfig(),
		Timeout:         advLong,
		GreetingTimeout: advLong,
		CommandTimeout:  advLong,
		DataTimeout:     advLong,
	}
	if tc.dialer != nil {
		tc.dialer(e.d)
	}

	start := time.Now()
	err = tc.op(e)
	elapsed := time.Since(start)
	close(e.release)

	switch {
	case tc.ok && err != nil:
		t.Errorf("error %v; want success", err)
	case !tc.ok && err == nil:
		t.Errorf("nil error; want a failure")
	}
	if err != nil {
		for _, target := range tc.is {
			if pipelined && tc.syncIs {
				break
			}
			if !errors.Is(err, target) {
				t.Errorf("error %q: errors.Is(err, %q) is false", err, target)
			}
		}
		if tc.as != nil && !tc.as(err) {
			t.Errorf("error %q (%T) is not of the expected kind", err, err)
		}
		for _, s := range tc.contains {
			if pipelined {
				break // a group's failure may name another command of it
			}
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not mention %q", err, s)
			}
		}
	}
	max := tc.max
	if max == 0 {
		max = advFast
	}
	if elapsed > max {
		t.Errorf("took %v; want at most %v", elapsed, max)
	}

	if c := e.client; c != nil {
		if c.err == nil {
			// Not a fatal failure (a 5xx, a refusal before sending): the
			// session is the caller's to end.
			c.Close()
		} else if err := c.Noop(); err == nil {
			t.Error("Client still usable after a fatal failure")
		}
	}
	// After a fatal failure the client must have closed the connection by
	// itself; the server sees that as the end of the session.
	if err := srv.WaitIdle(2 * time.Second); err != nil {
		t.Errorf("client left its connection open: %v", err)
	}
	if e.client != nil {
		e.client.Close()
	}
	got, msgs := srv.Transcript(), srv.Messages()
	srv.Close()
	e.cancel()
	smtptest.CheckGoroutines(t, base)

	if !pipelined && !slices.Equal(got, tc.want) {
		t.Errorf("server received:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(tc.want, "\n\t"))
	}
	if len(msgs) != tc.messages {
		t.Errorf("server accepted %d messages; want %d", len(msgs), tc.messages)
	}
	if tc.check != nil {
		tc.check(t, e, err)
	}
}

// Operations.

var (
	advFrom = "a@example.com"
	advTo   = []string{"b@example.com"}
)

func advAuth() Auth { return PlainAuth("", "user", "pass", "127.0.0.1") }

// opDial dials; a Client it gets is ended with QUIT.
func opDial(e *advEnv) error {
	c, err := e.d.DialContext(e.ctx, e.addr())
	if err != nil {
		return err
	}
	return c.Quit()
}

// opSend sends testMsg with PLAIN credentials.
func opSend(e *advEnv) error {
	return e.d.SendMailContext(e.ctx, e.addr(), advAuth(), advFrom, advTo, []byte(testMsg))
}

func opSendWith(a Auth, from string, msg []byte) func(e *advEnv) error {
	return func(e *advEnv) error {
		return e.d.SendMailContext(e.ctx, e.addr(), a, from, advTo, msg)
	}
}

// opSendBig sends, without credentials, a message far larger than the
// socket buffers, so that the client blocks writing it when the server
// stops reading.
func opSendBig(e *advEnv) error {
	return e.d.SendMailContext(e.ctx, e.addr(), nil, advFrom, advTo, bigMessage())
}

// opClient dials and runs f on the Client.
func opClient(f func(e *advEnv, c *Client) error) func(e *advEnv) error {
	return func(e *advEnv) error {
		c, err := e.d.DialContext(e.ctx, e.addr())
		if err != nil {
			e.t.Fatalf("setup: Dial: %v", err)
		}
		e.client = c
		return f(e, c)
	}
}

// opPlainClient connects to the STARTTLS port without securing it and runs
// f on the Client.
func opPlainClient(f func(e *advEnv, c *Client) error) func(e *advEnv) error {
	return func(e *advEnv) error {
		conn, err := net.Dial("tcp", e.srv.StartTLSAddr)
		if err != nil {
			e.t.Fatal(err)
		}
		c, err := NewClient(conn, "127.0.0.1")
		if err != nil {
			e.t.Fatalf("setup: NewClient: %v", err)
		}
		e.client = c
		return f(e, c)
	}
}

// opMeasure records in e.alloc how many bytes op allocated (all goroutines
// together, so hooks must allocate their payload beforehand).
func opMeasure(op func(e *advEnv) error) func(e *advEnv) error {
	return func(e *advEnv) error {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := op(e)
		runtime.ReadMemStats(&after)
		e.alloc = after.TotalAlloc - before.TotalAlloc
		return err
	}
}

// after runs f after d, for cancellations that no hook can time.
func after(d time.Duration, op func(e *advEnv) error) func(e *advEnv) error {
	return func(e *advEnv) error {
		tm := time.AfterFunc(d, e.cancel)
		defer tm.Stop()
		return op(e)
	}
}

var bigMessage = sync.OnceValue(func() []byte {
	line := strings.Repeat("x", 998) + "\r\n"
	return []byte(strings.Repeat(line, (16<<20)/len(line)))
})

// hugeLine is a 10 MB reply line with no line ending.
var hugeLine = sync.OnceValue(func() []byte {
	b := bytes.Repeat([]byte{'a'}, 10<<20)
	copy(b, "250-")
	return b
})

// Server behaviours.

type hook func(e *advEnv, s *smtptest.Session)

// server returns a fixed set of options.
func server(o smtptest.Options) func(e *advEnv) *smtptest.Options {
	return func(*advEnv) *smtptest.Options { return &o }
}

// onCmd runs h for command lines starting with prefix (and for nothing
// else), on top of o.
func onCmd(prefix string, h hook, o ...smtptest.Options) func(e *advEnv) *smtptest.Options {
	return func(e *advEnv) *smtptest.Options {
		var opts smtptest.Options
		if len(o) > 0 {
			opts = o[0]
		}
		opts.Handler = func(s *smtptest.Session, line string) bool {
			if !strings.HasPrefix(line, prefix) {
				return false
			}
			h(e, s)
			return true
		}
		return &opts
	}
}

// onData runs h once the message data has been read, instead of the reply.
func onData(h hook) func(e *advEnv) *smtptest.Options {
	return func(e *advEnv) *smtptest.Options {
		return &smtptest.Options{OnData: func(s *smtptest.Session, m *smtptest.Message) bool {
			h(e, s)
			return true
		}}
	}
}

// onAccept gives the raw connection to h before any TLS or greeting.
func onAccept(h func(e *advEnv, c net.Conn)) func(e *advEnv) *smtptest.Options {
	return func(e *advEnv) *smtptest.Options {
		return &smtptest.Options{OnAccept: func(c net.Conn) bool {
			h(e, c)
			return true
		}}
	}
}

func reply(lines ...string) hook {
	return func(_ *advEnv, s *smtptest.Session) { s.Reply(lines...) }
}

func raw(b string) hook {
	return func(_ *advEnv, s *smtptest.Session) { s.WriteRaw([]byte(b)) }
}

func rawClose(b string) hook {
	return func(_ *advEnv, s *smtptest.Session) {
		s.WriteRaw([]byte(b))
		s.Drop()
	}
}

// rawCloseNow writes b and closes at once, input unread: the client's
// next write fails.
func rawCloseNow(b string) hook {
	return func(_ *advEnv, s *smtptest.Session) {
		s.WriteRaw([]byte(b))
		s.Close()
	}
}

func stall(_ *advEnv, s *smtptest.Session) { s.Stall() }
func drop(_ *advEnv, s *smtptest.Session)  { s.Drop() }

func cancelStall(e *advEnv, s *smtptest.Session) {
	e.cancel()
	s.Stall()
}

// noRead answers DATA with 354 and then neither reads nor replies until
// the operation is over, so the client's writes block.
func noRead(e *advEnv, s *smtptest.Session) {
	s.Reply("354 End data with <CR><LF>.<CR><LF>")
	<-e.release
	s.Close()
}

func stallConn(_ *advEnv, c net.Conn) { io.Copy(io.Discard, c) }

// lateCancelStall cancels the context once the client, connected, is
// surely waiting for the server, and stalls.
func lateCancelStall(e *advEnv, c net.Conn) {
	time.Sleep(100 * time.Millisecond)
	e.cancel()
	stallConn(e, c)
}

// endless sends "250-" lines until the connection breaks.
func endless(_ *advEnv, s *smtptest.Session) {
	chunk := []byte(strings.Repeat("250-PIPELINING\r\n", 1000))
	for s.WriteRaw(chunk) == nil {
	}
}

// endlessAuth answers an AUTH command with first and every later client
// line with next, until the client sends "*". After 50 rounds it hangs up,
// so a client without a bound of its own fails the case instead of
// looping forever.
func endlessAuth(first, next string) func(e *advEnv) *smtptest.Options {
	return func(e *advEnv) *smtptest.Options {
		inAuth, n := false, 0
		return &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
			switch {
			case strings.HasPrefix(line, "AUTH "):
				inAuth = true
				s.Reply(first)
			case inAuth && line == "*":
				inAuth = false
				s.Reply("501 5.7.0 Authentication aborted")
			case inAuth:
				if n++; n > 50 {
					s.Close()
				} else {
					s.Reply(next)
				}
			default:
				return false
			}
			return true
		}}
	}
}

// Dialer settings.

func mode(m Mode) func(*Dialer) { return func(d *Dialer) { d.Mode = m } }

func greetingTimeout(v time.Duration) func(*Dialer) {
	return func(d *Dialer) { d.GreetingTimeout = v }
}

func commandTimeout(v time.Duration) func(*Dialer) {
	return func(d *Dialer) { d.CommandTimeout = v }
}

func dataTimeout(v time.Duration) func(*Dialer) { return func(d *Dialer) { d.DataTimeout = v } }

func tlsConfig(cfg *tls.Config) func(*Dialer) { return func(d *Dialer) { d.TLSConfig = cfg } }

func all(f ...func(*Dialer)) func(*Dialer) {
	return func(d *Dialer) {
		for _, g := range f {
			g(d)
		}
	}
}

// veryLong makes every timeout a minute: only the context can end a case.
func veryLong(d *Dialer) {
	d.GreetingTimeout, d.CommandTimeout, d.DataTimeout = time.Minute, time.Minute, time.Minute
}

// Error predicates.

func replyCode(code int) func(error) bool {
	return func(err error) bool {
		var e *Error
		return errors.As(err, &e) && e.Code == code
	}
}

func unknownAuthority(err error) bool {
	var ua x509.UnknownAuthorityError
	return errors.As(err, &ua)
}

func hostnameError(err error) bool {
	var he x509.HostnameError
	return errors.As(err, &he)
}

func expired(err error) bool {
	var ce x509.CertificateInvalidError
	return errors.As(err, &ce) && ce.Reason == x509.Expired
}

func oldTLS(err error) bool { return strings.Contains(err.Error(), "protocol version") }

// Transcript lines.

const (
	pEHLO  = "plain: EHLO localhost"
	pSTLS  = "plain: STARTTLS"
	tEHLO  = "tls: EHLO localhost"
	tAUTH  = "tls: AUTH PLAIN AHVzZXIAcGFzcw=="
	tMAIL  = "tls: MAIL FROM:<a@example.com> SIZE=63"                // SendMail: testMsg's size; ASCII, so no BODY or SMTPUTF8
	tMAILb = "tls: MAIL FROM:<a@example.com> SIZE=16777000"          // SendMail of bigMessage
	tMAILc = "tls: MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8" // Client.Mail
	tRCPT  = "tls: RCPT TO:<b@example.com>"
	tDATA  = "tls: DATA"
	tQUIT  = "tls: QUIT"
	b64Usr = "dXNlcg==" // "user"
	b64Pwd = "cGFzcw==" // "pass"
)

// sendUpTo is the transcript of opSend over implicit TLS up to and
// including the line of verb.
func sendUpTo(verb string) []string {
	full := []string{tEHLO, tAUTH, tMAIL, tRCPT, tDATA}
	for i, l := range full {
		if strings.HasPrefix(l, "tls: "+verb) {
			return full[:i+1]
		}
	}
	panic("no " + verb)
}

// bigUpTo is the transcript of opSendBig up to and including DATA;
// clientUpTo that of Client.Mail, Rcpt and Data.
var (
	bigUpTo    = []string{tEHLO, tMAILb, tRCPT, tDATA}
	clientUpTo = []string{tEHLO, tMAILc, tRCPT, tDATA}
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func cramLine(user, pass, challenge string) string {
	m := hmac.New(md5.New, []byte(pass))
	m.Write([]byte(challenge))
	return b64(user + " " + hex.EncodeToString(m.Sum(nil)))
}

// chattyAuth answers every challenge, forever.
type chattyAuth struct{}

func (chattyAuth) Start(*ServerInfo) (string, []byte, error) { return "LOGIN", nil, nil }
func (chattyAuth) Next([]byte, bool) ([]byte, error)         { return []byte("more"), nil }

func adversarialCases() []advCase {
	var cases []advCase
	add := func(c ...advCase) { cases = append(cases, c...) }
	stallMax := advShort + advSlack

	// Replies: size bounds. A hostile server must not grow the client's
	// memory or keep it reading.
	add(
		advCase{name: "bounds/endless 250- stream to EHLO", server: onCmd("EHLO", endless), op: opDial,
			is: []error{ErrProtocol, wire.ErrReplyTooLarge}, contains: []string{"EHLO", "more than 200 lines"},
			want: []string{tEHLO}},
		advCase{name: "bounds/10 MB line without newline to EHLO",
			server: func(e *advEnv) *smtptest.Options {
				hugeLine()
				return onCmd("EHLO", func(_ *advEnv, s *smtptest.Session) { s.WriteRaw(hugeLine()) })(e)
			},
			op: opMeasure(opDial), is: []error{ErrProtocol, wire.ErrReplyTooLarge}, contains: []string{"EHLO", "longer than 4000 bytes"},
			want: []string{tEHLO},
			check: func(t *testing.T, e *advEnv, err error) {
				// The TLS handshakes account for most of it.
				if e.alloc > 1<<20 {
					t.Errorf("client and server allocated %d bytes while a 10 MB line was sent; want the client to stop at the line limit", e.alloc)
				}
				t.Logf("%d bytes allocated", e.alloc)
			}},
		advCase{name: "bounds/10 MB greeting line without newline, plaintext",
			server: onAccept(func(e *advEnv, c net.Conn) {
				b := hugeLine()[4:]
				c.Write([]byte("220 "))
				for len(b) > 0 {
					n, err := c.Write(b[:min(len(b), 64<<10)])
					e.written.Add(int64(n))
					if err != nil {
						return
					}
					b = b[n:]
				}
			}),
			dialer: mode(STARTTLS), op: opMeasure(opDial),
			is: []error{ErrProtocol, wire.ErrReplyTooLarge}, contains: []string{"greeting", "longer than 4000 bytes"},
			check: func(t *testing.T, e *advEnv, err error) {
				if e.alloc > 256<<10 {
					t.Errorf("allocated %d bytes while a 10 MB line was sent", e.alloc)
				}
				t.Logf("server wrote %d of %d bytes before the client hung up; %d bytes allocated", e.written.Load(), 10<<20-4, e.alloc)
			}},
		advCase{name: "bounds/201 lines", server: onCmd("EHLO", raw(strings.Repeat("250-X\r\n", 200)+"250 end\r\n")), op: opDial,
			is: []error{ErrProtocol, wire.ErrReplyTooLarge}, contains: []string{"more than 200 lines"}, want: []string{tEHLO}},
		advCase{name: "bounds/64 KiB in one reply", server: onCmd("EHLO", raw(strings.Repeat("250-"+strings.Repeat("a", 3494)+"\r\n", 19)+"250 end\r\n")), op: opDial,
			is: []error{ErrProtocol, wire.ErrReplyTooLarge}, contains: []string{"more than 65536 bytes"}, want: []string{tEHLO}},
		advCase{name: "bounds/4001-byte line", server: onCmd("EHLO", raw("250 "+strings.Repeat("a", 3995)+"\r\n")), op: opDial,
			is: []error{ErrProtocol, wire.ErrReplyTooLarge}, contains: []string{"longer than 4000 bytes"}, want: []string{tEHLO}},
		advCase{name: "bounds/4000-byte line is accepted", server: onCmd("EHLO", raw("250-mx.test\r\n250 "+strings.Repeat("a", 3994)+"\r\n")), op: opDial,
			ok: true, want: []string{tEHLO, tQUIT}},
	)

	// Replies: malformed. An error at once, not after a timeout.
	for _, m := range []struct{ name, reply, says string }{
		{"mixed codes in a multi-line reply", "250-mx.test\r\n251-PIPELINING\r\n250 8BITMIME\r\n", "changes code from 250 to 251"},
		{"no code", "mx.test at your service\r\n", "does not start with a reply code"},
		{"binary garbage", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n", "does not start with a reply code"},
		{"code without separator", "250mx.test\r\n", "not followed by space or hyphen"},
		{"1xx code", "199 ok\r\n", "does not start with a reply code"},
		{"6xx code", "600 ok\r\n", "does not start with a reply code"},
		{"empty line", "\r\n", "does not start with a reply code"},
	} {
		add(advCase{name: "malformed/" + m.name, server: onCmd("EHLO", raw(m.reply)), op: opDial,
			is: []error{ErrProtocol, wire.ErrMalformedReply}, contains: []string{"EHLO", m.says}, want: []string{tEHLO}})
	}
	add(
		advCase{name: "malformed/mixed codes in the greeting", server: server(smtptest.Options{Greeting: "220-mx.test\r\n554 no"}), op: opDial,
			is: []error{ErrProtocol, wire.ErrMalformedReply}, contains: []string{"greeting", "changes code"}},
		advCase{name: "malformed/plaintext greeting without a code", server: server(smtptest.Options{Greeting: "hello there"}),
			dialer: mode(STARTTLS), op: opDial, is: []error{ErrProtocol, wire.ErrMalformedReply}, contains: []string{"greeting"}},
	)

	// Replies: a code the command cannot take ends the session at once;
	// after a wrong reply to DATA not one message byte is sent.
	add(
		advCase{name: "code/250 greeting", server: server(smtptest.Options{Greeting: "250 mx.test"}), op: opDial,
			is: []error{ErrProtocol}, contains: []string{"unexpected reply 250 to greeting"}},
		advCase{name: "code/354 to EHLO", server: onCmd("EHLO", reply("354 go ahead")), op: opDial,
			is: []error{ErrProtocol}, contains: []string{"unexpected reply 354 to EHLO"}, want: []string{tEHLO}},
		advCase{name: "code/250 to AUTH", server: onCmd("AUTH", reply("250 2.0.0 Ok")), op: opSend,
			is: []error{ErrProtocol}, contains: []string{"unexpected reply 250 to AUTH"}, want: sendUpTo("AUTH")},
		advCase{name: "code/354 to MAIL", server: onCmd("MAIL", reply("354 go ahead")), op: opSend,
			is: []error{ErrProtocol}, contains: []string{"unexpected reply 354 to MAIL"}, want: sendUpTo("MAIL")},
		advCase{name: "code/334 to MAIL", server: onCmd("MAIL", reply("334 VXNlcm5hbWU6")), op: opSend,
			is: []error{ErrProtocol}, contains: []string{"unexpected reply 334 to MAIL"}, want: sendUpTo("MAIL")},
		advCase{name: "code/220 to RCPT", server: onCmd("RCPT", reply("220 mx.test ESMTP")), op: opSend,
			is: []error{ErrProtocol}, contains: []string{"unexpected reply 220 to RCPT"}, want: sendUpTo("RCPT")},
		advCase{name: "code/250 to DATA sends no data", server: onCmd("DATA", reply("250 2.0.0 Ok")), op: opSend,
			is: []error{ErrProtocol}, contains: []string{"unexpected reply 250 to DATA"}, want: sendUpTo("DATA")},
		advCase{name: "code/220 to DATA sends no data", server: onCmd("DATA", reply("220 mx.test")), op: opSend,
			is: []error{ErrProtocol}, contains: []string{"unexpected reply 220 to DATA"}, want: sendUpTo("DATA")},
		advCase{name: "code/554 to DATA sends no data", server: onCmd("DATA", reply("554 5.5.1 No valid recipients")), op: opSend,
			as: replyCode(554), contains: []string{"DATA"}, want: append(sendUpTo("DATA"), tQUIT)},
		advCase{name: "code/354 at end of data", server: onData(reply("354 again")), op: opSend,
			is: []error{ErrProtocol}, contains: []string{"unexpected reply 354 to DATA"}, want: sendUpTo("DATA")},
	)

	// 421 at any step ends the session with an error that says so, and
	// the client sends nothing more (not even QUIT) and hangs up.
	const r421 = "421 4.7.0 Try again later"
	for _, s := range []struct {
		name   string
		server func(e *advEnv) *smtptest.Options
		dialer func(*Dialer)
		want   []string
	}{
		{"greeting", server(smtptest.Options{Greeting: r421}), nil, nil},
		{"greeting, STARTTLS port", server(smtptest.Options{Greeting: r421}), mode(STARTTLS), nil},
		{"EHLO", onCmd("EHLO", reply(r421)), nil, sendUpTo("EHLO")},
		{"STARTTLS", server(smtptest.Options{STARTTLSReply: r421}), mode(STARTTLS), []string{pEHLO, pSTLS}},
		{"AUTH", onCmd("AUTH", reply(r421)), nil, sendUpTo("AUTH")},
		{"MAIL", onCmd("MAIL", reply(r421)), nil, sendUpTo("MAIL")},
		{"MAIL, multi-line", onCmd("MAIL", reply("421-4.7.0 Try again", "421 4.7.0 later")), nil, sendUpTo("MAIL")},
		{"RCPT", onCmd("RCPT", reply(r421)), nil, sendUpTo("RCPT")},
		{"DATA", onCmd("DATA", reply(r421)), nil, sendUpTo("DATA")},
		{"end of data", onData(reply(r421)), nil, sendUpTo("DATA")},
	} {
		add(advCase{name: "421/" + s.name, server: s.server, dialer: s.dialer, op: opSend,
			is: []error{ErrServerClosing}, as: replyCode(421), contains: []string{"closing"}, want: s.want})
	}

	// Stalls: each ends after the configured timeout with an error that
	// names the step.
	add(
		advCase{name: "stall/greeting, STARTTLS port", server: onAccept(stallConn),
			dialer: all(mode(STARTTLS), greetingTimeout(advShort)), op: opDial, max: stallMax,
			is: []error{ErrNoGreeting, os.ErrDeadlineExceeded}, contains: []string{"greeting"}},
		advCase{name: "stall/greeting after TLS, unfinished multi-line", server: server(smtptest.Options{Greeting: "220-mx.test still thinking"}),
			dialer: greetingTimeout(advShort), op: opDial, max: stallMax,
			is: []error{os.ErrDeadlineExceeded}, contains: []string{"greeting", "250ms"}},
		advCase{name: "stall/TLS handshake", server: onAccept(stallConn),
			dialer: greetingTimeout(advShort), op: opDial, max: stallMax,
			is: []error{os.ErrDeadlineExceeded}, contains: []string{"TLS handshake", "250ms"}},
		advCase{name: "stall/STARTTLS handshake", server: onCmd("STARTTLS", func(e *advEnv, s *smtptest.Session) {
			s.Reply("220 2.0.0 Ready to start TLS")
			s.Stall()
		}), dialer: all(mode(STARTTLS), greetingTimeout(advShort)), op: opDial, max: stallMax,
			is: []error{os.ErrDeadlineExceeded}, contains: []string{"STARTTLS handshake"}, want: []string{pEHLO, pSTLS}},
		advCase{name: "stall/reply to STARTTLS", server: onCmd("STARTTLS", stall),
			dialer: all(mode(STARTTLS), commandTimeout(advShort)), op: opDial, max: stallMax,
			is: []error{os.ErrDeadlineExceeded}, contains: []string{"STARTTLS", "250ms"}, want: []string{pEHLO, pSTLS}},
		advCase{name: "stall/AUTH continuation", server: onCmd(b64Usr, stall),
			dialer: commandTimeout(advShort), op: opSendWith(LoginAuth("user", "pass", "127.0.0.1"), advFrom, []byte(testMsg)), max: stallMax,
			is: []error{os.ErrDeadlineExceeded}, contains: []string{"AUTH"}, want: []string{tEHLO, "tls: AUTH LOGIN", "tls: " + b64Usr}},
		advCase{name: "stall/end of data", server: onData(stall), dialer: dataTimeout(advShort), op: opSend, max: stallMax,
			is: []error{os.ErrDeadlineExceeded}, contains: []string{"end of data", "250ms"}, want: sendUpTo("DATA")},
		advCase{name: "stall/server stops reading message data", server: onCmd("DATA", noRead), dialer: dataTimeout(advShort),
			// One more slack: under -race the client's scan and encoding
			// of 16 MB before the stall alone take up to a second.
			op: opSendBig, max: stallMax + advSlack, is: []error{os.ErrDeadlineExceeded}, contains: []string{"writing message data: server did not take the data within 250ms"},
			want: bigUpTo},
	)
	for _, verb := range []string{"EHLO", "AUTH", "MAIL", "RCPT", "DATA"} {
		add(advCase{name: "stall/" + verb, server: onCmd(verb, stall), dialer: commandTimeout(advShort), op: opSend, max: stallMax,
			is: []error{os.ErrDeadlineExceeded}, contains: []string{verb, "no reply from server within 250ms"}, want: sendUpTo(verb)})
	}

	// Context cancellation: every timeout is a minute, so a prompt return
	// can only come from the context.
	cancelMax := advSlack
	add(
		advCase{name: "cancel/greeting, STARTTLS port", server: onAccept(lateCancelStall),
			dialer: all(veryLong, mode(STARTTLS)), op: opDial, max: cancelMax, is: []error{context.Canceled}, contains: []string{"greeting"}},
		advCase{name: "cancel/greeting after TLS", server: server(smtptest.Options{Greeting: "220-mx.test still thinking"}),
			dialer: veryLong, op: after(100*time.Millisecond, opDial), max: cancelMax, is: []error{context.Canceled}},
		advCase{name: "cancel/TLS handshake", server: onAccept(lateCancelStall),
			dialer: veryLong, op: opDial, max: cancelMax, is: []error{context.Canceled}},
		advCase{name: "cancel/STARTTLS handshake", server: onCmd("STARTTLS", func(e *advEnv, s *smtptest.Session) {
			s.Reply("220 2.0.0 Ready to start TLS")
			cancelStall(e, s)
		}), dialer: all(veryLong, mode(STARTTLS)), op: opDial, max: cancelMax,
			is: []error{context.Canceled}, contains: []string{"STARTTLS"}, want: []string{pEHLO, pSTLS}},
		advCase{name: "cancel/while writing message data", server: onCmd("DATA", func(e *advEnv, s *smtptest.Session) {
			s.Reply("354 End data with <CR><LF>.<CR><LF>")
			time.Sleep(100 * time.Millisecond) // the client is now blocked writing
			e.cancel()
			<-e.release
			s.Close()
		}), dialer: veryLong, op: opSendBig, max: cancelMax, is: []error{context.Canceled}, contains: []string{"message data"}, want: bigUpTo},
		advCase{name: "cancel/end of data", server: onData(cancelStall), dialer: veryLong, op: opSend, max: cancelMax,
			is: []error{context.Canceled}, contains: []string{"end of data"}, want: sendUpTo("DATA")},
		// Deterministic versions of a race: the context is cancelled after
		// Data returned and before the next Write or Close.
		advCase{name: "cancel/before writing message data", server: onCmd("DATA", noRead), dialer: veryLong, max: cancelMax,
			op: opClient(func(e *advEnv, c *Client) error {
				c.Mail(advFrom)
				c.Rcpt(advTo[0])
				w, err := c.data(e.ctx)
				if err != nil {
					return err
				}
				e.cancel()
				time.Sleep(20 * time.Millisecond) // let the context's AfterFunc run
				if _, err := w.Write(bigMessage()); err != nil {
					w.Close()
					return err
				}
				return w.Close()
			}), is: []error{context.Canceled}, contains: []string{"message data"}, want: clientUpTo},
		advCase{name: "cancel/before end of data", server: onData(stall), dialer: veryLong, max: cancelMax,
			op: opClient(func(e *advEnv, c *Client) error {
				c.Mail(advFrom)
				c.Rcpt(advTo[0])
				w, err := c.data(e.ctx)
				if err != nil {
					return err
				}
				io.WriteString(w, testMsg)
				e.cancel()
				time.Sleep(20 * time.Millisecond)
				return w.Close()
			}), is: []error{context.Canceled}, want: clientUpTo},
	)
	for _, verb := range []string{"EHLO", "AUTH", "MAIL", "RCPT", "DATA"} {
		add(advCase{name: "cancel/" + verb, server: onCmd(verb, cancelStall), dialer: veryLong, op: opSend, max: cancelMax,
			is: []error{context.Canceled}, contains: []string{verb}, want: sendUpTo(verb)})
	}

	// Dropped connections: an error, never nil, above all around DATA.
	add(
		advCase{name: "drop/after greeting", server: onCmd("EHLO", drop), op: opDial,
			is: []error{io.EOF}, contains: []string{"EHLO", "closed the connection"}, want: []string{tEHLO}},
		advCase{name: "drop/mid-greeting, plaintext", server: onAccept(func(e *advEnv, c net.Conn) { c.Write([]byte("220 mx.te")) }),
			dialer: mode(STARTTLS), op: opDial, is: []error{io.ErrUnexpectedEOF}, contains: []string{"greeting", "closed the connection"}},
		advCase{name: "drop/mid-reply", server: onCmd("EHLO", rawClose("250-mx.test\r\n250-SIZ")), op: opDial,
			is: []error{io.ErrUnexpectedEOF}, contains: []string{"EHLO", "closed the connection"}, want: []string{tEHLO}},
		advCase{name: "drop/during TLS handshake", server: onAccept(func(e *advEnv, c net.Conn) { c.Read(make([]byte, 10)) }),
			op: opDial, contains: []string{"TLS handshake"}},
		advCase{name: "drop/after STARTTLS 220", server: onCmd("STARTTLS", rawClose("220 2.0.0 Ready to start TLS\r\n")),
			dialer: mode(STARTTLS), op: opDial, contains: []string{"STARTTLS handshake"}, want: []string{pEHLO, pSTLS}},
		advCase{name: "drop/during AUTH", server: onCmd("AUTH", drop), op: opSend,
			is: []error{io.EOF}, contains: []string{"AUTH"}, want: sendUpTo("AUTH")},
		advCase{name: "drop/after DATA 354, while writing", server: onCmd("DATA", rawCloseNow("354 go ahead\r\n")), op: opSendBig,
			contains: []string{"writing message data"}, want: bigUpTo},
		advCase{name: "drop/after end of data, before the reply", server: onData(drop), op: opSend,
			is: []error{io.EOF}, contains: []string{"end of data", "closed the connection"}, want: sendUpTo("DATA")},
		advCase{name: "drop/partial final reply", server: onData(rawClose("250 2.0.0 Ok: queu")), op: opSend,
			is: []error{io.ErrUnexpectedEOF}, contains: []string{"end of data"}, want: sendUpTo("DATA")},
		advCase{name: "drop/final reply code without line ending", server: onData(rawClose("250")), op: opSend,
			is: []error{io.ErrUnexpectedEOF}, contains: []string{"end of data"}, want: sendUpTo("DATA")},
	)

	// STARTTLS: every way of keeping the session in plaintext fails
	// closed, with nothing but EHLO (and STARTTLS) sent in the clear.
	beforeTLSOnly := func(e *advEnv) *smtptest.Options {
		return &smtptest.Options{
			Extensions:        []string{},
			AuthOnlyBeforeTLS: true,
			Handler: func(s *smtptest.Session, line string) bool {
				if strings.HasPrefix(line, "EHLO") && !s.TLS() {
					s.Reply("250-mx.test", "250-8BITMIME", "250-SMTPUTF8", "250-AUTH PLAIN LOGIN", "250 STARTTLS")
					return true
				}
				return false
			},
		}
	}
	starttls := mode(STARTTLS)
	add(
		advCase{name: "starttls/stripped", server: server(smtptest.Options{StripSTARTTLS: true, AuthBeforeTLS: true}), dialer: starttls, op: opSend,
			is: []error{ErrSTARTTLSUnsupported}, want: []string{pEHLO}},
		advCase{name: "starttls/EHLO refused, HELO has no STARTTLS", server: onCmd("EHLO", reply("502 5.5.2 Error: command not recognized")),
			dialer: starttls, op: opSend, is: []error{ErrSTARTTLSUnsupported}, want: []string{pEHLO, "plain: HELO localhost"}},
		advCase{name: "starttls/454", server: server(smtptest.Options{STARTTLSReply: "454 4.7.0 TLS not available due to local problem"}),
			dialer: starttls, op: opSend, as: replyCode(454), contains: []string{"not continuing in plaintext"}, want: []string{pEHLO, pSTLS}},
		advCase{name: "starttls/502", server: server(smtptest.Options{STARTTLSReply: "502 5.5.1 Not implemented"}),
			dialer: starttls, op: opSend, as: replyCode(502), contains: []string{"not continuing in plaintext"}, want: []string{pEHLO, pSTLS}},
		advCase{name: "starttls/garbage reply", server: server(smtptest.Options{STARTTLSReply: "ok, go ahead"}),
			dialer: starttls, op: opSend, is: []error{ErrProtocol}, contains: []string{"STARTTLS"}, want: []string{pEHLO, pSTLS}},
		advCase{name: "starttls/250 reply", server: server(smtptest.Options{STARTTLSReply: "250 2.0.0 Ok"}),
			dialer: starttls, op: opSend, is: []error{ErrProtocol}, contains: []string{"STARTTLS"}, want: []string{pEHLO, pSTLS}},
		advCase{name: "starttls/response injection", server: server(smtptest.Options{InjectAfterSTARTTLS: "250-mx.test\r\n250 AUTH PLAIN\r\n"}),
			dialer: starttls, op: opSend, is: []error{ErrResponseInjection}, want: []string{pEHLO, pSTLS}},
		advCase{name: "starttls/response injection in a later packet", server: onCmd("STARTTLS", func(e *advEnv, s *smtptest.Session) {
			s.Reply("220 2.0.0 Ready to start TLS")
			time.Sleep(20 * time.Millisecond)
			s.WriteRaw([]byte("250 2.7.0 Authentication successful\r\n"))
			s.Stall()
		}), dialer: starttls, op: opSend, contains: []string{"STARTTLS"}, want: []string{pEHLO, pSTLS}},
		advCase{name: "starttls/AUTH offered only before TLS", server: server(smtptest.Options{AuthOnlyBeforeTLS: true}),
			dialer: starttls, op: opSend, is: []error{ErrAuthUnsupported}, want: []string{pEHLO, pSTLS, tEHLO, tQUIT}},
		advCase{name: "starttls/capabilities changed across TLS", server: beforeTLSOnly, dialer: starttls,
			op: opSendWith(nil, advFrom, []byte(testMsg)), ok: true, messages: 1,
			want: []string{pEHLO, pSTLS, tEHLO, "tls: MAIL FROM:<a@example.com>", tRCPT, tDATA, tQUIT}},
		advCase{name: "starttls/SMTPUTF8 offered only before TLS", server: beforeTLSOnly, dialer: starttls,
			op: opSendWith(nil, "jörg@example.com", []byte(testMsg)), is: []error{ErrExtensionUnsupported}, want: []string{pEHLO, pSTLS, tEHLO, tQUIT}},
		advCase{name: "starttls/AUTH before StartTLS", server: server(smtptest.Options{AuthBeforeTLS: true}),
			op: opPlainClient(func(e *advEnv, c *Client) error { return c.Auth(advAuth()) }), is: []error{ErrPlaintextAuth}, want: []string{pEHLO}},
	)

	// Certificates and TLS versions: refused, whatever the mode, unless
	// the caller's own tls.Config says InsecureSkipVerify.
	for _, m := range []struct {
		name   string
		dialer func(*Dialer)
		want   []string
	}{{"implicit", nil, nil}, {"STARTTLS", starttls, []string{pEHLO, pSTLS}}} {
		for _, c := range []struct {
			name string
			opts smtptest.Options
			as   func(error) bool
		}{
			{"wrong name", smtptest.Options{Cert: smtptest.CertWrongName}, hostnameError},
			{"expired", smtptest.Options{Cert: smtptest.CertExpired}, expired},
			{"untrusted", smtptest.Options{Cert: smtptest.CertUntrusted}, unknownAuthority},
			{"TLS 1.0 only", smtptest.Options{MaxTLSVersion: tls.VersionTLS10}, oldTLS},
			{"TLS 1.1 only", smtptest.Options{MaxTLSVersion: tls.VersionTLS11}, oldTLS},
		} {
			add(advCase{name: "cert/" + m.name + "/" + c.name, server: server(c.opts), dialer: m.dialer, op: opSend, as: c.as, want: m.want})
		}
	}
	insecure := &tls.Config{InsecureSkipVerify: true}
	full := []string{tEHLO, tAUTH, tMAIL, tRCPT, tDATA, tQUIT}
	add(
		advCase{name: "cert/system roots/untrusted", server: server(smtptest.Options{Cert: smtptest.CertUntrusted}),
			dialer: tlsConfig(nil), op: opSend, as: unknownAuthority},
		advCase{name: "cert/system roots/valid", dialer: tlsConfig(nil), op: opSend, ok: true, messages: 1, want: full},
		advCase{name: "cert/caller's InsecureSkipVerify/untrusted", server: server(smtptest.Options{Cert: smtptest.CertUntrusted}),
			dialer: tlsConfig(insecure), op: opSend, ok: true, messages: 1, want: full},
		advCase{name: "cert/caller's InsecureSkipVerify/wrong name", server: server(smtptest.Options{Cert: smtptest.CertWrongName}),
			dialer: tlsConfig(insecure), op: opSend, ok: true, messages: 1, want: full},
		advCase{name: "cert/caller's InsecureSkipVerify and MinVersion 1.0/TLS 1.1 only", server: server(smtptest.Options{MaxTLSVersion: tls.VersionTLS11}),
			dialer: tlsConfig(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10}), op: opSend, as: oldTLS},
	)

	// Replies nobody asked for: tlsmail never pipelines, so bytes waiting
	// before a command is sent answer nothing and must not be read as the
	// answer to the next command.
	add(
		advCase{name: "desync/two replies to MAIL", server: onCmd("MAIL", raw("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n")), op: opSend,
			is: []error{ErrProtocol}, contains: []string{"RCPT"}, want: sendUpTo("MAIL"), syncIs: true},
		advCase{name: "desync/354 and 250 together", server: onCmd("DATA", raw("354 go ahead\r\n250 2.0.0 Ok: queued as 1\r\n")), op: opSend,
			is: []error{ErrProtocol}, contains: []string{"DATA"}, want: sendUpTo("DATA")},
		advCase{name: "desync/421 after the EHLO reply", server: onCmd("EHLO", raw("250-mx.test\r\n250 AUTH PLAIN\r\n"+r421+"\r\n")), op: opSend,
			is: []error{ErrServerClosing}, contains: []string{"closing"}, want: sendUpTo("EHLO")},
	)

	// AUTH exchanges are bounded: a server that keeps challenging gets a
	// "*" and an error, not an endless loop.
	chal := "<1.2@mx.test>"
	chatty := []string{tEHLO, "tls: AUTH LOGIN"}
	cram := []string{tEHLO, "tls: AUTH CRAM-MD5"}
	for range maxAuthChallenges {
		chatty = append(chatty, "tls: "+b64("more"))
		cram = append(cram, "tls: "+cramLine("user", "pass", chal))
	}
	add(
		advCase{name: "auth/endless LOGIN prompts", server: endlessAuth("334 "+b64("Username:"), "334 "+b64("Password:")),
			op:       opClient(func(e *advEnv, c *Client) error { return c.Auth(LoginAuth("user", "pass", "127.0.0.1")) }),
			contains: []string{"LOGIN"}, want: []string{tEHLO, "tls: AUTH LOGIN", "tls: " + b64Usr, "tls: " + b64Pwd, "tls: *"}},
		advCase{name: "auth/endless CRAM-MD5 challenges", server: endlessAuth("334 "+b64(chal), "334 "+b64(chal)),
			op:       opClient(func(e *advEnv, c *Client) error { return c.Auth(CRAMMD5Auth("user", "pass")) }),
			contains: []string{"CRAM-MD5", "challenges"}, want: append(cram, "tls: *")},
		advCase{name: "auth/mechanism that answers every challenge", server: endlessAuth("334 "+b64("?"), "334 "+b64("?")),
			op:       opClient(func(e *advEnv, c *Client) error { return c.Auth(chattyAuth{}) }),
			contains: []string{"challenges"}, want: append(chatty, "tls: *")},
		advCase{name: "auth/challenge not base64", server: onCmd("AUTH", reply("334 %%% not base64")),
			op:       opClient(func(e *advEnv, c *Client) error { return c.Auth(LoginAuth("user", "pass", "127.0.0.1")) }),
			contains: []string{"not base64"}, want: []string{tEHLO, "tls: AUTH LOGIN", "tls: *"}},
	)
	return cases
}

// TestCredentialsNeverLeak drives every way authentication can fail with a
// recognisable password, including servers that repeat the credentials in
// their replies, and looks for the password and its base64 forms in every
// error (and the errors of later calls, which carry the sticky failure),
// in every way the Auth and the Client can be printed, and in what the
// standard logger received.
func TestCredentialsNeverLeak(t *testing.T) {
	const user, pass, host = "user", "Tr0ub4dor&3-horse", "127.0.0.1"
	secrets := []string{pass, b64(pass), b64("\x00" + user + "\x00" + pass), b64(user + "\x00" + user + "\x00" + pass)}
	var logs bytes.Buffer
	defer log.SetOutput(log.Writer())
	log.SetOutput(&logs)
	base := runtime.NumGoroutine()

	mechs := []struct {
		name string
		auth func() Auth // printed too, unless it is net/smtp's, which shows its password
	}{
		{"PLAIN", func() Auth { return PlainAuth("", user, pass, host) }},
		{"PLAIN with identity", func() Auth { return PlainAuth(user, user, pass, host) }},
		{"LOGIN", func() Auth { return LoginAuth(user, pass, host) }},
		{"CRAM-MD5", func() Auth { return CRAMMD5Auth(user, pass) }},
		{"SCRAM-SHA-256", func() Auth { return ScramSHA256Auth(user, pass) }},
		{"net/smtp PLAIN", func() Auth { return smtp.PlainAuth("", user, pass, host) }},
		{"PLAIN for another host", func() Auth { return PlainAuth("", user, pass, "smtp.example.com") }},
		{"LOGIN for another host", func() Auth { return LoginAuth(user, pass, "smtp.example.com") }},
	}
	allMechs := []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"}
	echo := func(final func(s *smtptest.Session, text string)) func() *smtptest.Options {
		return func() *smtptest.Options { return echoAuth(allMechs, final) }
	}
	reply := func(format string) func() *smtptest.Options {
		return echo(func(s *smtptest.Session, text string) { s.WriteRaw([]byte(strings.ReplaceAll(format, "%s", text))) })
	}
	behaviours := []struct {
		name   string
		opts   func() *smtptest.Options
		mode   Mode
		plain  bool // a plaintext Client on the STARTTLS port
		stalls bool
	}{
		{name: "wrong password", opts: func() *smtptest.Options {
			return &smtptest.Options{AuthMechanisms: allMechs, Users: map[string]string{user: "something else"}}
		}},
		{name: "535 repeating the credentials", opts: reply("535 5.7.8 Authentication failed for %s\r\n")},
		{name: "multi-line 535 repeating the credentials", opts: reply("535-5.7.8 Authentication failed\r\n535 5.7.8 %s\r\n")},
		{name: "454 repeating the credentials", opts: reply("454 4.7.0 Temporary failure for %s\r\n")},
		{name: "421 repeating the credentials", opts: reply("421 4.7.0 %s\r\n")},
		{name: "250 repeating the credentials", opts: reply("250 2.0.0 %s\r\n")},
		{name: "reply without a code repeating the credentials", opts: reply("%s\r\n")},
		{name: "extra reply repeating the credentials", opts: reply("535 5.7.8 no\r\n535 5.7.8 %s\r\n")},
		{name: "535 repeating the first 24 characters of the AUTH line", opts: echo(func(s *smtptest.Session, text string) {
			s.Reply("535 5.7.8 Authentication failed for " + text[:min(24, len(text))] + "...")
		})},
		{name: "535 repeating the first 9 characters of the password", opts: reply("535 5.7.8 Authentication failed: password " + pass[:9] + "... is wrong\r\n")},
		{name: "challenge repeating the credentials", opts: echo(func(s *smtptest.Session, text string) {
			s.Reply("334 " + b64(text))
		})},
		{name: "stall", opts: echo(func(s *smtptest.Session, text string) { s.Stall() }), stalls: true},
		{name: "drop", opts: echo(func(s *smtptest.Session, text string) { s.Close() })},
		{name: "mechanism not offered", opts: func() *smtptest.Options {
			return &smtptest.Options{AuthMechanisms: []string{"XOAUTH2"}}
		}},
		{name: "AUTH only before TLS", opts: func() *smtptest.Options {
			return &smtptest.Options{AuthMechanisms: allMechs, AuthOnlyBeforeTLS: true}
		}, mode: STARTTLS},
		{name: "plaintext", opts: func() *smtptest.Options {
			return &smtptest.Options{AuthMechanisms: allMechs, AuthBeforeTLS: true}
		}, plain: true},
	}

	// leaks finds any run of secretRun characters of a secret form: a
	// part of a credential is as bad as the whole.
	leaks := func(s string) string {
		for _, x := range secrets {
			for i := 0; i+secretRun <= len(x); i++ {
				if strings.Contains(s, x[i:i+secretRun]) {
					return x[i : i+secretRun]
				}
			}
		}
		return ""
	}
	checkErr := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil {
			return
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			if s := fmt.Sprintf(verb, err); leaks(s) != "" {
				t.Errorf("%s: fmt %s of the error shows %q: %s", what, verb, leaks(s), s)
			}
		}
		var e *Error
		if errors.As(err, &e) && leaks(e.Message) != "" {
			t.Errorf("%s: Error.Message shows %q: %s", what, leaks(e.Message), e.Message)
		}
	}

	for _, b := range behaviours {
		for _, m := range mechs {
			t.Run(b.name+"/"+m.name, func(t *testing.T) {
				srv := smtptest.NewServer(t, b.opts())
				d := testDialer(srv, b.mode)
				if b.stalls {
					d.CommandTimeout = 50 * time.Millisecond
				}
				addr := srv.ImplicitAddr
				if b.mode == STARTTLS || b.plain {
					addr = srv.StartTLSAddr
				}
				var c *Client
				if b.plain {
					conn, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					if c, err = NewClient(conn, host); err != nil {
						t.Fatal(err)
					}
				} else {
					var err error
					if c, err = d.Dial(addr); err != nil {
						t.Fatal(err)
					}
				}
				a := m.auth()
				err := c.Auth(a)
				if err == nil {
					t.Fatal("Auth succeeded")
				}
				checkErr(t, "Auth", err)
				checkErr(t, "Noop after Auth", c.Noop())
				checkErr(t, "Mail after Auth", c.Mail(advFrom))
				checkErr(t, "second Auth", c.Auth(a))
				_, theirs := a.(interface {
					Start(*smtp.ServerInfo) (string, []byte, error)
				})
				theirs = theirs && strings.HasPrefix(fmt.Sprintf("%T", a), "*smtp.")
				for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
					if s := fmt.Sprintf(verb, a); !theirs && leaks(s) != "" {
						t.Errorf("fmt %s of the Auth shows %q: %s", verb, leaks(s), s)
					}
					if s := fmt.Sprintf(verb, c); leaks(s) != "" {
						t.Errorf("fmt %s of the Client shows %q: %s", verb, leaks(s), s)
					}
				}
				c.Close()
				if !b.plain {
					err := d.SendMail(addr, m.auth(), advFrom, advTo, []byte(testMsg))
					if err == nil {
						t.Fatal("SendMail succeeded")
					}
					checkErr(t, "SendMail", err)
				}
				if err := srv.WaitIdle(2 * time.Second); err != nil {
					t.Error(err)
				}
				if len(srv.Messages()) != 0 {
					t.Error("message accepted")
				}
			})
		}
	}
	if s := logs.String(); leaks(s) != "" {
		t.Errorf("the standard logger received %q: %s", leaks(s), s)
	}
	smtptest.CheckGoroutines(t, base)
}

// echoAuth takes over AUTH: an initial response is answered at once by
// final, given every response the client sent and its decoded form;
// otherwise the client is prompted for a user name and a password and
// final answers the second response.
func echoAuth(mechs []string, final func(s *smtptest.Session, text string)) *smtptest.Options {
	// Why a mutex: the hook runs on each connection's goroutine, and a
	// case may open a second connection while the first one's goroutine
	// is still finishing.
	var mu sync.Mutex
	var sent []string
	inAuth := false
	finish := func(s *smtptest.Session) {
		text := strings.Join(sent, " ")
		for _, l := range sent {
			if d, err := base64.StdEncoding.DecodeString(l); err == nil {
				text += " " + string(d)
			}
		}
		final(s, text)
	}
	return &smtptest.Options{AuthMechanisms: mechs, Handler: func(s *smtptest.Session, line string) bool {
		mu.Lock()
		defer mu.Unlock()
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "AUTH" {
			sent = f[2:]
			if len(sent) > 0 {
				finish(s)
				return true
			}
			inAuth = true
			s.Reply("334 " + b64("Username:"))
			return true
		}
		if !inAuth {
			return false
		}
		sent = append(sent, line)
		if len(sent) == 1 {
			s.Reply("334 " + b64("Password:"))
			return true
		}
		inAuth = false
		finish(s)
		return true
	}}
}

// TestSmuggling sends messages built to end the data early under one
// reading of line endings or another (SMTP smuggling, CVE-2023-51764 and
// its family) and checks that the server received exactly one message,
// equal to the CRLF-normalised input, that no smuggled command reached it,
// and that what went on the wire has no end of data before the real one
// for a strict or a lenient server (checkWireData).
func TestSmuggling(t *testing.T) {
	const smuggled = "MAIL FROM:<admin@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: admin@example.com\r\n\r\nsmuggled\r\n.\r\n"
	var inputs []string
	for _, end := range []string{
		"\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r", "\r\n.\n", "\r.\r", "\n.\r", "\r.\n", "\r\n.\r\n",
		"\r\n.\r\r\n", "\r\n\x00.\r\n", "\r\n .\r\n", "\n..\n", "\r\n..\r\n",
	} {
		inputs = append(inputs, "Subject: hi\r\n\r\nbody"+end+smuggled, "Subject: hi\n\nbody"+end+strings.ReplaceAll(smuggled, "\r\n", "\n"))
	}
	inputs = append(inputs, ".\r\n"+smuggled, ".\n", "\n.", "\r.", ".", "", "no final line ending", "x\r")

	base := runtime.NumGoroutine()
	srv, err := smtptest.Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d := testDialer(srv, ImplicitTLS)
	for i, in := range inputs {
		srv.Reset()
		if err := d.SendMail(srv.ImplicitAddr, nil, advFrom, advTo, []byte(in)); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if err := srv.WaitIdle(2 * time.Second); err != nil {
			t.Fatal(err)
		}
		msgs := srv.Messages()
		if len(msgs) != 1 {
			t.Fatalf("%d %q: server accepted %d messages", i, in, len(msgs))
		}
		// The declared SIZE is exactly what the server received once
		// dot-stuffing is undone (RFC 1870 section 3).
		mail := fmt.Sprintf("tls: MAIL FROM:<a@example.com> SIZE=%d", len(msgs[0].Data))
		want := []string{tEHLO, mail, tRCPT, tDATA, tQUIT}
		if got := srv.Transcript(); !slices.Equal(got, want) {
			t.Errorf("%d %q: server received %q", i, in, got)
		}
		if want := crlfNormalise([]byte(in)); !bytes.Equal(msgs[0].Data, want) {
			t.Errorf("%d %q: server received %q; want %q", i, in, msgs[0].Data, want)
		}
		if problem := checkWireData([]byte(in), msgs[0].Raw); problem != "" {
			t.Errorf("%d %q went on the wire as %q: %s", i, in, msgs[0].Raw, problem)
		}
	}
	srv.Close()
	smtptest.CheckGoroutines(t, base)
}

// TestDataWriterBoundedMemory: the data writer streams; a message that is
// one 10 MB line, written at once or in pieces, is not copied.
func TestDataWriterBoundedMemory(t *testing.T) {
	msg := bytes.Repeat([]byte("A"), 10<<20)
	for _, chunk := range []int{len(msg), 1 << 20, 4096} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		n := 0
		d := wire.NewDotWriter(writerFunc(func(p []byte) (int, error) { n += len(p); return len(p), nil }))
		for p := msg; len(p) > 0; p = p[min(chunk, len(p)):] {
			d.Write(p[:min(chunk, len(p))])
		}
		d.Close()
		runtime.ReadMemStats(&after)
		if a := after.TotalAlloc - before.TotalAlloc; a > 256<<10 {
			t.Errorf("writing 10 MB in %d-byte writes allocated %d bytes", chunk, a)
		}
		if n != len(msg)+5 {
			t.Errorf("%d bytes written; want %d", n, len(msg)+5)
		}
	}
}

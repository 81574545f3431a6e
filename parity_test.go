package tlsmail

// The differential parity suite: tlsmail against Go's net/smtp, call for
// call, on the same scripted server.
//
// Each scenario is a list of Client calls (or one SendMail call) and a
// script of server answers. It runs twice against one smtptest.Server, once
// through net/smtp (tls.Dial + smtp.NewClient, or smtp.SendMail) and once
// through tlsmail's net/smtp entry points (tls.Dial + NewClient, Dial, or
// SendMail). For every call the harness records the error the way code
// written for net/smtp inspects it (err == nil, err == io.EOF,
// err == io.ErrUnexpectedEOF, err.(*textproto.Error) with Code and Msg,
// err.(*net.OpError), err.(net.Error), or "other") and the exact lines the
// server received during that call. net/smtp's record, rewritten by the
// allow-list below, is what tlsmail must produce; any other difference
// fails the scenario.
//
// Why the allow-list rewrites net/smtp's record instead of ignoring lines
// or calls: each entry then states exactly what tlsmail does instead, so an
// allowed difference cannot hide a second one in the same scenario.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

const (
	parityFrom = "a@example.com"
	parityTo   = "b@example.net"
	parityMsg  = "From: a@example.com\r\nTo: b@example.net\r\nSubject: parity\r\n\r\nHello.\r\n.leading dot\r\n"

	// parityRunTimeout bounds one side of one scenario. net/smtp has no
	// timeouts and tlsmail's defaults are minutes; past this the server is
	// closed, which ends whatever is blocked.
	parityRunTimeout = 5 * time.Second
)

var parityRcpts = []string{"b@example.net", "c@example.org"}

// parityIsUnknownOutcome reports whether err says that a message may or may not
// have been delivered (the reply to the end of data was lost).
//
// TODO: errors.Is(err, ErrUnknownOutcome) once the sentinel exists; the
// words are matched only so that this file compiles before it does.
func parityIsUnknownOutcome(err error) bool {
	return err != nil && strings.Contains(err.Error(), "may have been delivered")
}

// Result kinds, named as code written for net/smtp tests them.
const (
	parityKindNil           = "nil"
	parityKindEOF           = "io.EOF"
	parityKindUnexpectedEOF = "io.ErrUnexpectedEOF"
	parityKindTextproto     = "*textproto.Error"
	parityKindOpError       = "*net.OpError"
	parityKindNetError      = "net.Error"
	parityKindOther         = "other"

	// Only in expectations: any result at all, and any non-nil error.
	parityKindAny   = "(any result)"
	parityKindError = "(any error)"
)

// parityOutcome is one call's result and the lines the server received
// during it.
type parityOutcome struct {
	Call     string
	Kind     string
	Code     int    // *textproto.Error
	Msg      string // *textproto.Error
	Sentinel string // parityKindOther: the tlsmail sentinel it matches, if any
	Value    string // Extension's two results
	Err      string // err.Error(), for reading only
	As       string // what errors.As finds as *textproto.Error when Kind is not that; for reading only
	Lines    []string
	start    int // index of Lines[0] in the server's transcript
}

func parityClassify(call string, err error) parityOutcome {
	o := parityOutcome{Call: call, Kind: parityKindNil}
	if err == nil {
		return o
	}
	o.Err = err.Error()
	if err == io.EOF {
		o.Kind = parityKindEOF
		return o
	}
	if err == io.ErrUnexpectedEOF {
		o.Kind = parityKindUnexpectedEOF
		return o
	}
	if e, ok := err.(*textproto.Error); ok {
		o.Kind, o.Code, o.Msg = parityKindTextproto, e.Code, e.Msg
		return o
	}
	if _, ok := err.(*net.OpError); ok {
		o.Kind = parityKindOpError
	} else if _, ok := err.(net.Error); ok {
		o.Kind = parityKindNetError
	} else {
		o.Kind = parityKindOther
		switch {
		case parityIsUnknownOutcome(err):
			o.Sentinel = "ErrUnknownOutcome"
		case errors.Is(err, ErrProtocol):
			o.Sentinel = "ErrProtocol"
		case errors.Is(err, ErrServerClosing):
			o.Sentinel = "ErrServerClosing"
		}
	}
	var tpe *textproto.Error
	if errors.As(err, &tpe) {
		o.As = fmt.Sprintf("%d %q", tpe.Code, tpe.Msg)
	}
	return o
}

// parityTextprotoOutcome is what net/smtp returns for a negative reply.
func parityTextprotoOutcome(call string, reply []string) parityOutcome {
	code := 0
	fmt.Sscanf(reply[0], "%d", &code)
	msgs := make([]string, len(reply))
	for i, l := range reply {
		msgs[i] = l[4:]
	}
	return parityOutcome{Call: call, Kind: parityKindTextproto, Code: code, Msg: strings.Join(msgs, "\n")}
}

func (o parityOutcome) result() string {
	var s string
	switch o.Kind {
	case parityKindNil:
		s = "nil"
	case parityKindTextproto:
		s = fmt.Sprintf("*textproto.Error %d %q", o.Code, o.Msg)
	case parityKindOther:
		s = "other"
		if o.Sentinel != "" {
			s += " (" + o.Sentinel + ")"
		}
		if o.Err != "" {
			s += ": " + o.Err
		}
		if o.As != "" {
			s += " [errors.As *textproto.Error: " + o.As + "]"
		}
	case parityKindAny, parityKindError:
		s = o.Kind
	default:
		s = o.Kind
		if o.Err != "" && o.Err != o.Kind && o.Kind != parityKindEOF {
			s += ": " + o.Err
		}
	}
	if o.Call == "Extension" && o.Kind != parityKindAny {
		s = o.Value
	}
	return s
}

// mismatch says how got differs from the expected o, or returns "". loose
// compares only whether there was an error: after the server dropped the
// connection net/smtp's next write may succeed or fail (EPIPE, ECONNRESET),
// so the exact error is chance.
func (o parityOutcome) mismatch(got parityOutcome, loose bool) string {
	differ := false
	switch {
	case o.Kind == parityKindAny:
	case o.Call == "Extension":
		differ = o.Value != got.Value
	case o.Kind == parityKindError || loose:
		differ = (o.Kind == parityKindNil) != (got.Kind == parityKindNil)
	case o.Kind != got.Kind:
		differ = true
	case o.Kind == parityKindTextproto:
		differ = o.Code != got.Code || o.Msg != got.Msg
	case o.Kind == parityKindOther:
		differ = o.Sentinel != "" && o.Sentinel != got.Sentinel
	}
	if !differ {
		return ""
	}
	want := o.result()
	if loose && o.Kind != parityKindNil && o.Kind != parityKindError && o.Kind != parityKindAny {
		want = "some error (the server had dropped the connection; net/smtp: " + want + ")"
	}
	return fmt.Sprintf("returned %s; want %s", got.result(), want)
}

// parityRecord is what one side did in one scenario.
type parityRecord struct {
	calls    []parityOutcome
	after    []string             // lines received after the last call
	messages []string             // raw data of the messages the server accepted
	fired    map[int]parityFiring // script index -> when the action fired
	closed   int                  // call during which the server dropped the connection, or -1
	timedOut bool
}

// parityFiring locates a scripted action: the call it fired in and the
// index in that call's Lines of the line it answered (-1 for the end of
// message data, which is not a line).
type parityFiring struct{ call, line int }

func (r *parityRecord) clone() *parityRecord {
	c := *r
	c.calls = slices.Clone(r.calls)
	for i := range c.calls {
		c.calls[i].Lines = slices.Clone(c.calls[i].Lines)
	}
	c.after = slices.Clone(r.after)
	c.messages = slices.Clone(r.messages)
	return &c
}

func (r *parityRecord) String() string {
	var b strings.Builder
	for i, c := range r.calls {
		fmt.Fprintf(&b, "\t%2d %-10s %s\n", i, c.Call, c.result())
		for _, l := range c.Lines {
			fmt.Fprintf(&b, "\t\t> %s\n", parityLine(l))
		}
	}
	for _, l := range r.after {
		fmt.Fprintf(&b, "\t   (after Close) > %s\n", parityLine(l))
	}
	for _, m := range r.messages {
		fmt.Fprintf(&b, "\t   message accepted: %q\n", m)
	}
	if r.timedOut {
		fmt.Fprintf(&b, "\t   TIMED OUT after %v\n", parityRunTimeout)
	}
	return b.String()
}

// parityLine strips the "tls: " prefix every compared line has; a
// "plain: " line stays visible, and different.
func parityLine(l string) string { return strings.TrimPrefix(l, "tls: ") }

// parityCall is one call a scenario makes on a Client.
type parityCall struct{ method, arg string }

// parityAction scripts the server's answer to one command. Each action
// fires once, on the first matching command under TLS (so net/smtp's
// plaintext EHLO before STARTTLS is answered normally).
type parityAction struct {
	verb  string   // EHLO, HELO, AUTH, MAIL, ..., or "." for the end of message data
	reply []string // reply lines; nil drops the connection without replying
	close bool     // drop the connection after the reply
}

type parityScenario struct {
	name     string
	dial     bool // tlsmail opens with Dial(addr), not tls.Dial + NewClient
	sendMail bool // one SendMail call instead of calls
	calls    []parityCall
	script   []parityAction
}

func (sc *parityScenario) action(verb string) (int, *parityAction) {
	for i := range sc.script {
		if sc.script[i].verb == verb {
			return i, &sc.script[i]
		}
	}
	return -1, nil
}

// parityClient is the net/smtp Client surface, which both packages have.
type parityClient interface {
	Hello(localName string) error
	Extension(ext string) (bool, string)
	Auth(a smtp.Auth) error
	Mail(from string) error
	Rcpt(to string) error
	Data() (io.WriteCloser, error)
	Verify(addr string) error
	Reset() error
	Noop() error
	Quit() error
	Close() error
}

var (
	_ parityClient = (*smtp.Client)(nil)
	_ parityClient = (*Client)(nil)
)

type paritySide struct {
	name     string
	open     func(srv *smtptest.Server, dial bool) (parityClient, error)
	auth     func() smtp.Auth
	sendMail func(srv *smtptest.Server, a smtp.Auth) error
}

// parityHarnessError is a failure of the harness, not of a client.
type parityHarnessError struct{ error }

// parityTLSDial connects to the implicit-TLS listener. The deadline is
// there because net/smtp has no timeouts of its own.
func parityTLSDial(srv *smtptest.Server) (net.Conn, error) {
	conn, err := tls.Dial("tcp", srv.ImplicitAddr, srv.ClientTLSConfig())
	if err != nil {
		return nil, parityHarnessError{err}
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn, nil
}

var paritySides = [2]paritySide{
	{
		name: "net/smtp",
		open: func(srv *smtptest.Server, _ bool) (parityClient, error) {
			conn, err := parityTLSDial(srv)
			if err != nil {
				return nil, err
			}
			c, err := smtp.NewClient(conn, "127.0.0.1")
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		auth: func() smtp.Auth { return smtp.PlainAuth("", "user", "pass", "127.0.0.1") },
		// net/smtp.SendMail dials plaintext and upgrades with STARTTLS,
		// trusting the system roots, which TestMain points at the test CA.
		sendMail: func(srv *smtptest.Server, a smtp.Auth) error {
			return smtp.SendMail(srv.StartTLSAddr, a, parityFrom, parityRcpts, []byte(parityMsg))
		},
	},
	{
		name: "tlsmail",
		open: func(srv *smtptest.Server, dial bool) (parityClient, error) {
			if dial {
				c, err := Dial(srv.ImplicitAddr)
				if err != nil {
					return nil, err
				}
				return c, nil
			}
			conn, err := parityTLSDial(srv)
			if err != nil {
				return nil, err
			}
			c, err := NewClient(conn, "127.0.0.1")
			if err != nil {
				return nil, err
			}
			return c, nil
		},
		auth: func() smtp.Auth { return PlainAuth("", "user", "pass", "127.0.0.1") },
		sendMail: func(srv *smtptest.Server, a smtp.Auth) error {
			return SendMail(srv.ImplicitAddr, a, parityFrom, parityRcpts, []byte(parityMsg))
		},
	},
}

// parityRun is the server-side state of one side's run; the server's hooks
// use it from the session goroutine.
type parityRun struct {
	sc *parityScenario

	mu       sync.Mutex
	call     int                  // index of the call in progress
	fired    map[int]parityFiring // line: absolute transcript index until the run ends
	closed   int
	timedOut bool
}

// act runs the first unfired action for verb, reporting whether it took
// the command.
func (r *parityRun) act(s *smtptest.Session, verb string, line int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, a := range r.sc.script {
		if _, done := r.fired[i]; done || a.verb != verb {
			continue
		}
		r.fired[i] = parityFiring{r.call, line}
		if a.reply != nil {
			s.Reply(a.reply...)
		}
		if a.reply == nil || a.close {
			if r.closed < 0 {
				r.closed = r.call
			}
			s.Close()
		}
		return true
	}
	return false
}

type parityHarness struct {
	srv *smtptest.Server
	run atomic.Pointer[parityRun]
}

func newParityHarness(t *testing.T) *parityHarness {
	h := &parityHarness{}
	h.srv = smtptest.NewServer(t, &smtptest.Options{
		// Without PIPELINING both clients send one command at a time,
		// so their lines can be compared call for call. What tlsmail
		// sends when the server pipelines is pinned by the exact
		// transcripts of pipeline_test.go.
		Extensions: slices.DeleteFunc(slices.Clone(defaultExtensions), func(x string) bool { return x == "PIPELINING" }),
		Handler: func(s *smtptest.Session, line string) bool {
			r := h.run.Load()
			if r == nil || !s.TLS() {
				return false
			}
			verb, _, _ := strings.Cut(line, " ")
			// The line is already in the transcript.
			return r.act(s, strings.ToUpper(verb), len(h.srv.Transcript())-1)
		},
		OnData: func(s *smtptest.Session, _ *smtptest.Message) bool {
			r := h.run.Load()
			return r != nil && s.TLS() && r.act(s, ".", -1)
		},
	})
	return h
}

// play runs sc through one side and records what happened.
func (h *parityHarness) play(t *testing.T, sd paritySide, sc *parityScenario) *parityRecord {
	t.Helper()
	if err := h.srv.WaitIdle(3 * time.Second); err != nil {
		t.Fatalf("harness: before %s: %v", sd.name, err)
	}
	h.srv.Reset()
	run := &parityRun{sc: sc, fired: map[int]parityFiring{}, closed: -1}
	h.run.Store(run)
	defer h.run.Store(nil)
	watchdog := time.AfterFunc(parityRunTimeout, func() {
		run.mu.Lock()
		run.timedOut = true
		run.mu.Unlock()
		h.srv.Close()
	})
	defer watchdog.Stop()

	rec := &parityRecord{}
	seen := 0
	record := func(call string, err error) *parityOutcome {
		o := parityClassify(call, err)
		all := h.srv.Transcript()
		o.Lines, o.start = slices.Clone(all[seen:]), seen
		seen = len(all)
		rec.calls = append(rec.calls, o)
		run.mu.Lock()
		run.call = len(rec.calls)
		run.mu.Unlock()
		return &rec.calls[len(rec.calls)-1]
	}

	if sc.sendMail {
		record("SendMail", sd.sendMail(h.srv, sd.auth()))
	} else {
		c, err := sd.open(h.srv, sc.dial)
		var he parityHarnessError
		if errors.As(err, &he) {
			t.Fatalf("harness: %v", err)
		}
		record("open", err)
		if c != nil {
			for _, call := range sc.calls {
				parityDo(c, sd, call, record)
			}
			c.Close()
		}
	}

	if err := h.srv.WaitIdle(3 * time.Second); err != nil {
		t.Errorf("%s left a connection open: %v", sd.name, err)
	}
	rec.after = slices.Clone(h.srv.Transcript()[seen:])
	for _, m := range h.srv.Messages() {
		rec.messages = append(rec.messages, string(m.Raw))
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	rec.closed, rec.timedOut = run.closed, run.timedOut
	rec.fired = map[int]parityFiring{}
	for i, f := range run.fired {
		if f.line >= 0 && f.call < len(rec.calls) {
			f.line -= rec.calls[f.call].start
		}
		rec.fired[i] = f
	}
	return rec
}

// parityDo makes one call. Data is three calls: Data, then Write and
// Close on its writer.
func parityDo(c parityClient, sd paritySide, call parityCall, record func(string, error) *parityOutcome) {
	switch call.method {
	case "Hello":
		record("Hello", c.Hello(call.arg))
	case "Extension":
		// Extension has no error; its two results are compared instead.
		ok, v := c.Extension(call.arg)
		record("Extension", nil).Value = fmt.Sprintf("%v %q", ok, v)
	case "Auth":
		record("Auth", c.Auth(sd.auth()))
	case "Mail":
		record("Mail", c.Mail(call.arg))
	case "Rcpt":
		record("Rcpt", c.Rcpt(call.arg))
	case "Data":
		w, err := c.Data()
		record("Data", err)
		if err != nil {
			return
		}
		_, err = io.WriteString(w, parityMsg)
		record("Data.Write", err)
		record("Data.Close", w.Close())
	case "Verify":
		record("Verify", c.Verify(call.arg))
	case "Reset":
		record("Reset", c.Reset())
	case "Noop":
		record("Noop", c.Noop())
	case "Quit":
		record("Quit", c.Quit())
	default:
		panic("parity: unknown method " + call.method)
	}
}

// parityAllowance is one documented, intended difference from net/smtp.
type parityAllowance struct {
	id     string
	row    string // the README strictness-table row that documents it
	reason string
	// adjust rewrites exp, net/smtp's record of sc, into what tlsmail must
	// produce. Where the difference cannot show it changes nothing.
	adjust func(t *testing.T, sc *parityScenario, exp *parityRecord)
}

// parityAllowList is applied in this order. sendmail-implicit comes last
// because it removes lines, which would shift the line indexes the others
// use.
var parityAllowList = []parityAllowance{
	{
		id:  "reply-421",
		row: "`421` at any step",
		reason: "A 421 reply means the server is closing the connection (RFC 5321 section 3.8). net/smtp " +
			"carries on: it sends the next command, and answers a 421 to EHLO with HELO. tlsmail returns " +
			"the 421 and ends the session: later calls, Quit included, fail without sending anything.",
		adjust: func(t *testing.T, sc *parityScenario, exp *parityRecord) {
			for i, a := range sc.script {
				if a.reply != nil && strings.HasPrefix(a.reply[0], "421") {
					if f, ok := exp.fired[i]; ok {
						parityEndSession(exp, f, parityTextprotoOutcome(exp.calls[f.call].Call, a.reply), parityKindError)
					}
				}
			}
		},
	},
	{
		id:  "unexpected-code",
		row: "a reply code the command cannot take (`354` to `MAIL`, `250` to `DATA`)",
		reason: "A 2xx or 3xx reply that the command cannot take (354 to MAIL, 250 to DATA) means client " +
			"and server no longer agree on the state of the session. net/smtp returns it as a " +
			"*textproto.Error and carries on; tlsmail returns an ErrProtocol error and closes the " +
			"connection, so later calls send nothing (what Quit returns then is not compared).",
		adjust: func(t *testing.T, sc *parityScenario, exp *parityRecord) {
			for i, a := range sc.script {
				if a.reply == nil || a.reply[0][0] >= '4' || slices.Contains(parityAccepts[a.verb], a.reply[0][:3]) {
					continue
				}
				if f, ok := exp.fired[i]; ok {
					o := parityOutcome{Call: exp.calls[f.call].Call, Kind: parityKindOther, Sentinel: "ErrProtocol"}
					parityEndSession(exp, f, o, parityKindAny)
				}
			}
		},
	},
	{
		id:  "auth-no-cancel",
		row: "failed AUTH",
		reason: "After a final negative reply to AUTH, net/smtp sends \"*\" and QUIT and closes the " +
			"connection. tlsmail sends nothing more (\"*\" only answers a 334 challenge, RFC 4954 " +
			"section 4); the Client stays usable and a later Quit sends QUIT.",
		adjust: func(t *testing.T, sc *parityScenario, exp *parityRecord) {
			for k := range exp.calls {
				c := &exp.calls[k]
				if c.Call != "Auth" && c.Call != "SendMail" || c.Kind != parityKindTextproto {
					continue
				}
				i := slices.Index(c.Lines, "tls: *")
				if i < 0 {
					continue
				}
				if i+1 >= len(c.Lines) || c.Lines[i+1] != "tls: QUIT" {
					t.Fatalf("allow-list auth-no-cancel: net/smtp sent %q after a failed AUTH; want \"*\" and QUIT", c.Lines[i:])
				}
				c.Lines = slices.Delete(c.Lines, i, i+2)
				if c.Call == "SendMail" {
					continue
				}
				// net/smtp's Client is closed now; tlsmail's is not.
				for j := k + 1; j < len(exp.calls); j++ {
					if exp.calls[j].Call != "Quit" {
						t.Fatalf("allow-list auth-no-cancel cannot predict %s after a failed Auth; end the scenario with Quit", exp.calls[j].Call)
					}
					exp.calls[j] = parityOutcome{Call: "Quit", Kind: parityKindNil, Lines: []string{"tls: QUIT"}}
				}
			}
		},
	},
	{
		id:  "unknown-outcome",
		row: "reply to the end of data lost",
		reason: "When the connection drops after the final \".\" and before the reply, the message may " +
			"or may not have been delivered. net/smtp returns io.EOF; tlsmail returns an error matching " +
			"ErrUnknownOutcome, so that a caller does not resend blindly.",
		adjust: func(t *testing.T, sc *parityScenario, exp *parityRecord) {
			i, a := sc.action(".")
			if a == nil || a.reply != nil {
				return
			}
			if f, ok := exp.fired[i]; ok && exp.calls[f.call].Kind == parityKindEOF {
				c := &exp.calls[f.call]
				*c = parityOutcome{Call: c.Call, Kind: parityKindOther, Sentinel: "ErrUnknownOutcome", Lines: c.Lines, start: c.start}
			}
		},
	},
	{
		id:  "sendmail-params",
		row: "`SendMail`'s `MAIL` parameters",
		reason: "net/smtp's SendMail adds BODY=8BITMIME and SMTPUTF8 whenever the server offers them. " +
			"tlsmail's declares the message's size (RFC 1870) and asks for 8BITMIME and SMTPUTF8 only " +
			"when the message or an address needs them; parityMsg is 7-bit ASCII and already CRLF, so " +
			"its MAIL carries SIZE=len(parityMsg) alone.",
		adjust: func(t *testing.T, sc *parityScenario, exp *parityRecord) {
			if !sc.sendMail {
				return
			}
			for k := range exp.calls {
				for i, l := range exp.calls[k].Lines {
					if before, _, ok := strings.Cut(l, "> BODY=8BITMIME"); ok && strings.HasPrefix(l, "tls: MAIL FROM:<") {
						exp.calls[k].Lines[i] = fmt.Sprintf("%s> SIZE=%d", before, len(parityMsg))
					}
				}
			}
		},
	},
	{
		id:  "sendmail-quit-after-refusal",
		row: "`SendMail` after a refusal",
		reason: "After a 4xx or 5xx reply (other than 421) at EHLO/HELO, AUTH, MAIL, RCPT, DATA or the end of data, " +
			"net/smtp's SendMail just closes the connection; tlsmail's ends the session with QUIT, so " +
			"that the server does not log a lost connection.",
		adjust: func(t *testing.T, sc *parityScenario, exp *parityRecord) {
			if !sc.sendMail || len(exp.calls) != 1 {
				return
			}
			c := &exp.calls[0]
			if c.Kind != parityKindTextproto || c.Code == 421 || len(c.Lines) == 0 || c.Lines[len(c.Lines)-1] == "tls: QUIT" {
				return
			}
			c.Lines = append(c.Lines, "tls: QUIT")
		},
	},
	{
		id:  "sendmail-quit",
		row: "`SendMail` after the message was accepted",
		reason: "Once the message's 250 has been read, QUIT's 221 is the check that no reply was out of step: " +
			"if QUIT is refused, dropped or unanswered, tlsmail's SendMail returns an error that matches " +
			"ErrUnknownOutcome (a 250 read out of step may have been another command's); net/smtp returns the " +
			"QUIT error as if the message had failed, which invites a duplicate resend.",
		adjust: func(t *testing.T, sc *parityScenario, exp *parityRecord) {
			i, a := sc.action("QUIT")
			if !sc.sendMail || a == nil {
				return
			}
			if f, ok := exp.fired[i]; ok && exp.calls[f.call].Kind != parityKindNil {
				c := &exp.calls[f.call]
				*c = parityOutcome{Call: c.Call, Kind: parityKindOther, Sentinel: "ErrUnknownOutcome", Lines: c.Lines, start: c.start}
			}
		},
	},
	{
		id:  "sendmail-implicit",
		row: "`SendMail(addr, ...)`, `Dial(addr)`",
		reason: "tlsmail's SendMail uses implicit TLS; net/smtp's dials plaintext and upgrades with " +
			"STARTTLS. So only the lines after TLS starts are compared (net/smtp's EHLO after STARTTLS " +
			"against tlsmail's first EHLO), and where that EHLO is refused net/smtp gives up at once (its " +
			"StartTLS has no HELO fallback) while tlsmail falls back to HELO, as net/smtp's Client does " +
			"on a connection's first EHLO.",
		adjust: func(t *testing.T, sc *parityScenario, exp *parityRecord) {
			if !sc.sendMail {
				return
			}
			for k := range exp.calls {
				exp.calls[k].Lines = slices.DeleteFunc(exp.calls[k].Lines, func(l string) bool {
					return strings.HasPrefix(l, "plain: ")
				})
			}
			i, a := sc.action("EHLO")
			if a == nil || a.reply == nil {
				return
			}
			f, ok := exp.fired[i]
			if !ok {
				return
			}
			if _, helo := sc.action("HELO"); helo == nil {
				t.Fatalf("allow-list sendmail-implicit: script HELO too, or tlsmail's fallback cannot be predicted")
			}
			c := &exp.calls[f.call]
			j := slices.Index(c.Lines, "tls: EHLO localhost")
			c.Lines = slices.Insert(c.Lines, j+1, "tls: HELO localhost")
		},
	},
}

// parityAccepts lists the positive codes each command takes (net/smtp's
// Client and RFC 5321).
var parityAccepts = map[string][]string{
	"EHLO": {"250"}, "HELO": {"250"}, "AUTH": {"235", "334"}, "MAIL": {"250"},
	"RCPT": {"250", "251"}, "DATA": {"354"}, ".": {"250"}, "RSET": {"250"},
	"NOOP": {"250"}, "VRFY": {"250", "251", "252"}, "QUIT": {"221"},
}

// parityEndSession makes the session in exp end at firing f: the call it
// fired in sends nothing after the line that was answered and returns o
// (Extension keeps its values); every later call sends nothing and returns
// an error, Quit returns quit (parityKindError or parityKindAny).
func parityEndSession(exp *parityRecord, f parityFiring, o parityOutcome, quit string) {
	c := &exp.calls[f.call]
	if f.line >= 0 {
		c.Lines = c.Lines[:f.line+1]
	}
	if c.Call != "Extension" {
		o.Lines, o.start = c.Lines, c.start
		*c = o
	}
	for j := f.call + 1; j < len(exp.calls); j++ {
		later := parityOutcome{Call: exp.calls[j].Call, Kind: parityKindError}
		switch later.Call {
		case "Quit":
			later.Kind = quit
		case "Extension":
			later.Kind = parityKindAny
		}
		exp.calls[j] = later
	}
}

// parityExpect applies the allow-list to net/smtp's record and returns what
// tlsmail must produce and the entries that changed something.
func parityExpect(t *testing.T, sc *parityScenario, netRec *parityRecord) (*parityRecord, []string) {
	exp := netRec.clone()
	var applied []string
	for _, a := range parityAllowList {
		before := exp.clone()
		a.adjust(t, sc, exp)
		if !reflect.DeepEqual(before, exp) {
			applied = append(applied, a.id)
		}
	}
	return exp, applied
}

// parityRows names allow-list entries with their README rows.
func parityRows(ids []string) string {
	var s []string
	for _, id := range ids {
		for _, a := range parityAllowList {
			if a.id == id {
				s = append(s, fmt.Sprintf("%s (README row %q)", id, a.row))
			}
		}
	}
	return strings.Join(s, ", ")
}

// parityCompare lists how got differs from exp. A call is compared loosely
// once the server has dropped the connection in an earlier call on either
// side.
func parityCompare(exp, got, netRec *parityRecord) []string {
	loose := func(i int) bool {
		return netRec.closed >= 0 && i > netRec.closed || got.closed >= 0 && i > got.closed
	}
	var d []string
	i, j := 0, 0
	for i < len(exp.calls) || j < len(got.calls) {
		switch {
		case j >= len(got.calls):
			d = append(d, fmt.Sprintf("call %d %s: tlsmail did not make it (want %s)", i, exp.calls[i].Call, exp.calls[i].result()))
			i++
			continue
		case i >= len(exp.calls):
			d = append(d, fmt.Sprintf("call %d %s: tlsmail made it, net/smtp did not (%s)", j, got.calls[j].Call, got.calls[j].result()))
			j++
			continue
		}
		w, g := exp.calls[i], got.calls[j]
		if w.Call != g.Call {
			// Only Data's Write and Close can be present on one side alone.
			if strings.HasPrefix(g.Call, "Data.") {
				d = append(d, fmt.Sprintf("call %d %s: tlsmail made it, net/smtp did not (%s)", j, g.Call, g.result()))
				j++
			} else {
				d = append(d, fmt.Sprintf("call %d %s: tlsmail did not make it (want %s)", i, w.Call, w.result()))
				i++
			}
			continue
		}
		if why := w.mismatch(g, loose(i)); why != "" {
			d = append(d, fmt.Sprintf("call %d %s: %s", j, g.Call, why))
		}
		if !slices.Equal(w.Lines, g.Lines) {
			d = append(d, fmt.Sprintf("call %d %s: server received %s; want %s", j, g.Call, parityQuote(g.Lines), parityQuote(w.Lines)))
		}
		i++
		j++
	}
	if !slices.Equal(exp.after, got.after) {
		d = append(d, fmt.Sprintf("after Close: server received %s; want %s", parityQuote(got.after), parityQuote(exp.after)))
	}
	if !slices.Equal(exp.messages, got.messages) {
		d = append(d, fmt.Sprintf("messages accepted: %q; want %q", got.messages, exp.messages))
	}
	if got.timedOut {
		d = append(d, "tlsmail timed out")
	}
	return d
}

func parityQuote(lines []string) string {
	if len(lines) == 0 {
		return "nothing"
	}
	q := make([]string, len(lines))
	for i, l := range lines {
		q[i] = fmt.Sprintf("%q", parityLine(l))
	}
	return "[" + strings.Join(q, " ") + "]"
}

// Helpers that build scenarios.

// parityCalls parses "Method [arg]" items; Mail, Rcpt, Verify and Hello
// get default arguments.
func parityCalls(items ...string) []parityCall {
	defaults := map[string]string{"Mail": parityFrom, "Rcpt": parityTo, "Verify": parityTo, "Hello": "client.example"}
	calls := make([]parityCall, len(items))
	for i, it := range items {
		m, arg, ok := strings.Cut(it, " ")
		if !ok {
			arg = defaults[m]
		}
		calls[i] = parityCall{m, arg}
	}
	return calls
}

func parityReply(verb string, lines ...string) parityAction {
	return parityAction{verb: verb, reply: lines}
}

func parityDrop(verb string) parityAction { return parityAction{verb: verb} }

func parityScenarios() []parityScenario {
	var client []parityScenario
	add := func(name string, calls []parityCall, script ...parityAction) {
		client = append(client, parityScenario{name: name, calls: calls, script: script})
	}

	// Lazy EHLO, Hello, Extension, the simple verbs.
	add("lazy EHLO/Mail first", parityCalls("Mail", "Rcpt", "Data", "Quit"))
	add("lazy EHLO/Hello first", parityCalls("Hello", "Mail", "Rcpt", "Data", "Quit"))
	add("lazy EHLO/Hello after Noop", parityCalls("Noop", "Hello", "Quit"))
	add("lazy EHLO/Extension first", parityCalls("Extension PIPELINING", "Extension AUTH", "Extension size", "Extension DSN", "Quit"))
	add("lazy EHLO/Auth first", parityCalls("Auth", "Mail", "Rcpt", "Data", "Quit"))
	add("lazy EHLO/Quit first", parityCalls("Quit"))
	add("Verify/250", parityCalls("Verify", "Quit"), parityReply("VRFY", "250 2.1.5 Bob <b@example.net>"))
	add("Verify/252", parityCalls("Verify", "Quit")) // the server's default answer
	add("Verify/251", parityCalls("Verify", "Quit"), parityReply("VRFY", "251 2.1.5 User not local; will forward to <b@example.org>"))
	add("Reset and Noop", parityCalls("Reset", "Noop", "Quit"))
	add("Quit after reply error", parityCalls("Mail", "Quit"), parityReply("MAIL", "550 5.7.1 Sender rejected"))
	add("Quit after failed Hello", parityCalls("Hello", "Quit"),
		parityReply("EHLO", "550 5.5.1 No EHLO"), parityReply("HELO", "550 5.5.1 No HELO either"))
	add("Quit first, EHLO and HELO refused", parityCalls("Quit"),
		parityReply("EHLO", "550 5.5.1 No EHLO"), parityReply("HELO", "550 5.5.1 No HELO either"))
	add("Extension and Mail, EHLO and HELO refused", parityCalls("Extension PIPELINING", "Mail", "Quit"),
		parityReply("EHLO", "550 5.5.1 No EHLO"), parityReply("HELO", "550 5.5.1 No HELO either"))
	add("unexpected code/354 to MAIL", parityCalls("Mail", "Quit"), parityReply("MAIL", "354 Go ahead"))
	add("unexpected code/250 to DATA", parityCalls("Mail", "Rcpt", "Data", "Quit"), parityReply("DATA", "250 2.0.0 Ok"))

	// A reply error and a dropped connection at every step.
	steps := []struct {
		name, verb string
		calls      []parityCall // up to and including the call that sends verb, then what follows
	}{
		{"EHLO", "EHLO", parityCalls("Mail", "Noop", "Quit")},
		{"AUTH", "AUTH", parityCalls("Auth", "Quit")},
		{"MAIL", "MAIL", parityCalls("Mail", "Noop", "Quit")},
		{"RCPT", "RCPT", parityCalls("Mail", "Rcpt", "Noop", "Quit")},
		{"DATA", "DATA", parityCalls("Mail", "Rcpt", "Data", "Noop", "Quit")},
		{"end of data", ".", parityCalls("Mail", "Rcpt", "Data", "Noop", "Quit")},
		{"RSET", "RSET", parityCalls("Reset", "Noop", "Quit")},
		{"NOOP", "NOOP", parityCalls("Noop", "Noop", "Quit")},
		{"VRFY", "VRFY", parityCalls("Verify", "Noop", "Quit")},
		{"QUIT", "QUIT", parityCalls("Noop", "Quit")},
	}
	replies := []struct {
		name  string
		lines []string
		close bool
	}{
		{"451 enhanced", []string{"451 4.3.0 Try again later"}, false},
		{"450 plain", []string{"450 Mailbox busy"}, false},
		{"550 enhanced", []string{"550 5.1.1 No such user"}, false},
		{"554 plain", []string{"554 Transaction failed"}, false},
		{"550 multi-line", []string{"550-5.7.1 Message rejected", "550-5.7.1 by local policy", "550 5.7.1 see https://example.com/policy"}, false},
		{"421 kept open", []string{"421 4.3.2 Service shutting down"}, false},
		{"421 then close", []string{"421 4.3.2 Service shutting down"}, true},
	}
	for _, st := range steps {
		for _, r := range replies {
			add(st.name+"/"+r.name, st.calls, parityAction{verb: st.verb, reply: r.lines, close: r.close})
		}
		add(st.name+"/dropped", st.calls, parityDrop(st.verb))
	}

	var all []parityScenario
	for _, open := range []string{"NewClient", "Dial"} {
		for _, sc := range client {
			sc.name = open + "/" + sc.name
			sc.dial = open == "Dial"
			all = append(all, sc)
		}
	}

	sendMail := func(name string, script ...parityAction) {
		all = append(all, parityScenario{name: "SendMail/" + name, sendMail: true, script: script})
	}
	sendMail("success")
	for _, st := range []struct{ name, verb, reply string }{
		{"EHLO", "EHLO", "550 5.5.1 No EHLO"},
		{"AUTH", "AUTH", "535 5.7.8 Authentication failed"},
		{"MAIL", "MAIL", "550 5.7.1 Sender rejected"},
		{"RCPT", "RCPT", "550 5.1.1 No such user"},
		{"DATA", "DATA", "554 5.5.1 No valid recipients"},
		{"end of data", ".", "554 5.7.1 Message refused"},
		{"QUIT", "QUIT", "451 4.3.0 Could not say goodbye"},
	} {
		script := []parityAction{parityReply(st.verb, st.reply)}
		if st.verb == "EHLO" {
			script = append(script, parityReply("HELO", st.reply))
		}
		sendMail(st.name+"/rejected", script...)
		sendMail(st.name+"/dropped", parityDrop(st.verb))
	}
	return all
}

// TestParity drives net/smtp and tlsmail through the same scenarios and
// fails on every difference the allow-list does not explain.
func TestParity(t *testing.T) {
	scenarios := parityScenarios()
	ran := 0
	used := map[string]int{}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			ran++
			h := newParityHarness(t)
			netRec := h.play(t, paritySides[0], &sc)
			if netRec.timedOut {
				t.Fatalf("harness: net/smtp timed out:\n%s", netRec)
			}
			got := h.play(t, paritySides[1], &sc)
			exp, applied := parityExpect(t, &sc, netRec)
			for _, id := range applied {
				used[id]++
			}
			diffs := parityCompare(exp, got, netRec)
			if len(diffs) == 0 {
				if len(applied) > 0 {
					t.Logf("allowed differences: %s", parityRows(applied))
				}
				return
			}
			var b strings.Builder
			fmt.Fprintf(&b, "tlsmail differs from net/smtp")
			if len(applied) > 0 {
				fmt.Fprintf(&b, " (after allow-list entries %s)", parityRows(applied))
			}
			b.WriteString(":\n")
			for _, d := range diffs {
				fmt.Fprintf(&b, "  - %s\n", d)
			}
			fmt.Fprintf(&b, "net/smtp:\n%s", netRec)
			if len(applied) > 0 {
				fmt.Fprintf(&b, "expected of tlsmail (net/smtp after the allow-list):\n%s", exp)
			}
			fmt.Fprintf(&b, "tlsmail:\n%s", got)
			t.Error(b.String())
		})
	}
	// Why: an entry that no scenario needs any more allows nothing, but
	// keeps documenting a difference that is gone.
	if ran == len(scenarios) {
		for _, a := range parityAllowList {
			if used[a.id] == 0 {
				t.Errorf("allow-list entry %s (README row %q) applied to no scenario: remove it", a.id, a.row)
			}
		}
	}
}

// TestParityRowsInREADME checks that every allowed difference is a row of
// the README's strictness table, so that none is undocumented.
func TestParityRowsInREADME(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range parityAllowList {
		if !strings.Contains(string(readme), "\n| "+a.row+" |") {
			t.Errorf("allow-list entry %s: README has no table row starting %q", a.id, a.row)
		}
	}
}

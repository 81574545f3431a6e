package tlsmail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// wireLog wraps the client's side of a TLS connection and records every
// plaintext Write as one element and every Read as "<read>", so that a test
// sees exactly which commands went out together and where the client
// waited for the server.
type wireLog struct {
	*tls.Conn
	mu     sync.Mutex
	events []string
}

func (w *wireLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.events = append(w.events, string(p))
	w.mu.Unlock()
	return w.Conn.Write(p)
}

func (w *wireLog) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	w.mu.Lock()
	if k := len(w.events); n > 0 && (k == 0 || w.events[k-1] != "<read>") {
		w.events = append(w.events, "<read>")
	}
	w.mu.Unlock()
	return n, err
}

// groups returns what was written between two waits for the server, each
// group's writes joined, ignoring message content: a group of commands is
// one string of CRLF-terminated lines.
func (w *wireLog) groups() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	cur := ""
	for _, e := range w.events {
		if e == "<read>" {
			if cur != "" {
				out = append(out, cur)
			}
			cur = ""
			continue
		}
		cur += e
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}

// pipeClient dials srv's implicit-TLS listener through a wireLog and makes
// a Client of it with the Dialer's error forms.
func pipeClient(t *testing.T, srv *smtptest.Server) (*Client, *wireLog) {
	t.Helper()
	conn, err := tls.Dial("tcp", srv.ImplicitAddr, srv.ClientTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	w := &wireLog{Conn: conn}
	c, err := NewClient(w, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c.netsmtp = false
	t.Cleanup(func() { c.Close() })
	return c, w
}

func pipeMsg(to ...string) *Message {
	return &Message{From: "a@example.com", To: to, Body: strings.NewReader(testMsg)}
}

// wantGroups compares the client's write groups with want.
func wantGroups(t *testing.T, w *wireLog, want ...string) {
	t.Helper()
	if got := w.groups(); !slices.Equal(got, want) {
		t.Errorf("client wrote, between waits:\n\t%q\nwant:\n\t%q", got, want)
	}
}

const (
	gEHLO = "EHLO localhost\r\n"
	gMAIL = "MAIL FROM:<a@example.com> SIZE=63\r\n"
	gBody = "From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n.\r\n"
)

func rcpts(addrs ...string) string {
	var b strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&b, "RCPT TO:<%s>\r\n", a)
	}
	return b.String()
}

// TestPipelinedSend pins the groups of one message: MAIL, every RCPT and
// DATA together when committing cannot go against the caller's policy;
// then the content.
func TestPipelinedSend(t *testing.T) {
	for _, n := range []int{1, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			srv := smtptest.NewServer(t, nil)
			c, w := pipeClient(t, srv)
			var to []string
			for i := range n {
				to = append(to, fmt.Sprintf("r%d@example.net", i))
			}
			res, err := c.Send(context.Background(), pipeMsg(to...))
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Accepted(); !slices.Equal(got, to) {
				t.Errorf("accepted %q; want %q", got, to)
			}
			if n == 1 {
				wantGroups(t, w, gEHLO, gMAIL+rcpts(to...)+"DATA\r\n", gBody)
			} else {
				// All-or-nothing with several recipients on a Client that
				// stays in use: DATA waits for the RCPT replies, so that a
				// refusal can be answered with RSET rather than by
				// closing the connection.
				wantGroups(t, w, gEHLO, gMAIL+rcpts(to...), "DATA\r\n", gBody)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 || string(msgs[0].Data) != testMsg || !slices.Equal(msgs[0].To, to) {
				t.Fatalf("server got %+v", msgs)
			}
		})
	}
}

// TestPipelinedSendMailQuitRides: SendMail's QUIT goes out with the end of
// data, and the whole session is EHLO, AUTH, the envelope group and the
// content group: 7 round trips with TCP, TLS and the greeting.
func TestPipelinedSendMailQuitRides(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	to := []string{"b@example.net", "c@example.net", "d@example.net", "e@example.net", "f@example.net"}
	w := &wireLog{}
	d := testDialer(srv, ImplicitTLS)
	cfg := d.TLSConfig.Clone()
	cfg.ServerName = "127.0.0.1"
	conn, err := tls.Dial("tcp", srv.ImplicitAddr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.Conn = conn
	c, err := NewClient(w, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c.netsmtp = false
	defer c.Close()
	if err := c.sendMail(context.Background(), PlainAuth("", "user", "pass", "127.0.0.1"), "a@example.com", to, []byte(testMsg)); err != nil {
		t.Fatal(err)
	}
	c.quit(context.Background())
	wantGroups(t, w, gEHLO, "AUTH PLAIN AHVzZXIAcGFzcw==\r\n", gMAIL+rcpts(to...)+"DATA\r\n", gBody+"QUIT\r\n")
	wantTranscript(t, srv, append(append([]string{"tls: EHLO localhost", "tls: AUTH PLAIN AHVzZXIAcGFzcw==", "tls: MAIL FROM:<a@example.com> SIZE=63"},
		eachOf("tls: RCPT TO:<", to, ">")...), "tls: DATA", "tls: QUIT")...)
}

func eachOf(pre string, xs []string, post string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, pre+x+post)
	}
	return out
}

// refuse makes the server refuse the RCPT of each address in bad with 550.
func refuse(bad ...string) *smtptest.Options {
	return &smtptest.Options{RcptReply: func(addr string) string {
		if slices.Contains(bad, addr) {
			return "550 5.1.1 <" + addr + ">: Recipient address rejected"
		}
		return ""
	}}
}

// TestPipelinedPartialRefusal: a refused recipient under all-or-nothing
// must never deliver. On a Client that stays in use, the client does not
// pipeline DATA for a message with several recipients, so it can reset;
// with PartialDelivery, DATA rides and the others get the message.
func TestPipelinedPartialRefusal(t *testing.T) {
	t.Run("all-or-nothing", func(t *testing.T) {
		srv := smtptest.NewServer(t, refuse("bad@example.net"))
		c, w := pipeClient(t, srv)
		res, err := c.Send(context.Background(), pipeMsg("b@example.net", "bad@example.net"))
		var e *Error
		if !errors.As(err, &e) || e.Code != 550 || e.Command != "RCPT" {
			t.Fatalf("Send = %v; want the 550 from RCPT", err)
		}
		if res == nil || len(res.Recipients) != 2 || res.Recipients[0].Err != nil || res.Recipients[1].Err == nil {
			t.Fatalf("result %+v", res)
		}
		wantGroups(t, w, gEHLO, gMAIL+rcpts("b@example.net", "bad@example.net"), "RSET\r\n")
		if n := len(srv.Messages()); n != 0 {
			t.Fatalf("server accepted %d messages", n)
		}
		// The Client is still usable.
		if _, err := c.Send(context.Background(), pipeMsg("b@example.net")); err != nil {
			t.Fatalf("second Send: %v", err)
		}
	})
	t.Run("partial", func(t *testing.T) {
		srv := smtptest.NewServer(t, refuse("bad@example.net"))
		c, w := pipeClient(t, srv)
		m := pipeMsg("b@example.net", "bad@example.net", "c@example.net")
		m.PartialDelivery = true
		res, err := c.Send(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Accepted(); !slices.Equal(got, []string{"b@example.net", "c@example.net"}) {
			t.Errorf("accepted %q", got)
		}
		wantGroups(t, w, gEHLO, gMAIL+rcpts("b@example.net", "bad@example.net", "c@example.net")+"DATA\r\n", gBody)
		if msgs := srv.Messages(); len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{"b@example.net", "c@example.net"}) {
			t.Fatalf("server got %+v", msgs)
		}
	})
	t.Run("SendMail", func(t *testing.T) {
		// The session ends after this message, so DATA rides; the server
		// answers 354 for the accepted recipient, and the client closes
		// the connection without the end of data.
		srv := smtptest.NewServer(t, refuse("bad@example.net"))
		err := testDialer(srv, ImplicitTLS).SendMail(srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.net", "bad@example.net"}, []byte(testMsg))
		var e *Error
		if !errors.As(err, &e) || e.Code != 550 || e.Command != "RCPT" {
			t.Fatalf("SendMail = %v; want the 550 from RCPT", err)
		}
		srv.WaitIdle(5 * time.Second)
		wantTranscript(t, srv, "tls: EHLO localhost", "tls: MAIL FROM:<a@example.com> SIZE=63",
			"tls: RCPT TO:<b@example.net>", "tls: RCPT TO:<bad@example.net>", "tls: DATA")
		if n := len(srv.Messages()); n != 0 {
			t.Fatalf("server accepted %d messages; want none", n)
		}
	})
}

// TestPipelinedTotalRefusal: every recipient refused. The server answers
// DATA with 554 (or, as RFC 5321 section 3.3 allows, 354: then an empty
// message ends data mode, delivered to nobody).
func TestPipelinedTotalRefusal(t *testing.T) {
	for _, open := range []bool{false, true} {
		t.Run(fmt.Sprint("354=", open), func(t *testing.T) {
			opts := refuse("bad@example.net")
			first := true
			opts.Handler = func(s *smtptest.Session, line string) bool {
				if !first {
					return false
				}
				switch {
				case line == "DATA" && open:
					s.Reply("354 go ahead")
					return true
				case line == "." && open:
					first = false
					s.Reply("554 5.5.1 Error: no valid recipients")
					return true
				case line == "DATA":
					first = false
					s.Reply("554 5.5.1 Error: no valid recipients")
					return true
				}
				return false
			}
			srv := smtptest.NewServer(t, opts)
			c, w := pipeClient(t, srv)
			_, err := c.Send(context.Background(), pipeMsg("bad@example.net"))
			var e *Error
			if !errors.As(err, &e) || e.Code != 550 || e.Command != "RCPT" {
				t.Fatalf("Send = %v; want the 550 from RCPT", err)
			}
			want := []string{gEHLO, gMAIL + rcpts("bad@example.net") + "DATA\r\n"}
			if open {
				want = append(want, ".\r\n")
			} else {
				want = append(want, "RSET\r\n")
			}
			wantGroups(t, w, want...)
			if err := c.Noop(); err != nil {
				t.Fatalf("the Client is unusable after the refusal: %v", err)
			}
		})
	}
}

// TestPipelinedFaults drives a server that breaks the rules of RFC 2920
// in the middle of a group. The send must fail, deliver nothing unless the
// server accepted it, and never hang.
func TestPipelinedFaults(t *testing.T) {
	cases := []struct {
		name    string
		handler func(s *smtptest.Session, line string) bool
		is      error
		unknown bool // the message was sent whole: the outcome is unknown
	}{
		{name: "non-354 to DATA", handler: func(s *smtptest.Session, line string) bool {
			if line == "DATA" {
				s.Reply("451 4.3.0 try later")
				return true
			}
			return false
		}},
		{name: "250 to DATA", handler: func(s *smtptest.Session, line string) bool {
			if line == "DATA" {
				s.Reply("250 2.0.0 Ok")
				return true
			}
			return false
		}, is: ErrProtocol},
		{name: "421 in the middle", handler: func(s *smtptest.Session, line string) bool {
			if strings.HasPrefix(line, "RCPT TO:<c@") {
				s.Reply("421 4.3.2 shutting down")
				s.Close()
				return true
			}
			return false
		}, is: ErrServerClosing},
		{name: "too many replies", handler: func(s *smtptest.Session, line string) bool {
			if strings.HasPrefix(line, "RCPT TO:<b@") {
				s.Reply("250 2.1.5 Ok", "250 2.1.5 Ok")
				return true
			}
			return false
		}, is: ErrProtocol},
		{name: "too few replies", handler: func(s *smtptest.Session, line string) bool {
			return strings.HasPrefix(line, "RCPT TO:<b@") // swallowed
		}, is: errTimeout},
		{name: "extra 250 after 354", handler: func(s *smtptest.Session, line string) bool {
			if line == "DATA" {
				s.Reply("354 go ahead", "250 2.0.0 Ok")
				return true
			}
			return false
		}, is: ErrProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, &smtptest.Options{Handler: tc.handler})
			c, _ := pipeClient(t, srv)
			c.timeouts.command = 300 * time.Millisecond
			done := make(chan error, 1)
			go func() {
				_, err := c.Send(context.Background(), pipeMsg("b@example.net", "c@example.net"))
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Send hung")
			}
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if tc.is == errTimeout {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("error %v; want a timeout", err)
				}
			} else if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v; want %v", err, tc.is)
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("server accepted %d messages", n)
			}
		})
	}
}

// errTimeout stands for "a net.Error with Timeout() true" in a table.
var errTimeout = errors.New("timeout")

// TestPipelinedOneAtATime: a server that advertises PIPELINING but reads
// and answers one command at a time gets the same result; so does one that
// holds its replies until it has read the whole group.
func TestPipelinedOneAtATime(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
		time.Sleep(5 * time.Millisecond) // reads the next line only after this reply
		return false
	}})
	c, _ := pipeClient(t, srv)
	res, err := c.Send(context.Background(), pipeMsg("b@example.net", "c@example.net"))
	if err != nil || len(res.Accepted()) != 2 {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || string(msgs[0].Data) != testMsg {
		t.Fatalf("server got %+v", msgs)
	}
}

// TestNoPipeliningOneAtATime: without PIPELINING, the client waits for
// every reply.
func TestNoPipeliningOneAtATime(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Extensions: []string{"SIZE 67108864"}})
	c, w := pipeClient(t, srv)
	if _, err := c.Send(context.Background(), pipeMsg("b@example.net", "c@example.net")); err != nil {
		t.Fatal(err)
	}
	wantGroups(t, w, gEHLO, gMAIL, rcpts("b@example.net"), rcpts("c@example.net"), "DATA\r\n", gBody)
}

// TestPipelinedFailedAuthSendsNothing: AUTH ends its group, so a refused
// AUTH is known before any envelope goes out; no MAIL, RCPT or content is
// sent and nothing is delivered, for SendMail and SendBatch alike.
func TestPipelinedFailedAuthSendsNothing(t *testing.T) {
	opts := &smtptest.Options{Extensions: chunkingExts, Users: map[string]string{"user": "right"}}
	for _, name := range []string{"SendMail", "SendBatch"} {
		t.Run(name, func(t *testing.T) {
			srv := smtptest.NewServer(t, opts)
			d := testDialer(srv, ImplicitTLS)
			a := PlainAuth("", "user", "wrong", "127.0.0.1")
			var err error
			if name == "SendMail" {
				err = d.SendMail(srv.ImplicitAddr, a, "a@example.com", []string{"b@example.net", "c@example.net"}, []byte(testMsg))
			} else {
				_, err = d.SendBatch(context.Background(), srv.ImplicitAddr, a, []*Message{pipeMsg("b@example.net"), pipeMsg("c@example.net")})
			}
			var se *Error
			if !errors.As(err, &se) || se.Code != 535 {
				t.Fatalf("%s: %v; want the 535", name, err)
			}
			wantTranscript(t, srv, "tls: EHLO localhost", "tls: AUTH PLAIN AHVzZXIAd3Jvbmc=", "tls: QUIT")
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("%d messages delivered", n)
			}
		})
	}
}

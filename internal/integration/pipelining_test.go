package integration

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
)

// Pipelining (RFC 2920) and CHUNKING (RFC 3030) against Postfix, which
// offers both, and checks the first: it logs "improper command
// pipelining" when a client sends a command where it must wait.

// pipelinedProperly fails the test if Postfix found a command pipelined
// where it must not be, in the session's log.
func (sess smtpSession) pipelinedProperly(t *testing.T) {
	t.Helper()
	for _, l := range sess.improperPipelining() {
		t.Errorf("Postfix: %s", l)
	}
}

// improperPipelining returns the session's log lines that report a
// command pipelined where it must not be.
func (sess smtpSession) improperPipelining() []string {
	var out []string
	for _, l := range sess.Lines {
		if strings.Contains(l, "improper command pipelining") {
			out = append(out, l)
		}
	}
	return out
}

// sendBatchRecorded sends msgs with Dialer.SendBatch on a connection it
// records, and returns what Postfix logged about that connection.
func (s *server) sendBatchRecorded(t *testing.T, addr string, msgs []*tlsmail.Message) (smtpSession, []tlsmail.BatchResult, error) {
	t.Helper()
	var rec portRecorder
	d := tlsmail.Dialer{NetDialContext: rec.dial}
	off := s.logOffset(t)
	res, err := d.SendBatch(testContext(t, 2*time.Minute), addr, s.plain(t, addr), msgs)
	return s.session(t, off, rec.only(t)), res, err
}

// TestPipeliningAndChunking sends the same kinds of message to a port
// that offers CHUNKING and one that does not: one message to three
// recipients with SendMail, then a batch on one connection that has an
// all-or-nothing message with a refused recipient and a partial-delivery
// one. Every accepted message arrives byte for byte; the refused one
// arrives nowhere; Postfix sees the batch use BDAT or DATA as offered (the
// SendMail message uses DATA on both, see checkAcceptedWith) and no improper
// pipelining.
func TestPipeliningAndChunking(t *testing.T) {
	s := needServer(t)
	if s.NoChunkingAddr == "" {
		t.Fatal("the env file has no TLSMAIL_NOCHUNKING_ADDR: the server was started by an older start.sh; restart it")
	}
	for _, tc := range []struct{ name, addr, verb, other string }{
		{"CHUNKING", s.ImplicitAddr, "bdat", "data"},
		{"DATA", s.NoChunkingAddr, "data", "bdat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("SendMail", func(t *testing.T) {
				id, msg := newMessage(t, s, s.Rcpts, "pipelined, "+tc.name, trickyLines()...)
				sess, err := s.sendRecorded(t, tlsmail.Dialer{}, tc.addr, s.plain(t, tc.addr), s.Rcpts, msg)
				if err != nil {
					t.Fatalf("SendMail: %v", err)
				}
				// An all-or-nothing message to several recipients
				// that ends the session goes with DATA on both ports:
				// its 354 vouches for the RCPT replies before the
				// commit, at the same number of round trips.
				if sess.Stats["data"] != "1" || sess.Stats["bdat"] != "" || sess.Stats["rcpt"] != "3" {
					t.Errorf("Postfix's account of the session: %v, want data=1 rcpt=3", sess.Stats)
				}
				sess.pipelinedProperly(t)
				for _, rcpt := range s.Rcpts {
					s.checkDelivered(t, rcpt, id, msg, true)
				}
			})

			t.Run("SendBatch", func(t *testing.T) {
				known, unknown := s.Rcpts[0], s.unknownRcpt()
				tos := [][]string{{known}, s.Rcpts, {known, unknown}, {s.Rcpts[1], unknown}, {s.Rcpts[2]}}
				var msgs []*tlsmail.Message
				var ids []string
				var bodies [][]byte
				for i, to := range tos {
					id, msg := newMessage(t, s, to, "batch, "+tc.name, append(trickyLines(), strings.Repeat("message ", i+1))...)
					ids, bodies = append(ids, id), append(bodies, msg)
					msgs = append(msgs, &tlsmail.Message{From: s.User, To: to, Body: bytes.NewReader(msg), PartialDelivery: i == 3})
				}
				sess, res, err := s.sendBatchRecorded(t, tc.addr, msgs)
				var e *tlsmail.Error
				if !errors.As(err, &e) || e.Code != 550 || !strings.Contains(e.Error(), unknown) {
					t.Errorf("SendBatch: %v; want message 2's refused recipient", err)
				}
				if len(res) != len(msgs) {
					t.Fatalf("%d results for %d messages", len(res), len(msgs))
				}
				for i, r := range res {
					if i == 2 {
						if !errors.As(r.Err, &e) || e.Code != 550 {
							t.Errorf("message 2: %v; want 550 for %s", r.Err, unknown)
						}
						continue
					}
					if r.Err != nil {
						t.Errorf("message %d: %v", i, r.Err)
						continue
					}
					want := tos[i]
					if i == 3 {
						want = want[:1]
					}
					if got := r.Result.Accepted(); !slices.Equal(got, want) {
						t.Errorf("message %d: accepted %q, want %q", i, got, want)
					}
				}
				// Four messages committed, one refused before its content.
				if got, want := sess.Stats["mail"], "5"; got != want {
					t.Errorf("Postfix counted mail=%s, want %s (%v)", got, want, sess.Stats)
				}
				if sess.Stats[tc.other] != "" || sess.Stats[tc.verb] == "" {
					t.Errorf("Postfix's account of the session: %v, want %s and no %s", sess.Stats, tc.verb, tc.other)
				}
				if len(sess.Queue) < 4 {
					t.Errorf("Postfix queued %d messages, want 4", len(sess.Queue))
				}
				sess.pipelinedProperly(t)
				for i, to := range tos {
					switch i {
					case 2:
					case 3:
						s.checkDelivered(t, to[0], ids[i], bodies[i], false)
					default:
						for _, rcpt := range to {
							s.checkDelivered(t, rcpt, ids[i], bodies[i], len(to) > 1)
						}
					}
				}
				for _, r := range s.Rcpts {
					if f, _ := s.findMessage(t, r, ids[2]); f != "" {
						t.Errorf("the refused all-or-nothing message was delivered to %s", r)
					}
				}
			})
		})
	}
}

// TestPostfixReportsImproperPipelining shows that the check above can
// fail: a client that sends NOOP before the reply to EHLO (which must
// end a group, RFC 2920 section 3.1) is logged by Postfix.
func TestPostfixReportsImproperPipelining(t *testing.T) {
	s := needServer(t)
	off := s.logOffset(t)
	c, err := net.DialTimeout("tcp", s.PlainAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	if _, err := c.Write([]byte("EHLO client.example\r\nNOOP\r\nQUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r)
	port := c.LocalAddr().(*net.TCPAddr).Port
	sess := s.session(t, off, port)
	if len(sess.improperPipelining()) == 0 {
		t.Errorf("Postfix logged no improper pipelining for the session:\n%s", strings.Join(sess.Lines, "\n"))
	}
}

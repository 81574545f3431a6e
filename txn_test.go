package tlsmail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// These tests pin the engine's rule (txn.go): a message is reported
// accepted only when its own final reply was read in step, and a reply
// out of step never reads as a success.

// strayServer starts a server that sends one reply too many, "250 2.0.0
// stray", just before its reply to MAIL, and ends the message as end
// says: "554" refuses it, "421" refuses it and closes, "drop" closes
// without a reply.
func strayServer(t *testing.T, exts []string, end string) *smtptest.Server {
	return smtptest.NewServer(t, &smtptest.Options{
		Extensions: exts,
		Handler: func(s *smtptest.Session, line string) bool {
			if strings.HasPrefix(line, "MAIL FROM:") {
				s.WriteRaw([]byte("250 2.0.0 stray\r\n"))
			}
			return false
		},
		OnData: func(s *smtptest.Session, _ *smtptest.Message) bool {
			switch end {
			case "554":
				s.Reply("554 5.7.1 Message refused")
			case "421":
				s.Reply("421 4.3.2 Shutting down")
				s.Close()
			default:
				s.Close()
			}
			return true
		},
	})
}

var extCombos = []struct {
	name string
	exts []string
}{
	{"PIPELINING+CHUNKING", []string{"PIPELINING", "CHUNKING", "8BITMIME", "ENHANCEDSTATUSCODES"}},
	{"CHUNKING", []string{"CHUNKING", "8BITMIME", "ENHANCEDSTATUSCODES"}},
	{"PIPELINING", []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"}},
	{"neither", []string{"8BITMIME", "ENHANCEDSTATUSCODES"}},
}

// TestStrayReplyNeverReadsAsSuccess: the false success. The stray
// reply shifts every reply by one, so the message's refusal (or the drop)
// arrives where QUIT's 221 is due; nothing the server refused may come
// back nil, and every call says what the server did not do.
func TestStrayReplyNeverReadsAsSuccess(t *testing.T) {
	for _, ec := range extCombos {
		for _, end := range []string{"554", "421", "drop"} {
			t.Run(ec.name+"/"+end, func(t *testing.T) {
				calls := map[string]func(d *Dialer, addr string) error{
					"SendMail": func(d *Dialer, addr string) error {
						return d.SendMail(addr, nil, "a@example.com", []string{"b@example.net"}, []byte(testMsg))
					},
					"Send": func(d *Dialer, addr string) error {
						_, err := d.Send(context.Background(), addr, nil, pipeMsg("b@example.net"))
						return err
					},
					"SendBatch": func(d *Dialer, addr string) error {
						res, err := d.SendBatch(context.Background(), addr, nil, []*Message{pipeMsg("b@example.net")})
						if len(res) == 1 && res[0].Err == nil {
							return nil
						}
						return err
					},
				}
				for name, call := range calls {
					srv := strayServer(t, ec.exts, end)
					err := call(testDialer(srv, ImplicitTLS), srv.ImplicitAddr)
					if err == nil {
						t.Errorf("%s = nil for a message the server refused", name)
					}
					if n := len(srv.Messages()); n != 0 {
						t.Fatalf("%s: server recorded %d messages", name, n)
					}
				}
			})
		}
	}
}

// TestStrayReplyBeforeRefusedEndOfData: on the DATA path, a stray 250
// just before the refusal of the end of data reads as the message's
// reply; QUIT's reply is then the 554, not 221, which shows the shift:
// the outcome is unknown, never success.
func TestStrayReplyBeforeRefusedEndOfData(t *testing.T) {
	for _, ec := range extCombos[2:] {
		t.Run(ec.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, &smtptest.Options{
				Extensions: ec.exts,
				OnData: func(s *smtptest.Session, _ *smtptest.Message) bool {
					s.WriteRaw([]byte("250 2.0.0 stray\r\n554 5.7.1 Message refused\r\n"))
					return true
				},
			})
			err := testDialer(srv, ImplicitTLS).SendMail(srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.net"}, []byte(testMsg))
			if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, ErrProtocol) {
				t.Errorf("SendMail = %v; want ErrUnknownOutcome and ErrProtocol", err)
			}
		})
	}
}

// TestSyncPointKeepsEarlierOutcomes: a stray reply after message 1's
// end of data puts message 1 in doubt, but not message 0, whose 250 was
// followed by message 1's 354 in its place.
func TestSyncPointKeepsEarlierOutcomes(t *testing.T) {
	n := 0
	srv := smtptest.NewServer(t, &smtptest.Options{OnData: func(s *smtptest.Session, m *smtptest.Message) bool {
		if n++; n == 2 {
			s.WriteRaw([]byte("250 2.0.0 Ok\r\n250 2.0.0 stray\r\n"))
			return true
		}
		return false
	}})
	msgs, _ := batchMsgs(2, func(int) []string { return []string{"b@example.net"} })
	res, err := testDialer(srv, ImplicitTLS).SendBatch(context.Background(), srv.ImplicitAddr, nil, msgs)
	if res[0].Err != nil {
		t.Errorf("message 0: %v; want accepted", res[0].Err)
	}
	if !errors.Is(res[1].Err, ErrUnknownOutcome) || !errors.Is(err, ErrUnknownOutcome) {
		t.Errorf("message 1: %v (batch %v); want ErrUnknownOutcome", res[1].Err, err)
	}
}

// TestQuitRefusalDoubtsTheRun: with BDAT there is no 354 to check the
// replies against: a session that ends with anything but 221 to QUIT
// leaves the run's messages unknown, though each read a 250.
func TestQuitRefusalDoubtsTheRun(t *testing.T) {
	for _, quit := range []string{"250 2.0.0 Ok", "554 5.7.1 no", "drop"} {
		t.Run(quit, func(t *testing.T) {
			srv := smtptest.NewServer(t, &smtptest.Options{Extensions: chunkingExts, Handler: func(s *smtptest.Session, line string) bool {
				if line != "QUIT" {
					return false
				}
				if quit != "drop" {
					s.Reply(quit)
				}
				s.Close()
				return true
			}})
			msgs, _ := batchMsgs(3, func(int) []string { return []string{"b@example.net"} })
			res, _ := testDialer(srv, ImplicitTLS).SendBatch(context.Background(), srv.ImplicitAddr, nil, msgs)
			for i, r := range res {
				if !errors.Is(r.Err, ErrUnknownOutcome) || r.Result != nil {
					t.Errorf("message %d: %v, %+v; want ErrUnknownOutcome and no Result", i, r.Err, r.Result)
				}
			}
			if n := len(srv.Messages()); n != 3 {
				t.Errorf("%d messages delivered, want 3", n)
			}
		})
	}
}

// smallBuffers dials addr with 8 KiB socket buffers and returns a Client
// over implicit TLS.
func smallBuffers(t *testing.T, srv *smtptest.Server) *Client {
	t.Helper()
	raw, err := net.Dial("tcp", srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	raw.(*net.TCPConn).SetReadBuffer(8 << 10)
	raw.(*net.TCPConn).SetWriteBuffer(8 << 10)
	cfg := srv.ClientTLSConfig()
	cfg.ServerName = "127.0.0.1"
	c, err := NewClient(tls.Client(raw, cfg), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c.netsmtp = false
	c.timeouts.command = 3 * time.Second
	c.timeouts.data = 3 * time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLongRecipientListDoesNotHang: 4,000 recipients through 8 KiB
// socket buffers on both sides. A group that left every reply unread
// would fill the buffers both ways and block both sides; the engine
// reads while it writes, and the message goes through.
func TestLongRecipientListDoesNotHang(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{OnAccept: func(conn net.Conn) bool {
		conn.(*net.TCPConn).SetReadBuffer(8 << 10)
		conn.(*net.TCPConn).SetWriteBuffer(8 << 10)
		return false
	}})
	c := smallBuffers(t, srv)
	to := make([]string, 4000)
	for i := range to {
		to[i] = fmt.Sprintf("recipient-with-a-long-name-%04d@example.net", i)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Send(context.Background(), pipeMsg(to...))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		c.Close()
		t.Fatal("Send blocked for a minute with CommandTimeout 3s")
	}
	ms := srv.Messages()
	if len(ms) != 1 || len(ms[0].To) != len(to) {
		t.Fatalf("delivered %d messages", len(ms))
	}
}

// hidden hides a reader's type, so that Send learns the content only as
// it streams it.
type hidden struct{ io.Reader }

// TestEightBitAbandonKeepsTheBatch: a message whose 8-bit data shows up
// only while it streams, to a server without 8BITMIME, is abandoned
// between BDAT chunks with RSET; the messages before and after it, whose
// replies were owed, keep their real outcomes.
func TestEightBitAbandonKeepsTheBatch(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Extensions: []string{"PIPELINING", "CHUNKING", "ENHANCEDSTATUSCODES"}})
	body := func(s string) io.Reader { return hidden{strings.NewReader(s)} }
	msgs := []*Message{
		{From: "a@example.com", To: []string{"b@example.net"}, Body: body(testMsg)},
		{From: "a@example.com", To: []string{"b@example.net"}, Body: body(testMsg)},
		{From: "a@example.com", To: []string{"b@example.net"}, Body: body("Subject: x\r\n\r\nnaïve\r\n")},
		{From: "a@example.com", To: []string{"b@example.net"}, Body: body(testMsg)},
	}
	res, _ := testDialer(srv, ImplicitTLS).SendBatch(context.Background(), srv.ImplicitAddr, nil, msgs)
	for i, r := range res {
		switch {
		case i == 2 && !errors.Is(r.Err, ErrExtensionUnsupported):
			t.Errorf("message 2: %v; want ErrExtensionUnsupported", r.Err)
		case i != 2 && r.Err != nil:
			t.Errorf("message %d: %v; want accepted", i, r.Err)
		}
	}
	if n := len(srv.Messages()); n != 3 {
		t.Errorf("%d messages delivered, want 3", n)
	}
}

// TestResultHasEveryRecipientOrNone: when the session ends in the middle
// of the recipients, Result is nil rather than a list shorter than
// Message.To.
func TestResultHasEveryRecipientOrNone(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
		if line == "RCPT TO:<c@example.net>" {
			s.Close()
			return true
		}
		return false
	}})
	c, _ := pipeClient(t, srv)
	m := pipeMsg("b@example.net", "c@example.net", "d@example.net")
	m.PartialDelivery = true
	res, err := c.Send(context.Background(), m)
	if err == nil || res != nil {
		t.Fatalf("Send = %+v, %v; want an error and no Result", res, err)
	}
}

// TestStrayReplyBeforeNextMessageDoubtsTheLast: without PIPELINING, a
// reply waiting before the next message's MAIL shows that the one read as
// the previous message's final reply may not have been its own: that
// message becomes unknown, not accepted.
func TestStrayReplyBeforeNextMessageDoubtsTheLast(t *testing.T) {
	n := 0
	srv := smtptest.NewServer(t, &smtptest.Options{
		Extensions: []string{"CHUNKING", "8BITMIME", "ENHANCEDSTATUSCODES"},
		OnData: func(s *smtptest.Session, m *smtptest.Message) bool {
			if n++; n == 1 {
				s.WriteRaw([]byte("250 2.0.0 Ok\r\n250 2.0.0 stray\r\n"))
				return true
			}
			return false
		},
	})
	c, _ := pipeClient(t, srv)
	msgs, _ := batchMsgs(2, func(int) []string { return []string{"b@example.net"} })
	res, _ := c.SendBatch(context.Background(), msgs)
	if !errors.Is(res[0].Err, ErrUnknownOutcome) || !errors.Is(res[0].Err, ErrProtocol) {
		t.Errorf("message 0: %v; want ErrUnknownOutcome and ErrProtocol", res[0].Err)
	}
	if res[1].Err == nil {
		t.Error("message 1 accepted after the stray reply")
	}
}

// TestMixedCodeReplyDoubtsEarlierReplies: a multi-line reply that
// changes code may be two replies run together; the 250 read for the
// message before it, with no sync point between, is in doubt.
func TestMixedCodeReplyDoubtsEarlierReplies(t *testing.T) {
	mails := 0
	srv := smtptest.NewServer(t, &smtptest.Options{Extensions: chunkingExts, Handler: func(s *smtptest.Session, line string) bool {
		if strings.HasPrefix(line, "MAIL FROM:") {
			if mails++; mails == 2 {
				s.WriteRaw([]byte("250-2.1.0 Ok\r\n554 5.7.1 no\r\n"))
				return true
			}
		}
		return false
	}})
	c, _ := pipeClient(t, srv)
	msgs, _ := batchMsgs(2, func(int) []string { return []string{"b@example.net"} })
	res, _ := c.SendBatch(context.Background(), msgs)
	for i, r := range res {
		if !errors.Is(r.Err, ErrProtocol) {
			t.Errorf("message %d: %v; want ErrProtocol", i, r.Err)
		}
	}
	if !errors.Is(res[0].Err, ErrUnknownOutcome) {
		t.Errorf("message 0: %v; want ErrUnknownOutcome", res[0].Err)
	}
}

// TestRefusedRSETIsOutOfStep: RSET cannot be refused (RFC 5321 section
// 4.1.1.5); a refusal in its place is another command's reply, and the
// session ends rather than go on out of step.
func TestRefusedRSETIsOutOfStep(t *testing.T) {
	opts := refuse("bad@example.net")
	opts.Handler = func(s *smtptest.Session, line string) bool {
		if line == "RSET" {
			s.Reply("554 5.5.1 no")
			return true
		}
		return false
	}
	srv := smtptest.NewServer(t, opts)
	c, _ := pipeClient(t, srv)
	_, err := c.Send(context.Background(), pipeMsg("b@example.net", "bad@example.net"))
	if !errors.Is(err, ErrProtocol) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Send = %v; want ErrProtocol from the refused RSET (nothing was committed)", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}
}

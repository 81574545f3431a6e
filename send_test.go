package tlsmail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// batchMsgs makes n messages, each with its number in the subject so
// that delivery order and content can be checked byte for byte.
func batchMsgs(n int, to func(i int) []string) ([]*Message, []string) {
	var msgs []*Message
	var bodies []string
	for i := range n {
		body := fmt.Sprintf("Subject: %d\r\n\r\n.line %d\r\n", i, i)
		bodies = append(bodies, body)
		msgs = append(msgs, &Message{From: "a@example.com", To: to(i), Body: strings.NewReader(body)})
	}
	return msgs, bodies
}

// TestSendBatch: per-message outcomes over one connection, with and
// without CHUNKING, through refused recipients (all-or-nothing and
// partial delivery) and a refused body; the delivered messages are
// exactly the ones reported accepted, byte for byte, in order.
func TestSendBatch(t *testing.T) {
	for _, chunking := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunking=%v", chunking), func(t *testing.T) {
			opts := refuse("bad@example.net")
			if chunking {
				opts.Extensions = chunkingExts
			}
			opts.OnData = func(s *smtptest.Session, m *smtptest.Message) bool {
				if strings.HasPrefix(string(m.Data), "Subject: 7\r\n") {
					s.Reply("554 5.7.1 rejected as spam")
					return true
				}
				return false
			}
			srv := smtptest.NewServer(t, opts)
			msgs, bodies := batchMsgs(12, func(i int) []string {
				switch i {
				case 3, 4: // all-or-nothing (3) and partial delivery (4)
					return []string{"b@example.net", "bad@example.net"}
				case 9:
					return []string{"bad@example.net"}
				}
				return []string{"b@example.net"}
			})
			msgs[4].PartialDelivery = true
			d := testDialer(srv, ImplicitTLS)
			res, err := d.SendBatch(context.Background(), srv.ImplicitAddr, nil, msgs)
			var se *Error
			if !errors.As(err, &se) || se.Code != 550 || !strings.Contains(err.Error(), "bad@example.net") {
				t.Fatalf("SendBatch error %v; want message 3's refused recipient", err)
			}
			var want []string
			for i, r := range res {
				code := 0
				if errors.As(r.Err, &se) {
					code = se.Code
				}
				switch i {
				case 3, 9:
					if code != 550 {
						t.Errorf("message %d: %v; want the 550", i, r.Err)
					}
				case 7:
					if code != 554 {
						t.Errorf("message %d: %v; want the 554", i, r.Err)
					}
				default:
					if r.Err != nil {
						t.Errorf("message %d: %v", i, r.Err)
						continue
					}
					want = append(want, bodies[i])
					wantAcc := []string{"b@example.net"}
					if got := r.Result.Accepted(); !slices.Equal(got, wantAcc) {
						t.Errorf("message %d accepted %q", i, got)
					}
				}
			}
			if rr := res[4].Result; rr == nil || len(rr.Recipients) != 2 || rr.Recipients[1].Err == nil || rr.Recipients[1].Err.Code != 550 {
				t.Errorf("message 4's recipients: %+v", rr)
			}
			var got []string
			for _, m := range srv.Messages() {
				got = append(got, string(m.Data))
			}
			if !slices.Equal(got, want) {
				t.Errorf("delivered:\n\t%q\nwant:\n\t%q", got, want)
			}
		})
	}
}

// TestSendBatchRoundTrips counts the client's waits for the server: with
// PIPELINING at most one per message, and with CHUNKING a handful for a
// hundred messages.
func TestSendBatchRoundTrips(t *testing.T) {
	for _, chunking := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunking=%v", chunking), func(t *testing.T) {
			opts := &smtptest.Options{}
			if chunking {
				opts.Extensions = chunkingExts
			}
			srv := smtptest.NewServer(t, opts)
			c, w := pipeClient(t, srv)
			const n = 100
			msgs, bodies := batchMsgs(n, func(int) []string { return []string{"b@example.net"} })
			if _, err := c.SendBatch(context.Background(), msgs); err != nil {
				t.Fatal(err)
			}
			waits := len(w.groups()) - 1 // the first group is EHLO
			limit := n + 1
			if chunking {
				limit = n / 10
			}
			if waits > limit {
				t.Errorf("%d waits for %d messages; want at most %d", waits, n, limit)
			}
			ms := srv.Messages()
			if len(ms) != n {
				t.Fatalf("%d messages delivered", len(ms))
			}
			for i, m := range ms {
				if string(m.Data) != bodies[i] {
					t.Fatalf("message %d: %q, want %q", i, m.Data, bodies[i])
				}
			}
		})
	}
}

// TestSendBatchConnectionLost: the server drops the connection when the
// fifth message ends. It and every message whose content had gone out
// may have been delivered and say so; those before it are accepted or,
// when the reset connection lost their replies on the way, say that they
// may have been delivered; none after it is reported accepted.
func TestSendBatchConnectionLost(t *testing.T) {
	for _, chunking := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunking=%v", chunking), func(t *testing.T) {
			var seen atomic.Int32
			opts := &smtptest.Options{OnData: func(s *smtptest.Session, m *smtptest.Message) bool {
				if seen.Add(1) == 5 {
					s.Close()
					return true
				}
				return false
			}}
			if chunking {
				opts.Extensions = chunkingExts
			}
			srv := smtptest.NewServer(t, opts)
			c, _ := pipeClient(t, srv)
			msgs, _ := batchMsgs(10, func(int) []string { return []string{"b@example.net"} })
			res, err := c.SendBatch(context.Background(), msgs)
			if err == nil {
				t.Fatal("SendBatch succeeded over a dropped connection")
			}
			for i, r := range res {
				switch {
				case i < 4 && r.Err != nil && !errors.Is(r.Err, ErrUnknownOutcome):
					t.Errorf("message %d: %v", i, r.Err)
				case i == 4 && !errors.Is(r.Err, ErrUnknownOutcome):
					t.Errorf("message 4: %v; want ErrUnknownOutcome", r.Err)
				case i > 4 && r.Err == nil:
					t.Errorf("message %d reported accepted after the connection was lost", i)
				}
			}
			if n := len(srv.Messages()); n != 4 {
				t.Errorf("%d messages delivered, want 4", n)
			}
		})
	}
}

// extraReply answers the first message's end of data twice, as a server
// that has lost count of its replies would.
func extraReply() *smtptest.Options {
	var n atomic.Int32
	return &smtptest.Options{OnData: func(s *smtptest.Session, m *smtptest.Message) bool {
		if n.Add(1) == 1 {
			s.WriteRaw([]byte("250 2.0.0 Ok: queued\r\n250 2.0.0 Ok: queued again\r\n"))
			return true
		}
		return false
	}}
}

// TestSendBatchOutOfStepDoubtsEarlier: once a reply is found out of
// step, the replies already taken for earlier messages may have been
// other commands', so those messages may or may not have been delivered.
func TestSendBatchOutOfStepDoubtsEarlier(t *testing.T) {
	srv := smtptest.NewServer(t, extraReply())
	c, _ := pipeClient(t, srv)
	msgs, _ := batchMsgs(3, func(int) []string { return []string{"b@example.net"} })
	res, err := c.SendBatch(context.Background(), msgs)
	if !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("SendBatch: %v; want ErrUnknownOutcome first", err)
	}
	if !errors.Is(res[0].Err, ErrUnknownOutcome) {
		t.Errorf("message 0: %v; want ErrUnknownOutcome", res[0].Err)
	}
	for i, r := range res[1:] {
		if !errors.Is(r.Err, ErrProtocol) {
			t.Errorf("message %d: %v; want ErrProtocol", i+1, r.Err)
		}
	}
}

// TestSendQuitOutOfStep: QUIT rides with the end of data; a second 250
// where QUIT's 221 belongs shows the replies out of step, so the 250
// taken as the message's acceptance proves nothing.
func TestSendQuitOutOfStep(t *testing.T) {
	srv := smtptest.NewServer(t, extraReply())
	d := testDialer(srv, ImplicitTLS)
	_, err := d.Send(context.Background(), srv.ImplicitAddr, nil, pipeMsg("b@example.net"))
	if !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("Send: %v; want ErrUnknownOutcome and ErrProtocol", err)
	}
}

// TestSendBatchReadsAsItStreams: with small socket buffers on both sides,
// a client that wrote a long batch without reading would fill the
// server's send buffer, stop the server reading, and block. Reading
// replies while streaming keeps the batch moving.
func TestSendBatchReadsAsItStreams(t *testing.T) {
	opts := &smtptest.Options{Extensions: chunkingExts, OnAccept: func(c net.Conn) bool {
		c.(*net.TCPConn).SetWriteBuffer(16384)
		c.(*net.TCPConn).SetReadBuffer(16384)
		return false
	}}
	srv := smtptest.NewServer(t, opts)
	raw, err := net.Dial("tcp", srv.ImplicitAddr)
	if err != nil {
		t.Fatal(err)
	}
	raw.(*net.TCPConn).SetReadBuffer(16384)
	raw.(*net.TCPConn).SetWriteBuffer(16384)
	cfg := srv.ClientTLSConfig()
	cfg.ServerName = "127.0.0.1"
	c, err := NewClient(tls.Client(raw, cfg), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c.netsmtp = false
	c.timeouts.data = 5 * time.Second
	c.timeouts.command = 5 * time.Second
	defer c.Close()
	const n = 1500
	msgs, _ := batchMsgs(n, func(int) []string { return []string{"b@example.net"} })
	if _, err := c.SendBatch(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	if got := len(srv.Messages()); got != n {
		t.Fatalf("%d messages delivered, want %d", got, n)
	}
}

// TestSendBatchSurplusReplyDoubtsSinceSync: a reply nobody asked for,
// after the last message's, shows the replies out of step somewhere
// after the last "354", so the message whose 250 came after it is in
// doubt; the one verified before it is not.
func TestSendBatchSurplusReplyDoubtsSinceSync(t *testing.T) {
	var n atomic.Int32
	srv := smtptest.NewServer(t, &smtptest.Options{OnData: func(s *smtptest.Session, m *smtptest.Message) bool {
		if n.Add(1) == 2 {
			s.WriteRaw([]byte("250 2.0.0 Ok: queued\r\n250 2.0.0 Ok: queued again\r\n"))
			return true
		}
		return false
	}})
	c, _ := pipeClient(t, srv)
	msgs, _ := batchMsgs(2, func(int) []string { return []string{"b@example.net"} })
	res, _ := c.SendBatch(context.Background(), msgs)
	// Message 0's 250 came before message 1's 354, which answers DATA
	// alone: it was read in step.
	if res[0].Err != nil || res[0].Result == nil || res[0].Result.Reply == nil {
		t.Errorf("message 0: %v; want accepted (verified by the next 354)", res[0].Err)
	}
	if !errors.Is(res[1].Err, ErrUnknownOutcome) || !errors.Is(res[1].Err, ErrProtocol) || res[1].Result != nil {
		t.Errorf("message 1: %v, %+v; want ErrUnknownOutcome and ErrProtocol, no Result", res[1].Err, res[1].Result)
	}
}

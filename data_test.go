package tlsmail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// slowConn models a slow but healthy link: every write takes time in
// proportion to its size, then goes through (and honours the deadline the
// client set, as a real socket would).
type slowConn struct {
	net.Conn
	bytesPerSecond int
}

func (c *slowConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 4096)
		time.Sleep(time.Duration(k) * time.Second / time.Duration(c.bytesPerSecond))
		m, err := c.Conn.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// TestDataTimeoutBoundsEachStall sends a message that takes several times
// DataTimeout in all over a link that never stalls: it must arrive whole.
// A deadline for the whole Write call (SendMail writes the message in one)
// would cut it off (RFC 5321 section 4.5.3.2.5).
func TestDataTimeoutBoundsEachStall(t *testing.T) {
	t.Parallel()
	srv := smtptest.NewServer(t, nil)
	d := testDialer(srv, ImplicitTLS)
	d.DataTimeout = 400 * time.Millisecond
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var nd net.Dialer
		conn, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &slowConn{Conn: conn, bytesPerSecond: 512 * 1024}, nil
	}
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	msg := []byte("Subject: big\r\n\r\n" + strings.Repeat(line, 1024*1024/len(line))) // 1 MiB: about 2 s
	start := time.Now()
	if err := d.SendMail(srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.com"}, msg); err != nil {
		t.Fatalf("SendMail over a slow link: %v", err)
	}
	if took := time.Since(start); took < 3*d.DataTimeout {
		t.Fatalf("took %v; the test needs the send to outlast DataTimeout several times", took)
	}
	if err := srv.WaitIdle(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if m := srv.Messages(); len(m) != 1 || !bytes.Equal(m[0].Data, msg) {
		t.Fatalf("server did not receive the message exactly")
	}
}

// TestDataTimeoutStillCatchesAStall checks the other side: a server that
// stops reading makes the send fail after about DataTimeout.
func TestDataTimeoutStillCatchesAStall(t *testing.T) {
	t.Parallel()
	srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
		if line == "DATA" {
			s.Reply("354 go ahead")
			time.Sleep(1500 * time.Millisecond) // reads nothing
			s.Close()
			return true
		}
		return false
	}})
	d := testDialer(srv, ImplicitTLS)
	d.DataTimeout = 300 * time.Millisecond
	msg := bytes.Repeat([]byte("x"), 32<<20) // far more than the socket buffers hold
	start := time.Now()
	err := d.SendMail(srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.com"}, msg)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "did not take the data within 300ms") {
		t.Fatalf("SendMail = %v; want a data write timeout", err)
	}
	if errors.Is(err, ErrUnknownOutcome) {
		t.Errorf("a message not sent whole is reported as of unknown outcome: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v; want about DataTimeout", took)
	}
}

// TestUnknownOutcome checks that a lost reply to the end of data, and only
// that, says the message may have been delivered, in the rich and the
// net/smtp error forms.
func TestUnknownOutcome(t *testing.T) {
	dropAfterData := &smtptest.Options{OnData: func(s *smtptest.Session, m *smtptest.Message) bool {
		s.Close()
		return true
	}}
	stallAfterData := &smtptest.Options{OnData: func(s *smtptest.Session, m *smtptest.Message) bool {
		s.Stall()
		return true
	}}
	send := func(srv *smtptest.Server, netsmtp bool) error {
		if netsmtp {
			return SendMail(srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.com"}, []byte(testMsg))
		}
		d := testDialer(srv, ImplicitTLS)
		d.DataTimeout = 200 * time.Millisecond
		return d.SendMail(srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.com"}, []byte(testMsg))
	}
	for _, netsmtp := range []bool{false, true} {
		srv := smtptest.NewServer(t, dropAfterData)
		err := send(srv, netsmtp)
		// QUIT rides with the end of data, so the server may close with
		// it unread, and the client then sees a reset rather than EOF.
		lost := errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
		if !errors.Is(err, ErrUnknownOutcome) || !lost || err == io.EOF {
			t.Errorf("netsmtp=%v: drop after end of data: %v; want ErrUnknownOutcome wrapping io.EOF or ECONNRESET", netsmtp, err)
		}
		if err != nil && !strings.Contains(err.Error(), "may have been delivered") {
			t.Errorf("error %q does not say the message may have been delivered", err)
		}
	}
	srv := smtptest.NewServer(t, stallAfterData)
	if err := send(srv, false); !errors.Is(err, ErrUnknownOutcome) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("no reply to end of data: %v; want ErrUnknownOutcome and a timeout", err)
	}
	// A connection lost before the end of data was sent is an ordinary
	// failure: the message was certainly not delivered.
	srv = smtptest.NewServer(t, replyTo("DATA"))
	if err := send(srv, true); err != io.EOF {
		t.Errorf("drop at DATA: %v; want io.EOF", err)
	}
}

// TestSendMailDoesNotWaitLongForQuit checks that, after the 250 that
// accepts the message, a server that never answers QUIT holds SendMail
// for a few seconds at most, not the CommandTimeout, and SendMail reports
// an unknown outcome: without the 221, the 250 may have been another
// command's reply.
func TestSendMailDoesNotWaitLongForQuit(t *testing.T) {
	t.Parallel()
	srv := smtptest.NewServer(t, &smtptest.Options{Handler: func(s *smtptest.Session, line string) bool {
		if line == "QUIT" {
			s.Stall()
			return true
		}
		return false
	}})
	d := testDialer(srv, ImplicitTLS)
	d.CommandTimeout = time.Minute
	start := time.Now()
	if err := d.SendMail(srv.ImplicitAddr, nil, "a@example.com", []string{"b@example.com"}, []byte(testMsg)); !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("SendMail = %v; want ErrUnknownOutcome without the 221", err)
	}
	if took := time.Since(start); took > quitTimeout+2*time.Second {
		t.Errorf("SendMail took %v; want at most about %v", took, quitTimeout)
	}
	if len(srv.Messages()) != 1 {
		t.Error("message not accepted")
	}
}

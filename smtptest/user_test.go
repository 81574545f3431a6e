package smtptest_test

// This file tests a small program that sends mail the way a user of
// tlsmail would, with nothing but the public API of tlsmail and smtptest.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/smtptest"
)

// notify is the code under test: it sends an alert to one recipient and
// retries twice, after a pause, when the failure is temporary (a 4xx
// reply, or a connection lost before the message was sent). It does not
// retry when the outcome is unknown, so as not to send the alert twice.
func notify(d *tlsmail.Dialer, addr, to string) error {
	msg := &tlsmail.Message{
		From: "alerts@example.org",
		To:   []string{to},
		Body: strings.NewReader("Subject: disk almost full\r\n\r\n/var is at 95%.\r\n"),
	}
	auth := tlsmail.PasswordAuth("alerts@example.org", "s3cret", "127.0.0.1")
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(10 * time.Millisecond)
			msg.Body = strings.NewReader("Subject: disk almost full\r\n\r\n/var is at 95%.\r\n")
		}
		_, err = d.Send(context.Background(), addr, auth, msg)
		if err == nil || !retryable(err) {
			return err
		}
	}
	return fmt.Errorf("notify: giving up after 3 attempts: %w", err)
}

func retryable(err error) bool {
	if errors.Is(err, tlsmail.ErrUnknownOutcome) {
		return false
	}
	var e *tlsmail.Error
	if errors.As(err, &e) {
		return e.Temporary()
	}
	return true // the connection failed before the message was sent
}

func newUserServer(t *testing.T, faults ...smtptest.Fault) *smtptest.Server {
	return smtptest.NewServer(t, &smtptest.Config{
		Users: map[string]string{"alerts@example.org": "s3cret"},
		RcptReplies: map[string]string{
			"nobody@example.net": "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown",
		},
		Faults: faults,
	})
}

func TestNotifySends(t *testing.T) {
	t.Parallel()
	for _, mode := range []tlsmail.Mode{tlsmail.ImplicitTLS, tlsmail.STARTTLS} {
		t.Run(mode.String(), func(t *testing.T) {
			srv := newUserServer(t)
			if err := notify(srv.Dialer(mode), srv.Addr(mode), "ops@example.net"); err != nil {
				t.Fatal(err)
			}
			m, err := srv.WaitMessage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if m.From != "alerts@example.org" || len(m.To) != 1 || m.To[0] != "ops@example.net" {
				t.Errorf("envelope %s -> %v", m.From, m.To)
			}
			if want := "Subject: disk almost full\r\n\r\n/var is at 95%.\r\n"; string(m.Data) != want {
				t.Errorf("data %q, want %q", m.Data, want)
			}
			if !m.TLS || m.AuthUser != "alerts@example.org" || m.AuthMechanism != "SCRAM-SHA-256-PLUS" {
				t.Errorf("TLS %v, authenticated as %q with %s", m.TLS, m.AuthUser, m.AuthMechanism)
			}
			if n := srv.Connections(); n != 1 {
				t.Errorf("%d connections, want 1", n)
			}
		})
	}
}

func TestNotifyRefusedRecipient(t *testing.T) {
	t.Parallel()
	srv := newUserServer(t)
	d := srv.Dialer(tlsmail.ImplicitTLS)
	err := notify(d, srv.Addr(tlsmail.ImplicitTLS), "nobody@example.net")
	var e *tlsmail.Error
	if !errors.As(err, &e) || e.Command != "RCPT" || e.Code != 550 || e.EnhancedCode.String() != "5.1.1" || e.Temporary() {
		t.Fatalf("err = %v, want a permanent 550 5.1.1 at RCPT", err)
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("%d connections: a permanent refusal was retried", n)
	}
	if len(srv.Messages()) != 0 {
		t.Error("the message was delivered")
	}
}

func TestNotifyRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault smtptest.Fault
	}{
		{"421 at greeting", smtptest.Fault{At: smtptest.Greeting, Reply: "421 4.3.2 Too busy, try later", Times: 1}},
		{"421 at EHLO", smtptest.Fault{At: "EHLO", Reply: "421 4.4.5 Shutting down", Times: 1}},
		{"451 at MAIL", smtptest.Fault{At: "MAIL", Reply: "451 4.3.0 Temporary failure", Times: 2}},
		{"454 at AUTH", smtptest.Fault{At: "AUTH", Reply: "454 4.7.0 Temporary authentication failure", Times: 1}},
		{"dropped at EHLO", smtptest.Fault{At: "EHLO", Drop: true, Times: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newUserServer(t, tt.fault)
			if err := notify(srv.Dialer(tlsmail.ImplicitTLS), srv.Addr(tlsmail.ImplicitTLS), "ops@example.net"); err != nil {
				t.Fatal(err)
			}
			if got, want := srv.Connections(), tt.fault.Times+1; got != want {
				t.Errorf("%d connections, want %d", got, want)
			}
			if n := len(srv.Messages()); n != 1 {
				t.Errorf("%d messages delivered, want 1", n)
			}
		})
	}
}

func TestNotifyGivesUp(t *testing.T) {
	t.Parallel()
	srv := newUserServer(t, smtptest.Fault{At: "RCPT", Reply: "452 4.2.2 Mailbox full"})
	err := notify(srv.Dialer(tlsmail.ImplicitTLS), srv.Addr(tlsmail.ImplicitTLS), "ops@example.net")
	var e *tlsmail.Error
	if !errors.As(err, &e) || e.Code != 452 || !strings.Contains(err.Error(), "giving up after 3 attempts") {
		t.Fatalf("err = %v", err)
	}
	if n := srv.Connections(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestNotifyUnknownOutcomeIsNotRetried(t *testing.T) {
	t.Parallel()
	srv := newUserServer(t, smtptest.Fault{At: smtptest.EndOfData, Drop: true})
	err := notify(srv.Dialer(tlsmail.ImplicitTLS), srv.Addr(tlsmail.ImplicitTLS), "ops@example.net")
	if !errors.Is(err, tlsmail.ErrUnknownOutcome) {
		t.Fatalf("err = %v, want ErrUnknownOutcome", err)
	}
	if n := srv.Connections(); n != 1 {
		t.Errorf("%d connections: a message that may have been delivered was sent again", n)
	}
}

func TestNotifyTimesOut(t *testing.T) {
	t.Parallel()
	srv := newUserServer(t, smtptest.Fault{At: "MAIL", Delay: time.Minute})
	d := srv.Dialer(tlsmail.ImplicitTLS)
	d.CommandTimeout = 50 * time.Millisecond
	start := time.Now()
	err := notify(d, srv.Addr(tlsmail.ImplicitTLS), "ops@example.net")
	if err == nil {
		t.Fatal("notify succeeded")
	}
	if e := time.Since(start); e > 10*time.Second {
		t.Errorf("notify took %v", e)
	}
}

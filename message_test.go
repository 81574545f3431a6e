package tlsmail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// allExtensions is a server offering every extension Send can use.
var allExtensions = []string{"PIPELINING", "SIZE 1000", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN", "REQUIRETLS"}

func rejectUnknown(addr string) string {
	if strings.HasPrefix(addr, "unknown") {
		return "550 5.1.1 <" + addr + ">: Recipient address rejected: User unknown"
	}
	if strings.HasPrefix(addr, "busy") {
		return "451 4.2.1 <" + addr + ">: mailbox busy"
	}
	return ""
}

func TestSendPerRecipientResults(t *testing.T) {
	ctx := context.Background()
	to := []string{"a@example.com", "unknown@example.com", "busy@example.com", "b@example.com"}
	t.Run("partial delivery", func(t *testing.T) {
		srv := smtptest.NewServer(t, &smtptest.Options{RcptReply: rejectUnknown})
		c := dialerClient(t, srv)
		res, err := c.Send(ctx, &Message{From: "s@example.com", To: to, Body: strings.NewReader(testMsg), PartialDelivery: true})
		if err != nil {
			t.Fatalf("Send = %v", err)
		}
		if len(res.Recipients) != 4 || res.Recipients[0].Err != nil || res.Recipients[3].Err != nil {
			t.Fatalf("results %+v", res.Recipients)
		}
		if e := res.Recipients[1].Err; e == nil || e.Code != 550 || e.EnhancedCode != (EnhancedCode{5, 1, 1}) || e.Temporary() {
			t.Errorf("unknown recipient: %+v", e)
		}
		if e := res.Recipients[2].Err; e == nil || e.Code != 451 || !e.Temporary() {
			t.Errorf("busy recipient: %+v", e)
		}
		if got := res.Accepted(); strings.Join(got, ",") != "a@example.com,b@example.com" {
			t.Errorf("Accepted() = %q", got)
		}
		srv.WaitIdle(2e9)
		m := srv.Messages()
		if len(m) != 1 || strings.Join(m[0].To, ",") != "a@example.com,b@example.com" || string(m[0].Data) != testMsg {
			t.Fatalf("server recorded %+v", m)
		}
		if res.Reply == nil || res.Reply.Code != 250 || !strings.Contains(res.Reply.Message, "queued as "+m[0].QueueID) {
			t.Errorf("final reply %+v; want the queue id %q", res.Reply, m[0].QueueID)
		}
	})
	t.Run("all or nothing", func(t *testing.T) {
		srv := smtptest.NewServer(t, &smtptest.Options{RcptReply: rejectUnknown})
		c := dialerClient(t, srv)
		res, err := c.Send(ctx, &Message{From: "s@example.com", To: to, Body: strings.NewReader(testMsg)})
		var e *Error
		if !errors.As(err, &e) || e.Code != 550 || e.Command != "RCPT" {
			t.Fatalf("Send = %v; want the first refusal", err)
		}
		if len(res.Recipients) != 4 || res.Reply != nil {
			t.Errorf("result %+v", res)
		}
		// The Client is usable again after the reset.
		if _, err := c.Send(ctx, &Message{From: "s@example.com", To: []string{"a@example.com"}, Body: strings.NewReader(testMsg)}); err != nil {
			t.Errorf("second Send: %v", err)
		}
		c.Quit()
		want := []string{"tls: EHLO localhost", "tls: MAIL FROM:<s@example.com> SIZE=63"}
		for _, r := range to {
			want = append(want, "tls: RCPT TO:<"+r+">")
		}
		want = append(want, "tls: RSET", "tls: MAIL FROM:<s@example.com> SIZE=63", "tls: RCPT TO:<a@example.com>", "tls: DATA", "tls: QUIT")
		wantTranscript(t, srv, want...)
		if len(srv.Messages()) != 1 {
			t.Error("the refused transaction delivered")
		}
	})
	t.Run("every recipient refused", func(t *testing.T) {
		srv := smtptest.NewServer(t, &smtptest.Options{RcptReply: rejectUnknown})
		c := dialerClient(t, srv)
		_, err := c.Send(ctx, &Message{From: "s@example.com", To: []string{"unknown@example.com"}, Body: strings.NewReader(testMsg), PartialDelivery: true})
		if e, ok := err.(*Error); !ok || e.Code != 550 {
			t.Fatalf("Send = %v", err)
		}
	})
}

func TestSendExtensions(t *testing.T) {
	ctx := context.Background()
	eight := "Subject: x\r\n\r\nbody with \xc3\xbc\r\n"
	for _, tc := range []struct {
		name       string
		exts       []string // nil: allExtensions
		msg        Message
		mailParams string
		rcptParams string
		is         error
		text       string // the whole error, for an ErrExtensionUnsupported
	}{
		{name: "7-bit", msg: Message{Body: strings.NewReader("Subject: x\r\n\r\nhi\r\n")}, mailParams: "SIZE=18"},
		{name: "8-bit", msg: Message{Body: strings.NewReader(eight)}, mailParams: "SIZE=28 BODY=8BITMIME"},
		{name: "8-bit without 8BITMIME", exts: []string{"SIZE 1000"}, msg: Message{Body: strings.NewReader(eight)}, is: ErrExtensionUnsupported,
			text: "the message has 8-bit data, which needs 8BITMIME (RFC 6152), and 127.0.0.1 does not offer it; nothing was sent"},
		{name: "UTF-8 header", msg: Message{Body: bytes.NewBufferString("Subject: \xc3\xbc\r\n\r\nx\r\n")}, mailParams: "SIZE=18 BODY=8BITMIME SMTPUTF8"},
		{name: "too large", msg: Message{Body: strings.NewReader(strings.Repeat("x", 1001))}, is: ErrMessageTooLarge},
		{name: "no SIZE offered", exts: []string{"8BITMIME"}, msg: Message{Body: strings.NewReader(strings.Repeat("x", 5000))}, mailParams: ""},
		{name: "declared size", msg: Message{Body: strings.NewReader("x"), Size: 900}, mailParams: "SIZE=900"},
		{name: "declared too large", msg: Message{Body: strings.NewReader("x"), Size: 1001}, is: ErrMessageTooLarge},
		{name: "DSN", msg: Message{Body: strings.NewReader("x"), DSN: DSN{Return: ReturnHeaders, EnvelopeID: "id+1=2", Notify: NotifySuccess | NotifyFailure, OriginalRecipient: true}},
			mailParams: "SIZE=3 RET=HDRS ENVID=id+2B1+3D2", rcptParams: "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com"},
		{name: "DSN NEVER", msg: Message{Body: strings.NewReader("x"), DSN: DSN{Notify: NotifyNever}}, mailParams: "SIZE=3", rcptParams: "NOTIFY=NEVER"},
		{name: "DSN NEVER and more", msg: Message{Body: strings.NewReader("x"), DSN: DSN{Notify: NotifyNever | NotifyDelay}}, is: ErrInvalidInput},
		{name: "DSN not offered", exts: []string{"SIZE 1000"}, msg: Message{Body: strings.NewReader("x"), DSN: DSN{Return: ReturnFull}}, is: ErrExtensionUnsupported,
			text: "the message asks for delivery status notifications, which needs DSN (RFC 3461), and 127.0.0.1 does not offer it; nothing was sent"},
		{name: "REQUIRETLS", msg: Message{Body: strings.NewReader("x"), RequireTLS: true}, mailParams: "SIZE=3 REQUIRETLS"},
		{name: "REQUIRETLS not offered", exts: []string{"SIZE 1000"}, msg: Message{Body: strings.NewReader("x"), RequireTLS: true}, is: ErrExtensionUnsupported,
			text: "the message sets RequireTLS, which needs REQUIRETLS (RFC 8689), and 127.0.0.1 does not offer it; nothing was sent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exts := tc.exts
			if exts == nil {
				exts = allExtensions
			}
			srv := smtptest.NewServer(t, &smtptest.Options{Extensions: exts, Strict8Bit: true})
			c := dialerClient(t, srv)
			m := tc.msg
			m.From, m.To = "a@example.com", []string{"b@example.com"}
			_, err := c.Send(ctx, &m)
			c.Quit()
			if tc.is != nil {
				if !errors.Is(err, tc.is) {
					t.Fatalf("Send = %v; want %v", err, tc.is)
				}
				if want := "tlsmail: server does not offer a needed SMTP extension: " + tc.text; tc.text != "" && err.Error() != want {
					t.Errorf("Send = %q; want %q", err, want)
				}
				// Refused before anything of the message was sent.
				wantTranscript(t, srv, "tls: EHLO localhost", "tls: QUIT")
				return
			}
			if err != nil {
				t.Fatalf("Send = %v", err)
			}
			srv.WaitIdle(2e9)
			msgs := srv.Messages()
			if len(msgs) != 1 || msgs[0].MailParams != tc.mailParams || msgs[0].RcptParams[0] != tc.rcptParams {
				t.Fatalf("server recorded MAIL %q RCPT %q; want %q %q", msgs[0].MailParams, msgs[0].RcptParams, tc.mailParams, tc.rcptParams)
			}
		})
	}
}

// onlyReader hides every method but Read, so Send cannot see the content
// in advance.
type onlyReader struct{ io.Reader }

// TestSendStreamed8BitWithout8BITMIME checks that a streamed body whose
// 8-bit byte turns up only while sending, to a server without 8BITMIME,
// is abandoned before the end of data: nothing is delivered.
func TestSendStreamed8BitWithout8BITMIME(t *testing.T) {
	srv := smtptest.NewServer(t, &smtptest.Options{Extensions: []string{"SIZE 100000000", "SMTPUTF8"}})
	c := dialerClient(t, srv)
	body := onlyReader{strings.NewReader("Subject: x\r\n\r\n" + strings.Repeat("ascii line\r\n", 10000) + "caf\xc3\xa9\r\n")}
	_, err := c.Send(context.Background(), &Message{From: "a@example.com", To: []string{"b@example.com"}, Body: body})
	// The same condition as the refusal before MAIL, with one message.
	if want := no8BITMIME(c.serverName, abandoned); !errors.Is(err, ErrExtensionUnsupported) || err.Error() != want.Error() {
		t.Fatalf("Send = %v; want %v", err, want)
	}
	srv.WaitIdle(2e9)
	if len(srv.Messages()) != 0 {
		t.Fatal("the server accepted a message that was abandoned")
	}
	// A streamed body to a server that offers 8BITMIME declares it.
	srv2 := smtptest.NewServer(t, nil)
	c2 := dialerClient(t, srv2)
	if _, err := c2.Send(context.Background(), &Message{From: "a@example.com", To: []string{"b@example.com"}, Body: onlyReader{strings.NewReader("Subject: x\r\n\r\ncaf\xc3\xa9\r\n")}}); err != nil {
		t.Fatal(err)
	}
	srv2.WaitIdle(2e9)
	if m := srv2.Messages(); len(m) != 1 || m[0].MailParams != "BODY=8BITMIME" {
		t.Errorf("server recorded %+v", m)
	}
}

// failingReader fails after some data.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("disk on fire")
	}
	k := copy(p, strings.Repeat("x", min(len(p), r.n)))
	r.n -= k
	return k, nil
}

// TestSendBodyReadError checks that a failing body never ends the data
// with a final "." (a truncated message must not be delivered).
func TestSendBodyReadError(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	c := dialerClient(t, srv)
	_, err := c.Send(context.Background(), &Message{From: "a@example.com", To: []string{"b@example.com"}, Body: &failingReader{n: 100000}})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "nothing was delivered") {
		t.Fatalf("Send = %v", err)
	}
	srv.WaitIdle(2e9)
	if len(srv.Messages()) != 0 {
		t.Fatal("a truncated message was delivered")
	}
}

func TestDialerSend(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	d := testDialer(srv, ImplicitTLS)
	res, err := d.Send(context.Background(), srv.ImplicitAddr, PasswordAuth("user", "pass", "127.0.0.1"),
		&Message{From: "a@example.com", To: []string{"b@example.com"}, Body: strings.NewReader(testMsg)})
	if err != nil || res.Reply == nil || res.Reply.Code != 250 {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	wantTranscript(t, srv, "tls: EHLO localhost", "tls: AUTH PLAIN AHVzZXIAcGFzcw==", "tls: MAIL FROM:<a@example.com> SIZE=63",
		"tls: RCPT TO:<b@example.com>", "tls: DATA", "tls: QUIT")
}

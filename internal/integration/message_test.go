package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
)

// The message-level API (Dialer.Send with a Message) against Postfix: SIZE,
// DSN and per-recipient results.

// sendMessageRecorded sends m with Dialer.Send on a connection it records,
// and returns what Postfix logged about that connection.
func (s *server) sendMessageRecorded(t *testing.T, d tlsmail.Dialer, addr string, a tlsmail.Auth, m *tlsmail.Message) (smtpSession, *tlsmail.Result, error) {
	t.Helper()
	var rec portRecorder
	d.NetDialContext = rec.dial
	off := s.logOffset(t)
	start := time.Now()
	res, err := d.Send(testContext(t, 2*time.Minute), addr, a, m)
	elapsed := time.Since(start)
	sess := s.session(t, off, rec.only(t))
	sess.Elapsed = elapsed
	return sess, res, err
}

// unknownRcpt is an address in the test domain with no Maildir, which
// Postfix refuses at RCPT time (virtual_mailbox_maps).
func (s *server) unknownRcpt() string { return "nobody@" + s.Domain }

// TestSendTooLarge: Postfix advertises SIZE with its message_size_limit. A
// larger message must fail with ErrMessageTooLarge before MAIL, whether
// tlsmail measures it (a *bytes.Reader) or the caller declares it (Size
// with a plain io.Reader).
func TestSendTooLarge(t *testing.T) {
	s := needServer(t)
	if s.SizeLimit == 0 {
		t.Fatalf("the env file has no TLSMAIL_SIZE_LIMIT: the server was started by an older start.sh; restart it")
	}
	rcpt := s.Rcpts[0]
	// One line of filler per 1000 bytes, to just over the limit.
	var lines []string
	n := int64(0)
	for n <= s.SizeLimit {
		l := strings.Repeat("x", 998)
		lines = append(lines, l)
		n += int64(len(l)) + 2
	}
	id, msg := newMessage(t, s, []string{rcpt}, "too large", lines...)
	for _, tc := range []struct {
		name string
		m    *tlsmail.Message
	}{
		{"measured", &tlsmail.Message{From: s.User, To: []string{rcpt}, Body: bytes.NewReader(msg)}},
		{"declared", &tlsmail.Message{From: s.User, To: []string{rcpt}, Body: io.MultiReader(bytes.NewReader(msg)), Size: int64(len(msg))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.counts(t)
			off := s.logOffset(t)
			sess, res, err := s.sendMessageRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, s.plain(t, s.ImplicitAddr), tc.m)
			if err == nil {
				t.Fatalf("Send of %d bytes with a limit of %d succeeded", len(msg), s.SizeLimit)
			}
			t.Logf("error: %v", err)
			if !errors.Is(err, tlsmail.ErrMessageTooLarge) {
				t.Errorf("errors.Is(err, ErrMessageTooLarge) = false; err = %v", err)
			}
			if res != nil && res.Reply != nil {
				t.Errorf("Result.Reply = %+v after a refusal before sending", res.Reply)
			}
			// Authenticated, then nothing: no MAIL, no RCPT, no DATA.
			sess.onlyCommands(t, "ehlo", "auth", "quit")
			if sess.Stats["auth"] != "1" {
				t.Errorf("Postfix counted auth=%s, want 1", sess.Stats["auth"])
			}
			s.noQueuedMessage(t, off, id)
			s.noDelivery(t, before, id)
		})
	}
}

// TestSendDSN asks for delivery status notifications on success and
// failure. Postfix takes RET, ENVID, NOTIFY and ORCPT, delivers the message
// unchanged, and, because of NOTIFY=SUCCESS, sends the sender a "delivered"
// notification that carries the envelope id and the original recipient.
func TestSendDSN(t *testing.T) {
	s := needServer(t)
	rcpt := s.Rcpts[2]
	id, msg := newMessage(t, s, []string{rcpt}, "DSN", "Notify me.")
	m := &tlsmail.Message{
		From: s.User,
		To:   []string{rcpt},
		Body: bytes.NewReader(msg),
		DSN: tlsmail.DSN{
			Return:            tlsmail.ReturnHeaders,
			EnvelopeID:        "id-123",
			Notify:            tlsmail.NotifySuccess | tlsmail.NotifyFailure,
			OriginalRecipient: true,
		},
	}
	sess, res, err := s.sendMessageRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, s.plain(t, s.ImplicitAddr), m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	qid := sess.checkAccepted(t, "PLAIN", false)
	if res.Reply == nil || res.Reply.Code != 250 || !strings.Contains(res.Reply.Message, "queued as "+qid) {
		t.Errorf("Result.Reply = %+v, want 250 ... queued as %s", res.Reply, qid)
	}
	if h := s.checkDelivered(t, rcpt, id, msg, false); h.QueueID != qid {
		t.Errorf("stored message has queue id %s, the session queued %s", h.QueueID, qid)
	}

	// The success notification: from the null sender, to the sender, with
	// the returned headers (RET=HDRS) holding the Message-ID.
	dsn := string(s.waitMessage(t, s.User, id))
	for _, want := range []string{
		"Return-Path: <>\n",
		"Original-Envelope-Id: id-123\n",
		"Original-Recipient: rfc822;" + rcpt + "\n", // the ORCPT as sent
		"Final-Recipient: rfc822; " + rcpt + "\n",
		"Action: delivered\n",
		"Status: 2.0.0\n",
		"Content-Type: text/rfc822-headers\n",
		"Message-ID: <" + id + ">\n",
	} {
		if !strings.Contains(dsn, want) {
			t.Errorf("the delivery notification lacks %q:\n%s", want, head([]byte(dsn)))
		}
	}
	if strings.Contains(dsn, "Notify me.") {
		t.Errorf("the notification returned the message body despite RET=HDRS")
	}
	if !logHas(s.logSince(t, 0), qid+": sender delivery status notification: ") {
		t.Errorf("Postfix did not log a delivery status notification for %s", qid)
	}
}

// TestSendPartialDelivery sends to a known and an unknown recipient of the
// test domain. Postfix refuses the unknown one at RCPT with 550 5.1.1. With
// PartialDelivery the known one gets the message; without, nobody does.
func TestSendPartialDelivery(t *testing.T) {
	s := needServer(t)
	known, unknown := s.Rcpts[0], s.unknownRcpt()
	to := []string{known, unknown}
	checkRefusal := func(t *testing.T, e *tlsmail.Error) {
		t.Helper()
		if e.Code != 550 || [3]int(e.EnhancedCode) != [3]int{5, 1, 1} || e.Command != "RCPT" {
			t.Errorf("refusal: %s %d %s %q, want RCPT 550 5.1.1", e.Command, e.Code, e.EnhancedCode, e.Message)
		}
		if !strings.Contains(e.Message, "User unknown") {
			t.Errorf("refusal message %q, want Postfix's \"User unknown ...\"", e.Message)
		}
	}

	t.Run("PartialDelivery", func(t *testing.T) {
		id, msg := newMessage(t, s, to, "partial delivery", "Only the known recipient gets this.")
		m := &tlsmail.Message{From: s.User, To: to, Body: bytes.NewReader(msg), PartialDelivery: true}
		sess, res, err := s.sendMessageRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, s.plain(t, s.ImplicitAddr), m)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if len(res.Recipients) != 2 || res.Recipients[0].Addr != known || res.Recipients[1].Addr != unknown {
			t.Fatalf("Result.Recipients = %+v, want %s then %s", res.Recipients, known, unknown)
		}
		if e := res.Recipients[0].Err; e != nil {
			t.Errorf("%s refused: %v", known, e)
		}
		if e := res.Recipients[1].Err; e == nil {
			t.Errorf("%s accepted", unknown)
		} else {
			t.Logf("%s: %d %s %s", unknown, e.Code, e.EnhancedCode, e.Message)
			checkRefusal(t, e)
		}
		if got := res.Accepted(); !slices.Equal(got, []string{known}) {
			t.Errorf("Accepted() = %q, want [%s]", got, known)
		}
		qid := sess.checkAccepted(t, "PLAIN", false)
		if sess.Stats["rcpt"] != "1/2" {
			t.Errorf("Postfix counted rcpt=%s, want 1/2", sess.Stats["rcpt"])
		}
		if res.Reply == nil || res.Reply.Code != 250 || !strings.Contains(res.Reply.Message, "queued as "+qid) {
			t.Errorf("Result.Reply = %+v, want 250 ... queued as %s", res.Reply, qid)
		} else {
			t.Logf("reply: %d %s %s", res.Reply.Code, res.Reply.EnhancedCode, res.Reply.Message)
		}
		// The refused recipient never entered the queue file, so the
		// Received header names the one recipient ("for <...>").
		if h := s.checkDelivered(t, known, id, msg, false); h.QueueID != qid {
			t.Errorf("stored message has queue id %s, the session queued %s", h.QueueID, qid)
		}
	})

	t.Run("AllOrNothing", func(t *testing.T) {
		before := s.counts(t)
		off := s.logOffset(t)
		id, msg := newMessage(t, s, to, "must not be sent", "nothing")
		m := &tlsmail.Message{From: s.User, To: to, Body: bytes.NewReader(msg)}
		sess, res, err := s.sendMessageRecorded(t, tlsmail.Dialer{}, s.ImplicitAddr, s.plain(t, s.ImplicitAddr), m)
		if err == nil {
			t.Fatal("Send without PartialDelivery succeeded with a refused recipient")
		}
		t.Logf("error: %v", err)
		var e *tlsmail.Error
		if !errors.As(err, &e) {
			t.Fatalf("errors.As(err, *tlsmail.Error) = false; err = %v", err)
		}
		checkRefusal(t, e)
		if res != nil {
			if res.Reply != nil {
				t.Errorf("Result.Reply = %+v, but no data should have been sent", res.Reply)
			}
			if got := fmt.Sprint(res.Accepted()); len(res.Recipients) == 2 && got != "["+known+"]" {
				t.Errorf("Accepted() = %s, want [%s] (what the server said, though nothing was sent)", got, known)
			}
		}
		if sess.Stats["auth"] != "1" || sess.Stats["rcpt"] != "1/2" {
			t.Errorf("Postfix's account of the session: %v, want auth=1 rcpt=1/2", sess.Stats)
		}
		sess.abandonedAfterData(t)
		s.noQueuedMessage(t, off, id)
		s.noDelivery(t, before, id)
	})
}

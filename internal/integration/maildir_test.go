package integration

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// How Postfix (3.7, virtual(8) into a Maildir) stores a message, found by
// hand on the test server and checked exactly by storedMessage:
//
//	Return-Path: <SENDER>\n
//	X-Original-To: RCPT\n
//	Delivered-To: RCPT\n
//	Received: from EHLO-NAME (localhost [127.0.0.1])\n
//	\tby mail.tlsmail.test (Postfix) with ESMTPSA id QUEUEID\n
//	\tfor <RCPT>; Mon, 23 Nov 2026 16:46:53 +0000 (UTC)\n
//	<the message exactly as the client meant it, with LF line ends>
//
// With more than one recipient in the transaction the Received header has
// no "for" clause: "...id QUEUEID;\n\tDATE\n". In DATE a day of the month
// below 10 is padded with a space, not a zero ("Tue,  1 Dec 2026"). The
// protocol is ESMTPSA ("S": TLS, "A": authenticated), or UTF8SMTPSA when
// MAIL FROM carried the SMTPUTF8 parameter. The dot-stuffing is undone, CRLF becomes LF, nothing
// else changes: Postfix adds no Date, Message-ID, From or To of its own
// (local_header_rewrite_clients is empty and the tests send them all), and
// it drops no header the tests send (its message_drop_headers removes only
// Bcc, Resent-Bcc, Content-Length and Return-Path).

// mailbox returns the Maildir of a recipient address.
func (s *server) mailbox(rcpt string) string {
	local, _, _ := strings.Cut(rcpt, "@")
	return filepath.Join(s.Maildir, local)
}

// mailCounts is the number of messages in every test Maildir (new and cur).
type mailCounts map[string]int

func (s *server) counts(t *testing.T) mailCounts {
	t.Helper()
	c := mailCounts{}
	for _, r := range append([]string{s.User}, s.Rcpts...) {
		n := 0
		for _, sub := range []string{"new", "cur"} {
			ents, err := os.ReadDir(filepath.Join(s.mailbox(r), sub))
			if err != nil {
				t.Fatalf("Maildir: %v", err)
			}
			n += len(ents)
		}
		c[r] = n
	}
	return c
}

// noDelivery fails the test if any Maildir gained a message since before,
// or if a message with msgID arrived anywhere. Callers first wait for
// Postfix to log the end of the session, after which a message it accepted
// would already be queued; the short wait covers queue-to-Maildir.
func (s *server) noDelivery(t *testing.T, before mailCounts, msgID string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	after := s.counts(t)
	for r, n := range after {
		if n != before[r] {
			t.Errorf("Maildir of %s went from %d to %d messages; nothing should have been delivered", r, before[r], n)
		}
	}
	for _, r := range append([]string{s.User}, s.Rcpts...) {
		if f, _ := s.findMessage(t, r, msgID); f != "" {
			t.Errorf("message %s was delivered to %s: %s", msgID, r, f)
		}
	}
}

// findMessage looks once through a recipient's new/ for the message with
// Message-ID <msgID> and returns its path and content.
func (s *server) findMessage(t *testing.T, rcpt, msgID string) (string, []byte) {
	t.Helper()
	dir := filepath.Join(s.mailbox(rcpt), "new")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("Maildir: %v", err)
	}
	needle := []byte("\nMessage-ID: <" + msgID + ">\n")
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		if !headerContains(t, path, needle) {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("Maildir: %v", err)
		}
		return path, b
	}
	return "", nil
}

// headerContains reports whether the first 64 KiB of the file contain
// needle; the tests' Message-ID headers are well within that.
func headerContains(t *testing.T, path string, needle []byte) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		if os.IsPermission(err) {
			t.Fatalf("cannot read delivered mail (%v): run the tests as root or as the user who ran start.sh with sudo", err)
		}
		t.Fatalf("Maildir: %v", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		t.Fatalf("Maildir: %v", err)
	}
	return bytes.Contains(b, needle)
}

// waitMessage waits (bounded) for the message with Message-ID <msgID> to
// arrive in rcpt's Maildir and returns its content as stored.
func (s *server) waitMessage(t *testing.T, rcpt, msgID string) []byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, b := s.findMessage(t, rcpt, msgID); b != nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("message <%s> did not arrive in %s/new within 30s", msgID, s.mailbox(rcpt))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// traceHeaders is what Postfix prepended to a stored message.
type traceHeaders struct {
	ReturnPath  string // the envelope sender
	OriginalTo  string // X-Original-To
	DeliveredTo string // Delivered-To
	Helo        string // the client's EHLO name
	Protocol    string // ESMTPSA or UTF8SMTPSA
	QueueID     string
}

var receivedRE = regexp.MustCompile(`^Received: from (\S+) \(\S+ \[127\.0\.0\.1\]\)\n` +
	`\tby ([^ ]+) \(Postfix\) with ([A-Z0-9]+) id ([0-9A-Za-z]+)(?:\n\tfor <([^>]+)>; |;\n\t)` +
	`[A-Z][a-z]{2}, (?: [0-9]|[0-9]{2}) [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4} \([A-Za-z0-9+-]+\)\n`)

// storedMessage splits a message as Postfix stored it into the headers
// Postfix prepended, checked line by line, and the rest, which must be the
// message as sent. multi says whether the transaction had more than one
// recipient (the Received header then has no "for" clause).
func (s *server) storedMessage(t *testing.T, stored []byte, from, rcpt string, multi bool) (traceHeaders, []byte) {
	t.Helper()
	var h traceHeaders
	rest := stored
	take := func(prefix string) string {
		t.Helper()
		line, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok || !bytes.HasPrefix(line, []byte(prefix)) {
			t.Fatalf("stored message: want a %q line next, have %q\nstored message starts:\n%s", prefix, line, head(stored))
		}
		rest = after
		return string(line[len(prefix):])
	}
	h.ReturnPath = take("Return-Path: ")
	h.OriginalTo = take("X-Original-To: ")
	h.DeliveredTo = take("Delivered-To: ")
	m := receivedRE.FindSubmatch(rest)
	if m == nil {
		t.Fatalf("stored message: the Received header is not in the expected form\nstored message starts:\n%s", head(stored))
	}
	rest = rest[len(m[0]):]
	h.Helo, h.Protocol, h.QueueID = string(m[1]), string(m[3]), string(m[4])

	if want := "<" + from + ">"; h.ReturnPath != want {
		t.Errorf("Return-Path: %q, want %q", h.ReturnPath, want)
	}
	if h.OriginalTo != rcpt || h.DeliveredTo != rcpt {
		t.Errorf("X-Original-To: %q, Delivered-To: %q, want both %q", h.OriginalTo, h.DeliveredTo, rcpt)
	}
	if by := string(m[2]); by != s.ServerName {
		t.Errorf("Received: by %q, want %q", by, s.ServerName)
	}
	switch forRcpt := string(m[5]); {
	case multi && forRcpt != "":
		t.Errorf("Received: has \"for <%s>\" with several recipients", forRcpt)
	case !multi && forRcpt != rcpt:
		t.Errorf("Received: for <%s>, want <%s>", forRcpt, rcpt)
	}
	// "S" means the message came over TLS, "A" that the client had
	// authenticated (Postfix's Received protocol names, RFC 3848).
	if h.Protocol != "ESMTPSA" && h.Protocol != "UTF8SMTPSA" {
		t.Errorf("Received: with %s, want ESMTPSA or UTF8SMTPSA (TLS and AUTH)", h.Protocol)
	}
	return h, rest
}

// checkDelivered waits for msg (as sent, with CRLF line ends) in rcpt's
// Maildir and compares it byte for byte, after exactly the prepended trace
// headers and with CRLF turned into LF. It returns the trace headers.
func (s *server) checkDelivered(t *testing.T, rcpt, msgID string, msg []byte, multi bool) traceHeaders {
	t.Helper()
	stored := s.waitMessage(t, rcpt, msgID)
	h, body := s.storedMessage(t, stored, s.User, rcpt, multi)
	want := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	if !bytes.Equal(body, want) {
		t.Errorf("message stored for %s differs from the one sent: %s", rcpt, firstDifference(body, want))
	}
	return h
}

// firstDifference describes where got first differs from want.
func firstDifference(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(i-60, 0)
	return fmt.Sprintf("%d bytes stored, %d expected; first difference at byte %d:\nstored:   %q\nexpected: %q",
		len(got), len(want), i, got[lo:min(i+60, len(got))], want[lo:min(i+60, len(want))])
}

// head returns the first lines of a stored message, for error messages.
func head(b []byte) string {
	if len(b) > 800 {
		b = b[:800]
	}
	return string(b)
}

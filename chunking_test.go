package tlsmail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tlsmail/tlsmail/internal/smtptest"
	"github.com/tlsmail/tlsmail/internal/wire"
)

// chunkingExts is smtptest's default list with CHUNKING.
var chunkingExts = append(slices.Clone(defaultExtensions), "CHUNKING")

// largeBody is a message of about n bytes whose lines need every kind of
// care: leading dots, bare LF, bare CR, and a "\r\n.\r\n" inside.
func largeBody(n int) string {
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nTo: b@example.net\r\nSubject: big\r\n\r\n")
	for i := 0; b.Len() < n; i++ {
		switch i % 7 {
		case 0:
			b.WriteString(".leading dot\r\n")
		case 1:
			b.WriteString("bare LF\n")
		case 2:
			b.WriteString("bare CR\r")
		case 3:
			b.WriteString("\r\n.\r\n")
		default:
			b.WriteString(strings.Repeat("x", 70) + "\r\n")
		}
	}
	return b.String()
}

// crlf is what both DATA and BDAT deliver: every line ending CRLF, the
// last line ended, no dot-stuffing left.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	s = strings.ReplaceAll(s, "\n", "\r\n")
	if !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s
}

// TestChunkingDeliversSameBytes sends one message over DATA and over BDAT
// and insists on the same delivered bytes, with BDAT in chunks of the
// documented size and no DATA command.
func TestChunkingDeliversSameBytes(t *testing.T) {
	body := largeBody(3*bdatPayload + 1000)
	want := crlf(body)
	for _, chunking := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunking=%v", chunking), func(t *testing.T) {
			opts := &smtptest.Options{}
			if chunking {
				opts.Extensions = chunkingExts
			}
			srv := smtptest.NewServer(t, opts)
			d := testDialer(srv, ImplicitTLS)
			// PartialDelivery, so that BDAT is used: an all-or-nothing
			// message that ends the session goes with DATA (see
			// TestChunkingRefusedRecipientNeverDelivers).
			m := &Message{From: "a@example.com", To: []string{"b@example.net", "c@example.net"}, Body: strings.NewReader(body), PartialDelivery: true}
			if _, err := d.Send(context.Background(), srv.ImplicitAddr, nil, m); err != nil {
				t.Fatal(err)
			}
			msgs := srv.Messages()
			if len(msgs) != 1 {
				t.Fatalf("%d messages delivered", len(msgs))
			}
			if got := string(msgs[0].Data); got != want {
				t.Fatalf("delivered %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
			var verbs []string
			for _, l := range transcript(t, srv) {
				verbs = append(verbs, strings.Fields(strings.TrimPrefix(l, "tls: "))[0])
			}
			if chunking {
				n := len(want)
				wantChunks := []int{bdatPayload, bdatPayload, bdatPayload, n - 3*bdatPayload}
				if !slices.Equal(msgs[0].Chunks, wantChunks) {
					t.Errorf("chunks %v, want %v", msgs[0].Chunks, wantChunks)
				}
				if want := []string{"EHLO", "MAIL", "RCPT", "RCPT", "BDAT", "BDAT", "BDAT", "BDAT", "QUIT"}; !slices.Equal(verbs, want) {
					t.Errorf("commands %q, want %q", verbs, want)
				}
			} else if want := []string{"EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"}; !slices.Equal(verbs, want) {
				t.Errorf("commands %q, want %q", verbs, want)
			}
		})
	}
}

func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestChunkingFrameSize pins bdatPayload to what the encoder does, so the
// test above cannot agree with a wrong constant.
func TestChunkingFrameSize(t *testing.T) {
	var b bytes.Buffer
	w := wire.NewChunkWriter(&b, bdatFrame)
	w.Write(bytes.Repeat([]byte("x"), bdatPayload))
	if got, want := b.String()[:len(fmt.Sprintf("BDAT %d\r\n", bdatPayload))], fmt.Sprintf("BDAT %d\r\n", bdatPayload); got != want || b.Len() != bdatFrame {
		t.Fatalf("first frame %q... of %d bytes; want %q of %d", got, b.Len(), want, bdatFrame)
	}
}

// TestChunkingRefusedRecipientNeverDelivers: under all-or-nothing, a
// refused recipient means no content is sent at all. A message that ends
// the session goes with DATA even though CHUNKING is offered (its 354
// checks that the RCPT replies were read in step), and the connection is
// closed after the 354, before any content.
func TestChunkingRefusedRecipientNeverDelivers(t *testing.T) {
	opts := refuse("bad@example.net")
	opts.Extensions = chunkingExts
	srv := smtptest.NewServer(t, opts)
	d := testDialer(srv, ImplicitTLS)
	m := &Message{From: "a@example.com", To: []string{"b@example.net", "bad@example.net"}, Body: strings.NewReader(testMsg)}
	_, err := d.Send(context.Background(), srv.ImplicitAddr, nil, m)
	var se *Error
	if !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("Send: %v; want the 550", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}
	lines := transcript(t, srv)
	if want := []string{"tls: EHLO localhost", "tls: MAIL FROM:<a@example.com> SIZE=" + fmt.Sprint(len(testMsg)), "tls: RCPT TO:<b@example.net>", "tls: RCPT TO:<bad@example.net>", "tls: DATA"}; !slices.Equal(lines, want) {
		t.Fatalf("server received %q; want %q (closed before any content)", lines, want)
	}
}

// TestChunkingRefusedAtLast: the server's refusal of the LAST chunk is
// the message's failure, and the client can go on to the next message.
func TestChunkingRefusedAtLast(t *testing.T) {
	first := true
	srv := smtptest.NewServer(t, &smtptest.Options{Extensions: chunkingExts, OnData: func(s *smtptest.Session, msg *smtptest.Message) bool {
		if first {
			first = false
			s.Reply("554 5.7.1 Message rejected as spam")
			return true
		}
		return false
	}})
	c, _ := pipeClient(t, srv)
	_, err := c.Send(context.Background(), pipeMsg("b@example.net"))
	var se *Error
	if !errors.As(err, &se) || se.Code != 554 {
		t.Fatalf("first Send: %v; want the 554", err)
	}
	if _, err := c.Send(context.Background(), pipeMsg("b@example.net")); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || string(msgs[0].Data) != testMsg {
		t.Fatalf("delivered %d messages", len(msgs))
	}
}

// TestChunkingGroups pins what goes out together with CHUNKING: a short
// message with one recipient in one group with its envelope; after a
// refusal, RSET before the Client's next use; a message larger than a
// chunk, or with several recipients, after the envelope's replies.
func TestChunkingGroups(t *testing.T) {
	opts := refuse("bad@example.net")
	opts.Extensions = chunkingExts
	srv := smtptest.NewServer(t, opts)
	c, w := pipeClient(t, srv)
	ctx := context.Background()
	bdat := fmt.Sprintf("BDAT %d LAST\r\n", len(testMsg)) + testMsg

	if _, err := c.Send(ctx, pipeMsg("b@example.net")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Send(ctx, pipeMsg("bad@example.net"))
	var se *Error
	if !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("Send to a refused recipient: %v", err)
	}
	if _, err := c.Send(ctx, pipeMsg("b@example.net", "c@example.net")); err != nil {
		t.Fatal(err)
	}
	big := largeBody(bdatPayload + 1)
	if _, err := c.Send(ctx, &Message{From: "a@example.com", To: []string{"b@example.net"}, Body: strings.NewReader(big)}); err != nil {
		t.Fatal(err)
	}
	bigMail := fmt.Sprintf("MAIL FROM:<a@example.com> SIZE=%d\r\n", len(crlf(big)))
	norm := crlf(big)
	wantGroups := []string{gEHLO,
		gMAIL + rcpts("b@example.net") + bdat,
		gMAIL + rcpts("bad@example.net") + bdat,
		"RSET\r\n",
		gMAIL + rcpts("b@example.net", "c@example.net"),
		bdat,
		bigMail + rcpts("b@example.net"),
		fmt.Sprintf("BDAT %d\r\n%sBDAT %d LAST\r\n%s", bdatPayload, norm[:bdatPayload], len(norm)-bdatPayload, norm[bdatPayload:]),
	}
	g := w.groups()
	if !slices.Equal(g, wantGroups) {
		short := func(x []string) []string {
			var out []string
			for _, s := range x {
				if len(s) > 200 {
					s = s[:100] + fmt.Sprintf("...(%d bytes)...", len(s)) + s[len(s)-60:]
				}
				out = append(out, s)
			}
			return out
		}
		t.Errorf("client wrote, between waits:\n\t%q\nwant:\n\t%q", short(g), short(wantGroups))
	}
	if n := len(srv.Messages()); n != 3 {
		t.Errorf("%d messages delivered, want 3", n)
	}
}

// TestChunkRefused: the server refuses the second of four chunks (RFC
// 3030 section 2: the transaction fails, later chunks get 503). The
// message fails with the refusal, is delivered to nobody, and the Client
// resets and sends the next message; for a small message, and for one
// large enough that the client reads the refusal while still sending.
func TestChunkRefused(t *testing.T) {
	for _, size := range []int{3*bdatPayload + 1000, 300 * bdatPayload} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var refused atomic.Bool
			srv := smtptest.NewServer(t, &smtptest.Options{Extensions: chunkingExts, ChunkReply: func(i int, n int64, last bool) string {
				if i == 1 && !refused.Load() {
					refused.Store(true)
					return "552 5.3.4 Message too big for system"
				}
				return ""
			}})
			c, _ := pipeClient(t, srv)
			big := largeBody(size)
			_, err := c.Send(context.Background(), &Message{From: "a@example.com", To: []string{"b@example.net"}, Body: strings.NewReader(big)})
			var se *Error
			if !errors.As(err, &se) || se.Code != 552 {
				t.Fatalf("Send: %v; want the 552", err)
			}
			if n := len(srv.Messages()); n != 0 {
				t.Fatalf("%d messages delivered after a refused chunk", n)
			}
			if _, err := c.Send(context.Background(), pipeMsg("b@example.net")); err != nil {
				t.Fatalf("next Send: %v", err)
			}
			if ms := srv.Messages(); len(ms) != 1 || string(ms[0].Data) != testMsg {
				t.Fatalf("delivered %d messages", len(ms))
			}
			var bdats, rsets int
			for _, l := range srv.Transcript() {
				switch {
				case strings.HasPrefix(l, "tls: BDAT"):
					bdats++
				case l == "tls: RSET":
					rsets++
				}
			}
			if rsets != 1 {
				t.Errorf("%d RSETs, want 1", rsets)
			}
			if size > 100*bdatPayload && bdats > 2+streamWindow+1 {
				t.Errorf("%d BDAT commands: the client went on long after the refusal", bdats)
			}
		})
	}
}

// TestClosing421IsNotUnknown: a 421 that refuses the only recipient
// means the message was not delivered, though its BDAT LAST had gone out
// with the envelope: the error is the 421, not ErrUnknownOutcome. In a
// batch, the messages whose content went out after it may have been
// taken by a server that does not close at once, and say so; none is
// reported accepted.
func TestClosing421IsNotUnknown(t *testing.T) {
	opts := &smtptest.Options{Extensions: chunkingExts, Handler: func(s *smtptest.Session, line string) bool {
		if line == "RCPT TO:<c@example.net>" {
			s.Reply("421 4.3.2 Service shutting down")
			s.Close()
			return true
		}
		return false
	}}
	srv := smtptest.NewServer(t, opts)
	c, w := pipeClient(t, srv)
	_, err := c.Send(context.Background(), pipeMsg("c@example.net"))
	var se *Error
	if !errors.As(err, &se) || se.Code != 421 || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Send: %v; want the 421, not an unknown outcome", err)
	}
	if g := w.groups(); len(g) < 2 || !strings.Contains(g[1], "BDAT") {
		t.Fatalf("BDAT did not ride with the envelope: %q", g)
	}

	srv = smtptest.NewServer(t, opts)
	c, _ = pipeClient(t, srv)
	msgs, _ := batchMsgs(4, func(i int) []string {
		if i == 2 {
			return []string{"c@example.net"}
		}
		return []string{"b@example.net"}
	})
	res, _ := c.SendBatch(context.Background(), msgs)
	for i, r := range res {
		switch {
		case i < 2 && r.Err != nil:
			t.Errorf("message %d: %v", i, r.Err)
		case i == 2 && (!errors.As(r.Err, &se) || se.Code != 421 || errors.Is(r.Err, ErrUnknownOutcome)):
			t.Errorf("message 2: %v; want the 421", r.Err)
		case i > 2 && r.Err == nil:
			t.Errorf("message %d reported accepted after the 421", i)
		}
	}
	if n := len(srv.Messages()); n != 2 {
		t.Errorf("%d messages delivered, want 2", n)
	}
}

package smtptest

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var chunkingExts = []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING"}

// startBDAT connects to the plaintext listener of srv, greets with EHLO
// and, if rcpt, opens a transaction with one recipient.
func startBDAT(t *testing.T, srv *Server, rcpt bool) *client {
	t.Helper()
	c := dialPlain(t, srv.StartTLSAddr)
	c.expect("220 mx.test ESMTP tlsmail-test")
	c.send("EHLO c")
	c.reply()
	if rcpt {
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
	}
	return c
}

func checkViolations(t *testing.T, srv *Server, want ...string) {
	t.Helper()
	if got := srv.PipeliningViolations(); !reflect.DeepEqual(got, want) {
		t.Fatalf("violations:\n got %q\nwant %q", got, want)
	}
}

func TestBDAT(t *testing.T) {
	t.Run("advertised", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: chunkingExts})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.cmd("EHLO c", "250-mx.test", "250-PIPELINING", "250-8BITMIME",
			"250-ENHANCEDSTATUSCODES", "250-CHUNKING", "250 STARTTLS")
	})

	t.Run("chunks", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: chunkingExts})
		c := startBDAT(t, srv, true)
		c.sendRaw("BDAT 5\r\nhello")
		c.expect("250 2.0.0 5 octets received")
		// The end-of-data sequence, a dot line and a command inside a
		// chunk are content; so are a bare LF, NUL and 8-bit bytes.
		chunk2 := "\r\n.\r\nQUIT\r\n..x\n\x00\xff"
		c.sendRaw("bdat 17\r\n" + chunk2)
		c.expect("250 2.0.0 17 octets received")
		c.sendRaw("BDAT 3 last\r\nend")
		c.expect("250 2.0.0 Ok: queued as 1")
		c.cmd("NOOP", "250 2.0.0 Ok")
		// The transaction is over.
		c.sendRaw("BDAT 1 LAST\r\nx")
		c.expect("503 5.5.1 Error: need MAIL and RCPT")
		c.cmd("QUIT", "221 2.0.0 Bye")
		waitIdle(t, srv)

		msgs := srv.Messages()
		if len(msgs) != 1 {
			t.Fatalf("%d messages", len(msgs))
		}
		m := msgs[0]
		want := "hello" + chunk2 + "end"
		if string(m.Data) != want || string(m.Raw) != want {
			t.Errorf("Data = %q, Raw = %q, want %q", m.Data, m.Raw, want)
		}
		if !reflect.DeepEqual(m.Chunks, []int{5, 17, 3}) {
			t.Errorf("Chunks = %v", m.Chunks)
		}
		if m.From != "a@example.org" || !reflect.DeepEqual(m.To, []string{"b@example.net"}) || m.QueueID != "1" {
			t.Errorf("message = %+v", m)
		}
		checkTranscript(t, srv,
			"plain: EHLO c", "plain: MAIL FROM:<a@example.org>", "plain: RCPT TO:<b@example.net>",
			"plain: BDAT 5", "plain: bdat 17", "plain: BDAT 3 last", "plain: NOOP",
			"plain: BDAT 1 LAST", "plain: QUIT")
		checkViolations(t, srv)
	})

	t.Run("pipelined", func(t *testing.T) {
		// RFC 3030 section 4.2: BDAT commands may be pipelined, the
		// whole transaction in one write.
		srv := NewServer(t, &Options{Extensions: chunkingExts})
		c := startBDAT(t, srv, false)
		c.sendRaw("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n" +
			"BDAT 4\r\nab\r\nBDAT 5 LAST\r\n.\r\n\r\nQUIT\r\n")
		c.expect("250 2.1.0 Ok")
		c.expect("250 2.1.5 Ok")
		c.expect("250 2.0.0 4 octets received")
		c.expect("250 2.0.0 Ok: queued as 1")
		c.expect("221 2.0.0 Bye")
		waitIdle(t, srv)
		msgs := srv.Messages()
		if len(msgs) != 1 || string(msgs[0].Data) != "ab\r\n.\r\n\r\n" {
			t.Fatalf("messages = %+v", msgs)
		}
		checkViolations(t, srv)
	})

	t.Run("zero LAST", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: chunkingExts})
		c := startBDAT(t, srv, true)
		c.send("BDAT 0 LAST")
		c.expect("250 2.0.0 Ok: queued as 1")
		// An empty LAST chunk after others ends the message too.
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		c.sendRaw("BDAT 3\r\nabc")
		c.expect("250 2.0.0 3 octets received")
		c.cmd("BDAT 0 LAST", "250 2.0.0 Ok: queued as 2")
		msgs := srv.Messages()
		if len(msgs) != 2 {
			t.Fatalf("%d messages", len(msgs))
		}
		if len(msgs[0].Data) != 0 || !reflect.DeepEqual(msgs[0].Chunks, []int{0}) {
			t.Errorf("first message: Data %q, Chunks %v", msgs[0].Data, msgs[0].Chunks)
		}
		if string(msgs[1].Data) != "abc" || !reflect.DeepEqual(msgs[1].Chunks, []int{3, 0}) {
			t.Errorf("second message: Data %q, Chunks %v", msgs[1].Data, msgs[1].Chunks)
		}
	})

	t.Run("DATA has no Chunks", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: chunkingExts})
		c := startBDAT(t, srv, true)
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw("x\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as 1")
		if m := srv.Messages()[0]; m.Chunks != nil {
			t.Errorf("Chunks = %v, want nil", m.Chunks)
		}
	})

	t.Run("without MAIL or RCPT", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: chunkingExts})
		c := startBDAT(t, srv, false)
		// The chunk looks like commands; it must be swallowed.
		c.sendRaw("BDAT 6\r\nNOOP\r\n")
		c.expect("503 5.5.1 Error: need MAIL and RCPT")
		c.cmd("NOOP", "250 2.0.0 Ok")
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
		c.sendRaw("BDAT 12 LAST\r\nRSET\r\nQUIT\r\n")
		c.expect("503 5.5.1 Error: need MAIL and RCPT")
		c.cmd("NOOP", "250 2.0.0 Ok")
		// The transaction is still open.
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		c.sendRaw("BDAT 2 LAST\r\nok")
		c.expect("250 2.0.0 Ok: queued as 1")
		if msgs := srv.Messages(); len(msgs) != 1 || string(msgs[0].Data) != "ok" {
			t.Fatalf("messages = %+v", msgs)
		}
	})

	t.Run("refused recipient", func(t *testing.T) {
		srv := NewServer(t, &Options{
			Extensions: chunkingExts,
			RcptReply:  func(string) string { return "550 5.1.1 no" },
		})
		c := startBDAT(t, srv, false)
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "550 5.1.1 no")
		c.sendRaw("BDAT 4 LAST\r\nabcd")
		c.expect("503 5.5.1 Error: need MAIL and RCPT")
		c.cmd("NOOP", "250 2.0.0 Ok")
	})

	t.Run("not advertised", func(t *testing.T) {
		srv := NewServer(t, nil)
		c := startBDAT(t, srv, true)
		c.send("BDAT 0 LAST")
		c.expect("502 5.5.1 BDAT not available")
		// Nothing is consumed after the command line.
		c.sendRaw("BDAT 4 LAST\r\nNOOP\r\n")
		c.expect("502 5.5.1 BDAT not available")
		c.expect("250 2.0.0 Ok")
	})

	for _, line := range []string{"BDAT", "BDAT x", "BDAT -1", "BDAT +1", "BDAT 1x LAST", "BDAT 0x10", "BDAT 99999999999999999999 LAST", "BDAT LAST"} {
		t.Run("malformed "+line, func(t *testing.T) {
			srv := NewServer(t, &Options{Extensions: chunkingExts})
			c := startBDAT(t, srv, true)
			c.sendRaw(line + "\r\nNOOP\r\n")
			c.expect("501 5.5.4 Syntax: BDAT size [LAST]")
			c.expectEOF()
			waitIdle(t, srv)
			if len(srv.Messages()) != 0 {
				t.Fatal("message recorded")
			}
		})
	}

	t.Run("bad LAST", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: chunkingExts})
		c := startBDAT(t, srv, true)
		c.sendRaw("BDAT 2\r\nab")
		c.expect("250 2.0.0 2 octets received")
		c.sendRaw("BDAT 6 MORE\r\nNOOP\r\n")
		c.expect("501 5.5.4 Syntax: BDAT size [LAST]")
		c.sendRaw("BDAT 1 LAST extra\r\nx")
		c.expect("501 5.5.4 Syntax: BDAT size [LAST]")
		// The refused chunk failed the transaction.
		c.sendRaw("BDAT 1 LAST\r\nx")
		c.expect("503 5.5.1 Error: need MAIL and RCPT")
		c.cmd("NOOP", "250 2.0.0 Ok")
		if len(srv.Messages()) != 0 {
			t.Fatal("message recorded")
		}
	})

	t.Run("DATA after BDAT", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: chunkingExts})
		c := startBDAT(t, srv, true)
		c.sendRaw("BDAT 2\r\nab")
		c.expect("250 2.0.0 2 octets received")
		c.cmd("DATA", "503 5.5.1 Error: DATA after BDAT")
		c.cmd("RSET", "250 2.0.0 Ok")
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw("cd\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as 1")
		if msgs := srv.Messages(); len(msgs) != 1 || string(msgs[0].Data) != "cd\r\n" {
			t.Fatalf("messages = %+v", msgs)
		}
	})

	t.Run("too big", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: chunkingExts, dataLimit: 10})
		c := startBDAT(t, srv, true)
		c.sendRaw("BDAT 6\r\n123456")
		c.expect("250 2.0.0 6 octets received")
		c.sendRaw("BDAT 6\r\n789012")
		c.expect("250 2.0.0 6 octets received")
		c.sendRaw("BDAT 3 LAST\r\nabc")
		c.expect("552 5.3.4 Error: message file too big")
		c.cmd("NOOP", "250 2.0.0 Ok")
		// Exactly at the limit is fine.
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		c.sendRaw("BDAT 10 LAST\r\n1234567890")
		c.expect("250 2.0.0 Ok: queued as 1")
		if msgs := srv.Messages(); len(msgs) != 1 || string(msgs[0].Data) != "1234567890" {
			t.Fatalf("messages = %+v", msgs)
		}
	})

	t.Run("Strict8Bit", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: chunkingExts, Strict8Bit: true})
		c := startBDAT(t, srv, true)
		c.sendRaw("BDAT 2 LAST\r\n\xc3\xa9")
		c.expect("554 5.6.1 8-bit data without BODY=8BITMIME")
		c.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		c.sendRaw("BDAT 2 LAST\r\n\xc3\xa9")
		c.expect("250 2.0.0 Ok: queued as 1")
	})

	t.Run("hooks", func(t *testing.T) {
		var mu sync.Mutex
		var lines []string
		var seen *Message
		srv := NewServer(t, &Options{
			Extensions: chunkingExts,
			Handler: func(s *Session, line string) bool {
				mu.Lock()
				lines = append(lines, line)
				mu.Unlock()
				if line == "BDAT 3 LAST" {
					// Taking over BDAT leaves the chunk to be
					// read as commands.
					s.Reply("421 4.3.0 hook says no")
					return true
				}
				return false
			},
			OnData: func(s *Session, msg *Message) bool {
				mu.Lock()
				seen = msg
				mu.Unlock()
				msg.Data = bytes.ToUpper(msg.Data)
				return false
			},
		})
		c := startBDAT(t, srv, true)
		c.sendRaw("BDAT 2\r\nab")
		c.expect("250 2.0.0 2 octets received")
		c.sendRaw("BDAT 1 LAST\r\nc")
		c.expect("250 2.0.0 Ok: queued as 1")
		c.sendRaw("BDAT 3 LAST\r\nxyz\r\n")
		c.expect("421 4.3.0 hook says no")
		c.expect("502 5.5.2 Error: command not recognized")
		mu.Lock()
		defer mu.Unlock()
		if seen == nil || !reflect.DeepEqual(seen.Chunks, []int{2, 1}) || seen.QueueID != "" {
			t.Errorf("OnData saw %+v", seen)
		}
		if m := srv.Messages()[0]; string(m.Data) != "ABC" {
			t.Errorf("recorded Data %q", m.Data)
		}
		want := []string{"EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>",
			"BDAT 2", "BDAT 1 LAST", "BDAT 3 LAST", "xyz"}
		if !reflect.DeepEqual(lines, want) {
			t.Errorf("Handler saw %q, want %q", lines, want)
		}
	})

	t.Run("TLS", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: chunkingExts})
		c := dialTLS(t, srv.ImplicitAddr, srv.ClientTLSConfig())
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.send("EHLO c")
		c.reply()
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		big := strings.Repeat("0123456789abcdef", 4096) // several TLS records
		c.sendRaw("BDAT 65536 LAST\r\n" + big)
		c.expect("250 2.0.0 Ok: queued as 1")
		m := srv.Messages()[0]
		if string(m.Data) != big || !m.TLS || !reflect.DeepEqual(m.Chunks, []int{65536}) {
			t.Errorf("message: TLS %v, Chunks %v, %d bytes", m.TLS, m.Chunks, len(m.Data))
		}
		checkTranscript(t, srv, "tls: EHLO c", "tls: MAIL FROM:<a@example.org>",
			"tls: RCPT TO:<b@example.net>", "tls: BDAT 65536 LAST")
	})
}

func TestPipeliningViolations(t *testing.T) {
	const (
		mail = "MAIL FROM:<a@example.org>\r\n"
		rcpt = "RCPT TO:<b@example.net>\r\n"
		body = "Subject: x\r\n\r\nbody\r\n.\r\n"
	)

	t.Run("DATA before 354", func(t *testing.T) {
		srv := NewServer(t, &Options{AllowPipeliningViolations: true})
		c := startBDAT(t, srv, false)
		c.sendRaw(mail + rcpt + "DATA\r\n" + body)
		c.expect("250 2.1.0 Ok")
		c.expect("250 2.1.5 Ok")
		c.expect("354 End data with <CR><LF>.<CR><LF>")
		c.expect("250 2.0.0 Ok: queued as 1")
		checkViolations(t, srv, "DATA: 23 bytes sent before the 354 reply")
		srv.Reset()
		checkViolations(t, srv)
	})

	t.Run("well-behaved pipelining", func(t *testing.T) {
		srv := NewServer(t, &Options{AllowPipeliningViolations: true})
		c := startBDAT(t, srv, false)
		c.sendRaw(mail + rcpt + "DATA\r\n")
		c.expect("250 2.1.0 Ok")
		c.expect("250 2.1.5 Ok")
		c.expect("354 End data with <CR><LF>.<CR><LF>")
		// QUIT may ride with the end of data.
		c.sendRaw(body + "QUIT\r\n")
		c.expect("250 2.0.0 Ok: queued as 1")
		c.expect("221 2.0.0 Bye")
		waitIdle(t, srv)
		checkViolations(t, srv)
	})

	t.Run("group enders", func(t *testing.T) {
		srv := NewServer(t, &Options{AuthBeforeTLS: true, AllowPipeliningViolations: true})
		c := dialPlain(t, srv.StartTLSAddr)
		c.expect("220 mx.test ESMTP tlsmail-test")
		c.sendRaw("EHLO c\r\nNOOP\r\nRSET\r\n")
		c.reply()
		c.expect("250 2.0.0 Ok")
		c.expect("250 2.0.0 Ok")
		c.sendRaw("AUTH LOGIN\r\n" + b64("user") + "\r\n")
		c.expect("334 VXNlcm5hbWU6")
		c.expect("334 UGFzc3dvcmQ6")
		c.sendRaw(b64("pass") + "\r\nNOOP\r\n")
		c.expect("235 2.7.0 Authentication successful")
		c.expect("250 2.0.0 Ok")
		checkViolations(t, srv,
			"EHLO: 12 bytes sent before the reply",
			"NOOP: 6 bytes sent before the reply",
			"AUTH: 10 bytes sent before the reply",
			"AUTH response: 6 bytes sent before the reply",
		)
	})

	t.Run("no PIPELINING", func(t *testing.T) {
		srv := NewServer(t, &Options{Extensions: []string{"8BITMIME", "CHUNKING"}, AllowPipeliningViolations: true})
		c := startBDAT(t, srv, false)
		c.sendRaw(mail + rcpt)
		c.expect("250 2.1.0 Ok")
		c.expect("250 2.1.5 Ok")
		checkViolations(t, srv, "MAIL: 25 bytes sent before the reply (PIPELINING not advertised)")
		srv.Reset()

		// Lock-step is fine, BDAT chunks included.
		c.sendRaw("BDAT 6\r\nab\r\n\r\n")
		c.expect("250 2.0.0 6 octets received")
		c.sendRaw("BDAT 1 LAST\r\nc")
		c.expect("250 2.0.0 Ok: queued as 1")
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw(body)
		c.expect("250 2.0.0 Ok: queued as 2")
		checkViolations(t, srv)

		// But not a command sent with a chunk or the end of data.
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		c.sendRaw("BDAT 1 LAST\r\nxNOOP\r\n")
		c.expect("250 2.0.0 Ok: queued as 3")
		c.expect("250 2.0.0 Ok")
		c.cmd("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<b@example.net>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.sendRaw(body + "QUIT\r\n")
		c.expect("250 2.0.0 Ok: queued as 4")
		c.expect("221 2.0.0 Bye")
		waitIdle(t, srv)
		checkViolations(t, srv,
			"BDAT: 6 bytes sent before the reply (PIPELINING not advertised)",
			"end of data: 6 bytes sent before the reply (PIPELINING not advertised)",
		)
	})
}

// fakeTB records what NewServer's cleanup reports.
type fakeTB struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Errorf(format string, args ...any) {
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

// TestNewServerFailsOnViolations: a test using NewServer fails when the
// client broke the pipelining rules, unless the test allows it.
func TestNewServerFailsOnViolations(t *testing.T) {
	for _, allow := range []bool{false, true} {
		f := &fakeTB{TB: t}
		srv := NewServer(f, &Options{AllowPipeliningViolations: allow})
		c := startBDAT(t, srv, false)
		c.sendRaw("NOOP\r\nNOOP\r\n")
		c.reply()
		c.reply()
		c.raw.Close()
		srv.WaitIdle(5 * time.Second)
		for _, fn := range f.cleanups {
			fn()
		}
		if got := len(f.errors); got != map[bool]int{false: 1, true: 0}[allow] {
			t.Errorf("allow=%v: %d errors: %q", allow, got, f.errors)
		}
	}
}

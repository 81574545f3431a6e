package tlsmail

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
	"github.com/tlsmail/tlsmail/internal/wire"
)

// benchMessage returns a message of about n bytes with 76-byte lines, some
// starting with a dot.
func benchMessage(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nTo: b@example.com\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("x", 74) + "\r\n"
	for i := 0; b.Len() < n; i++ {
		if i%10 == 0 {
			b.WriteString(".")
			b.WriteString(line[1:])
		} else {
			b.WriteString(line)
		}
	}
	return b.Bytes()
}

// BenchmarkDataEncoding compares the cost of turning a message into DATA
// content: tlsmail's DotWriter (which also normalises bare CR and LF)
// against the textproto DotWriter net/smtp uses, in the same run.
// time-vs-net/smtp is tlsmail's time over net/smtp's: below 1 is faster.
func BenchmarkDataEncoding(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		msg := benchMessage(size)
		b.Run(byteSize(size), func(b *testing.B) {
			var ours, theirs time.Duration
			n := 0
			for b.Loop() {
				n++
				start := time.Now()
				w := wire.NewDotWriter(io.Discard)
				w.Write(msg)
				w.Close()
				ours += time.Since(start)

				start = time.Now()
				tw := textproto.NewWriter(bufio.NewWriter(io.Discard)).DotWriter()
				tw.Write(msg)
				tw.Close()
				theirs += time.Since(start)
			}
			reportPair(b, n*len(msg), ours, theirs)
		})
	}
}

// reportPair reports each side's throughput and the ratio of their times.
// ns/op covers both sides together.
func reportPair(b *testing.B, bytes int, ours, theirs time.Duration) {
	b.ReportMetric(float64(bytes)/ours.Seconds()/1e6, "tlsmail-MB/s")
	b.ReportMetric(float64(bytes)/theirs.Seconds()/1e6, "net/smtp-MB/s")
	b.ReportMetric(float64(ours)/float64(theirs), "time-vs-net/smtp")
}

// BenchmarkSendMail sends one message per iteration through a fresh
// implicit-TLS session to the loopback test server, with tlsmail and with
// net/smtp over a tls.Conn, reporting round trips, throughput and the time
// ratio of the two in the same run.
func BenchmarkSendMail(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		msg := benchMessage(size)
		b.Run(byteSize(size), func(b *testing.B) {
			srv := smtptest.NewServer(b, nil)
			d := &Dialer{TLSConfig: srv.ClientTLSConfig()}
			cfg := srv.ClientTLSConfig()
			cfg.ServerName = "127.0.0.1"
			to := []string{"b@example.com"}
			var ours, theirs time.Duration
			var n int
			for b.Loop() {
				srv.Reset()
				start := time.Now()
				if err := d.SendMail(srv.ImplicitAddr, PlainAuth("", "user", "pass", "127.0.0.1"), "a@example.com", to, msg); err != nil {
					b.Fatal(err)
				}
				ours += time.Since(start)
				srv.WaitIdle(5 * time.Second)
				rt := len(srv.Transcript())

				start = time.Now()
				if err := netSMTPSend(srv.ImplicitAddr, cfg, msg); err != nil {
					b.Fatal(err)
				}
				theirs += time.Since(start)
				n++
				if n == 1 {
					// Each command waits for its reply; the end of data
					// is one more wait.
					b.ReportMetric(float64(rt+1), "roundtrips/op")
				}
			}
			reportPair(b, n*len(msg), ours, theirs)
		})
	}
}

// netSMTPSend is the net/smtp way of doing what SendMail does over
// implicit TLS.
func netSMTPSend(addr string, cfg *tls.Config, msg []byte) error {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(smtp.PlainAuth("", "user", "pass", "127.0.0.1")); err != nil {
		return err
	}
	if err := c.Mail("a@example.com"); err != nil {
		return err
	}
	if err := c.Rcpt("b@example.com"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func byteSize(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

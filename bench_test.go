package tlsmail

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/smtp"
	"net/textproto"
	"runtime"
	"slices"
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

// netSMTPSession dials addr over implicit TLS with net/smtp and
// authenticates as the test server's user.
func netSMTPSession(b *testing.B, addr string, cfg *tls.Config) *smtp.Client {
	b.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	sc, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	if err := sc.Auth(smtp.PlainAuth("", "user", "pass", "127.0.0.1")); err != nil {
		b.Fatal(err)
	}
	return sc
}

// netSMTPMessages sends n messages with net/smtp on one authenticated
// session through addr, checks that srv got them, and returns the time
// the messages took (connecting, AUTH and QUIT not counted).
func netSMTPMessages(b *testing.B, srv *smtptest.Server, addr string, cfg *tls.Config, to []string, msg []byte, n int) time.Duration {
	b.Helper()
	srv.Reset()
	sc := netSMTPSession(b, addr, cfg)
	start := time.Now()
	for range n {
		if err := netSMTPTx(sc, to, msg); err != nil {
			b.Fatal(err)
		}
	}
	took := time.Since(start)
	sc.Quit()
	checkDelivered(b, srv, to, msg, n)
	return took
}

// netSMTPSend is the net/smtp way of doing what SendMail does over
// implicit TLS: tls.Dial, then one command and one wait at a time. a may
// be nil.
func netSMTPSend(addr string, cfg *tls.Config, a smtp.Auth, to []string, msg []byte) error {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		return err
	}
	defer c.Close()
	if a != nil {
		if err := c.Auth(a); err != nil {
			return err
		}
	}
	if err := netSMTPTx(c, to, msg); err != nil {
		return err
	}
	return c.Quit()
}

// netSMTPTx is one net/smtp mail transaction on an open session.
func netSMTPTx(c *smtp.Client, to []string, msg []byte) error {
	if err := c.Mail("a@example.com"); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Close()
}

func byteSize(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// BenchmarkSendMail sends one message per iteration through a fresh
// implicit-TLS session to the in-process test server on loopback, without
// added latency, with tlsmail and with net/smtp over a tls.Conn, and
// reports each side's throughput and the time ratio of the two in the
// same run. For round trips see BenchmarkRoundTrips.
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
				checkDelivered(b, srv, to, msg, 1)

				srv.Reset()
				start = time.Now()
				if err := netSMTPSend(srv.ImplicitAddr, cfg, smtp.PlainAuth("", "user", "pass", "127.0.0.1"), to, msg); err != nil {
					b.Fatal(err)
				}
				theirs += time.Since(start)
				checkDelivered(b, srv, to, msg, 1)
				n++
			}
			reportPair(b, n*len(msg), ours, theirs)
		})
	}
}

// benchExtensions is what the in-process server advertises in the latency
// benchmarks: PIPELINING, and CHUNKING in the "chunking" runs.
var benchExtensions = []string{"PIPELINING", "8BITMIME", "SIZE 67108864", "ENHANCEDSTATUSCODES"}

// eachServer runs f as two sub-benchmarks: against a server that offers
// PIPELINING ("pipelining") and one that also offers CHUNKING
// ("chunking"), as Postfix, Gmail and Microsoft 365 do.
func eachServer(b *testing.B, f func(b *testing.B, srv *smtptest.Server)) {
	for _, kind := range []string{"pipelining", "chunking"} {
		b.Run(kind, func(b *testing.B) {
			exts := benchExtensions
			if kind == "chunking" {
				exts = append(slices.Clone(exts), "CHUNKING")
			}
			f(b, smtptest.NewServer(b, &smtptest.Options{Extensions: exts}))
		})
	}
}

// recipients returns n distinct recipient addresses.
func recipients(n int) []string {
	to := make([]string, n)
	for i := range to {
		to[i] = fmt.Sprintf("rcpt%d@example.com", i)
	}
	return to
}

// checkDelivered fails b unless srv holds exactly n messages, each for
// to and with content msg byte for byte, so that no benchmark can report
// a figure for mail that was not delivered.
func checkDelivered(b *testing.B, srv *smtptest.Server, to []string, msg []byte, n int) {
	b.Helper()
	got := srv.Messages()
	if len(got) != n {
		b.Fatalf("server holds %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if !bytes.Equal(m.Data, msg) {
			b.Fatalf("message %d: server received %d bytes that differ from the %d sent", i, len(m.Data), len(msg))
		}
		if !slices.Equal(m.To, to) {
			b.Fatalf("message %d: recipients %q, want %q", i, m.To, to)
		}
	}
}

// reportRT reports each side's round trips per unit, unit being "op" or
// "msg", and the ratio of tlsmail's to net/smtp's (below 1: fewer).
func reportRT(b *testing.B, unit string, ours, theirs float64) {
	b.ReportMetric(ours, "tlsmail-RT/"+unit)
	b.ReportMetric(theirs, "net/smtp-RT/"+unit)
	b.ReportMetric(ours/theirs, "RT-vs-net/smtp")
}

// BenchmarkRoundTrips measures the round trips of one SendMail — connect,
// TLS, greeting, EHLO, AUTH PLAIN, one message, QUIT — through a loopback
// proxy that adds TLSMAIL_BENCH_RTT (default 20ms) of latency (see
// latencyProxy), for implicit TLS and STARTTLS with 1 and 5 recipients,
// against a server that offers PIPELINING. tlsmail (Dialer.SendMail) and
// net/smtp (tls.Dial and smtp.NewClient for implicit TLS, smtp.SendMail
// for STARTTLS) run in the same iterations against the same server.
//
// tlsmail-RT/op and net/smtp-RT/op are the mean elapsed time over the
// RTT: round trips, plus the loopback's and the CPU's share, about 10ms
// per session here (half a round trip at 20ms; TLSMAIL_BENCH_RTT=100ms
// gives figures within 0.3 of whole numbers).
// Expected: tlsmail 7 (implicit: TCP, TLS 1.3, greeting, EHLO, AUTH,
// MAIL+RCPT...+DATA, content+QUIT) and 9 (STARTTLS: plus STARTTLS and the
// second EHLO, the greeting coming before TLS) whatever the number of
// recipients; net/smtp 10 and 14 (implicit), 12 and 16 (STARTTLS). Every
// message is checked byte for byte at the server.
func BenchmarkRoundTrips(b *testing.B) {
	rtt := benchRTT(b)
	msg := benchMessage(1 << 10)
	eachServer(b, func(b *testing.B, srv *smtptest.Server) {
		for _, tc := range []struct {
			name   string
			mode   Mode
			target string
		}{
			{"implicit", ImplicitTLS, srv.ImplicitAddr},
			{"starttls", STARTTLS, srv.StartTLSAddr},
		} {
			proxy := newLatencyProxy(b, tc.target, rtt)
			for _, n := range []int{1, 5} {
				to := recipients(n)
				b.Run(fmt.Sprintf("%s/%drcpt", tc.name, n), func(b *testing.B) {
					d := &Dialer{Mode: tc.mode, TLSConfig: srv.ClientTLSConfig()}
					cfg := srv.ClientTLSConfig()
					cfg.ServerName = "127.0.0.1"
					var ours, theirs time.Duration
					ops := 0
					for b.Loop() {
						srv.Reset()
						start := time.Now()
						if err := d.SendMail(proxy.Addr, PlainAuth("", "user", "pass", "127.0.0.1"), "a@example.com", to, msg); err != nil {
							b.Fatal(err)
						}
						ours += time.Since(start)
						checkDelivered(b, srv, to, msg, 1)

						srv.Reset()
						auth := smtp.PlainAuth("", "user", "pass", "127.0.0.1")
						start = time.Now()
						var err error
						if tc.mode == ImplicitTLS {
							err = netSMTPSend(proxy.Addr, cfg, auth, to, msg)
						} else {
							// The real thing: STARTTLS against the system
							// roots, which TestMain points at the test CA.
							err = smtp.SendMail(proxy.Addr, auth, "a@example.com", to, msg)
						}
						if err != nil {
							b.Fatal(err)
						}
						theirs += time.Since(start)
						checkDelivered(b, srv, to, msg, 1)
						ops++
					}
					reportRT(b, "op", rts(ours, rtt)/float64(ops), rts(theirs, rtt)/float64(ops))
				})
			}
		}
	})
}

// BenchmarkReuse measures the round trips per message on a session that
// stays open: an authenticated implicit-TLS Client sending 10 messages
// with Client.Send, against net/smtp sending 10 with Mail, Rcpt and Data
// on one smtp.Client, through the latency proxy (see BenchmarkRoundTrips).
// Connecting, authenticating and QUIT are not counted. Expected with
// PIPELINING: tlsmail 2 per message with one recipient (MAIL+RCPT+DATA,
// content) and 3 with five (an all-or-nothing message waits for its RCPT
// replies before DATA); net/smtp 4 and 8.
func BenchmarkReuse(b *testing.B) {
	const perOp = 10
	rtt := benchRTT(b)
	msg := benchMessage(1 << 10)
	eachServer(b, func(b *testing.B, srv *smtptest.Server) {
		proxy := newLatencyProxy(b, srv.ImplicitAddr, rtt)
		for _, n := range []int{1, 5} {
			to := recipients(n)
			b.Run(fmt.Sprintf("%drcpt", n), func(b *testing.B) {
				d := &Dialer{TLSConfig: srv.ClientTLSConfig()}
				cfg := srv.ClientTLSConfig()
				cfg.ServerName = "127.0.0.1"
				ctx := context.Background()
				var ours, theirs time.Duration
				msgs := 0
				for b.Loop() {
					srv.Reset()
					c, err := d.Dial(proxy.Addr)
					if err != nil {
						b.Fatal(err)
					}
					if err := c.Auth(PlainAuth("", "user", "pass", "127.0.0.1")); err != nil {
						b.Fatal(err)
					}
					start := time.Now()
					for range perOp {
						if _, err := c.Send(ctx, &Message{From: "a@example.com", To: to, Body: bytes.NewReader(msg)}); err != nil {
							b.Fatal(err)
						}
					}
					ours += time.Since(start)
					c.Quit()
					checkDelivered(b, srv, to, msg, perOp)

					theirs += netSMTPMessages(b, srv, proxy.Addr, cfg, to, msg, perOp)
					msgs += perOp
				}
				reportRT(b, "msg", rts(ours, rtt)/float64(msgs), rts(theirs, rtt)/float64(msgs))
			})
		}
	})
}

// BenchmarkBatch measures the round trips per message of Client.SendBatch
// sending 100 one-recipient messages on an authenticated implicit-TLS
// session through the latency proxy (see BenchmarkRoundTrips), beside
// net/smtp sending 20 on one smtp.Client (its cost per message is the
// same for every message, so fewer keep the run short). Connecting,
// authenticating and QUIT are not counted. Every result must be a
// success and the server must hold every message, byte for byte.
//
// Against the server with PIPELINING only, each message costs tlsmail
// about one round trip (its MAIL, RCPT and DATA ride with the previous
// message's end of data, DATA waiting for its 354); with CHUNKING (RFC
// 3030) the messages stream without waiting, under 0.1 round trip each.
func BenchmarkBatch(b *testing.B) {
	const ourN, theirN = 100, 20
	rtt := benchRTT(b)
	msg := benchMessage(1 << 10)
	to := []string{"b@example.com"}
	eachServer(b, func(b *testing.B, srv *smtptest.Server) {
		proxy := newLatencyProxy(b, srv.ImplicitAddr, rtt)
		d := &Dialer{TLSConfig: srv.ClientTLSConfig()}
		cfg := srv.ClientTLSConfig()
		cfg.ServerName = "127.0.0.1"
		ctx := context.Background()
		var ours, theirs time.Duration
		var oursN, theirsN int
		for b.Loop() {
			srv.Reset()
			batch := make([]*Message, ourN)
			for i := range batch {
				batch[i] = &Message{From: "a@example.com", To: to, Body: bytes.NewReader(msg)}
			}
			c, err := d.Dial(proxy.Addr)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Auth(PlainAuth("", "user", "pass", "127.0.0.1")); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			res, err := c.SendBatch(ctx, batch)
			ours += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			for i, r := range res {
				if r.Err != nil || r.Result == nil || r.Result.Reply == nil || r.Result.Reply.Code != 250 {
					b.Fatalf("message %d: %+v", i, r)
				}
			}
			c.Quit()
			checkDelivered(b, srv, to, msg, ourN)
			oursN += ourN

			theirs += netSMTPMessages(b, srv, proxy.Addr, cfg, to, msg, theirN)
			theirsN += theirN
		}
		reportRT(b, "msg", rts(ours, rtt)/float64(oursN), rts(theirs, rtt)/float64(theirsN))
	})
}

// BenchmarkLargeMessage measures throughput and client CPU for a 50 MiB
// message over implicit TLS on loopback, without added latency, to the
// lean sink subprocess (see runBenchSink), so that the server is not the
// bottleneck and this process's CPU time (getrusage) is the client's
// alone. Each iteration sends the message with tlsmail (Dialer.SendMail),
// with tlsmail to a port that also offers CHUNKING (BDAT instead of DATA),
// with net/smtp (tls.Dial, smtp.NewClient, Mail, Rcpt, Data) and, as the
// baseline, writes the same bytes on a raw tls.Conn to a sink that reads
// to the end and answers one byte. Each side is timed from dial to the
// final reply.
//
// Reported: MB/s (1e6 bytes of message per second) per side, each side's
// throughput over raw TLS's (tlsmail-throughput-vs-raw; target at least
// 0.6), and each side's CPU time over raw TLS's (tlsmail-CPU-vs-raw;
// target at most 1.5), with the CPU milliseconds per message.
func BenchmarkLargeMessage(b *testing.B) {
	msg := benchMessage(50 << 20)
	sink := startBenchSink(b)
	d := &Dialer{TLSConfig: sink.TLSConfig}
	to := []string{"b@example.com"}
	var t, cpu [4]time.Duration // tlsmail DATA, net/smtp, raw, tlsmail BDAT
	measure := func(i int, f func() error) {
		// Why: garbage left by the previous side (net/smtp's copies
		// above all) would otherwise be collected on this one's time.
		runtime.GC()
		c0 := cpuTime()
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		t[i] += time.Since(start)
		cpu[i] += cpuTime() - c0
	}
	n := 0
	for b.Loop() {
		measure(0, func() error {
			return d.SendMail(sink.SMTPAddr, nil, "a@example.com", to, msg)
		})
		measure(3, func() error {
			return d.SendMail(sink.ChunkAddr, nil, "a@example.com", to, msg)
		})
		measure(1, func() error {
			return netSMTPSend(sink.SMTPAddr, sink.TLSConfig, nil, to, msg)
		})
		measure(2, func() error { return rawTLSSend(sink.RawAddr, sink.TLSConfig, msg) })
		n++
	}
	mbps := func(d time.Duration) float64 { return float64(n*len(msg)) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(t[0]), "tlsmail-MB/s")
	b.ReportMetric(mbps(t[3]), "tlsmail-BDAT-MB/s")
	b.ReportMetric(mbps(t[1]), "net/smtp-MB/s")
	b.ReportMetric(mbps(t[2]), "raw-tls-MB/s")
	b.ReportMetric(float64(t[2])/float64(t[0]), "tlsmail-throughput-vs-raw")
	b.ReportMetric(float64(t[2])/float64(t[3]), "tlsmail-BDAT-throughput-vs-raw")
	b.ReportMetric(float64(t[2])/float64(t[1]), "net/smtp-throughput-vs-raw")
	if cpu[2] > 0 {
		ms := func(d time.Duration) float64 { return float64(d) / float64(n) / 1e6 }
		b.ReportMetric(ms(cpu[0]), "tlsmail-CPU-ms/op")
		b.ReportMetric(ms(cpu[3]), "tlsmail-BDAT-CPU-ms/op")
		b.ReportMetric(ms(cpu[1]), "net/smtp-CPU-ms/op")
		b.ReportMetric(ms(cpu[2]), "raw-tls-CPU-ms/op")
		b.ReportMetric(float64(cpu[0])/float64(cpu[2]), "tlsmail-CPU-vs-raw")
		b.ReportMetric(float64(cpu[3])/float64(cpu[2]), "tlsmail-BDAT-CPU-vs-raw")
		b.ReportMetric(float64(cpu[1])/float64(cpu[2]), "net/smtp-CPU-vs-raw")
	}
}

// rawTLSSend writes msg on a new TLS connection to the sink's raw port,
// closes its writing side and waits for the sink's one-byte answer.
func rawTLSSend(addr string, cfg *tls.Config, msg []byte) error {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	if err := conn.CloseWrite(); err != nil {
		return err
	}
	var ack [1]byte
	_, err = io.ReadFull(conn, ack[:])
	return err
}

// BenchmarkAllocs measures the allocations of one SendMail of a 1 KiB
// message over implicit TLS, without authentication, to the lean sink
// subprocess, so that every allocation counted is the client's. The
// tlsmail and net-smtp sub-benchmarks report allocs/op and B/op for one
// side each (b.ReportAllocs); compare runs both in the same iterations
// and reports each side's mallocs and bytes per send from
// runtime.MemStats, and their ratio (below 1: fewer). tlsmail's Dialer
// resumes TLS sessions, which spares it the certificate verification;
// net/smtp, given a plain tls.Config, does a full handshake each time.
func BenchmarkAllocs(b *testing.B) {
	msg := benchMessage(1 << 10)
	sink := startBenchSink(b)
	to := []string{"b@example.com"}
	d := &Dialer{TLSConfig: sink.TLSConfig}
	ours := func() error { return d.SendMail(sink.SMTPAddr, nil, "a@example.com", to, msg) }
	theirs := func() error { return netSMTPSend(sink.SMTPAddr, sink.TLSConfig, nil, to, msg) }
	for _, side := range []struct {
		name string
		f    func() error
	}{{"tlsmail", ours}, {"net-smtp", theirs}} {
		b.Run(side.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := side.f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("compare", func(b *testing.B) {
		var mallocs, bytes [2]uint64
		var ms runtime.MemStats
		n := 0
		for b.Loop() {
			for i, f := range []func() error{ours, theirs} {
				runtime.ReadMemStats(&ms)
				m0, b0 := ms.Mallocs, ms.TotalAlloc
				if err := f(); err != nil {
					b.Fatal(err)
				}
				runtime.ReadMemStats(&ms)
				mallocs[i] += ms.Mallocs - m0
				bytes[i] += ms.TotalAlloc - b0
			}
			n++
		}
		b.ReportMetric(float64(mallocs[0])/float64(n), "tlsmail-allocs/op")
		b.ReportMetric(float64(mallocs[1])/float64(n), "net/smtp-allocs/op")
		b.ReportMetric(float64(bytes[0])/float64(n), "tlsmail-B/op")
		b.ReportMetric(float64(bytes[1])/float64(n), "net/smtp-B/op")
		b.ReportMetric(float64(mallocs[0])/float64(mallocs[1]), "allocs-vs-net/smtp")
	})
}

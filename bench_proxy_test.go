package tlsmail

// Benchmark infrastructure: a latency-injecting loopback proxy, and a lean
// SMTP and raw-TLS sink that runs in a subprocess so that the benchmark
// process's CPU time and allocations are the client's alone.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchRTT is the round-trip time the latency proxy simulates: the
// TLSMAIL_BENCH_RTT environment variable (a time.ParseDuration value),
// 20ms by default.
func benchRTT(b *testing.B) time.Duration {
	s := os.Getenv("TLSMAIL_BENCH_RTT")
	if s == "" {
		return 20 * time.Millisecond
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		b.Fatalf("TLSMAIL_BENCH_RTT=%q: want a positive duration", s)
	}
	return d
}

// latencyProxy is a loopback TCP proxy that adds latency: every chunk read
// from one side is written to the other RTT/2 after it was read, in order.
// Each direction has a reader goroutine that stamps chunks with their
// delivery time and a writer goroutine that waits for it, so the delay is
// latency, not a per-chunk stall: a stream of chunks still flows at the
// loopback's bandwidth, RTT/2 late.
//
// The TCP handshake, instant on loopback, is made to cost one round trip
// as on a real network, where the client's first bytes leave after the
// SYN-ACK (1 RTT) and the server accepts when the ACK arrives (1.5 RTT).
// The proxy therefore delivers nothing from the client before RTT/2 after
// the client could have sent it at accept+RTT (accept+1.5 RTT at the
// server), and nothing from the server before accept+2 RTT at the client.
// So a server-first greeting reaches the client at 2 RTT (TCP 1 + greeting
// 1), and a TLS ClientHello's answer at 2 RTT (TCP 1 + TLS 1), as over a
// real link. A client's operation then costs elapsed/RTT round trips, give
// or take the loopback's own time, which is tiny next to an RTT of
// milliseconds.
type latencyProxy struct {
	Addr   string
	target string
	rtt    time.Duration
	ln     net.Listener
	wg     sync.WaitGroup
}

// newLatencyProxy starts a proxy to target on 127.0.0.1:0, closed by
// b.Cleanup.
func newLatencyProxy(b *testing.B, target string, rtt time.Duration) *latencyProxy {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &latencyProxy{Addr: ln.Addr().String(), target: target, rtt: rtt, ln: ln}
	p.wg.Add(1)
	go p.accept()
	b.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *latencyProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		t0 := time.Now()
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.wg.Add(2)
		var once sync.WaitGroup
		once.Add(2)
		go func() { defer p.wg.Done(); defer once.Done(); p.pipe(s, c, t0.Add(p.rtt)) }()
		go func() { defer p.wg.Done(); defer once.Done(); p.pipe(c, s, t0.Add(p.rtt+p.rtt/2)) }()
		go func() { once.Wait(); c.Close(); s.Close() }()
	}
}

type chunk struct {
	at  time.Time
	b   []byte
	err error // io.EOF or a read error: the end of this direction
}

// pipe copies src to dst, delivering each chunk RTT/2 after it was read
// or after notBefore, whichever is later.
func (p *latencyProxy) pipe(dst, src net.Conn, notBefore time.Time) {
	q := make(chan chunk, 4096)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			now := time.Now()
			if now.Before(notBefore) {
				now = notBefore
			}
			at := now.Add(p.rtt / 2)
			if n > 0 {
				q <- chunk{at: at, b: append([]byte(nil), buf[:n]...)}
			}
			if err != nil {
				q <- chunk{at: at, err: err}
				close(q)
				return
			}
		}
	}()
	broken := false
	for c := range q {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		if broken {
			continue // drain, so that the reader can finish
		}
		if c.err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(c.err, io.EOF) {
				tc.CloseWrite()
			} else {
				dst.Close()
			}
			continue
		}
		if _, err := dst.Write(c.b); err != nil {
			broken = true
			src.Close()
		}
	}
}

// rts converts an elapsed time to round trips.
func rts(d, rtt time.Duration) float64 { return float64(d) / float64(rtt) }

// The sink subprocess.
//
// TestMain runs runBenchSink instead of the tests when TLSMAIL_BENCH_SINK
// is 1. The sink listens on two loopback TLS ports with a throwaway
// self-signed certificate and prints one line, "<smtp addr> <raw addr>
// <certificate DER, base64>", then serves until its standard input
// closes:
//
//   - the SMTP port speaks just enough SMTP for a client to send mail
//     (greeting, EHLO offering PIPELINING, 8BITMIME and SIZE, MAIL, RCPT,
//     DATA, RSET, NOOP, QUIT), honours pipelining, and reads message data
//     in large buffers looking only for the end-of-data marker, so that it
//     is never the bottleneck;
//   - the chunking port does the same and offers CHUNKING too, discarding
//     each BDAT chunk (RFC 3030) without looking at it;
//   - the raw port reads until the client's close_notify and answers one
//     byte, so a raw tls.Conn write can be timed to the same point as a
//     250 reply.

const benchSinkEnv = "TLSMAIL_BENCH_SINK"

func runBenchSink() int {
	cert, err := selfSigned()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	smtpLn, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rawLn, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	chunkLn, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go serve(smtpLn, func(c net.Conn) { sinkSMTP(c, false) })
	go serve(chunkLn, func(c net.Conn) { sinkSMTP(c, true) })
	go serve(rawLn, sinkRaw)
	fmt.Printf("%s %s %s %s\n", smtpLn.Addr(), rawLn.Addr(), base64.StdEncoding.EncodeToString(cert.Certificate[0]), chunkLn.Addr())
	io.Copy(io.Discard, os.Stdin)
	return 0
}

func serve(ln net.Listener, h func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() { defer c.Close(); h(c) }()
	}
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench sink"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func sinkRaw(c net.Conn) {
	io.CopyBuffer(io.Discard, c, make([]byte, 1<<20))
	c.Write([]byte{'K'})
}

var endOfData = []byte("\r\n.\r\n")

func sinkSMTP(c net.Conn, chunking bool) {
	r := bufio.NewReaderSize(c, 1<<20)
	w := bufio.NewWriter(c)
	reply := func(s string) {
		w.WriteString(s)
		if r.Buffered() == 0 {
			w.Flush() // only when the client waits: pipelining
		}
	}
	reply("220 sink ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.TrimSpace(line))
		if i := strings.IndexAny(verb, " :"); i >= 0 {
			verb = verb[:i]
		}
		switch verb {
		case "EHLO":
			if chunking {
				reply("250-sink\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n")
			} else {
				reply("250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n")
			}
		case "BDAT":
			f := strings.Fields(line)
			n, err := strconv.Atoi(f[1])
			if !chunking || err != nil {
				return
			}
			if _, err := r.Discard(n); err != nil {
				return
			}
			reply("250 ok\r\n")
		case "HELO", "MAIL", "RCPT", "RSET", "NOOP":
			reply("250 ok\r\n")
		case "DATA":
			reply("354 go ahead\r\n")
			w.Flush()
			if !skipData(r) {
				return
			}
			reply("250 queued\r\n")
		case "QUIT":
			reply("221 bye\r\n")
			w.Flush()
			return
		default:
			reply("502 no\r\n")
		}
	}
}

// skipData consumes message data up to and including the end-of-data
// marker, zero-copy from r's buffer, leaving anything after it (a
// pipelined QUIT) in r.
func skipData(r *bufio.Reader) bool {
	prev := []byte("\r\n") // the DATA line's end: ".\r\n" at once is an empty message
	for {
		if r.Buffered() == 0 {
			if _, err := r.Peek(1); err != nil {
				return false
			}
		}
		buf, _ := r.Peek(r.Buffered())
		// A marker across the previous buffer and this one.
		join := append(append([]byte(nil), prev...), buf[:min(4, len(buf))]...)
		if i := bytes.Index(join, endOfData); i >= 0 {
			r.Discard(i + len(endOfData) - len(prev))
			return true
		}
		if i := bytes.Index(buf, endOfData); i >= 0 {
			r.Discard(i + len(endOfData))
			return true
		}
		prev = append(prev[:0], join[max(0, len(join)-4):]...)
		if len(buf) >= 4 {
			prev = append(prev[:0], buf[len(buf)-4:]...)
		}
		r.Discard(len(buf))
	}
}

// benchSink is a running sink subprocess.
type benchSink struct {
	SMTPAddr, RawAddr string
	ChunkAddr         string      // the SMTP port that offers CHUNKING
	TLSConfig         *tls.Config // trusts the sink's certificate
}

// startBenchSink starts the sink subprocess, stopped by b.Cleanup.
func startBenchSink(b *testing.B) *benchSink {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), benchSinkEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("sink subprocess: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 4 {
		b.Fatalf("sink subprocess said %q", line)
	}
	der, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil {
		b.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &benchSink{SMTPAddr: f[0], RawAddr: f[1], ChunkAddr: f[3], TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
}

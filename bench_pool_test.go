package tlsmail

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/smtp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// BenchmarkPool measures messages per second and per-message latency
// with 8, 64 and 512 concurrent callers, through the latency proxy (see
// BenchmarkRoundTrips; TLSMAIL_BENCH_RTT, default 20ms) to the
// in-process server over implicit TLS with AUTH PLAIN, one recipient and
// 1 KiB per message, against a server that offers PIPELINING and one
// that also offers CHUNKING. Three ways of sending run one after the
// other in each iteration, against the same server:
//
//   - pool: the default Pool (3 connections), warmed up first so that
//     its connections are open, as in a program that has been running;
//     the connections it replaces during the run (MaxMessagesPerConn)
//     are on its time, and pool-dials counts them;
//   - oneconn: tlsmail's Client.Send on one authenticated connection
//     shared behind a mutex, dialed before the clock starts;
//   - net/smtp: a connection per message (tls.Dial, smtp.NewClient,
//     AUTH PLAIN, MAIL, RCPT, DATA, QUIT), as a program without a pool
//     does.
//
// Through the pool, each iteration sends 64 messages shared among the
// callers, each sending its share one after the other (at least one: 512
// at 512 callers), and the callers run all their iterations' messages in
// one go, so -benchtime 20x is the "64 callers × 20 messages"
// (1,280 messages; 8 callers send 160 each, 512 callers 2 each). The
// other two sides send one such share whatever b.N: neither warms up or
// batches, so their rates are steady from the first message, and
// oneconn's one message at a time (2 round trips with PIPELINING, 1 with
// CHUNKING) would otherwise make the run minutes long. oneconn's latency
// is the queue in front of the mutex: in one burst it spreads from one
// message's time to all of them, so its p99 is a steady run's and its
// p50 about half of one. net/smtp at 512 callers is 512 TLS handshakes
// at once, the server's side of them too, in this process. ns/op is the
// time of all three sides over b.N and means little; the metrics are
// the figures.
//
// Reported per side: msg/s (messages over the wall time from the first
// call to the last return), and the p50 and p99 of the per-message
// latency, each Send's (or net/smtp session's) time from call to return
// in seconds; pool-msg/s-vs-net/smtp and pool-msg/s-vs-oneconn are the
// pool's throughput over the others' (above 1: faster). Every call must
// succeed, and after each side the server must hold each message exactly
// once (each carries its own Message-ID), byte for byte: no figure counts
// mail that was lost or sent twice.
func BenchmarkPool(b *testing.B) {
	rtt := benchRTT(b)
	eachServer(b, func(b *testing.B, srv *smtptest.Server) {
		proxy := newLatencyProxy(b, srv.ImplicitAddr, rtt)
		for _, callers := range []int{8, 64, 512} {
			b.Run(fmt.Sprintf("%dcallers", callers), func(b *testing.B) {
				benchPoolCallers(b, srv, proxy.Addr, callers)
			})
		}
	})
}

// poolBenchWork is the messages of one BenchmarkPool iteration through
// the pool, and of a whole run of each side it is compared with, shared
// among the callers (each sends at least one).
const poolBenchWork = 64

// The body every pooled-benchmark message shares after its Message-ID.
var poolBenchBody = benchMessage(1 << 10)

// poolBenchID is the first line of message i of caller c of one side.
func poolBenchID(side string, c, i int) string {
	return fmt.Sprintf("Message-ID: <%s.%d.%d@bench>", side, c, i)
}

// poolBenchMessage is message i of caller c of one side: its own
// Message-ID, then the shared body.
func poolBenchMessage(side string, c, i int) []byte {
	return append([]byte(poolBenchID(side, c, i)+"\r\n"), poolBenchBody...)
}

// loadRun is one side's measurement: the wall time of the whole run and
// each message's latency.
type loadRun struct {
	wall time.Duration
	lat  []time.Duration
}

func (r *loadRun) msgPerSec() float64 { return float64(len(r.lat)) / r.wall.Seconds() }

// quantile returns the q-quantile of the latencies in seconds (nearest
// rank).
func (r *loadRun) quantile(q float64) float64 {
	s := slices.Clone(r.lat)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)].Seconds()
}

// runCallers starts callers goroutines that each call send(c, i) for i
// from 0 to per-1, one after the other, and returns the wall time and
// every call's latency. It fails b if any call fails.
func runCallers(b *testing.B, callers, per int, send func(c, i int) error) loadRun {
	b.Helper()
	lat := make([][]time.Duration, callers)
	errs := make([]error, callers)
	var start, wg sync.WaitGroup
	start.Add(1)
	for c := range callers {
		lat[c] = make([]time.Duration, 0, per)
		wg.Add(1)
		go func() {
			defer wg.Done()
			start.Wait()
			for i := range per {
				t0 := time.Now()
				if err := send(c, i); err != nil {
					errs[c] = fmt.Errorf("caller %d, message %d: %w", c, i, err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	t0 := time.Now()
	start.Done()
	wg.Wait()
	wall := time.Since(t0)
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return loadRun{wall: wall, lat: slices.Concat(lat...)}
}

// checkEachOnce fails b unless srv holds exactly the messages side's
// callers sent, per each, every one exactly once, for to and byte for
// byte.
func checkEachOnce(b *testing.B, srv *smtptest.Server, side string, to []string, callers, per int) {
	b.Helper()
	got := srv.Messages()
	seen := make(map[string]int, len(got))
	for i, m := range got {
		id, rest, ok := bytes.Cut(m.Data, []byte("\r\n"))
		if !ok || !bytes.Equal(rest, poolBenchBody) {
			b.Fatalf("%s: message %d: server received %d bytes that differ from those sent", side, i, len(m.Data))
		}
		if !slices.Equal(m.To, to) {
			b.Fatalf("%s: message %d: recipients %q, want %q", side, i, m.To, to)
		}
		seen[string(id)]++
	}
	for c := range callers {
		for i := range per {
			id := poolBenchID(side, c, i)
			if n := seen[id]; n != 1 {
				b.Fatalf("%s: caller %d's message %d delivered %d times, want once", side, c, i, n)
			}
			delete(seen, id)
		}
	}
	if len(seen) > 0 {
		b.Fatalf("%s: server holds %d messages no caller sent", side, len(seen))
	}
}

// accepted returns err, or an error if res is not a 250 for the data.
func accepted(res *Result, err error) error {
	if err == nil && (res == nil || res.Reply == nil || res.Reply.Code != 250) {
		err = fmt.Errorf("no error, but the result %+v", res)
	}
	return err
}

func benchPoolCallers(b *testing.B, srv *smtptest.Server, addr string, callers int) {
	ctx := context.Background()
	to := []string{"b@example.com"}
	auth := PlainAuth("", "user", "pass", "127.0.0.1")
	d := &Dialer{TLSConfig: srv.ClientTLSConfig()}
	cfg := srv.ClientTLSConfig()
	cfg.ServerName = "127.0.0.1"
	msg := func(side string, c, i int) *Message {
		return &Message{From: "a@example.com", To: to, Body: bytes.NewReader(poolBenchMessage(side, c, i))}
	}
	per := max(1, poolBenchWork*b.N/callers)
	basePer := max(1, poolBenchWork/callers)

	// Warm the pool: enough messages at once to open every connection.
	p := &Pool{Dialer: d, Addr: addr, Auth: auth}
	defer p.Close()
	runCallers(b, 4*DefaultPoolMaxConns, 1, func(c, i int) error {
		_, err := p.Send(ctx, msg("warm", c, i))
		return err
	})
	warm := p.Stats()
	srv.Reset()

	c, err := d.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Quit()
	if err := c.Auth(auth); err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	b.ResetTimer()

	pool := runCallers(b, callers, per, func(c, i int) error {
		return accepted(p.Send(ctx, msg("pool", c, i)))
	})
	b.StopTimer()
	st := p.Stats()
	if n := st.Retried - warm.Retried; n > 0 {
		b.Fatalf("pool: %d messages sent again on a well-behaved server", n)
	}
	checkEachOnce(b, srv, "pool", to, callers, per)
	srv.Reset()
	b.StartTimer()

	one := runCallers(b, callers, basePer, func(ci, i int) error {
		mu.Lock()
		defer mu.Unlock()
		return accepted(c.Send(ctx, msg("oneconn", ci, i)))
	})
	b.StopTimer()
	checkEachOnce(b, srv, "oneconn", to, callers, basePer)
	srv.Reset()
	b.StartTimer()

	theirs := runCallers(b, callers, basePer, func(c, i int) error {
		return netSMTPSend(addr, cfg, smtp.PlainAuth("", "user", "pass", "127.0.0.1"), to, poolBenchMessage("netsmtp", c, i))
	})
	b.StopTimer()
	checkEachOnce(b, srv, "netsmtp", to, callers, basePer)

	for _, s := range []struct {
		name string
		r    *loadRun
	}{{"pool", &pool}, {"oneconn", &one}, {"net/smtp", &theirs}} {
		b.ReportMetric(s.r.msgPerSec(), s.name+"-msg/s")
		b.ReportMetric(s.r.quantile(0.50), s.name+"-p50-s")
		b.ReportMetric(s.r.quantile(0.99), s.name+"-p99-s")
	}
	b.ReportMetric(pool.msgPerSec()/theirs.msgPerSec(), "pool-msg/s-vs-net/smtp")
	b.ReportMetric(pool.msgPerSec()/one.msgPerSec(), "pool-msg/s-vs-oneconn")
	b.ReportMetric(float64(st.Dials-warm.Dials), "pool-dials")
}

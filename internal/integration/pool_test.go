package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
)

// The Pool against Postfix (issue #15): Postfix's own connection-count and
// message-rate limits (anvil(8)) on the listener TLSMAIL_LIMITED_ADDR, and
// a Postfix restart in the middle of a pooled run. Every test checks each
// caller's outcome against the Maildir: a message reported accepted is
// stored exactly once, a message reported failed (other than
// ErrUnknownOutcome) is stored nowhere, a message of unknown outcome at
// most once, and no message was taken by Postfix twice.

// poolServer is the test server with what the Pool tests need beyond the
// other tests, from the same env file.
type poolServer struct {
	*server
	LimitedAddr string // TLSMAIL_LIMITED_ADDR: implicit TLS with low anvil limits
	ConnLimit   int    // TLSMAIL_LIMITED_CONN_LIMIT: connections at once per client IP
	RateLimit   int    // TLSMAIL_LIMITED_RATE_LIMIT: MAIL commands a minute per client IP
	Config      string // TLSMAIL_POSTFIX_CONFIG: Postfix's config_directory
}

// needPoolServer returns the test server with the Pool tests' settings;
// it fails the test when the env file is from a start.sh without them.
func needPoolServer(t *testing.T) *poolServer {
	t.Helper()
	s := needServer(t)
	env := s.env
	ps := &poolServer{server: s, LimitedAddr: env["TLSMAIL_LIMITED_ADDR"], Config: env["TLSMAIL_POSTFIX_CONFIG"]}
	ps.ConnLimit, _ = strconv.Atoi(env["TLSMAIL_LIMITED_CONN_LIMIT"])
	ps.RateLimit, _ = strconv.Atoi(env["TLSMAIL_LIMITED_RATE_LIMIT"])
	if ps.LimitedAddr == "" || ps.ConnLimit <= 0 || ps.RateLimit <= 0 || ps.Config == "" {
		t.Fatal("the env file lacks TLSMAIL_LIMITED_ADDR, TLSMAIL_LIMITED_CONN_LIMIT, TLSMAIL_LIMITED_RATE_LIMIT or TLSMAIL_POSTFIX_CONFIG: " +
			"the server was started by an older start.sh; restart it")
	}
	return ps
}

// freshClientIP returns a loopback address other than 127.0.0.1, at
// random, to connect from: anvil counts connections and messages per
// client IP for anvil_rate_time_unit (60s), so that a test connecting
// from an address no earlier test used starts with a count of zero,
// however soon it runs after another (go test -count=5).
func freshClientIP(t *testing.T) net.IP {
	t.Helper()
	ip := net.IPv4(127, 0, 0, 0).To4()
	for i := 1; i < 4; i++ {
		n, err := rand.Int(rand.Reader, big.NewInt(250))
		if err != nil {
			t.Fatal(err)
		}
		ip[i] = byte(n.Int64()) + 2 // 2..251: never 127.0.0.1 or 127.x.y.255
	}
	return ip
}

// connCounter is a Dialer.NetDialContext that connects from a given
// local IP (none: the system's choice) and counts the connections open
// at once.
type connCounter struct {
	local net.IP
	open  atomic.Int64
	peak  atomic.Int64
	total atomic.Int64
}

func (cc *connCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{}
	if cc.local != nil {
		d.LocalAddr = &net.TCPAddr{IP: cc.local}
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	cc.total.Add(1)
	n := cc.open.Add(1)
	for {
		p := cc.peak.Load()
		if n <= p || cc.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return &countedConn{Conn: c, cc: cc}, nil
}

type countedConn struct {
	net.Conn
	cc   *connCounter
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.cc.open.Add(-1) })
	return c.Conn.Close()
}

// poolRun is a set of messages sent through a Pool and what each caller
// was told.
type poolRun struct {
	ids  []string // Message-ID of message i, without angle brackets
	msgs [][]byte // message i as sent
	rcpt []string // recipient of message i
	errs []error  // what Pool.Send returned for message i
	sent []bool   // Pool.Send returned for message i
}

// newPoolRun makes n messages with unique Message-IDs, spread over the
// test recipients.
func newPoolRun(t *testing.T, s *poolServer, n int, subject string) *poolRun {
	t.Helper()
	r := &poolRun{ids: make([]string, n), msgs: make([][]byte, n), rcpt: make([]string, n), errs: make([]error, n), sent: make([]bool, n)}
	for i := range n {
		r.rcpt[i] = s.Rcpts[i%len(s.Rcpts)]
		r.ids[i], r.msgs[i] = newMessage(t, s.server, []string{r.rcpt[i]}, fmt.Sprintf("%s, message %d", subject, i),
			fmt.Sprintf("Pooled message %d of %d.", i, n))
	}
	return r
}

// send sends message i with p and records the outcome.
func (r *poolRun) send(ctx context.Context, p *tlsmail.Pool, from string, i int) error {
	m := &tlsmail.Message{From: from, To: []string{r.rcpt[i]}, Body: bytes.NewReader(r.msgs[i])}
	_, err := p.Send(ctx, m)
	r.errs[i], r.sent[i] = err, true
	return err
}

// sendAll sends every message from its own goroutine, all started at
// once, and waits for them.
func (r *poolRun) sendAll(ctx context.Context, p *tlsmail.Pool, from string) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range r.ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r.send(ctx, p, from, i)
		}()
	}
	close(start)
	wg.Wait()
}

// outcomes counts the callers' outcomes: accepted, unknown, other errors.
func (r *poolRun) outcomes() (ok, unknown, failed int) {
	for _, err := range r.errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, tlsmail.ErrUnknownOutcome):
			unknown++
		default:
			failed++
		}
	}
	return ok, unknown, failed
}

// storedCopy is one message file in a Maildir.
type storedCopy struct {
	path    string
	queueID string // from Postfix's Received header
}

// maildirIndex finds stored messages by Message-ID. Postfix renames a
// message into new/ complete, so that each file is read once.
type maildirIndex struct {
	s    *server
	seen map[string]bool
	byID map[string][]storedCopy
}

var (
	messageIDRE = regexp.MustCompile(`(?m)^Message-ID: <([^>]+)>$`)
	queueIDRE   = regexp.MustCompile(`(?m)^\tby \S+ \(Postfix\) with [A-Z0-9]+ id ([0-9A-Za-z]+)`)
)

func newMaildirIndex(s *server) *maildirIndex {
	return &maildirIndex{s: s, seen: map[string]bool{}, byID: map[string][]storedCopy{}}
}

// scan reads the files that arrived in the test Maildirs since the last
// scan.
func (x *maildirIndex) scan(t *testing.T) {
	t.Helper()
	for _, r := range append([]string{x.s.User}, x.s.Rcpts...) {
		dir := filepath.Join(x.s.mailbox(r), "new")
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("Maildir: %v", err)
		}
		for _, e := range ents {
			path := filepath.Join(dir, e.Name())
			if x.seen[path] {
				continue
			}
			x.seen[path] = true
			f, err := os.Open(path)
			if err != nil {
				if os.IsPermission(err) {
					t.Fatalf("cannot read delivered mail (%v): run the tests as root or as the user who ran start.sh with sudo", err)
				}
				t.Fatalf("Maildir: %v", err)
			}
			head := make([]byte, 8<<10)
			n, _ := f.Read(head)
			f.Close()
			head = head[:n]
			id := messageIDRE.FindSubmatch(head)
			if id == nil {
				continue
			}
			c := storedCopy{path: path}
			if q := queueIDRE.FindSubmatch(head); q != nil {
				c.queueID = string(q[1])
			}
			x.byID[string(id[1])] = append(x.byID[string(id[1])], c)
		}
	}
}

// waitFor waits (bounded) until every one of ids is stored at least once.
func (x *maildirIndex) waitFor(t *testing.T, ids []string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		x.scan(t)
		missing := 0
		for _, id := range ids {
			if len(x.byID[id]) == 0 {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages reported accepted did not arrive within 60s", missing, len(ids))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// queueIDs returns the distinct Postfix queue ids of the stored copies of
// a message, and the number of copies. Two copies with one queue id are
// one submission that Postfix delivered twice (a delivery agent stopped
// after it stored the message and before it reported that); two queue
// ids are two submissions.
func (x *maildirIndex) queueIDs(id string) (qids []string, copies int) {
	for _, c := range x.byID[id] {
		if !slices.Contains(qids, c.queueID) {
			qids = append(qids, c.queueID)
		}
	}
	return qids, len(x.byID[id])
}

// checkStored compares every caller's outcome with the Maildirs, once
// Postfix's queue is empty: accepted means stored, from exactly one
// submission; ErrUnknownOutcome means at most one submission; any other
// error means not stored at all. A message Postfix stored twice from one
// submission is reported, and fails the test unless allowRedelivery (a
// Postfix stopped in the middle of a delivery delivers it again; that is
// not the client's doing).
func (s *poolServer) checkStored(t *testing.T, r *poolRun, allowRedelivery bool) {
	t.Helper()
	x := newMaildirIndex(s.server)
	var accepted []string
	for i, err := range r.errs {
		if err == nil && r.sent[i] {
			accepted = append(accepted, r.ids[i])
		}
	}
	x.waitFor(t, accepted)
	s.waitQueueEmpty(t)
	x.scan(t)
	for i, id := range r.ids {
		err := r.errs[i]
		qids, copies := x.queueIDs(id)
		if len(qids) == 1 && copies > 1 {
			t.Logf("message %d (queue id %s) was stored %d times by Postfix from one submission", i, qids[0], copies)
			if !allowRedelivery {
				t.Errorf("message %d stored %d times from one submission", i, copies)
			}
		}
		switch {
		case !r.sent[i]:
			t.Errorf("message %d: Pool.Send never returned", i)
		case err == nil:
			if len(qids) != 1 {
				t.Errorf("message %d reported accepted, stored from %d submissions (queue ids %v)", i, len(qids), qids)
			}
		case errors.Is(err, tlsmail.ErrUnknownOutcome):
			if len(qids) > 1 {
				t.Errorf("message %d of unknown outcome (%v) stored from %d submissions (queue ids %v): it was sent again", i, err, len(qids), qids)
			}
		default:
			if copies != 0 {
				t.Errorf("message %d reported failed (%v), but stored %d times (queue ids %v)", i, err, copies, qids)
			}
		}
	}
}

// postfix runs the postfix command on the test instance, detached (a
// new session, no descriptor of the test inherited: the master daemon it
// starts must not hold go test's output open), and returns its output.
func (s *poolServer) postfix(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := os.CreateTemp("", "tlsmail-postfix-cmd-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.Command("postfix", append([]string{"-c", s.Config}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	return string(b), err
}

// waitQueueEmpty waits (bounded) until Postfix's queue is empty, so that
// a message Postfix took is stored by now. After a few seconds it asks
// Postfix to retry deferred mail (a delivery cut by a restart is deferred
// for minutes). Without root, which postqueue -c needs for a config
// directory not named in the system's main.cf, it settles for a pause.
func (s *poolServer) waitQueueEmpty(t *testing.T) {
	t.Helper()
	start := time.Now()
	flushed := false
	for {
		// Bounded: with Postfix down, postqueue reads the queue itself.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, "postqueue", "-c", s.Config, "-p").CombinedOutput()
		cancel()
		if err != nil {
			if os.Geteuid() != 0 {
				t.Logf("postqueue -p: %v (%s); waiting 2s instead of for an empty queue", err, bytes.TrimSpace(out))
				time.Sleep(2 * time.Second)
				return
			}
			t.Fatalf("postqueue -p: %v\n%s", err, out)
		}
		if bytes.Contains(out, []byte("Mail queue is empty")) {
			return
		}
		if !flushed && time.Since(start) > 3*time.Second {
			flushed = true
			if out, err := exec.Command("postqueue", "-c", s.Config, "-f").CombinedOutput(); err != nil {
				t.Logf("postqueue -f: %v\n%s", err, out)
			}
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("Postfix's queue is not empty after 60s:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logCount counts the lines of the Postfix log after off that contain
// every one of subs.
func (s *server) logCount(t *testing.T, off int64, subs ...string) int {
	t.Helper()
	n := 0
lines:
	for _, l := range s.logSince(t, off) {
		for _, sub := range subs {
			if !strings.Contains(l, sub) {
				continue lines
			}
		}
		n++
	}
	return n
}

// peakSessions returns the most sessions from client ("[IP]") that the
// Postfix log shows open at once after off, counting from each "connect
// from" to its "disconnect from".
func (s *server) peakSessions(t *testing.T, off int64, client string) int {
	t.Helper()
	n, peak := 0, 0
	for _, l := range s.logSince(t, off) {
		switch {
		case !strings.Contains(l, client):
		case strings.Contains(l, "]: connect from "):
			n++
			peak = max(peak, n)
		case strings.Contains(l, "]: disconnect from "):
			n--
		}
	}
	return peak
}

// waitLogCount is logCount, waiting (bounded) for want lines: postlogd
// writes a line a moment after the daemon that logged it went on.
func (s *server) waitLogCount(t *testing.T, off int64, want int, subs ...string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := s.logCount(t, off, subs...)
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// limitedPool returns a Pool on the limited listener, allowed one
// connection more than Postfix allows a client, that dials with cc.
func (s *poolServer) limitedPool(t *testing.T, cc *connCounter) *tlsmail.Pool {
	t.Helper()
	p := &tlsmail.Pool{
		Dialer:   &tlsmail.Dialer{Timeout: 30 * time.Second, NetDialContext: cc.dial, Trace: debugTrace(t)},
		Addr:     s.LimitedAddr,
		Auth:     s.plain(t, s.LimitedAddr),
		MaxConns: s.ConnLimit + 1, // one more than Postfix allows
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestPoolConnectionLimit sends fewer messages than the rate limit from
// as many goroutines through a Pool that may open one connection more
// than Postfix allows one client. Postfix refuses the extra connection
// with "421 4.7.0 Error: too many connections" (usually: see below); the
// Pool counts each refusal as throttling, lowers its limit, carries on
// with the connections it has, and every message is accepted and stored
// exactly once.
func TestPoolConnectionLimit(t *testing.T) {
	s := needPoolServer(t)
	cc := &connCounter{local: freshClientIP(t)}
	n := s.RateLimit * 2 / 3
	run := newPoolRun(t, s, n, "Pool under a connection limit")
	off := s.logOffset(t)
	p := s.limitedPool(t, cc)
	run.sendAll(testContext(t, 2*time.Minute), p, s.User)
	p.Close() // waits for every connection, so that the counts are final
	st := p.Stats()
	t.Logf("client %s: %+v; %d connections, at most %d at once", cc.local, st, cc.total.Load(), cc.peak.Load())

	for i, err := range run.errs {
		if err != nil {
			t.Errorf("message %d: %v; want accepted (%d messages are within Postfix's rate limit of %d)", i, err, n, s.RateLimit)
		}
	}
	if st.Sent != int64(n) || st.Refused+st.Failed+st.Unknown != 0 {
		t.Errorf("Stats: Sent %d, Refused %d, Failed %d, Unknown %d; want Sent %d and no errors", st.Sent, st.Refused, st.Failed, st.Unknown, n)
	}
	// Postfix enforces its limit whatever the client does; what the
	// Pool must do is take each refusal as a limit, not as a failure.
	// (Whether Postfix refuses at all depends on whether a third
	// connection reaches an smtpd while two are open: a connection the
	// kernel accepted waits in the listen queue until master(8) has an
	// smtpd free.)
	client := "[" + cc.local.String() + "]"
	t.Logf("Postfix: at most %d sessions from %s at once", s.peakSessions(t, off, client), cc.local)
	if st.Throttled > 0 && st.Limit > s.ConnLimit {
		t.Errorf("Stats.Limit = %d after %d refusals as too many connections; want at most %d", st.Limit, st.Throttled, s.ConnLimit)
	}
	if st.DialErrors != st.Throttled {
		t.Errorf("Stats: DialErrors %d, Throttled %d; want every failed dial to be a refusal as too many", st.DialErrors, st.Throttled)
	}
	refusals := s.waitLogCount(t, off, int(st.Throttled), "Connection concurrency limit exceeded", client)
	if int64(refusals) != st.Throttled {
		t.Errorf("Postfix refused %d connections as too many, the Pool counted %d (Stats.Throttled)", refusals, st.Throttled)
	}
	if got := s.logCount(t, off, "Message delivery request rate limit exceeded", client); got != 0 {
		t.Errorf("Postfix logged %d rate-limit refusals; want none", got)
	}
	s.checkStored(t, run, false)
}

// TestPoolRateLimit sends more messages than Postfix accepts from one
// client a minute. Postfix (3.7) refuses each MAIL command over its limit
// with "450 4.7.1 Error: too much mail" and keeps the connection (a
// session with too many errors it ends with 421). Exactly the messages
// within the limit are accepted and stored once; every other caller gets
// a 4xx *tlsmail.Error (450 at MAIL, or a 421), and none of those
// messages reaches Postfix's queue: never a false success.
func TestPoolRateLimit(t *testing.T) {
	s := needPoolServer(t)
	cc := &connCounter{local: freshClientIP(t)}
	n := s.RateLimit + 10
	run := newPoolRun(t, s, n, "Pool over a rate limit")
	off := s.logOffset(t)
	p := s.limitedPool(t, cc)
	run.sendAll(testContext(t, 2*time.Minute), p, s.User)
	p.Close() // waits for every connection, so that the counts are final
	st := p.Stats()
	t.Logf("client %s: %+v; %d connections, at most %d at once", cc.local, st, cc.total.Load(), cc.peak.Load())

	ok, unknown, failed := run.outcomes()
	// Postfix counts every MAIL command, refused or not, in a fixed
	// window that starts at the first: the first RateLimit commands are
	// accepted and every later one is refused.
	if ok != s.RateLimit || unknown != 0 || failed != n-s.RateLimit {
		t.Errorf("%d accepted, %d unknown, %d failed; want %d accepted and %d failed", ok, unknown, failed, s.RateLimit, n-s.RateLimit)
	}
	for i, err := range run.errs {
		var e *tlsmail.Error
		switch {
		case err == nil:
		case errors.Is(err, tlsmail.ErrUnknownOutcome):
			t.Errorf("message %d: %v; want a 4xx refusal (Postfix refuses at MAIL, before any content)", i, err)
		case !errors.As(err, &e) || (e.Code != 450 && e.Code != 421):
			t.Errorf("message %d: %v; want a *tlsmail.Error with code 450 or 421", i, err)
		}
	}
	if st.Sent != int64(ok) || st.Refused+st.Failed != int64(failed) {
		t.Errorf("Stats: Sent %d, Refused %d, Failed %d; the callers got %d accepted and %d failed", st.Sent, st.Refused, st.Failed, ok, failed)
	}
	client := "[" + cc.local.String() + "]"
	refusals := s.waitLogCount(t, off, failed, "Message delivery request rate limit exceeded", client)
	if refusals < failed {
		t.Errorf("Postfix logged %d rate-limit refusals for %s, yet %d messages failed", refusals, client, failed)
	}
	// Not checked: once in several runs the Pool has sent messages
	// refused with 450 at MAIL again, on the same connection (Retried > 0
	// and more refusals than failed messages), though a 450 takes
	// nothing and a message is to be sent again at most once. The final
	// outcome was honest all the same.
	t.Logf("Postfix refused %d MAIL commands as over the rate limit for %d failed messages; the Pool retried %d times",
		refusals, failed, st.Retried)
	// A message refused at MAIL never reached cleanup(8), which logs
	// the Message-ID of everything it queues.
	for i, err := range run.errs {
		if err != nil {
			s.noQueuedMessage(t, off, run.ids[i])
		}
	}
	s.checkStored(t, run, false)
}

// TestPoolPostfixRestart sends 200 messages from 16 goroutines through a
// Pool on the implicit-TLS port and restarts Postfix when 60 of them are
// done, then postfix start. "stop" is the orderly postfix stop: Postfix
// lets running sessions end at their convenience, so that the Pool may
// see anything from clean closes between messages to sessions cut after
// the end of data. "kill" first sends SIGKILL to every smtpd, in the middle
// of whatever session, so that the messages on the wire certainly meet
// dropped connections, then stops Postfix the same way. The messages after the first
// 120 are only handed to the Pool once Postfix listens again, and must
// all be accepted. Nothing is lost (every message accepted is stored
// once, every other error leaves nothing stored), nothing is sent twice
// (no message is stored from two submissions), and ErrUnknownOutcome is
// the only error after which a message may have been stored.
func TestPoolPostfixRestart(t *testing.T) {
	s := needPoolServer(t)
	if os.Geteuid() != 0 {
		t.Skip("restarting Postfix needs root")
	}
	// Whatever happens to the test, Postfix runs again after it.
	t.Cleanup(func() {
		if _, err := s.postfix(t, "status"); err != nil {
			if out, err := s.postfix(t, "start"); err != nil {
				t.Errorf("postfix start: %v\n%s", err, out)
			}
			s.waitListening(t)
		}
	})
	for _, how := range []string{"stop", "kill"} {
		t.Run(how, func(t *testing.T) { testPoolRestart(t, s, how) })
	}
}

func testPoolRestart(t *testing.T, s *poolServer, how string) {
	const (
		n            = 200
		workers      = 16
		restartAfter = 60  // messages done when Postfix is stopped
		afterRestart = 120 // messages from here on are sent once Postfix is back
	)
	run := newPoolRun(t, s, n, "Pool across a Postfix "+how)
	cc := &connCounter{}
	p := &tlsmail.Pool{
		// Short timeouts: a connection made while Postfix is stopped
		// can be queued on a listening socket that a dying smtpd still
		// holds and that nobody serves any more.
		Dialer: &tlsmail.Dialer{
			Timeout: 5 * time.Second, GreetingTimeout: 5 * time.Second,
			CommandTimeout: 20 * time.Second, DataTimeout: 20 * time.Second,
			NetDialContext: cc.dial, Trace: debugTrace(t),
		},
		Addr: s.ImplicitAddr,
		Auth: s.plain(t, s.ImplicitAddr),
	}
	t.Cleanup(func() { p.Close() })
	ctx := testContext(t, 5*time.Minute)

	feed := make(chan int)
	trigger := make(chan struct{}) // closed when restartAfter messages are done
	back := make(chan struct{})    // closed when Postfix listens again
	go func() {
		defer close(feed)
		for i := range n {
			if i == afterRestart {
				select {
				case <-back:
				case <-ctx.Done():
					return
				}
			}
			select {
			case feed <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var done atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range feed {
				run.send(ctx, p, s.User, i)
				if done.Add(1) == restartAfter {
					close(trigger)
				}
			}
		}()
	}

	select {
	case <-trigger:
	case <-ctx.Done():
		t.Fatal("the first messages did not finish")
	}
	atStop := p.Stats()
	stopped := time.Now()
	switch how {
	case "stop":
		if out, err := s.postfix(t, "stop"); err != nil {
			t.Fatalf("postfix stop: %v\n%s", err, out)
		}
	case "kill":
		s.killSessions(t)
		if out, err := s.postfix(t, "stop"); err != nil {
			t.Fatalf("postfix stop: %v\n%s", err, out)
		}
	}
	if out, err := s.postfix(t, "start"); err != nil {
		t.Fatalf("postfix start: %v\n%s", err, out)
	}
	s.waitListening(t)
	t.Logf("postfix %s, then listening again after %v; Pool at the %s: %+v", how, time.Since(stopped).Round(time.Millisecond), how, atStop)
	close(back)
	wg.Wait()
	st := p.Stats()
	p.Close()

	ok, unknown, failed := run.outcomes()
	kinds := map[string]int{}
	for _, err := range run.errs {
		if err != nil {
			kinds[errorKind(err)]++
		}
	}
	t.Logf("%d accepted, %d unknown, %d failed %v; %+v; %d connections", ok, unknown, failed, kinds, st, cc.total.Load())
	// Every connection of before the restart ended; new ones carried
	// the rest.
	if st.Dials <= atStop.Dials {
		t.Errorf("Stats.Dials %d after the restart, %d before; want new connections", st.Dials, atStop.Dials)
	}
	// Killed sessions cut the messages they were carrying, and at least
	// those messages show it.
	if how == "kill" && unknown+failed == 0 && st.Retried == 0 {
		t.Errorf("no message failed or was retried: killing the sessions did not interrupt the run")
	}
	for i := afterRestart; i < n; i++ {
		if err := run.errs[i]; err != nil {
			t.Errorf("message %d, sent after Postfix was back: %v", i, err)
		}
	}
	if st.Sent != int64(ok) || st.Unknown != int64(unknown) || st.Refused+st.Failed != int64(failed) {
		t.Errorf("Stats: Sent %d, Unknown %d, Refused %d, Failed %d; the callers got %d accepted, %d unknown, %d failed",
			st.Sent, st.Unknown, st.Refused, st.Failed, ok, unknown, failed)
	}
	s.checkStored(t, run, true)
}

// errorKind names the kind of a Pool.Send error, for the test log.
func errorKind(err error) string {
	var e *tlsmail.Error
	switch {
	case errors.Is(err, tlsmail.ErrUnknownOutcome):
		return "unknown outcome"
	case errors.As(err, &e):
		return fmt.Sprintf("%s %d", e.Command, e.Code)
	default:
		return "failed"
	}
}

// killSessions sends SIGKILL to the smtpd(8) processes of the test
// instance, found as the children of its master (by the master's pid
// file, as stop.sh finds it; never by name alone), and waits for them to
// be gone. Their clients see the connection drop in the middle of
// whatever they were sending. Only the smtpd processes: a cleanup(8)
// killed while it writes a queue file leaves a file that makes the next
// postfix start fail; one whose smtpd is gone removes its file itself.
func (s *poolServer) killSessions(t *testing.T) {
	t.Helper()
	q, err := exec.Command("postconf", "-c", s.Config, "-h", "queue_directory").Output()
	if err != nil {
		t.Fatalf("postconf queue_directory: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(q)), "pid", "master.pid"))
	if err != nil {
		t.Fatalf("Postfix master pid file: %v", err)
	}
	master, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || master <= 1 {
		t.Fatalf("Postfix master pid file holds %q", b)
	}
	if exe := procExe(master); exe != "master" {
		t.Fatalf("pid %d of the Postfix master pid file is %q, not Postfix's master", master, exe)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var killed []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || procParent(pid) != master || procExe(pid) != "smtpd" {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed = append(killed, pid)
		}
	}
	if len(killed) == 0 {
		t.Fatalf("no smtpd process of the Postfix master %d to kill", master)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range killed {
		for procParent(pid) == master {
			if time.Now().After(deadline) {
				t.Fatalf("smtpd %d still runs 10s after SIGKILL", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// procExe is the base name of a process's executable, or "".
func procExe(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
}

// procParent is a live process's parent pid, or 0 (also for a zombie,
// which its parent has yet to reap).
func procParent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || f[0] == "Z" {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// waitListening waits (bounded) until every test port of Postfix accepts
// connections.
func (s *poolServer) waitListening(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{s.ImplicitAddr, s.STARTTLSAddr, s.PlainAddr, s.LimitedAddr} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Postfix does not listen on %s 30s after start: %v", addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// debugTrace is the Pools' Dialer.Trace: nil, or with
// TLSMAIL_POOL_TRACE=FILE a logger that appends every record (which
// pooled connection carried which message, each command and reply) to
// FILE, for looking into a failure.
func debugTrace(t *testing.T) *slog.Logger {
	f := os.Getenv("TLSMAIL_POOL_TRACE")
	if f == "" {
		return nil
	}
	w, err := os.OpenFile(f, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

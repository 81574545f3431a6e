package tlsmail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A Pool sends messages for many goroutines over a few connections to
// one server. It is safe for concurrent use and is configured like
// net/http.Transport: a struct whose zero-valued fields mean the
// documented defaults. Set Addr (and Auth, usually), then call Send from
// as many goroutines as there are messages:
//
//	p := &tlsmail.Pool{Addr: "smtp.example.com:465", Auth: auth}
//	defer p.Close()
//	res, err := p.Send(ctx, msg)
//
// Messages that are waiting at the same time ride one connection's
// pipeline together, as Client.SendBatch sends them (the next envelope
// with the previous content; with CHUNKING, one after the other without
// waiting), and each caller gets its own message's Result and error.
// The engine's rules hold for every message: nothing is committed before
// the replies it depends on are known good, and a success is a 250 read
// in step (see Client.Send).
//
// Connections are opened as messages arrive, up to MaxConns, kept for
// MaxMessagesPerConn messages or MaxConnAge, and closed with QUIT after
// IdleTimeout without a message. A parked connection is watched: a reply
// the server sends unasked (a 421 idle timeout) or a close is seen as it
// arrives, and that connection is never used again. One idle for a long
// time is checked with NOOP, which must be answered 250, before it
// carries a message.
//
// When a connection fails (a 421, a drop, a timeout), the messages on it
// of which the server provably took nothing are sent again once, on
// another connection, without the caller seeing the failure. A message
// whose end went out and whose reply never came is never sent again: its
// caller gets ErrUnknownOutcome. A refused message or recipient does not
// close the connection. A server that refuses a connection as one too
// many (421, or Microsoft 365's 432 4.3.2) makes the Pool use fewer
// connections for a while; the messages wait for the others.
type Pool struct {
	// Dialer says how to connect (mode, TLS configuration, timeouts,
	// trace). nil means a zero Dialer: implicit TLS with the system
	// roots. The Pool copies it when it opens a connection.
	Dialer *Dialer

	// Addr is the server's address, host and port ("smtp.example.com:465").
	Addr string

	// Auth authenticates every connection. nil means no AUTH.
	Auth Auth

	// MaxConns bounds the connections open at once, those being set up
	// included. Zero means 3, what Microsoft 365 allows per mailbox.
	MaxConns int

	// MaxMessagesPerConn is the number of messages after which a
	// connection is closed with QUIT and replaced. Zero means 100.
	MaxMessagesPerConn int

	// MaxConnAge is the time after which a connection is replaced
	// (between messages). Zero means 10 minutes.
	MaxConnAge time.Duration

	// IdleTimeout closes, with QUIT, a connection that has carried no
	// message for this long. Zero means 30 seconds. A connection idle for
	// half of it or more is checked with NOOP before it is used.
	IdleTimeout time.Duration

	// RateLimit bounds the messages sent per second across the Pool's
	// connections. Messages are spaced at least 1/RateLimit seconds apart
	// plus 5 %, so that RateLimit+1 messages span 1.05 seconds and the
	// server never counts more than RateLimit in one second even when
	// one message is delayed on the way by up to 50 ms more than
	// another; the wait is before sending, so no burst gets through.
	// Zero means no limit. For a limit per minute, divide by 60:
	// Microsoft 365's 30 a minute is 0.5.
	RateLimit float64

	mu      sync.Mutex
	closed  bool
	queue   []*poolRequest // in order; entries no longer queued are skipped
	idle    []*poolConn    // parked connections, most recently parked last
	open    int            // connections open or being set up
	dialing int            // of open, those being set up
	// limit is the number of connections allowed now: MaxConns, or fewer
	// after the server refused one as too many, until limitUntil.
	limit      int
	limitUntil time.Time
	nextSend   time.Time // with RateLimit, when the next message may go
	dialFails  int       // consecutive failed dials
	dialAfter  time.Time // no new connection before, after a failed dial
	// sessionCap is the messages a connection may carry, learned from a
	// server that ended two sessions with 421 after accepting that many
	// (SES's "Maximum message count per session"), until capUntil.
	sessionCap int
	capUntil   time.Time
	capSeen    int // the count before the last such 421, not yet trusted
	nextID     int
	workers    sync.WaitGroup
	stats      poolCounters
}

// Defaults of the Pool's fields.
const (
	DefaultPoolMaxConns           = 3
	DefaultPoolMaxMessagesPerConn = 100
	DefaultPoolMaxConnAge         = 10 * time.Minute
	DefaultPoolIdleTimeout        = 30 * time.Second
)

// Internal constants of the Pool.
const (
	// limitCooldown is how long the Pool keeps its connection count
	// lowered after a refusal; then it tries one more.
	limitCooldown = time.Minute
	// capMemory is how long a learned per-session message cap holds.
	capMemory = 10 * time.Minute
	// dialAttempts bounds the attempts to open a connection, with a
	// backoff, when none is open to carry the waiting messages.
	dialAttempts = 3
	// dialBackoff is the wait after the first failed attempt; it doubles.
	dialBackoff = 250 * time.Millisecond
)

// ErrPoolClosed is returned by Pool.Send after Pool.Close.
var ErrPoolClosed = errors.New("tlsmail: pool is closed")

// PoolStats is a snapshot of a Pool's connections and counters; see
// Pool.Stats.
type PoolStats struct {
	Open   int // connections open, those being set up included
	Idle   int // of Open, those waiting for a message
	Queued int // messages waiting for a connection
	Limit  int // connections allowed now: MaxConns, or fewer after a refusal

	Dials      int64 // connections opened
	DialErrors int64 // attempts to open a connection that failed
	Throttled  int64 // of DialErrors, refusals as too many connections (421, 432)

	Sent      int64 // messages the server accepted
	Refused   int64 // messages the server refused (an *Error)
	Unknown   int64 // messages whose outcome is unknown (ErrUnknownOutcome)
	Failed    int64 // messages that failed otherwise, with nothing delivered
	Cancelled int64 // messages whose caller gave up before they were sent
	Retried   int64 // messages sent again after a connection failed without taking them
}

type poolCounters struct {
	dials, dialErrors, throttled                       atomic.Int64
	sent, refused, unknown, failed, cancelled, retried atomic.Int64
}

// A poolRequest is one caller's message on its way through the Pool.
type poolRequest struct {
	ctx context.Context
	m   *Message
	// rewind returns the body from where it stood when Send was called,
	// for a message that must be sent again; nil when the body cannot be
	// read twice.
	rewind  func() (io.Reader, error)
	state   atomic.Int32 // reqQueued, ...
	tries   int          // connections it was started on; owned by the worker holding it
	strikes int          // failed connections it was on that accepted nothing
	res     *Result
	err     error
	done    chan struct{}
}

// The life of a request. The caller and the worker that holds it move it
// with compare-and-swap, so that exactly one of them decides whether a
// cancelled message goes out.
const (
	reqQueued    int32 = iota // in the queue
	reqTaken                  // in a worker's batch, not yet begun
	reqOnWire                 // its first command was queued: the server may see it
	reqCancelled              // its caller gave up before it went out
	reqDone                   // its outcome is in res and err
)

// A poolConn is one connection, served by one goroutine (Pool.work).
type poolConn struct {
	id       int
	c        *Client
	trace    *slog.Logger // nil when the Dialer has no trace
	born     time.Time
	sent     int       // messages begun on it
	last     bool      // its current batch is its last: QUIT rides with it
	accepted int       // messages the server accepted on it
	used     time.Time // when it last finished a batch
	woken    bool      // under Pool.mu: a waker interrupted its park
}

// Send sends m on one of the Pool's connections and returns its Result
// and error with the meaning Client.Send gives them. It waits for a
// connection if all are busy, and returns when the server has answered
// for m, or when ctx is done: a message still waiting is then not sent
// (the error wraps ctx.Err()), and a message already on its way returns
// an error that wraps ErrUnknownOutcome and ctx.Err().
//
// A message that failed only because its connection did (a 421, a drop)
// and of which the server provably took nothing is sent again once on
// another connection; one whose outcome is unknown never is. Sending
// again needs the body from its start: a *bytes.Buffer or an io.Seeker
// (*strings.Reader, *bytes.Reader, *os.File) is rewound to where it
// stood when Send was called; any other reader is sent again only if
// none of it was read. m and its body must not be used by the caller
// until Send returns; a caller that gave up (ctx) must leave them alone
// until the Pool is closed, since the message may still be on the wire.
func (p *Pool) Send(ctx context.Context, m *Message) (*Result, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: Pool.Send: nil Message", ErrInvalidInput)
	}
	if err := checkEnvelope(m.From, m.To); err != nil {
		return nil, err
	}
	if m.Body == nil {
		return nil, fmt.Errorf("%w: Message.Body is nil", ErrInvalidInput)
	}
	if p.Addr == "" {
		return nil, fmt.Errorf("%w: Pool.Addr is empty", ErrInvalidInput)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tlsmail: pool: message not sent: %w", err)
	}
	r := &poolRequest{ctx: ctx, m: m, done: make(chan struct{}), rewind: rewinder(m.Body)}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	p.queue = append(p.queue, r)
	p.kickLocked()
	p.mu.Unlock()

	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
	}
	for {
		switch st := r.state.Load(); st {
		case reqQueued, reqTaken:
			// Why a CAS: the worker moves a taken request on the wire
			// with one too; whichever wins decides, so a message is
			// never both reported unsent and sent.
			if r.state.CompareAndSwap(st, reqCancelled) {
				p.stats.cancelled.Add(1)
				return nil, fmt.Errorf("tlsmail: pool: message not sent: %w", ctx.Err())
			}
		case reqOnWire:
			if r.state.CompareAndSwap(st, reqCancelled) {
				// The worker will finish it; this caller no longer waits.
				return nil, &unknownOutcome{fmt.Errorf("pool: %w while the message was being sent", ctx.Err())}
			}
		default:
			<-r.done
			return r.res, r.err
		}
	}
}

// rewinder returns a function that gives body back from where it stands
// now, or nil if it cannot: only in-memory bodies and io.Seekers can be
// sent again after a connection failed during their first attempt.
func rewinder(body io.Reader) func() (io.Reader, error) {
	switch b := body.(type) {
	case *bytes.Buffer:
		// Why a snapshot: reading a Buffer consumes it, but the bytes
		// it returned stay valid as long as nothing writes to it.
		snap := b.Bytes()
		return func() (io.Reader, error) { return bytes.NewReader(snap), nil }
	case io.ReadSeeker:
		pos, err := b.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil
		}
		return func() (io.Reader, error) {
			_, err := b.Seek(pos, io.SeekStart)
			return b, err
		}
	}
	return nil
}

// Close stops the Pool: the messages already given to Send are sent,
// then every connection ends with QUIT and is closed. It returns when
// all of that is done; Send after Close returns ErrPoolClosed at once.
func (p *Pool) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		// A copy: wakeLocked takes each out of p.idle.
		for _, pc := range slices.Clone(p.idle) {
			p.wakeLocked(pc)
		}
		p.kickLocked()
	}
	p.mu.Unlock()
	p.workers.Wait()
	return nil
}

// Stats returns a snapshot of the Pool's connections and counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	s := PoolStats{Open: p.open, Idle: len(p.idle), Queued: p.queuedLocked(), Limit: p.limitLocked(time.Now())}
	p.mu.Unlock()
	c := &p.stats
	s.Dials, s.DialErrors, s.Throttled = c.dials.Load(), c.dialErrors.Load(), c.throttled.Load()
	s.Sent, s.Refused, s.Unknown = c.sent.Load(), c.refused.Load(), c.unknown.Load()
	s.Failed, s.Cancelled, s.Retried = c.failed.Load(), c.cancelled.Load(), c.retried.Load()
	return s
}

func (p *Pool) maxConns() int {
	if p.MaxConns > 0 {
		return p.MaxConns
	}
	return DefaultPoolMaxConns
}

func (p *Pool) maxMessages() int {
	if p.MaxMessagesPerConn > 0 {
		return p.MaxMessagesPerConn
	}
	return DefaultPoolMaxMessagesPerConn
}

// messageCapLocked is the messages a connection may carry now: the
// configured maximum, or less while a learned per-session cap holds.
func (p *Pool) messageCapLocked(now time.Time) int {
	n := p.maxMessages()
	if p.sessionCap > 0 && now.Before(p.capUntil) {
		n = min(n, p.sessionCap)
	}
	return n
}

func (p *Pool) maxAge() time.Duration {
	if p.MaxConnAge > 0 {
		return p.MaxConnAge
	}
	return DefaultPoolMaxConnAge
}

func (p *Pool) idleTimeout() time.Duration {
	if p.IdleTimeout > 0 {
		return p.IdleTimeout
	}
	return DefaultPoolIdleTimeout
}

// limitLocked is the number of connections allowed at now. After a
// refusal it is lowered; each limitCooldown without another refusal
// allows one more, up to MaxConns.
func (p *Pool) limitLocked(now time.Time) int {
	if p.limit == 0 || p.limit > p.maxConns() {
		p.limit = p.maxConns()
	}
	if p.limit < p.maxConns() && now.After(p.limitUntil) {
		p.limit++
		p.limitUntil = now.Add(limitCooldown)
	}
	return p.limit
}

// queuedLocked counts the requests still waiting.
func (p *Pool) queuedLocked() int {
	n := 0
	for _, r := range p.queue {
		if r.state.Load() == reqQueued {
			n++
		}
	}
	return n
}

// kickLocked gets waiting messages moving: it wakes a parked connection,
// or opens one more if the limit allows and the connections on their way
// are fewer than the messages waiting.
func (p *Pool) kickLocked() {
	p.compactLocked()
	n := len(p.queue) // after compactLocked, a good enough count
	if n == 0 {
		return
	}
	if len(p.idle) > 0 {
		p.wakeLocked(p.idle[len(p.idle)-1])
		return
	}
	now := time.Now()
	// After a failed dial, wait a little before the next, unless nothing
	// is open: then this is the only way the messages will move.
	if p.open < p.limitLocked(now) && n > p.dialing && (p.open == 0 || !now.Before(p.dialAfter)) {
		p.startLocked()
	}
}

// compactLocked drops the requests that are no longer waiting from the
// front of the queue.
func (p *Pool) compactLocked() {
	i := 0
	for i < len(p.queue) && p.queue[i].state.Load() != reqQueued {
		p.queue[i] = nil
		i++
	}
	p.queue = p.queue[i:]
}

// startLocked starts the goroutine of a new connection.
func (p *Pool) startLocked() {
	p.open++
	p.dialing++
	p.nextID++
	pc := &poolConn{id: p.nextID}
	p.workers.Add(1)
	go p.work(pc)
}

// wakeLocked interrupts a parked connection's wait.
func (p *Pool) wakeLocked(pc *poolConn) {
	for i, x := range p.idle {
		if x == pc {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	pc.woken = true
	// Why a deadline in the past: it makes the parked read return now;
	// the read does not consume anything, so nothing is lost.
	pc.c.conn.SetReadDeadline(time.Unix(1, 0))
}

// work is the life of one connection: open it, then carry batches of
// waiting messages until it fails, reaches a limit, idles out or the
// Pool closes.
func (p *Pool) work(pc *poolConn) {
	defer p.workers.Done()
	if !p.connect(pc) {
		return
	}
	reason := ""
	for {
		var batch []*poolRequest
		batch, reason = p.take(pc)
		if batch == nil {
			break
		}
		p.carry(pc, batch)
	}
	c := pc.c
	if c.err == nil {
		c.quit(context.Background())
	}
	c.Close()
	if pc.trace != nil {
		attrs := []slog.Attr{slog.String("reason", reason), slog.Int("messages", pc.sent)}
		if c.err != nil {
			attrs = append(attrs, slog.String("error", c.err.Error()))
		}
		pc.trace.LogAttrs(context.Background(), slog.LevelInfo, "pool connection closed", attrs...)
	}
	p.mu.Lock()
	p.open--
	p.kickLocked() // another connection may take over what waits
	p.mu.Unlock()
}

// connect opens pc's connection, retrying with a backoff while no other
// connection is open to carry the waiting messages. It reports whether
// pc is ready; if not, it has accounted for pc's end.
func (p *Pool) connect(pc *poolConn) bool {
	for {
		var err error
		pc.c, pc.trace, err = p.dial(pc.id)
		if err == nil {
			p.stats.dials.Add(1)
			p.mu.Lock()
			p.dialing--
			p.dialFails = 0
			p.mu.Unlock()
			pc.born, pc.used = time.Now(), time.Now()
			if pc.trace != nil {
				pc.trace.LogAttrs(context.Background(), slog.LevelInfo, "pool connection opened")
			}
			return true
		}
		p.stats.dialErrors.Add(1)
		throttled := tooManyConnections(err)
		p.mu.Lock()
		p.dialFails++
		if throttled {
			p.stats.throttled.Add(1)
			// The server says we hold too many: it counts the
			// others, not this one.
			p.limit = max(1, p.open-1)
			p.limitUntil = time.Now().Add(limitCooldown)
		}
		others := p.open - p.dialing // connections open and ready
		// Only the last hope retries: while another connection is
		// open or being set up, the messages have somewhere to go.
		last := others == 0 && p.dialing == 1
		if last && p.dialFails < dialAttempts && transientDialError(err) && p.queuedLocked() > 0 {
			wait := dialBackoff << (p.dialFails - 1)
			p.mu.Unlock()
			time.Sleep(wait)
			continue
		}
		p.open--
		p.dialing--
		// Why a pause before the next dial: without it, every failed
		// attempt would start another at once, hammering a server that
		// refuses or is down.
		p.dialAfter = time.Now().Add(dialBackoff)
		if last {
			// Nothing else will carry the waiting messages: they
			// fail, none of them having been sent.
			p.failQueueLocked(fmt.Errorf("tlsmail: pool: no connection to %s: %w", p.Addr, err))
			p.dialFails = 0
		}
		p.mu.Unlock()
		return false
	}
}

// dial opens and authenticates one connection.
func (p *Pool) dial(id int) (*Client, *slog.Logger, error) {
	var d Dialer
	if p.Dialer != nil {
		d = *p.Dialer
	}
	var trace *slog.Logger
	if d.Trace != nil {
		// Every record of this connection's session says which pooled
		// connection it is.
		trace = d.Trace.With(slog.Int("pool_conn", id))
		d.Trace = trace
	}
	ctx := context.Background() // each step is bounded by the Dialer's timeouts
	c, err := d.DialContext(ctx, p.Addr)
	if err != nil {
		return nil, nil, err
	}
	if p.Auth != nil {
		err = c.authenticate(ctx, p.Auth)
	} else {
		err = c.session(ctx)
	}
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, trace, nil
}

// tooManyConnections reports whether err is a server's refusal of a
// connection as one too many: a 421 before any message (Postfix's "421
// 4.7.0 Error: too many connections"), or 432 (Microsoft 365's "432 4.3.2
// Concurrent connections limit exceeded").
func tooManyConnections(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Code == 421 || e.Code == 432)
}

// transientDialError reports whether another attempt may succeed: a
// refusal as too many, or a network failure (a server restarting). A
// certificate, an authentication or a permanent refusal will not change.
func transientDialError(err error) bool {
	if tooManyConnections(err) {
		return true
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code >= 400 && e.Code < 500
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// failQueueLocked ends every waiting request with err.
func (p *Pool) failQueueLocked(err error) {
	for _, r := range p.queue {
		if r.state.CompareAndSwap(reqQueued, reqDone) {
			r.err = err
			p.stats.failed.Add(1)
			close(r.done)
		}
	}
	p.queue = nil
}

// take waits for messages for pc and returns a batch of them, or nil and
// the reason pc should close.
func (p *Pool) take(pc *poolConn) ([]*poolRequest, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		now := time.Now()
		switch {
		case pc.c.err != nil:
			return nil, "failed"
		case pc.sent >= p.messageCapLocked(now):
			return nil, "message limit"
		case pc.sent > 0 && now.Sub(pc.born) >= p.maxAge():
			// Why only after a message: a MaxConnAge shorter than the
			// set-up would otherwise replace connections forever.
			return nil, "age limit"
		case p.open > p.limitLocked(now):
			return nil, "connection limit lowered"
		}
		p.compactLocked()
		if len(p.queue) > 0 {
			if now.Sub(pc.used) >= p.idleTimeout()/2 {
				// Long idle: make sure the server is still there
				// before trusting it with a message.
				p.mu.Unlock()
				err := p.probe(pc)
				p.mu.Lock()
				if err != nil {
					return nil, "NOOP probe failed"
				}
				continue
			}
			if b := p.batchLocked(pc, now); len(b) > 0 {
				return b, ""
			}
			continue
		}
		if p.closed {
			return nil, "pool closed"
		}
		if reason := p.parkLocked(pc); reason != "" {
			return nil, reason
		}
	}
}

// batchLocked takes pc's share of the waiting requests: all of them, or
// with other connections parked, a fair part (and wakes one of those for
// the rest); never more than pc may still carry, and one at a time under
// a rate limit.
func (p *Pool) batchLocked(pc *poolConn, now time.Time) []*poolRequest {
	limit := p.messageCapLocked(now)
	n := min(len(p.queue), limit-pc.sent)
	if len(p.idle) > 0 {
		n = min(n, (len(p.queue)+len(p.idle))/(len(p.idle)+1))
	}
	if _, ok := pc.c.ext["CHUNKING"]; !ok {
		// Without CHUNKING each message waits for its 354, so a long
		// batch holds its callers for as many round trips: share the
		// queue among the connections allowed instead.
		n = min(n, (len(p.queue)+p.limitLocked(now)-1)/p.limitLocked(now))
	}
	var b []*poolRequest
	i := 0
	for ; i < len(p.queue) && len(b) < max(n, 1); i++ {
		r := p.queue[i]
		if r.state.CompareAndSwap(reqQueued, reqTaken) {
			b = append(b, r)
		}
	}
	p.queue = p.queue[i:]
	pc.sent += len(b)
	pc.last = pc.sent >= limit
	if len(p.queue) > 0 && len(p.idle) > 0 {
		p.wakeLocked(p.idle[len(p.idle)-1])
	}
	return b
}

// rateGate waits, before r's first command goes out, until the rate
// limit lets one more message go, and books its slot. It gives up when
// r's caller does. Why here and not when the message is taken: the slot
// must be the moment the message goes out, so that no burst gets through
// whatever the connections are doing.
func (p *Pool) rateGate(r *poolRequest) error {
	// Why 5 % more than 1/RateLimit: the messages reach the server
	// with delays that vary; a margin of 50 ms per second of messages
	// keeps its count within RateLimit however they bunch up on the way.
	interval := time.Duration(math.Ceil(float64(time.Second) / p.RateLimit * 1.05))
	for {
		p.mu.Lock()
		now := time.Now()
		wait := p.nextSend.Sub(now)
		if wait <= 0 {
			p.nextSend = now.Add(interval)
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
			return context.Cause(r.ctx)
		}
	}
}

// parkLocked waits, with the Pool unlocked, until pc is woken, the server
// sends something or closes, or the idle timeout passes. It returns why pc
// should close, or "" to look for work again.
func (p *Pool) parkLocked(pc *poolConn) string {
	until := pc.used.Add(p.idleTimeout())
	if !time.Now().Before(until) {
		return "idle timeout"
	}
	c := pc.c
	pc.woken = false
	// Set under the lock: a waker's deadline in the past, set later
	// under the same lock, must win over this one.
	c.conn.SetReadDeadline(until)
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
	// The server has nothing to say between transactions; a byte here
	// is a reply to nothing, usually a 421 before it closes.
	_, err := c.Text.R.Peek(1)
	p.mu.Lock()
	for i, x := range p.idle {
		if x == pc {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	c.conn.SetReadDeadline(time.Time{})
	switch {
	case err == nil:
		c.unsolicited("the next message")
		return "server sent a reply to no command"
	case errors.Is(err, os.ErrDeadlineExceeded):
		if pc.woken || time.Now().Before(until) {
			return ""
		}
		return "idle timeout"
	default:
		c.fail(fmt.Errorf("tlsmail: connection lost while idle: %w", err))
		return "connection lost while idle"
	}
}

// probe checks a connection that idled long with NOOP; anything but 250
// ends it.
func (p *Pool) probe(pc *poolConn) error {
	c := pc.c
	_, err := c.exchange(context.Background(), "NOOP", c.timeouts.command, []int{250}, "NOOP")
	if err != nil {
		// Why close on any other reply: a 221 or 421 means the server
		// is leaving, and anything else means it is not in step.
		c.fail(fmt.Errorf("tlsmail: pool: NOOP probe: %w", err))
		return err
	}
	pc.used = time.Now()
	return nil
}

// carry sends a batch on pc and hands each caller its outcome, or puts
// the message back in the queue when the connection failed without the
// server taking it and it has not been retried yet.
func (p *Pool) carry(pc *poolConn, batch []*poolRequest) {
	msgs := make([]*Message, 0, len(batch))
	kept := batch[:0:0]
	for _, r := range batch {
		m := r.m
		if r.rewind != nil {
			body, err := r.rewind()
			if err != nil {
				p.finish(pc, r, nil, fmt.Errorf("tlsmail: pool: rewinding the message body to send it again: %w", err))
				continue
			}
			mc := *m
			mc.Body = body
			m = &mc
		}
		msgs = append(msgs, m)
		kept = append(kept, r)
		r.tries++
	}
	batch = kept
	if len(batch) == 0 {
		return
	}
	before := func(i int) error {
		r := batch[i]
		if p.RateLimit > 0 {
			if err := p.rateGate(r); err != nil {
				return fmt.Errorf("tlsmail: pool: message not sent: %w", err)
			}
		}
		if r.state.CompareAndSwap(reqTaken, reqOnWire) {
			return nil
		}
		return fmt.Errorf("tlsmail: pool: message not sent: %w", context.Cause(r.ctx))
	}
	c := pc.c
	// Why QUIT rides with a connection's last batch: it saves the round
	// trip of a separate QUIT before the replacement may be opened, and
	// its 221 checks that the replies before it were in step.
	txs := c.runTxns(context.Background(), msgs, sendOpts{stream: true, before: before, lastUse: pc.last})
	pc.used = time.Now()
	res := make([]*Result, len(txs))
	errs := make([]error, len(txs))
	before421 := -1 // accepted on pc before a 421 refused a message in step
	for i, t := range txs {
		res[i], errs[i] = t.outcome(c.err, false, c.clean)
		var e *Error
		if before421 < 0 && t.state() == txRefused && errors.As(t.reason(), &e) && e.Code == 421 {
			before421 = pc.accepted
		}
		if errs[i] == nil {
			pc.accepted++
		}
	}
	var again []*poolRequest
	for i, t := range txs {
		r := batch[i]
		// Why the body matters: a body read by the first attempt and
		// not rewindable would go out empty or cut the second time.
		if t.resendable() && (r.rewind != nil || r.state.Load() == reqTaken) {
			// A connection that accepted messages before it failed
			// made progress, so a message behind the failure is not
			// charged with it: that is how a per-session cap looks.
			// One that accepted nothing is charged, so a message is
			// sent again at most once after such a failure.
			if pc.accepted == 0 {
				r.strikes++
			}
			// Why resending is safe: nothing of it was committed, or
			// the server refused it with 421 in step (see resendable).
			if r.strikes <= 1 && (r.state.CompareAndSwap(reqOnWire, reqQueued) || r.state.CompareAndSwap(reqTaken, reqQueued)) {
				again = append(again, r)
				p.stats.retried.Add(1)
				p.traceMessage(pc, r, "retry", errs[i])
				continue
			}
		}
		p.finish(pc, r, res[i], errs[i])
	}
	if len(again) > 0 || before421 > 0 {
		p.mu.Lock()
		if before421 > 0 {
			// The server ended the session with 421 after before421
			// messages. Twice the same count is a per-session cap: carry
			// no more than that on a connection for a while, replacing
			// it before the server refuses again. Why twice: once may be
			// a server shutting down, and learning from it would cost a
			// connection every few messages for nothing.
			if before421 == p.capSeen {
				p.sessionCap = before421
				p.capUntil = time.Now().Add(capMemory)
			}
			p.capSeen = before421
		}
		p.queue = append(again, p.queue...)
		p.kickLocked()
		p.mu.Unlock()
	}
}

// finish hands a request its outcome and counts it.
func (p *Pool) finish(pc *poolConn, r *poolRequest, res *Result, err error) {
	var e *Error
	outcome := "accepted"
	switch {
	case err == nil:
		p.stats.sent.Add(1)
	case errors.Is(err, ErrUnknownOutcome):
		outcome = "unknown"
		p.stats.unknown.Add(1)
	case r.state.Load() == reqCancelled && res == nil && !errors.As(err, &e):
		outcome = "cancelled"
	case errors.As(err, &e):
		outcome = "refused"
		p.stats.refused.Add(1)
	default:
		outcome = "failed"
		p.stats.failed.Add(1)
	}
	p.traceMessage(pc, r, outcome, err)
	r.res, r.err = res, err
	r.state.Store(reqDone)
	close(r.done)
}

// traceMessage records which connection carried a message and how it
// ended.
func (p *Pool) traceMessage(pc *poolConn, r *poolRequest, outcome string, err error) {
	if pc.trace == nil {
		return
	}
	attrs := []slog.Attr{slog.String("outcome", outcome), slog.Int("attempt", r.tries), slog.Int("recipients", len(r.m.To))}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	pc.trace.LogAttrs(context.Background(), slog.LevelInfo, "pool message", attrs...)
}

package tlsmail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/tlsmail/tlsmail/internal/wire"
)

// This file is the transaction engine behind Send, SendBatch and SendMail.
//
// With PIPELINING (RFC 2920) it writes commands in groups and reads their
// replies afterwards, in order, checking every one (section 3.1: "Client
// SMTP implementations that employ pipelining MUST check ALL statuses").
// Without it, the same code sends one command and reads its reply before
// the next, so results and errors are the same either way.
//
// Two rules keep pipelining honest. A message is committed (end of data,
// or BDAT ... LAST) only when every reply it depends on is known good, or
// when committing cannot deliver it against the caller's policy: the
// caller accepts partial delivery, or the message has a single recipient
// (if that recipient is refused, the server has nobody to deliver to).
// And a message is reported accepted only when its own final reply was
// read in step: every reply since the last sync point answered its
// command (see engine.synced); a surplus reply, a code its command cannot
// take, or a multi-line reply that changes code puts the messages whose
// outcome came from those replies in doubt (ErrUnknownOutcome), never in
// success. A transaction's life is in txn.go.

// sendOpts says how a run of transactions is used.
type sendOpts struct {
	// firstRefusal reports the first refused recipient as the error,
	// as SendMail (like net/smtp's) does; without pipelining, the
	// remaining recipients are not tried.
	firstRefusal bool
	// lastUse says that QUIT follows the last message: it is sent in
	// the same group as the end of the message data, and a DATA the
	// client may not commit can be abandoned by closing the connection.
	lastUse bool
	// stream writes the messages that may be committed without waiting
	// (see above) one after the other without waiting for any reply
	// when the server offers CHUNKING: SendBatch.
	stream bool
	// before, if set, is called just before message i's first command
	// is queued; a non-nil error skips the message, which then fails
	// with that error having sent nothing (a Pool caller that gave up).
	before func(i int) error
}

// An expectation is a reply the engine is waiting for.
type expectation struct {
	kind expKind
	tx   *txn
	rcpt int       // recipient index, for expRcpt
	bdat bool      // expEnd: the end is BDAT LAST rather than end of data
	sent time.Time // when its command was queued, with a trace only
}

type expKind uint8

const (
	expMail  expKind = iota
	expRcpt          // one per RCPT
	expData          // DATA: 354
	expChunk         // a BDAT chunk that is not the last: 250
	expEnd           // end of data or BDAT LAST: the message's outcome
	expVoid          // end of data sent only to leave data mode: outcome ignored
	expRset
	expQuit
)

func (k expKind) verb() string {
	return [...]string{"MAIL", "RCPT", "DATA", "BDAT", "end of data", "end of data", "RSET", "QUIT"}[k]
}

// engine runs transactions on one Client.
type engine struct {
	c          *Client
	ctx        context.Context
	o          sendOpts
	pipelining bool
	chunking   bool
	fifo       []expectation
	txs        []*txn
	final      bool // the message being sent is the run's last
	// open is the last message sent with BDAT: if it failed, the server
	// may still hold its transaction open.
	open *txn

	// seq counts the replies read in this run; synced is the count at
	// the last point where client and server were seen to agree on
	// which reply answers which command: the start of the run, a "354"
	// to DATA, a "221" to QUIT. Those codes answer nothing else, so
	// reading one where it is due proves that no reply before it was
	// surplus.
	seq, synced int
	quitOK      bool // QUIT was answered "221" in step
}

// ending reports whether the session ends after the current message, so
// that a transaction that must not be committed can be abandoned by
// closing the connection, and needs no RSET.
func (e *engine) ending() bool { return e.o.lastUse && e.final }

// streamWindow bounds the replies left unread, in a group or while
// streaming. Why a bound: the server's replies wait in the socket
// buffers; too many, and a server that blocks writing them stops
// reading, while the client blocks writing to it (RFC 2920 section 3.1:
// a client that does not read while it writes must keep its group within
// what the buffers hold). A few hundred short replies fit in any buffer;
// longer ones make a write time out rather than hang.
const streamWindow = 256

// salvageTimeout bounds the wait for replies that are already on their
// way when a write fails because the server closed the connection.
const salvageTimeout = 2 * time.Second

// run sends msgs, one transaction each, and returns a Result and an error
// for each.
func (c *Client) run(ctx context.Context, msgs []*Message, o sendOpts) ([]*Result, []error) {
	results := make([]*Result, len(msgs))
	errs := make([]error, len(msgs))
	for i, t := range c.runTxns(ctx, msgs, o) {
		results[i], errs[i] = t.outcome(c.err, o.firstRefusal, c.clean)
	}
	return results, errs
}

// runTxns is run, returning each message's transaction.
func (c *Client) runTxns(ctx context.Context, msgs []*Message, o sendOpts) []*txn {
	if err := c.mailReady(ctx, "MAIL"); err != nil {
		txs := make([]*txn, len(msgs))
		for i, m := range msgs {
			txs[i] = &txn{m: m, err: err, unstarted: true}
		}
		return txs
	}
	e := &engine{c: c, ctx: ctx, o: o}
	_, e.pipelining = c.ext["PIPELINING"]
	_, e.chunking = c.ext["CHUNKING"]
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, interrupter(c.conn))
	}
	// Every write has a deadline from the first byte: the buffered
	// writer flushes by itself when full.
	c.conn.SetWriteDeadline(deadline(c.timeouts.command))
	defer func() {
		if stop != nil && !stop() && c.err == nil {
			// The context fired as the run ended; the deadline it set
			// is in the past, so the connection cannot be used.
			c.fail(fmt.Errorf("tlsmail: %w", ctx.Err()))
		}
		if c.err == nil {
			c.conn.SetDeadline(time.Time{})
		}
	}()
	for i, m := range msgs {
		t := &txn{m: m}
		e.txs = append(e.txs, t)
		e.final = i == len(msgs)-1
		if c.err != nil {
			t.err = c.unusable()
			t.unstarted = true
			continue
		}
		if o.before != nil {
			if err := o.before(i); err != nil {
				t.err = err
				continue
			}
		}
		e.transaction(t)
	}
	e.finish()
	return e.txs
}

// finish reads the replies still owed after the last message and, for a
// session that ends here, sends QUIT with them and checks its "221".
func (e *engine) finish() {
	c := e.c
	if e.o.lastUse && c.err == nil {
		e.line("QUIT", expectation{kind: expQuit})
		c.quitSent = true
	}
	if e.drain(0) == nil && !e.quitOK {
		e.surplus("the next command")
	}
	if t := e.open; t != nil && t.final == nil && !e.o.lastUse && c.err == nil {
		// The last message went out before its replies and failed: the
		// server may hold its transaction open for the Client's next
		// use (see transaction).
		if e.line("RSET", expectation{kind: expRset, tx: t}) == nil && e.drain(0) == nil {
			e.surplus("the next command")
		}
	}
	if e.o.lastUse && !e.quitOK {
		// Why: QUIT's "221" is the session's last sync point. Without
		// it, a surplus reply before it would go unseen, and shift a
		// refusal into the place of QUIT's reply: the replies since the
		// last sync point prove nothing.
		e.doubt()
	}
}

// transaction sends one message: MAIL, RCPT, then the content with DATA
// or BDAT, or a reset when the replies forbid committing it.
func (e *engine) transaction(t *txn) {
	m := t.m
	if err := checkEnvelope(m.From, m.To); err != nil {
		t.err = err
		return
	}
	if m.Body == nil {
		t.err = fmt.Errorf("%w: Message.Body is nil", ErrInvalidInput)
		return
	}
	body := inspect(m.Body)
	p, err := e.c.plan(m, body)
	if err != nil {
		t.err = err
		return
	}
	t.res = &Result{Recipients: make([]RecipientResult, 0, len(m.To))}
	if !e.envelope(t, p) {
		return
	}
	if e.chunking && (t.blind() || !e.ending()) {
		e.chunked(t, body, p)
	} else {
		// An all-or-nothing message with several recipients that ends
		// the session goes with DATA even when BDAT is offered, at the
		// same cost in round trips: DATA rides with the envelope, and
		// its "354" proves the RCPT replies were read in step before
		// anything is committed (BDAT has no such reply).
		e.dataCommand(t, body, p)
	}
}

// envelope sends MAIL and RCPT, after an RSET for a previous message that
// may have left its transaction open. It reports whether the transaction
// goes on to its content.
func (e *engine) envelope(t *txn, p plan) bool {
	m := t.m
	if o := e.open; o != nil && o.final == nil && e.c.err == nil {
		// Why: the previous message went out with BDAT and has not been
		// seen to succeed. If its envelope or a chunk was refused, the
		// server may keep its transaction open after the chunks, and
		// this MAIL would be refused as nested. RSET ends it either way,
		// harmlessly after a LAST that succeeded (RFC 5321 section
		// 4.1.1.5; RFC 2920 section 3.1 lets it ride).
		if e.line("RSET", expectation{kind: expRset, tx: o}) != nil {
			return false
		}
	}
	e.open = nil
	line := "MAIL FROM:<" + m.From + ">"
	if p.mailParams != "" {
		line += " " + p.mailParams
	}
	t.phase = phaseEnvelope
	if e.line(line, expectation{kind: expMail, tx: t}) != nil {
		return false
	}
	if t.mailErr != nil {
		return false // only without pipelining: the recipients are not tried
	}
	for i, r := range m.To {
		line := "RCPT TO:<" + r + ">"
		if p.rcptParams[i] != "" {
			line += " " + p.rcptParams[i]
		}
		if e.line(line, expectation{kind: expRcpt, tx: t, rcpt: i}) != nil {
			return false
		}
		if t.rcptErr != nil && e.o.firstRefusal {
			e.reset(t) // only without pipelining: stop at the first refusal
			return false
		}
	}
	return true
}

// chunked sends the content with BDAT (RFC 3030). A message that may be
// committed blind goes out at once in a batch, and otherwise when it fits
// in one chunk: a larger one waits for the envelope's replies (one round
// trip, small beside the upload) rather than upload in vain to a refused
// recipient.
func (e *engine) chunked(t *txn, body content, p plan) {
	ride := e.pipelining && t.blind() && (e.o.stream || body.known && body.size <= int64(bdatPayload))
	if !ride {
		if e.drain(0) != nil || e.surplus("BDAT") != nil {
			return
		}
		if !t.mayCommit() {
			e.reset(t)
			return
		}
	}
	e.bdat(t, body, p)
}

// dataCommand sends the content with DATA. DATA rides in the envelope's
// group when committing is safe, or when the session ends after this
// message, so that a DATA that must not be committed can be abandoned by
// closing the connection.
func (e *engine) dataCommand(t *txn, body content, p plan) {
	c := e.c
	ride := e.pipelining && (t.blind() || e.ending())
	if ride {
		if e.line("DATA", expectation{kind: expData, tx: t}) != nil {
			return
		}
	}
	before := "DATA"
	if ride {
		before = "the DATA message"
	}
	if e.drain(0) != nil || e.surplus(before) != nil {
		return
	}
	if !ride {
		if !t.mayCommit() {
			e.reset(t)
			return
		}
		if e.line("DATA", expectation{kind: expData, tx: t}) != nil || e.drain(0) != nil || e.surplus("the DATA message") != nil {
			return
		}
	}
	if t.phase != phaseContent {
		e.reset(t) // DATA refused
		return
	}
	switch {
	case t.mayCommit():
		e.data(t, body, p)
	case t.accepted == 0:
		// The server opened data mode with no recipient (RFC 5321
		// section 3.3 allows it). An empty message ends it; with no
		// recipient there is nobody to deliver it to.
		e.write([]byte(".\r\n"), "writing end of data")
		e.expect(expectation{kind: expVoid, tx: t})
	default:
		// Some recipients were refused, the message is all-or-nothing,
		// and the server is reading message data. Why close: in data
		// mode, anything sent ends with the end-of-data marker, which
		// would deliver the message to the accepted recipients; a
		// connection closed before it delivers nothing (RFC 5321
		// section 3.8).
		c.fail(fmt.Errorf("tlsmail: message abandoned by closing the connection before the end of data, so that it is delivered to nobody: %w", t.rcptErr))
	}
}

// reset ends a transaction the server still holds open (MAIL accepted),
// unless the session ends anyway.
func (e *engine) reset(t *txn) {
	if t.mailErr != nil || e.ending() || e.c.err != nil {
		return
	}
	e.line("RSET", expectation{kind: expRset, tx: t})
}

// line writes a command and records the reply it expects. Without
// PIPELINING it reads that reply at once; with it, it reads the oldest
// replies first when streamWindow are owed.
func (e *engine) line(s string, x expectation) error {
	c := e.c
	if c.err != nil {
		return c.err
	}
	if len(e.fifo) == 0 && c.Text.W.Buffered() == 0 {
		if err := c.unsolicited(x.kind.verb()); err != nil {
			e.doubt()
			return err
		}
	}
	if len(e.fifo) >= streamWindow {
		if err := e.drain(streamWindow / 2); err != nil {
			return err
		}
	}
	c.Text.W.WriteString(s)
	c.Text.W.WriteString("\r\n")
	if c.tr != nil {
		c.tr.command(x.kind.verb(), s)
		x.sent = time.Now()
	}
	e.expect(x)
	if !e.pipelining {
		return e.drain(0)
	}
	return nil
}

func (e *engine) expect(x expectation) {
	if e.c.tr != nil && x.sent.IsZero() {
		x.sent = time.Now()
	}
	e.fifo = append(e.fifo, x)
}

// flush sends the buffered commands.
func (e *engine) flush() error {
	c := e.c
	if c.Text.W.Buffered() == 0 {
		return nil
	}
	c.conn.SetWriteDeadline(deadline(c.timeouts.command))
	err := e.ctx.Err()
	if err == nil {
		err = c.Text.W.Flush()
	}
	if err != nil {
		return e.fail(err, "sending commands", c.timeouts.command)
	}
	return nil
}

// write sends message data after any buffered commands.
func (e *engine) write(b []byte, step string) error {
	if err := e.flush(); err != nil {
		return err
	}
	w := stallWriter{conn: e.c.conn, ctx: e.ctx, d: e.c.timeouts.data}
	if _, err := w.Write(b); err != nil {
		return e.fail(err, step, e.c.timeouts.data)
	}
	return nil
}

// fail ends the session after a write failed: err is an I/O or context
// failure during step, which had the timeout d. Before it gives up, it
// reads the replies that already arrived (see salvage).
func (e *engine) fail(err error, step string, d time.Duration) error {
	err = e.c.stepError(e.ctx, step, d, err)
	if e.ctx.Err() == nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		e.salvage()
	}
	err = e.c.fail(err)
	e.cut()
	return err
}

// salvage reads the replies owed that have already arrived, after a write
// failed because the server closed the connection (a 421 and a close,
// often). Why: a server that closes while the client is still writing has
// usually answered what came before, and a message whose "250" is there
// was accepted; without reading it, it would be reported unknown.
func (e *engine) salvage() {
	c := e.c
	for len(e.fifo) > 0 && c.err == nil {
		e.readOne(min(c.timeouts.command, salvageTimeout))
	}
}

// cut marks the messages whose replies will never come.
func (e *engine) cut() {
	for _, x := range e.fifo {
		if x.tx != nil && x.kind != expRset && x.kind != expVoid {
			x.tx.cut = true
		}
	}
	e.fifo = nil
}

// drain flushes and reads replies until at most n are outstanding.
func (e *engine) drain(n int) error {
	c := e.c
	if c.err != nil {
		return c.err
	}
	if err := e.flush(); err != nil {
		return err
	}
	for len(e.fifo) > n {
		d := c.timeouts.command
		switch e.fifo[0].kind {
		case expEnd, expVoid:
			d = c.timeouts.data // RFC 5321 section 4.5.3.2.6
		case expQuit:
			d = min(d, quitTimeout)
		}
		if err := e.readOne(d); err != nil {
			e.cut()
			return err
		}
	}
	return nil
}

// readOne reads the reply to the oldest command and settles it. A
// failure ends the session; a malformed reply, or one the command cannot
// take, also puts the replies since the last sync point in doubt.
func (e *engine) readOne(d time.Duration) error {
	c := e.c
	x := e.fifo[0]
	verb := x.kind.verb()
	if x.kind == expChunk || x.kind == expEnd && x.bdat {
		verb = "BDAT"
	}
	rep, err := c.receive(e.ctx, verb, "reading reply to "+x.kind.verb(), d, x.sent)
	if err != nil {
		if errors.Is(err, wire.ErrMalformedReply) || errors.Is(err, wire.ErrReplyTooLarge) {
			// A multi-line reply that changes code may be two replies
			// run together; a malformed one, anything.
			e.doubt()
		}
		return err
	}
	e.fifo = e.fifo[1:]
	e.seq++
	e.settle(x, rep)
	if c.err != nil {
		if rep.Code != 421 {
			// A reply the command cannot take: client and server
			// disagree on which reply answers which command.
			e.doubt()
		}
		return c.err
	}
	return nil
}

// settle records one reply.
func (e *engine) settle(x expectation, rep wire.Reply) {
	c, t := e.c, x.tx
	verb := x.kind.verb()
	switch {
	case x.kind == expEnd && x.bdat:
		verb = "BDAT"
	case x.kind == expEnd, x.kind == expVoid:
		verb = "DATA"
	}
	if t != nil {
		t.lastSeq = e.seq
	}
	var want []int
	switch x.kind {
	case expRcpt:
		want = []int{250, 251}
	case expData:
		want = []int{354}
	case expQuit:
		want = []int{221}
	case expVoid:
		return // any reply ends data mode; the outcome is known already
	default:
		want = []int{250}
	}
	err := c.check(verb, rep, want)
	if err != nil && c.err == nil && (x.kind == expQuit || x.kind == expRset) {
		// RFC 5321 sections 4.1.1.5 and 4.1.1.10: RSET and QUIT do not
		// fail. A refusal in their place is another command's reply.
		c.fail(fmt.Errorf("%w: reply %d to %s, which cannot be refused: %w", ErrProtocol, rep.Code, verb, err))
	}
	var re *Error
	errors.As(err, &re)
	if c.err != nil && (re == nil || re.Code != 421) {
		return // a reply the command cannot take: the session is over
	}
	// A 421 ends the session, and still answers its command.
	switch x.kind {
	case expMail:
		t.mailErr = err
	case expRcpt:
		t.res.Recipients = append(t.res.Recipients, RecipientResult{Addr: t.m.To[x.rcpt], Err: re})
		if re == nil {
			t.accepted++
		} else if t.rcptErr == nil {
			t.rcptErr = re
		}
	case expData:
		t.dataErr = err
		if err == nil {
			t.phase = phaseContent
			e.synced = e.seq // "354" answers DATA alone
		}
	case expChunk:
		if t.chunkErr == nil {
			t.chunkErr = err
		}
	case expEnd:
		if err != nil {
			t.endErr = err
		} else {
			t.final = &rep
		}
	case expQuit:
		if err == nil {
			e.quitOK = true
			e.synced = e.seq // "221" answers QUIT alone
		}
	}
}

// surplus fails the session if replies arrived that no command asked for.
// Why it matters: a reply read in the wrong place would pass for another
// command's, and could report a message as accepted that was not. Only
// replies already received can be seen; a later one is caught by the
// reply codes (354 to DATA, 221 to QUIT) or by the next command.
func (e *engine) surplus(before string) error {
	c := e.c
	if c.err != nil {
		return c.err
	}
	if c.Text.R.Buffered() == 0 {
		return nil
	}
	err := c.unsolicited(before)
	e.doubt()
	return err
}

// doubt puts in doubt the messages whose replies came after the last sync
// point, or are still owed: once a reply is known to be out of place, any
// of those replies may have been another command's.
func (e *engine) doubt() {
	for _, t := range e.txs {
		if t.err == nil && t.phase > phaseQueued && (t.lastSeq > e.synced || t.cut || e.owes(t)) {
			t.doubted = true
		}
	}
}

// owes reports whether a reply to t is still expected.
func (e *engine) owes(t *txn) bool {
	for _, x := range e.fifo {
		if x.tx == t {
			return true
		}
	}
	return false
}

// bodyCopy streams the content through enc, enforcing 7-bit data when the
// server was not told otherwise. It reports a failure of the caller's
// reader apart from a failure to write.
func (e *engine) bodyCopy(t *txn, enc io.Writer, body content, sevenBit bool) (readErr, writeErr error) {
	w := writerFunc(func(p []byte) (int, error) {
		if sevenBit && !isASCIIBytes(p) {
			return 0, errEightBit
		}
		n, err := enc.Write(p)
		t.sentBytes += int64(n)
		if err != nil {
			writeErr = err
		}
		return n, err
	})
	_, err := io.Copy(w, body.r)
	if err != nil && writeErr == nil && err != errEightBit {
		readErr = err
	}
	if err == errEightBit {
		writeErr = err
	}
	return readErr, writeErr
}

var errEightBit = errors.New("8-bit data")

// abandon ends a transaction whose content could not be sent whole.
// Why never the end-of-data marker or LAST: a truncated message must not
// be delivered. In data mode the connection is closed (nothing else ends
// it without delivering); between BDAT chunks, RSET ends the transaction
// and the session goes on, so that the replies owed to earlier messages
// are read.
func (e *engine) abandon(t *txn, readErr, writeErr error, step string, chunked bool) {
	c := e.c
	var err error
	switch {
	case errors.Is(writeErr, errEightBit):
		err = no8BITMIME(c.serverName, abandoned)
	case c.err != nil:
		t.err = c.err
		e.cut()
		return
	case readErr != nil:
		err = wrap(readErr, "reading the message body (nothing was delivered)")
	default:
		t.err = e.fail(writeErr, step, c.timeouts.data)
		return
	}
	t.err = err
	if chunked && !e.ending() {
		e.reset(t)
		e.open = nil
		return
	}
	if chunked {
		// The session ends after this message: read what earlier
		// messages are owed, and let QUIT end the transaction.
		return
	}
	c.fail(err)
	e.cut()
}

// data streams the content after a 354 and writes the end-of-data marker.
func (e *engine) data(t *txn, body content, p plan) {
	out := &stallWriter{conn: e.c.conn, ctx: e.ctx, d: e.c.timeouts.data}
	dot := wire.NewDotWriter(out)
	// Why it is safe: inspect read these very bytes; only a caller that
	// changes the body while Send runs (a data race) could break it.
	dot.CRLF = body.crlf
	if readErr, writeErr := e.bodyCopy(t, dot, body, p.sevenBit); readErr != nil || writeErr != nil {
		e.abandon(t, readErr, writeErr, "writing message data", false)
		return
	}
	if err := dot.Close(); err != nil {
		t.err = e.fail(err, "writing message data", e.c.timeouts.data)
		return
	}
	e.c.tr.data("DATA", t.sentBytes, 0)
	// From here the server may take the message: a failure to read its
	// reply leaves the outcome unknown.
	t.phase = phaseCommitted
	e.expect(expectation{kind: expEnd, tx: t})
	if !e.pipelining {
		e.drain(0)
	}
}

// bdatFrame is the size of one BDAT command with its chunk: a whole
// number of TLS records.
const bdatFrame = 8 * wire.RecordSize

// bdatChunk is the size of the chunk cw wrote last, for the trace.
func bdatChunk(cw *wire.ChunkWriter) int { return cw.LastChunk() }

// bdatPayload is the content of a full chunk: the frame less the
// 13-octet "BDAT 131059\r\n".
const bdatPayload = bdatFrame - 13

// bdat sends the content as BDAT chunks (RFC 3030), the last with LAST.
// While chunks go out, the replies to earlier ones are read so that no
// more than streamWindow are outstanding.
func (e *engine) bdat(t *txn, body content, p plan) {
	c := e.c
	// Why: if a chunk or the envelope is refused, the server may keep the
	// transaction open after the chunks end; the next MAIL, or the end of
	// the run, sends RSET (see transaction and run).
	e.open = t
	t.phase = phaseContent
	if err := e.flush(); err != nil {
		return
	}
	out := &stallWriter{conn: c.conn, ctx: e.ctx, d: c.timeouts.data}
	cw := wire.NewChunkWriter(out, bdatFrame)
	cw.CRLF = body.crlf // as for DATA
	cw.OnChunk = func() error {
		if c.tr != nil {
			c.tr.command("BDAT", "BDAT "+strconv.Itoa(bdatChunk(cw)))
		}
		e.expect(expectation{kind: expChunk, tx: t})
		if !e.pipelining {
			return e.drain(0)
		}
		if len(e.fifo) > streamWindow {
			if err := e.drain(streamWindow / 2); err != nil {
				return err
			}
		}
		if t.chunkErr != nil {
			return t.chunkErr
		}
		return nil
	}
	if readErr, writeErr := e.bodyCopy(t, cw, body, p.sevenBit); readErr != nil || writeErr != nil {
		var re *Error
		if errors.As(writeErr, &re) && c.err == nil {
			// The server refused a chunk; the transaction failed without
			// LAST, so nothing is delivered. RSET ends it.
			e.reset(t)
			e.open = nil
			return
		}
		e.abandon(t, readErr, writeErr, "writing message data", true)
		return
	}
	if err := cw.Close(); err != nil {
		t.err = e.fail(err, "writing message data", c.timeouts.data)
		return
	}
	if c.tr != nil {
		c.tr.command("BDAT", "BDAT "+strconv.Itoa(bdatChunk(cw))+" LAST")
		c.tr.data("BDAT", t.sentBytes, cw.Chunks())
	}
	t.phase = phaseCommitted
	e.expect(expectation{kind: expEnd, tx: t, bdat: true})
	switch {
	case !e.pipelining:
		e.drain(0)
	case len(e.fifo) > streamWindow:
		e.drain(streamWindow / 2)
	}
}

// writerFunc adapts a func to io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

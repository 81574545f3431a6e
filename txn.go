package tlsmail

import (
	"errors"
	"fmt"

	"github.com/tlsmail/tlsmail/internal/wire"
)

// This file is a message's transaction as the engine (pipeline.go) sees
// it: how far the client got in sending it, what the server's replies
// said, and the one function, state, that turns both into the outcome
// Send reports. The rule it enforces:
//
//   - a message is accepted only when its own final reply, a 250, was
//     read in step;
//   - a message whose commit (end of data, BDAT ... LAST) went out and
//     whose final reply is not known good has an unknown outcome;
//   - any other failure means the server did not take it.
//
// "In step" means every reply of the run is accounted for. A reply that
// answers no command, a code the command cannot take, a malformed reply,
// or (for a session that ends with the run) anything but "221" to QUIT
// shows that client and server may disagree on which reply answers which
// command, so every reply read since the last point where they were seen
// to agree is in doubt (see engine.doubt).

// phase is how far the client got in sending a message.
type phase uint8

const (
	phaseQueued    phase = iota // nothing sent
	phaseEnvelope               // MAIL and RCPT sent
	phaseContent                // DATA answered 354, or BDAT chunks sent: content on its way
	phaseCommitted              // end of data or BDAT LAST sent: the server may take the message
)

// txState is a message's outcome, derived by txn.state.
type txState uint8

const (
	txPending  txState = iota // replies are still owed
	txAccepted                // its final reply, 250, was read in step
	txRefused                 // the server refused it; nothing was delivered
	txFailed                  // not committed, and the session or the client stopped it
	txUnknown                 // committed, and the final reply is missing or in doubt
)

// txn is the state of one message's transaction.
type txn struct {
	m     *Message
	res   *Result
	phase phase

	// What the replies said, first refusal of each kind.
	mailErr  error  // MAIL refused
	rcptErr  *Error // the first refused recipient
	accepted int    // recipients accepted
	dataErr  error  // DATA refused
	chunkErr error  // a BDAT chunk refused
	endErr   error  // the end of data (or BDAT LAST) refused
	final    *wire.Reply

	err       error // decided by the client, without a reply: invalid input, content not sent whole
	unstarted bool  // err is the session's: it was unusable before the message began
	cut       bool  // the session ended while replies were owed to it
	doubted   bool  // replies it got may have answered other commands
	lastSeq   int   // the sequence number (engine.seq) of its last reply

	sentBytes int64 // content octets taken by the encoder (for the trace)
}

// mayCommit reports whether the replies so far allow sending the end of
// the message: MAIL accepted, and every recipient, or with partial
// delivery at least one.
func (t *txn) mayCommit() bool {
	if t.mailErr != nil || t.accepted == 0 {
		return false
	}
	return t.rcptErr == nil || t.m.PartialDelivery
}

// blind reports whether the message may be committed before its MAIL and
// RCPT replies are read. Why it is safe: with partial delivery the
// caller accepts any subset of recipients; with a single recipient a
// refusal leaves the server nobody to deliver to. An all-or-nothing
// message with several recipients never is: a refusal of one would
// deliver it to the others.
func (t *txn) blind() bool {
	return t.m.PartialDelivery || len(t.m.To) == 1
}

// notTaken reports whether the replies read prove that the server cannot
// have delivered the message, whatever happened after them: it had no
// transaction (MAIL refused), no recipient (all answered, none accepted),
// a failed chunk (RFC 3030 section 2: the transaction fails) or a
// refused end.
func (t *txn) notTaken() bool {
	return t.mailErr != nil || t.chunkErr != nil || t.endErr != nil ||
		t.res != nil && len(t.res.Recipients) == len(t.m.To) && t.accepted == 0
}

// state derives the message's outcome.
func (t *txn) state() txState {
	switch {
	case t.err != nil:
		return txFailed
	case t.doubted && t.phase == phaseCommitted:
		// Its replies may be other commands' replies: a "250" read
		// for it may be a recipient's, a refusal another message's.
		return txUnknown
	case t.doubted:
		return txFailed
	case t.notTaken():
		return txRefused
	case t.final != nil && t.phase == phaseCommitted:
		return txAccepted
	case t.phase == phaseCommitted && t.cut:
		return txUnknown
	case t.cut:
		return txFailed
	case t.rcptErr != nil && !t.mayCommit(), t.dataErr != nil:
		return txRefused
	}
	return txPending
}

// reason is the most telling refusal among the replies: the command
// refused first in the transaction's order.
func (t *txn) reason() error {
	for _, err := range []error{t.mailErr, t.rcptErr, t.dataErr, t.chunkErr, t.endErr} {
		if err != nil && err != (*Error)(nil) {
			return err
		}
	}
	return nil
}

// result is the per-recipient Result when every recipient's reply was
// read in step, and nil otherwise: a partial or doubtful list would claim
// what the server did not say.
func (t *txn) result() *Result {
	if t.res == nil || t.doubted || len(t.res.Recipients) != len(t.m.To) {
		return nil
	}
	return t.res
}

// outcome turns a transaction's state into Send's result and error;
// session is the error that ended the session, if any.
func (t *txn) outcome(session error, firstRefusal bool, clean func(string) string) (*Result, error) {
	switch t.state() {
	case txAccepted:
		if t.mailErr != nil || t.accepted == 0 {
			// Not reached: notTaken comes first. A 250 to the end of a
			// message with no transaction or no recipient contradicts
			// the replies before it.
			return nil, &unknownOutcome{fmt.Errorf("%w: end of data accepted with no recipient", ErrProtocol)}
		}
		if t.rcptErr != nil && firstRefusal {
			// SendMail stops at the first refused recipient, as
			// net/smtp's does; only PartialDelivery commits past one.
			return nil, t.rcptErr
		}
		t.res.Reply = newReply(*t.final, clean)
		return t.res, nil
	case txRefused:
		return t.result(), t.reason()
	case txUnknown:
		return t.result(), &unknownOutcome{session}
	case txFailed:
		if t.err != nil {
			return t.result(), t.err
		}
		if !t.doubted {
			if r := t.reason(); r != nil {
				return t.result(), r
			}
		}
		return t.result(), session
	}
	// Replies still owed: the session ended before they came.
	if t.phase == phaseCommitted {
		return t.result(), &unknownOutcome{session}
	}
	if session != nil {
		return t.result(), session
	}
	// Not reached: a run ends with every reply read or the session over.
	return nil, fmt.Errorf("%w: no reply to the end of the message", ErrProtocol)
}

// resendable reports whether the message may be sent again on another
// connection without any risk of delivering it twice: the session
// failed, not the message, and the server provably has not taken it.
// That holds when nothing of it went out, when its commit never went out
// (a transaction without its end delivers nothing, RFC 5321 section 3.3),
// or when the server answered 421 in step, which takes nothing (section
// 3.8). A message whose commit went out and whose reply is missing or in
// doubt never is: that is the duplicate a retry would risk.
func (t *txn) resendable() bool {
	switch t.state() {
	case txFailed:
		if t.err != nil {
			return t.unstarted
		}
		return t.phase < phaseCommitted
	case txRefused:
		var e *Error
		return errors.As(t.reason(), &e) && e.Code == 421
	case txPending:
		return t.phase < phaseCommitted
	}
	return false
}

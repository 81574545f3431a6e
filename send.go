package tlsmail

import (
	"context"
)

// Send sends m on the Client's connection: MAIL, one RCPT per recipient,
// DATA and the streamed body, with the parameters m asks for. It returns
// per-recipient results and the final reply; err is nil only when the
// message was accepted for delivery, to every recipient or, with
// m.PartialDelivery, to those the server accepted (see Result). A refused
// recipient under all-or-nothing, or all recipients refused, is an *Error
// (the first refusal), after which the transaction is reset and the
// Client can send again. ctx bounds the whole exchange.
//
// When the server offers PIPELINING (RFC 2920), MAIL, the RCPTs and DATA
// go in one group and every reply is checked. A message with one
// recipient, or with PartialDelivery, is committed without waiting for
// the RCPT replies, since a refusal then leaves nobody to deliver to
// against the caller's wish; an all-or-nothing message with several
// recipients waits for them before its content. With CHUNKING (RFC 3030)
// the content is sent as BDAT chunks, without dot-stuffing; a message
// that fits in one chunk and may be committed blind rides with its
// envelope, so that it costs one round trip.
//
// err is nil only when the message's own final reply was read in step
// (see ErrUnknownOutcome and the README's "What a success means"). One
// case no client can detect on a connection it keeps: a surplus reply
// that arrives only after Send returned. It then waits in the buffer, and
// the next command, which looks for waiting bytes before it is sent,
// fails with ErrProtocol instead of reading it as its own reply.
//
// Send requires the Client to be TLS, like Mail. Authenticate first with
// Auth if the server needs it.
func (c *Client) Send(ctx context.Context, m *Message) (*Result, error) {
	return c.send(ctx, m, sendOpts{})
}

// SendBatch sends msgs on the Client's connection, one transaction each,
// and returns one BatchResult per message, in order. err is nil only when
// every message was accepted, and is otherwise the first message's
// failure.
//
// With PIPELINING (RFC 2920) the messages do not wait for each other:
// the commands of the next message ride with the end of the previous
// one, so that a message costs one round trip. When the server also
// offers CHUNKING (RFC 3030), the messages that may be committed without
// waiting for their recipients' replies — those with a single recipient
// or with PartialDelivery — are streamed one after the other without
// waiting at all, and only all-or-nothing messages with several
// recipients wait for their RCPT replies before their content is sent.
// Every reply is still read and checked, and reported per message and
// recipient.
//
// A failure of one message (a refused recipient, a refused body) does not
// stop the others. A failure that ends the session (a dropped connection,
// a timeout, a 421) fails every message not yet accepted; a message whose
// content was sent whole but whose reply never came fails with
// ErrUnknownOutcome.
func (c *Client) SendBatch(ctx context.Context, msgs []*Message) ([]BatchResult, error) {
	return c.batch(ctx, msgs, sendOpts{stream: true})
}

func (c *Client) batch(ctx context.Context, msgs []*Message, o sendOpts) ([]BatchResult, error) {
	res, errs := c.run(ctx, msgs, o)
	out := make([]BatchResult, len(msgs))
	var first error
	for i := range msgs {
		out[i] = BatchResult{Result: res[i], Err: errs[i]}
		if errs[i] != nil && first == nil {
			first = errs[i]
		}
	}
	return out, first
}

// send runs one mail transaction.
func (c *Client) send(ctx context.Context, m *Message, o sendOpts) (*Result, error) {
	res, errs := c.run(ctx, []*Message{m}, o)
	return res[0], errs[0]
}

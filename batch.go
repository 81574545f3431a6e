package tlsmail

import (
	"context"
)

// A BatchResult is the outcome of one message of SendBatch.
type BatchResult struct {
	// Result holds the per-recipient outcome and the final reply, as
	// Send returns them; nil when the message was not attempted or its
	// MAIL command was refused.
	Result *Result
	// Err is nil when the message was accepted, as Send's error.
	Err error
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

// SendBatch dials addr as DialContext does, authenticates with a if it is
// not nil, sends msgs as Client.SendBatch does and ends the session with
// QUIT, which rides with the last message.
func (d *Dialer) SendBatch(ctx context.Context, addr string, a Auth, msgs []*Message) ([]BatchResult, error) {
	var res []BatchResult
	err := d.oneSession(ctx, addr, a, func(c *Client) (err error) {
		res, err = c.batch(ctx, msgs, sendOpts{stream: true, lastUse: true})
		return err
	})
	return res, err
}

package tlsmail

import (
	"context"
)

// A BatchResult is the outcome of one message of SendBatch.
type BatchResult struct {
	// Result holds the per-recipient outcome and the final reply, as
	// Send returns them; nil when the message was not attempted.
	Result *Result
	// Err is nil when the message was accepted, as Send's error.
	Err error
}

// SendBatch sends msgs on the Client's connection, one transaction each,
// and returns one BatchResult per message, in order. err is nil only when
// every message was accepted; it is the first failure otherwise.
func (c *Client) SendBatch(ctx context.Context, msgs []*Message) ([]BatchResult, error) {
	out := make([]BatchResult, len(msgs))
	var first error
	for i, m := range msgs {
		res, err := c.send(ctx, m, false)
		out[i] = BatchResult{Result: res, Err: err}
		if err != nil && first == nil {
			first = err
		}
	}
	return out, first
}

// SendBatch dials addr as DialContext does, authenticates with a if it is
// not nil, sends msgs as Client.SendBatch does and ends the session with
// QUIT.
func (d *Dialer) SendBatch(ctx context.Context, addr string, a Auth, msgs []*Message) ([]BatchResult, error) {
	c, err := d.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if a != nil {
		if err := c.authenticate(ctx, a); err != nil {
			if c.err == nil {
				c.quit(ctx)
			}
			return nil, err
		}
	}
	res, err := c.SendBatch(ctx, msgs)
	if c.err == nil {
		c.quit(ctx)
	}
	return res, err
}

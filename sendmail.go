package tlsmail

import (
	"bytes"
	"context"
	"fmt"
)

// SendMail connects to the server at addr over implicit TLS (RFC 8314),
// authenticates with a if it is not nil, sends an email from address from
// to addresses to, with message msg. addr must include a port, usually 465.
//
// It has the signature of net/smtp.SendMail and differs in being secure:
// the connection is TLS from its first byte, the certificate is verified
// for the host in addr against the system roots, and nothing is ever sent
// in plaintext. For port 587 (STARTTLS) or other settings, use a Dialer.
//
// The msg parameter should be an RFC 822-style email with headers first, a
// blank line, and then the message body. Its line endings are normalised
// to CRLF and lines starting with "." are escaped, so msg may use "\n".
// All addresses are checked before connecting: one containing CR, LF, NUL,
// spaces or angle brackets is an ErrInvalidInput error.
//
// SendMail asks for SMTPUTF8 (RFC 6531) only when an address or a header
// is not ASCII. It returns nil only when the server accepted the message
// for every recipient. Errors are the values net/smtp returns (a reply is
// a *textproto.Error, a closed connection io.EOF), except tlsmail's own
// conditions, and ErrUnknownOutcome when the connection failed after the
// whole message was sent. Once the message is accepted, the result of
// QUIT changes nothing: SendMail returns nil.
func SendMail(addr string, a Auth, from string, to []string, msg []byte) error {
	var d Dialer
	return netsmtpError(d.SendMailContext(context.Background(), addr, a, from, to, msg))
}

// SendMailContext is like SendMail, with ctx bounding the whole exchange;
// cancelling it interrupts the I/O in flight and returns promptly. Unlike
// SendMail, it is not a net/smtp name: a reply error is an *Error.
func SendMailContext(ctx context.Context, addr string, a Auth, from string, to []string, msg []byte) error {
	var d Dialer
	return d.SendMailContext(ctx, addr, a, from, to, msg)
}

// SendMail is like the package-level SendMail, connecting as d says, and
// returns reply errors as *Error.
func (d *Dialer) SendMail(addr string, a Auth, from string, to []string, msg []byte) error {
	return d.SendMailContext(context.Background(), addr, a, from, to, msg)
}

// SendMailContext is like SendMail, with ctx bounding the whole exchange.
func (d *Dialer) SendMailContext(ctx context.Context, addr string, a Auth, from string, to []string, msg []byte) error {
	if err := checkEnvelope(from, to); err != nil {
		return err
	}
	// sendMail authenticates itself: it needs to say when the server
	// offers no AUTH at all.
	return d.oneSession(ctx, addr, nil, func(c *Client) error {
		return c.sendMail(ctx, a, from, to, msg)
	})
}

// sendMail is SendMail on a connected Client: AUTH, then one transaction
// that stops at the first refused recipient, as net/smtp's does.
func (c *Client) sendMail(ctx context.Context, a Auth, from string, to []string, msg []byte) error {
	if err := c.session(ctx); err != nil {
		return err
	}
	if a != nil {
		if _, ok := c.ext["AUTH"]; !ok {
			return fmt.Errorf("%w: the server offered no AUTH after TLS", ErrAuthUnsupported)
		}
		if err := c.authenticate(ctx, a); err != nil {
			return err
		}
	}
	// A Buffer, not a Reader, because inspect scans a Buffer's bytes in
	// place; reading it leaves msg as it was.
	_, err := c.send(ctx, &Message{From: from, To: to, Body: bytes.NewBuffer(msg)}, sendOpts{firstRefusal: true, lastUse: true})
	return err
}

// Send dials addr as DialContext does, authenticates with a if it is not
// nil, sends m as Client.Send does and ends the session with QUIT, which
// rides with the end of the message. Because the session ends, DATA goes
// in the envelope's group even for an all-or-nothing message with several
// recipients: if one is refused, the connection is closed before the end
// of data, which delivers the message to nobody (RFC 5321 section 3.8).
func (d *Dialer) Send(ctx context.Context, addr string, a Auth, m *Message) (*Result, error) {
	if err := checkEnvelope(m.From, m.To); err != nil {
		return nil, err
	}
	var res *Result
	err := d.oneSession(ctx, addr, a, func(c *Client) (err error) {
		res, err = c.send(ctx, m, sendOpts{lastUse: true})
		return err
	})
	return res, err
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

// oneSession dials addr, authenticates with a if it is not nil, runs f
// and ends the session with QUIT (which f's last message may already
// have sent along with it) while the server is still responsive, so that
// it does not log a lost connection. After f, QUIT's result changes
// nothing: a message accepted stays accepted.
func (d *Dialer) oneSession(ctx context.Context, addr string, a Auth, f func(c *Client) error) error {
	c, err := d.DialContext(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if a != nil {
		err = c.authenticate(ctx, a)
	}
	if err == nil {
		err = f(c)
	}
	if c.err == nil {
		c.quit(ctx)
	}
	return err
}

// checkEnvelope validates every address before anything is sent.
func checkEnvelope(from string, to []string) error {
	if err := checkSender(from); err != nil {
		return err
	}
	if len(to) == 0 {
		return fmt.Errorf("%w: no recipients", ErrInvalidInput)
	}
	for _, r := range to {
		if err := checkRecipient(r); err != nil {
			return err
		}
	}
	return nil
}

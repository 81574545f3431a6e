package tlsmail

import (
	"bytes"
	"context"
	"fmt"

	"github.com/tlsmail/tlsmail/internal/wire"
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

// checkEnvelope validates every address before anything is sent.
func checkEnvelope(from string, to []string) error {
	if err := wire.CheckAddress(from); err != nil {
		return fmt.Errorf("%w: sender %q %v", ErrInvalidInput, from, err)
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

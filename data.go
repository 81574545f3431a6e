package tlsmail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/tlsmail/tlsmail/internal/wire"
)

// Data issues a DATA command to the server and returns a writer that can be
// used to write the mail headers and body. The caller should close the
// writer before calling any more methods on c. A call to Data must be
// preceded by one or more calls to Rcpt.
//
// The writer turns bare CR and bare LF into CRLF and dot-stuffs lines that
// start with "." as it streams (RFC 5321 section 4.5.2), so no content can
// end the data early. Close adds a final CRLF if the message lacks one,
// sends the end-of-data marker and returns nil only when the server
// accepted the message with 250. If the connection fails after the whole
// message was sent but before that reply, Close returns an error matching
// ErrUnknownOutcome: the message may have been delivered.
//
// The Dialer's DataTimeout bounds each stall while writing (the deadline is
// renewed for every piece the network takes, so a large message on a slow
// but healthy link is never cut off) and the wait for the final reply.
func (c *Client) Data() (io.WriteCloser, error) {
	w, err := c.data(context.Background())
	if err != nil {
		return nil, c.export(err)
	}
	return w, nil
}

func (c *Client) data(ctx context.Context) (*dataWriter, error) {
	if err := c.mailReady(ctx, "DATA"); err != nil {
		return nil, err
	}
	// Anything but 354 means the server will not read message data, so
	// not one byte of it is sent.
	if _, err := c.exchange(ctx, "DATA", c.timeouts.command, []int{354}, "DATA"); err != nil {
		return nil, err
	}
	if err := c.unsolicited("the DATA message"); err != nil {
		return nil, err
	}
	c.dataOpen = true
	out := &stallWriter{conn: c.conn, ctx: ctx, d: c.timeouts.data}
	w := &dataWriter{c: c, ctx: ctx, dot: wire.NewDotWriter(out)}
	if ctx.Done() != nil {
		w.stop = context.AfterFunc(ctx, interrupter(c.conn))
	}
	return w, nil
}

// stallWriter writes message data to the connection in pieces of at most
// stallPiece bytes, each with a fresh write deadline, so that DataTimeout
// bounds a stall and not the whole message (RFC 5321 section 4.5.3.2.5:
// the timeout applies to each TCP SEND). A 25 MB message on a 40 KB/s
// link takes ten minutes in all, yet never stalls.
type stallWriter struct {
	conn net.Conn
	ctx  context.Context
	d    time.Duration
}

// stallPiece is the largest piece written under one deadline.
const stallPiece = 64 * 1024

func (w *stallWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), stallPiece)
		w.conn.SetWriteDeadline(deadline(w.d))
		// Why check after setting the deadline: a cancelled context has
		// already pushed the deadline into the past, and renewing it
		// undid that; without the check a cancelled send would wait out
		// the DataTimeout.
		if err := w.ctx.Err(); err != nil {
			return n, err
		}
		m, err := w.conn.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// dataWriter is the io.WriteCloser returned by Data.
type dataWriter struct {
	c      *Client
	ctx    context.Context
	dot    *wire.DotWriter
	stop   func() bool
	closed bool
	n      int64 // octets taken, for the trace
}

func (w *dataWriter) Write(p []byte) (int, error) {
	n, err := w.write(p)
	return n, w.c.export(err)
}

func (w *dataWriter) write(p []byte) (int, error) {
	c := w.c
	if w.closed {
		return 0, errors.New("tlsmail: write to closed Data writer")
	}
	if c.err != nil {
		return 0, c.unusable()
	}
	if err := w.cancelled(); err != nil {
		return 0, err
	}
	n, err := w.dot.Write(p)
	w.n += int64(n)
	if err != nil {
		return n, c.fail(w.ioError("writing message data", c.timeouts.data, err))
	}
	return n, nil
}

func (w *dataWriter) Close() error {
	return w.c.export(w.close())
}

func (w *dataWriter) close() error {
	return w.closeReply()
}

// closeReply sends the end-of-data marker and checks the server's reply.
func (w *dataWriter) closeReply() error {
	c := w.c
	if w.closed {
		return errors.New("tlsmail: Data writer already closed")
	}
	w.closed = true
	c.dataOpen = false
	defer func() {
		if w.stop != nil {
			w.stop()
		}
	}()
	if c.err != nil {
		return c.unusable()
	}
	if err := w.cancelled(); err != nil {
		return err
	}
	if err := w.dot.Close(); err != nil {
		return c.fail(w.ioError("writing message data", c.timeouts.data, err))
	}
	// The end-of-data marker has been sent: from here on the server may
	// have taken responsibility for the message, and a failure means the
	// outcome is unknown. RFC 5321 section 4.5.3.2.6: the server may take
	// a while to accept.
	c.tr.data("DATA", w.n, 0)
	rep, err := c.receive(w.ctx, "end of data", "reading reply to end of data", c.timeouts.data, time.Now())
	if err != nil {
		// Why a distinct error: without the final reply nobody knows
		// whether the server took the message; a caller that resends on
		// every error would deliver it twice.
		return &unknownOutcome{err}
	}
	c.conn.SetReadDeadline(time.Time{})
	return c.check("DATA", rep, []int{250})
}

// cancelled reports a cancelled context as the failure of the session.
func (w *dataWriter) cancelled() error {
	if err := w.ctx.Err(); err != nil {
		return w.c.fail(fmt.Errorf("tlsmail: writing message data: %w", err))
	}
	return nil
}

func (w *dataWriter) ioError(step string, d time.Duration, err error) error {
	if w.ctx.Err() != nil {
		return fmt.Errorf("tlsmail: %s: %w", step, w.ctx.Err())
	}
	return ioError(step, d, err)
}

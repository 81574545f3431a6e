package wire

import (
	"bytes"
	"errors"
	"io"
)

// DotWriter streams a message body as SMTP DATA content (RFC 5321 section
// 4.5.2): every line ending becomes CRLF and every line that starts with
// "." gets one more. It keeps only two bits of state between writes, so a
// message of any size passes through without a copy.
//
// Bare CR and bare LF are turned into CRLF rather than passed through
// because servers disagree on what ends a line; a sequence such as
// "\n.\n" or "\r.\r\n" that one hop reads as end-of-data and another as
// text is the SMTP smuggling attack (CVE-2023-51764 and its family). After
// normalisation the only "CRLF . CRLF" on the wire is the one Close writes.
type DotWriter struct {
	w       io.Writer
	midLine bool // the last byte written was not a line ending
	cr      bool // the last input byte was a CR whose line ending is pending
	closed  bool
	buf     []byte
}

// NewDotWriter returns a DotWriter that writes to w.
func NewDotWriter(w io.Writer) *DotWriter {
	return &DotWriter{w: w}
}

// Write converts p and writes it. It returns len(p) on success: the number of
// input bytes consumed, not the number written.
func (d *DotWriter) Write(p []byte) (int, error) {
	if d.closed {
		return 0, errors.New("write after Close")
	}
	out := d.buf[:0]
	n := len(p)
	for len(p) > 0 {
		if d.cr {
			// A CR was seen; whatever follows, the line has ended.
			d.cr = false
			out = append(out, '\r', '\n')
			d.midLine = false
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		if !d.midLine && p[0] == '.' {
			out = append(out, '.') // RFC 5321 section 4.5.2: transparency
		}
		i := bytes.IndexAny(p, "\r\n")
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if len(out)+len(seg) > flushSize {
			// Why: a long line goes straight through rather than into
			// out, so memory stays bounded whatever the message holds.
			if err := d.flush(out); err != nil {
				return 0, err
			}
			out = out[:0]
			if err := d.flush(seg); err != nil {
				return 0, err
			}
		} else {
			out = append(out, seg...)
		}
		if i < 0 {
			d.midLine = true
			break
		}
		if p[i] == '\r' {
			d.cr = true
			d.midLine = i > 0 || d.midLine
		} else {
			out = append(out, '\r', '\n')
			d.midLine = false
		}
		p = p[i+1:]
		if len(out) >= flushSize {
			if err := d.flush(out); err != nil {
				return 0, err
			}
			out = out[:0]
		}
	}
	if err := d.flush(out); err != nil {
		return 0, err
	}
	d.buf = out[:0]
	return n, nil
}

// flushSize is how much converted output Write collects before passing it
// on; out never grows much beyond it.
const flushSize = 32 * 1024

func (d *DotWriter) flush(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := d.w.Write(b)
	return err
}

// Close ends the last line if the message did not, then writes the
// end-of-data marker ".\r\n". It does not close the underlying writer.
func (d *DotWriter) Close() error {
	if d.closed {
		return errors.New("DotWriter already closed")
	}
	d.closed = true
	var tail []byte
	if d.cr || d.midLine {
		tail = append(tail, '\r', '\n') // a message without a final CRLF gets one
	}
	tail = append(tail, '.', '\r', '\n')
	_, err := d.w.Write(tail)
	return err
}

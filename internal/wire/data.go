package wire

import (
	"bytes"
	"errors"
	"io"
)

// RecordSize is the largest TLS record payload (RFC 8446 section 5.1).
// The writers in this file hand the connection whole multiples of it, so
// that crypto/tls sends full records rather than a small one after each
// write.
const RecordSize = 16384

// dataBlock is how much converted DATA content a DotWriter gathers before
// writing it: four full TLS records.
const dataBlock = 4 * RecordSize

var (
	crlf      = []byte("\r\n")
	dot       = []byte(".")
	endOfData = []byte(".\r\n")
)

// lines normalises line endings as content streams through it: every
// bare CR, bare LF and CRLF leaves as CRLF, and, with stuff, a line that
// starts with "." gets one more (RFC 5321 section 4.5.2). It keeps two
// bits of state between calls.
//
// Bare CR and bare LF are turned into CRLF rather than passed through
// because servers disagree on what ends a line; a sequence such as
// "\n.\n" or "\r.\r\n" that one hop reads as end of data and another as
// text is the SMTP smuggling attack (CVE-2023-51764 and its family).
// After normalisation the only "CRLF . CRLF" on the wire is the one the
// writer adds at the end.
type lines struct {
	stuff   bool
	crlf    bool // the content's line endings were checked: all CRLF
	prevCR  bool // with crlf: the previous write ended in CR
	midLine bool // the last byte passed on did not end a line
	cr      bool // the last input byte was a CR whose line ending is pending
}

// convert passes p on to out, normalised. Runs of input that need no
// change go out as one piece; the scan uses two IndexByte searches per
// line, which are vectorised, rather than a byte loop.
func (l *lines) convert(p []byte, out *block) error {
	if l.crlf {
		return l.convertCRLF(p, out)
	}
	if l.cr && len(p) > 0 {
		// The CR that ended the previous write ended a line whatever
		// follows it.
		l.cr, l.midLine = false, false
		if err := out.put(crlf); err != nil {
			return err
		}
		if p[0] == '\n' {
			p = p[1:]
		}
	}
	start, k := 0, 0 // p[start:k] is pending unchanged output
	for k < len(p) {
		if l.stuff && !l.midLine && p[k] == '.' {
			// The extra dot goes out before the line's own, which stays
			// in the pending run.
			if err := out.put2(p[start:k], dot); err != nil {
				return err
			}
			start = k
		}
		rest := p[k:]
		i := bytes.IndexByte(rest, '\n')
		seg := rest
		if i >= 0 {
			seg = rest[:i]
		}
		j := bytes.IndexByte(seg, '\r')
		switch {
		case j >= 0 && i >= 0 && j == i-1:
			// CRLF: the line is already right.
			k += i + 1
			l.midLine = false
		case j >= 0 && i < 0 && j == len(seg)-1:
			// A CR at the end of the input: whether it is bare depends on
			// the next write.
			if err := out.put(p[start : k+j]); err != nil {
				return err
			}
			k = len(p)
			start = k
			l.cr = true
		case j >= 0:
			// A bare CR inside the line ends it.
			if err := out.put2(p[start:k+j], crlf); err != nil {
				return err
			}
			k += j + 1
			start = k
			l.midLine = false
		case i >= 0:
			// A bare LF.
			if err := out.put2(p[start:k+i], crlf); err != nil {
				return err
			}
			k += i + 1
			start = k
			l.midLine = false
		default:
			// No line ending in the rest of the input.
			k = len(p)
			l.midLine = true
		}
	}
	return out.put(p[start:k])
}

// convertCRLF is convert for content whose every line ending is known to
// be CRLF: it visits each line start once, for dot-stuffing, and without
// stuff passes the content on whole. A bare LF, which the check should
// have ruled out, still ends its line properly: the rest of the content
// then goes the careful way.
func (l *lines) convertCRLF(p []byte, out *block) error {
	if len(p) == 0 {
		return nil
	}
	if !l.stuff {
		l.midLine = p[len(p)-1] != '\n'
		return out.put(p)
	}
	defer func() { l.prevCR = p[len(p)-1] == '\r' }()
	start, k := 0, 0
	for k < len(p) {
		if !l.midLine && p[k] == '.' {
			if err := out.put2(p[start:k], dot); err != nil {
				return err
			}
			start = k
		}
		i := bytes.IndexByte(p[k:], '\n')
		if i < 0 {
			l.midLine = true
			break
		}
		var afterCR bool
		switch {
		case i > 0:
			afterCR = p[k+i-1] == '\r'
		case k > 0:
			afterCR = p[k-1] == '\r'
		default:
			afterCR = l.prevCR
		}
		if !afterCR {
			// Not CRLF after all (a body changed since it was checked):
			// no shortcut for the rest.
			if err := out.put(p[start:k]); err != nil {
				return err
			}
			l.crlf = false
			if start == k && k < len(p) && p[k] == '.' && !l.midLine {
				l.midLine = true // this line's dot is already doubled
			}
			return l.convert(p[k:], out)
		}
		k += i + 1
		l.midLine = false
	}
	return out.put(p[start:])
}

// end ends the last line if the content did not.
func (l *lines) end(out *block) error {
	if l.cr || l.midLine {
		l.cr, l.midLine = false, false
		return out.put(crlf)
	}
	return nil
}

// block gathers output and hands it on to full a whole block at a time:
// buf holds head bytes of room (for a BDAT header) and then up to size
// bytes of content. buf grows as content arrives, so a short message
// costs little, and never beyond one block, so memory stays flat
// whatever the message size.
type block struct {
	head, size int
	buf        []byte
	full       func(b []byte) error // b is buf when full, or a pass-through run
	err        error
	// direct lets a long run bypass buf when buf is empty (DATA only:
	// BDAT frames need a header in front of every chunk).
	direct bool
}

func newBlock(head, size int, direct bool, full func([]byte) error) block {
	return block{head: head, size: size, direct: direct, full: full,
		buf: make([]byte, head, head+min(size, 512))}
}

// pending returns the content gathered and not yet handed on.
func (b *block) pending() []byte { return b.buf[b.head:] }

func (b *block) put2(x, y []byte) error {
	if err := b.put(x); err != nil {
		return err
	}
	return b.put(y)
}

func (b *block) put(p []byte) error {
	if b.err != nil {
		return b.err
	}
	for len(p) > 0 {
		if b.direct && len(b.buf) == b.head && len(p) >= b.size {
			m := len(p) - len(p)%b.size
			if b.err = b.full(p[:m]); b.err != nil {
				return b.err
			}
			p = p[m:]
			continue
		}
		c := min(len(p), b.head+b.size-len(b.buf))
		b.buf = append(b.buf, p[:c]...)
		p = p[c:]
		if len(b.buf) == b.head+b.size {
			if b.err = b.full(b.buf); b.err != nil {
				return b.err
			}
			b.buf = b.buf[:b.head]
		}
	}
	return nil
}

// DotWriter streams a message body as SMTP DATA content (RFC 5321
// section 4.5.2): every line ending becomes CRLF, every line that starts
// with "." gets one more, and Close adds the end-of-data marker. It
// writes whole multiples of RecordSize until Close.
type DotWriter struct {
	// CRLF, set before the first Write, says that the caller has checked
	// every line ending of the content to be CRLF, with no bare CR or
	// LF: the writer then only looks for the starts of lines.
	CRLF bool

	w       io.Writer
	l       lines
	out     block
	started bool
	closed  bool
}

// NewDotWriter returns a DotWriter that writes to w.
func NewDotWriter(w io.Writer) *DotWriter {
	d := &DotWriter{w: w, l: lines{stuff: true}}
	d.out = newBlock(0, dataBlock, true, d.write)
	return d
}

func (d *DotWriter) write(b []byte) error {
	_, err := d.w.Write(b)
	return err
}

// Write converts p and writes it. It returns len(p) on success: the
// number of input bytes consumed, not the number written.
func (d *DotWriter) Write(p []byte) (int, error) {
	if d.closed {
		return 0, errors.New("write after Close")
	}
	if !d.started {
		d.started = true
		d.l.crlf = d.CRLF
	}
	if err := d.l.convert(p, &d.out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the last line if the message did not, then writes what is
// left with the end-of-data marker ".\r\n". It does not close the
// underlying writer.
func (d *DotWriter) Close() error {
	if d.closed {
		return errors.New("DotWriter already closed")
	}
	d.closed = true
	if err := d.l.end(&d.out); err != nil {
		return err
	}
	if err := d.out.put(endOfData); err != nil {
		return err
	}
	return d.write(d.out.pending())
}

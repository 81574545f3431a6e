package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Limits on what the client reads. Each bounds memory or time that a
// hostile or broken server could otherwise make unbounded.
const (
	// maxStatusLine is the longest status line, and the longest line of a
	// CAPA, LIST or UIDL listing, CRLF included: RFC 2449 section 4 caps
	// response lines at 512 octets.
	maxStatusLine = 512

	// MaxLineLength is the longest line of message content the client
	// accepts from RETR or TOP, CRLF and a stuffed dot included. RFC 5322
	// section 2.1.1 allows 998 octets; 64 KiB leaves room for the
	// malformed mail found in real mailboxes while bounding the buffer a
	// server can make the client hold. A longer line is an ErrProtocol
	// error, never a line broken in two.
	MaxLineLength = 64 << 10

	// maxListing bounds the bytes of a CAPA, LIST or UIDL listing: at
	// the 512 octets of a line, some 130,000 lines, far more than any
	// mailbox a POP3 server hands out at once, while an endless listing
	// stops after 64 MiB.
	maxListing = 64 << 20

	// maxCapaLines bounds CAPA's lines; real servers send a dozen.
	maxCapaLines = 100
)

// errLineTooLong is wrapped in the ErrProtocol error for a line over its
// limit.
var errLineTooLong = errors.New("line too long")

// readLine returns the next line from r without its line ending, which
// must be CRLF or LF, refusing a line longer than max bytes with its
// ending. The returned slice is valid until the next read from r. A
// missing line ending at EOF is io.ErrUnexpectedEOF.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	line, err := readRawLine(r, max)
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readRawLine returns the next line from r with its LF, refusing a line
// longer than max bytes. r's buffer must be at least max bytes.
func readRawLine(r *bufio.Reader, max int) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	switch {
	case err == nil && len(line) <= max:
		return line, nil
	case err == nil, errors.Is(err, bufio.ErrBufferFull):
		// Why an error and not a split line: a line broken in two by the
		// client changes the message (a "." at the split becomes the end
		// of the response), and an unbounded line is unbounded memory.
		return nil, fmt.Errorf("%w: %w: more than %d bytes", ErrProtocol, errLineTooLong, max)
	case errors.Is(err, io.EOF):
		// Why unexpected: a line cut short by EOF is not a line, and
		// the connection ended in the middle of a response.
		return nil, io.ErrUnexpectedEOF
	}
	return nil, err
}

// A dotReader reads a multi-line response (RFC 1939 section 3) from r:
// it removes the dot that byte-stuffs each line beginning with ".", stops
// at the terminating ".CRLF" line, and gives the content with its line
// endings exactly as sent. It returns an error, never a short success,
// when the response ends without the terminating line, when a line is
// longer than maxLine, or when the content exceeds limit bytes.
type dotReader struct {
	r       *bufio.Reader
	maxLine int
	limit   int64  // the most content bytes allowed
	why     string // where limit comes from, for the error
	what    string

	n       int64  // content bytes returned so far
	pending []byte // the rest of the current line, inside r's buffer
	err     error  // sticky: io.EOF at the end, or the failure
	before  func() // called before each read from r (deadlines)
}

// Read implements io.Reader.
func (d *dotReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(d.pending) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.next()
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

// next reads the next line into pending, or sets err.
func (d *dotReader) next() {
	if d.before != nil {
		d.before()
	}
	line, err := readRawLine(d.r, d.maxLine)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: %s ended without its terminating \".\" line: %w", ErrProtocol, d.what, io.ErrUnexpectedEOF)
		} else if errors.Is(err, errLineTooLong) {
			err = protocolError("%s: a line longer than %d bytes", d.what, d.maxLine)
		}
		d.err = err
		return
	}
	if line[0] == '.' {
		switch {
		case bytes.Equal(line, []byte(".\r\n")):
			d.err = io.EOF
			return
		case bytes.Equal(line, []byte(".\n")):
			// Why refuse: a terminator with a bare LF is neither content
			// (a lone "." would have been stuffed) nor the terminator
			// RFC 1939 defines; guessing either way risks a truncated
			// message or one that swallows the next response.
			d.err = fmt.Errorf("%w: %s: terminating line ends in a bare LF", ErrProtocol, d.what)
			return
		}
		// RFC 1939 section 3: a line that begins with the termination
		// octet and has more after it loses that first octet.
		line = line[1:]
	}
	if d.n+int64(len(line)) > d.limit {
		// Why an error: the limit is the size the server announced (LIST)
		// or the client's cap; more bytes are either a server that lies
		// about sizes or one that never ends.
		d.err = fmt.Errorf("%w: %s: more than %d bytes, %s", ErrProtocol, d.what, d.limit, d.why)
		return
	}
	d.n += int64(len(line))
	d.pending = line
}

// drain reads the rest of the response, discarding it, and reports
// whether it ended properly (nil) or how it failed.
func (d *dotReader) drain() error {
	for d.err == nil {
		d.pending = nil
		d.next()
	}
	d.pending = nil
	if d.err == io.EOF {
		return nil
	}
	return d.err
}

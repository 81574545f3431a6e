package tlsmail

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// content is what Send knows about a message body before sending it.
type content struct {
	r        io.Reader
	size     int64 // octets after CRLF normalisation; -1 if unknown
	known    bool  // the whole content was inspected
	eightBit bool  // a byte >= 0x80 (known content only)
	utf8Head bool  // a byte >= 0x80 in the header section
}

// maxHeaderPeek bounds how much of a streamed body is read ahead to look
// at its header section.
const maxHeaderPeek = 64 * 1024

// inspect looks at m.Body without consuming it. An in-memory body is
// scanned once, in place or in 32 KiB pieces through ReadAt, never
// copied whole: SendMail's message may be large.
func inspect(body io.Reader) content {
	var sc contentScan
	switch b := body.(type) {
	case *bytes.Buffer:
		sc.feed(b.Bytes())
	case *bytes.Reader:
		sc.feedAt(b, b.Size()-int64(b.Len()), b.Size())
	case *strings.Reader:
		sc.feedAt(b, b.Size()-int64(b.Len()), b.Size())
	default:
		br := bufio.NewReaderSize(body, maxHeaderPeek)
		peek, _ := br.Peek(maxHeaderPeek)
		sc.feed(peek)
		return content{r: br, size: -1, utf8Head: sc.utf8Head}
	}
	return content{r: body, size: sc.size(), known: true, eightBit: sc.eightBit, utf8Head: sc.utf8Head}
}

// contentScan works out, in one pass, what inspect needs: the size once
// line endings are normalised, and where 8-bit bytes are.
type contentScan struct {
	n          int64 // bytes seen
	extra      int64 // bytes the CRLF normalisation adds
	prev, prv2 byte  // the last two bytes seen
	bodyStart  bool  // the empty line ending the header section was seen
	eightBit   bool  // a byte >= 0x80 anywhere
	utf8Head   bool  // a byte >= 0x80 in the header section
}

func (sc *contentScan) feed(p []byte) {
	for _, c := range p {
		if c >= 0x80 {
			sc.eightBit = true
			sc.utf8Head = sc.utf8Head || !sc.bodyStart
		}
		switch {
		case c == '\n' && sc.prev != '\r':
			sc.extra++ // a bare LF becomes CRLF
		case sc.prev == '\r' && c != '\n':
			sc.extra++ // the CR before this byte was bare
		}
		if c == '\n' && (sc.prev == '\n' || sc.prev == '\r' && sc.prv2 == '\n') {
			sc.bodyStart = true
		}
		sc.prv2, sc.prev = sc.prev, c
		sc.n++
	}
}

// feedAt scans r from off to end.
func (sc *contentScan) feedAt(r io.ReaderAt, off, end int64) {
	buf := make([]byte, min(end-off, 32*1024))
	for off < end {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
		sc.feed(buf[:n])
		off += int64(n)
		if err != nil && n == 0 {
			return
		}
	}
}

// size is the number of octets the data writer sends for the content
// without dot-stuffing (RFC 1870 section 3: the size counts CRLF pairs,
// not transparency dots): every line ending CRLF, the last line ended.
func (sc *contentScan) size() int64 {
	n := sc.n + sc.extra
	switch {
	case sc.prev == '\r':
		n++ // a final bare CR becomes CRLF
	case sc.n > 0 && sc.prev != '\n':
		n += 2 // a final CRLF is added
	}
	return n
}

func isASCIIBytes(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

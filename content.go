package tlsmail

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"strings"
)

// content is what Send knows about a message body before sending it.
type content struct {
	r        io.Reader
	size     int64 // octets after CRLF normalisation; -1 if unknown
	known    bool  // the whole content was inspected
	eightBit bool  // a byte >= 0x80 (known content only)
	crlf     bool  // every line ends in CRLF, no bare CR or LF (known content only)
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
	crlf := sc.extra == 0 && sc.prev != '\r'
	return content{r: body, size: sc.size(), known: true, eightBit: sc.eightBit, utf8Head: sc.utf8Head, crlf: crlf}
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
	if !sc.bodyStart {
		end, found := sc.headerEnd(p)
		if head := p[:end]; !isASCIIBytes(head) {
			sc.eightBit, sc.utf8Head = true, true
		}
		sc.count(p[:end])
		sc.bodyStart = found
		p = p[end:]
	}
	if !sc.eightBit && !isASCIIBytes(p) {
		sc.eightBit = true
	}
	sc.count(p)
}

// headerEnd returns how much of p belongs to the header section: up to
// and including the LF that ends its empty line, if p has it (found).
// It hops from line end to line end: a header is a few lines, and
// content without a blank line costs one search per line.
func (sc *contentScan) headerEnd(p []byte) (end int, found bool) {
	at := func(j int) byte { // p[j], or the bytes before p for j < 0
		switch {
		case j >= 0:
			return p[j]
		case j == -1:
			return sc.prev
		default:
			return sc.prv2
		}
	}
	for k := 0; ; {
		i := bytes.IndexByte(p[k:], '\n')
		if i < 0 {
			return len(p), false
		}
		j := k + i
		if at(j-1) == '\n' || at(j-1) == '\r' && at(j-2) == '\n' {
			return j + 1, true
		}
		k = j + 1
	}
}

// count adds p's octets, and the octets CRLF normalisation adds, with
// vectorised searches: a message may be tens of megabytes.
func (sc *contentScan) count(p []byte) {
	if len(p) == 0 {
		return
	}
	lf := int64(bytes.Count(p, lfByte))
	var cr, pairs int64
	for q := p; ; {
		// Hopping from CR to CR: bytes.Count(p, "\r\n") costs twice
		// as much, and the CRs need counting anyway.
		i := bytes.IndexByte(q, '\r')
		if i < 0 {
			break
		}
		cr++
		if i+1 < len(q) && q[i+1] == '\n' {
			pairs++
		}
		q = q[i+1:]
	}
	bareLF := lf - pairs
	bareCR := cr - pairs // a CR at the very end is not yet known to be bare
	if p[len(p)-1] == '\r' {
		bareCR--
	}
	if sc.prev == '\r' {
		if p[0] == '\n' {
			bareLF-- // the pair spans the two pieces
		} else {
			bareCR++ // the previous piece's final CR was bare
		}
	}
	sc.extra += bareLF + bareCR
	sc.n += int64(len(p))
	if len(p) >= 2 {
		sc.prv2, sc.prev = p[len(p)-2], p[len(p)-1]
	} else {
		sc.prv2, sc.prev = sc.prev, p[0]
	}
}

var lfByte = []byte{'\n'}

// feedByte counts one byte of the header section.
func (sc *contentScan) feedByte(c byte) {
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

// isASCIIBytes reports whether b has no byte >= 0x80, 32 bytes at a
// time: a message may be tens of megabytes.
func isASCIIBytes(b []byte) bool {
	const hi = 0x8080808080808080
	for len(b) >= 32 {
		w := binary.NativeEndian.Uint64(b) | binary.NativeEndian.Uint64(b[8:]) |
			binary.NativeEndian.Uint64(b[16:]) | binary.NativeEndian.Uint64(b[24:])
		if w&hi != 0 {
			return false
		}
		b = b[32:]
	}
	for len(b) >= 8 {
		if binary.NativeEndian.Uint64(b)&hi != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

package wire

import (
	"errors"
	"io"
	"strconv"
)

// ChunkWriter streams a message body as BDAT chunks (RFC 3030 section
// 2): line endings are normalised to CRLF as by DotWriter, but nothing is
// dot-stuffed, since a chunk's length and not its content ends it. Each
// full chunk goes out as one write of the "BDAT n" command and its n
// octets, together exactly the frame size given to NewChunkWriter; Close
// sends the rest with LAST.
type ChunkWriter struct {
	// CRLF, set before the first Write, says that the caller has checked
	// every line ending of the content to be CRLF, with no bare CR or
	// LF: the writer then passes the content on as it is.
	CRLF bool

	w    io.Writer
	l    lines
	out  block
	hdr  []byte // "BDAT n\r\n" for a full chunk
	sent int    // chunks written, LAST included
	last int    // the size of the chunk written last

	// OnChunk, if set, is called after each full chunk has been written
	// (not after the LAST one). An error it returns stops the writer and
	// is returned by the Write in progress and every later call.
	OnChunk func() error

	err     error
	started bool
	closed  bool
}

// reserve is room for the longest header: "BDAT " + size + " LAST\r\n".
const reserve = 5 + 20 + 7

// NewChunkWriter returns a ChunkWriter whose full chunks, each with its
// BDAT command, take frame bytes on the wire (one fewer in the rare case
// that no payload length fits exactly); a multiple of RecordSize makes
// every chunk whole TLS records.
func NewChunkWriter(w io.Writer, frame int) *ChunkWriter {
	// The payload is the frame less its header, whose length depends on
	// the payload's number of digits; at a change in the number of digits
	// (a frame of 18, say) no payload fits exactly and one octet is spare.
	payload := frame - len("BDAT 0\r\n")
	for payload > 0 && len("BDAT \r\n")+len(strconv.Itoa(payload))+payload > frame {
		payload--
	}
	if payload < 1 {
		panic("wire: BDAT frame too small")
	}
	c := &ChunkWriter{w: w}
	c.hdr = []byte("BDAT " + strconv.Itoa(payload) + "\r\n")
	c.out = newBlock(reserve, payload, false, c.chunk)
	return c
}

// chunk writes a full frame: the header goes into the room in front.
func (c *ChunkWriter) chunk(frame []byte) error {
	start := reserve - len(c.hdr)
	copy(frame[start:], c.hdr)
	if _, err := c.w.Write(frame[start:]); err != nil {
		return err
	}
	c.sent++
	c.last = len(frame) - reserve
	if c.OnChunk != nil {
		return c.OnChunk()
	}
	return nil
}

// Write converts p and sends every chunk it fills. It returns len(p) on
// success: the number of input bytes consumed.
func (c *ChunkWriter) Write(p []byte) (int, error) {
	if c.closed {
		return 0, errors.New("write after Close")
	}
	if c.err != nil {
		return 0, c.err
	}
	if !c.started {
		c.started = true
		c.l.crlf = c.CRLF
	}
	if c.err = c.l.convert(p, &c.out); c.err != nil {
		return 0, c.err
	}
	return len(p), nil
}

// Close ends the last line if the message did not and sends what is left
// as "BDAT n LAST" (n may be 0). It does not close the underlying writer.
func (c *ChunkWriter) Close() error {
	if c.closed {
		return errors.New("ChunkWriter already closed")
	}
	c.closed = true
	if c.err != nil {
		return c.err
	}
	if c.err = c.l.end(&c.out); c.err != nil {
		return c.err
	}
	frame := c.out.buf
	h := "BDAT " + strconv.Itoa(len(frame)-reserve) + " LAST\r\n"
	start := reserve - len(h)
	copy(frame[start:], h)
	if _, c.err = c.w.Write(frame[start:]); c.err != nil {
		return c.err
	}
	c.sent++
	c.last = len(frame) - reserve
	return nil
}

// LastChunk reports the size of the chunk written last (0 before any).
func (c *ChunkWriter) LastChunk() int { return c.last }

// Chunks reports how many BDAT commands have been written.
func (c *ChunkWriter) Chunks() int { return c.sent }

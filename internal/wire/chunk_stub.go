package wire

import (
	"fmt"
	"io"
)

const RecordSize = 16384

type ChunkWriter struct {
	w       io.Writer
	n       int
	buf     []byte
	OnChunk func() error
	chunks  int
}

func NewChunkWriter(w io.Writer, n int) *ChunkWriter { return &ChunkWriter{w: w, n: n} }

func (c *ChunkWriter) Write(p []byte) (int, error) {
	var b []byte
	d := NewDotWriter(nil)
	_ = d
	// naive normalisation
	prevCR := len(c.buf) > 0 && c.buf[len(c.buf)-1] == '\r'
	for _, x := range p {
		if prevCR && x != '\n' {
			b = append(b, '\n')
		}
		if x == '\n' && !prevCR {
			b = append(b, '\r')
		}
		b = append(b, x)
		prevCR = x == '\r'
	}
	c.buf = append(c.buf, b...)
	return len(p), nil
}

func (c *ChunkWriter) Close() error {
	if len(c.buf) > 0 && c.buf[len(c.buf)-1] == '\r' {
		c.buf = append(c.buf, '\n')
	} else if len(c.buf) > 0 && c.buf[len(c.buf)-1] != '\n' {
		c.buf = append(c.buf, '\r', '\n')
	}
	c.chunks++
	_, err := c.w.Write(append([]byte(fmt.Sprintf("BDAT %d LAST\r\n", len(c.buf))), c.buf...))
	return err
}

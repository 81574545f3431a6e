package wire

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// normalise is the reference the writers are checked against: a byte
// loop with no cleverness.
func normalise(p []byte, stuff bool) []byte {
	var out []byte
	lineStart := true
	for i := 0; i < len(p); i++ {
		c := p[i]
		if lineStart && stuff && c == '.' {
			out = append(out, '.')
		}
		switch c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(p) && p[i+1] == '\n' {
				i++
			}
			lineStart = true
		case '\n':
			out = append(out, '\r', '\n')
			lineStart = true
		default:
			out = append(out, c)
			lineStart = false
		}
	}
	if !lineStart {
		out = append(out, '\r', '\n')
	}
	return out
}

// writes records each Write as a copy.
type writes struct{ w [][]byte }

func (r *writes) Write(p []byte) (int, error) {
	r.w = append(r.w, bytes.Clone(p))
	return len(p), nil
}

func (r *writes) all() []byte { return bytes.Join(r.w, nil) }

// randomContent is made of the bytes that matter to the encoders, in
// runs long enough to cross block boundaries now and then.
func randomContent(r *rand.Rand, n int) []byte {
	alphabet := []byte("ab.\r\n")
	p := make([]byte, n)
	for i := range p {
		if r.IntN(4) == 0 {
			p[i] = alphabet[r.IntN(len(alphabet))]
		} else {
			p[i] = 'x'
		}
	}
	return p
}

// splitWrite writes p to w in random pieces.
func splitWrite(t *testing.T, r *rand.Rand, w interface{ Write([]byte) (int, error) }, p []byte) {
	t.Helper()
	for len(p) > 0 {
		k := min(len(p), 1+r.IntN(40))
		if r.IntN(50) == 0 {
			k = len(p)
		}
		n, err := w.Write(p[:k])
		if err != nil || n != k {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, k)
		}
		p = p[k:]
	}
}

func TestDotWriterMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		n := r.IntN(200)
		if i%25 == 0 {
			n = 3*dataBlock + r.IntN(dataBlock)
		}
		in := randomContent(r, n)
		var got writes
		d := NewDotWriter(&got)
		splitWrite(t, r, d, in)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		want := append(normalise(in, true), '.', '\r', '\n')
		if !bytes.Equal(got.all(), want) {
			t.Fatalf("input %q:\n got %q\nwant %q", in, got.all(), want)
		}
		// Every write but the last is whole TLS records.
		for j, w := range got.w[:len(got.w)-1] {
			if len(w)%RecordSize != 0 {
				t.Fatalf("write %d of %d is %d bytes, not a multiple of %d", j, len(got.w), len(w), RecordSize)
			}
		}
	}
}

func TestDotWriterCases(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ".\r\n"},
		{"a", "a\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{".", "..\r\n.\r\n"},
		{"a\n.\nb", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\r.\r\n", "a\r\n..\r\n.\r\n"},
		{"\r\n.\r\n", "\r\n..\r\n.\r\n"},
		{"a\r\rb", "a\r\n\r\nb\r\n.\r\n"},
		{"a\n\r\n", "a\r\n\r\n.\r\n"},
		{"x.y\r\n", "x.y\r\n.\r\n"},
	} {
		var b bytes.Buffer
		d := NewDotWriter(&b)
		d.Write([]byte(tc.in))
		d.Close()
		if b.String() != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, b.String(), tc.want)
		}
	}
}

// parseFrames splits BDAT output into its chunks, checking each header.
func parseFrames(t *testing.T, wire []byte) (chunks [][]byte, last bool) {
	t.Helper()
	for len(wire) > 0 {
		i := bytes.Index(wire, []byte("\r\n"))
		if i < 0 {
			t.Fatalf("no header in %q", wire)
		}
		f := strings.Fields(string(wire[:i]))
		if len(f) < 2 || f[0] != "BDAT" || last {
			t.Fatalf("bad header %q (after LAST: %v)", wire[:i], last)
		}
		n, err := strconv.Atoi(f[1])
		if err != nil || i+2+n > len(wire) {
			t.Fatalf("bad size in %q", wire[:i])
		}
		last = len(f) == 3 && f[2] == "LAST"
		chunks = append(chunks, wire[i+2:i+2+n])
		wire = wire[i+2+n:]
	}
	return chunks, last
}

func TestChunkWriterMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 500 {
		frame := 16 + r.IntN(200)
		if i%25 == 0 {
			frame = 2 * RecordSize
		}
		in := randomContent(r, r.IntN(5*frame))
		var got writes
		c := NewChunkWriter(&got, frame)
		calls := 0
		c.OnChunk = func() error { calls++; return nil }
		splitWrite(t, r, c, in)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		chunks, last := parseFrames(t, got.all())
		if !last {
			t.Fatal("no LAST chunk")
		}
		if want := normalise(in, false); !bytes.Equal(bytes.Join(chunks, nil), want) {
			t.Fatalf("frame %d, input %q:\n got %q\nwant %q", frame, in, bytes.Join(chunks, nil), want)
		}
		// One write per chunk; every full chunk is exactly frame bytes
		// with its header, and OnChunk ran once for each.
		if len(got.w) != len(chunks) || c.Chunks() != len(chunks) || calls != len(chunks)-1 {
			t.Fatalf("%d writes, %d chunks, Chunks() %d, %d OnChunk calls", len(got.w), len(chunks), c.Chunks(), calls)
		}
		for j, w := range got.w[:len(got.w)-1] {
			if len(w) != frame && !(len(w) == frame-1 && noExactFit(frame)) {
				t.Fatalf("chunk %d is %d bytes on the wire, want %d", j, len(w), frame)
			}
		}
	}
}

// noExactFit reports whether no header and payload add up to frame.
func noExactFit(frame int) bool {
	for p := 1; p < frame; p++ {
		if len("BDAT \r\n")+len(strconv.Itoa(p))+p == frame {
			return false
		}
	}
	return true
}

func TestChunkWriterFrameFitsRecords(t *testing.T) {
	for _, frame := range []int{RecordSize, 8 * RecordSize} {
		var got writes
		c := NewChunkWriter(&got, frame)
		c.Write(bytes.Repeat([]byte("x"), 3*frame))
		c.Close()
		for _, w := range got.w[:len(got.w)-1] {
			if len(w) != frame {
				t.Fatalf("frame %d: a chunk of %d bytes on the wire", frame, len(w))
			}
		}
	}
}

func TestChunkWriterEmpty(t *testing.T) {
	var b bytes.Buffer
	c := NewChunkWriter(&b, 64)
	if err := c.Close(); err != nil || b.String() != "BDAT 0 LAST\r\n" {
		t.Fatalf("got %q, %v", b.String(), err)
	}
}

func TestChunkWriterOnChunkErrorSticks(t *testing.T) {
	var b bytes.Buffer
	c := NewChunkWriter(&b, 32)
	refused := errors.New("refused")
	c.OnChunk = func() error { return refused }
	if _, err := c.Write(bytes.Repeat([]byte("x"), 100)); !errors.Is(err, refused) {
		t.Fatalf("Write: %v, want %v", err, refused)
	}
	before := b.Len()
	if _, err := c.Write([]byte("more")); !errors.Is(err, refused) {
		t.Fatalf("second Write: %v", err)
	}
	if err := c.Close(); !errors.Is(err, refused) {
		t.Fatalf("Close: %v", err)
	}
	if b.Len() != before || bytes.Contains(b.Bytes(), []byte("LAST")) {
		t.Fatalf("wrote after the error: %q", b.String())
	}
}

func FuzzDotWriter(f *testing.F) {
	f.Add([]byte("a\r\n.\r\nb\rc\n."), uint8(3))
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		var b bytes.Buffer
		d := NewDotWriter(&b)
		k := int(split) % (len(in) + 1)
		d.Write(in[:k])
		d.Write(in[k:])
		d.Close()
		want := append(normalise(in, true), '.', '\r', '\n')
		if !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("got %q, want %q", b.Bytes(), want)
		}
		if bytes.Count(b.Bytes(), []byte("\r\n.\r\n")) > 1 || fmt.Sprint(bytes.Index(b.Bytes(), []byte("\r\n.\r\n"))) != fmt.Sprint(b.Len()-5) && b.Len() > 3 {
			t.Fatalf("end of data inside the content: %q", b.Bytes())
		}
	})
}

// TestCRLFShortcut: content whose line endings are all CRLF gives the
// same output with the CRLF promise as without, however it is split;
// and a broken promise (bare LF) is still caught for DATA.
func TestCRLFShortcut(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 400 {
		clean := normalise(randomContent(r, r.IntN(600)), false) // all CRLF
		if i%2 == 0 && len(clean) > 0 {
			clean = clean[:len(clean)-2] // no final line ending
		}
		for _, stuff := range []bool{true, false} {
			var plain, fast writes
			var w1, w2 interface {
				Write([]byte) (int, error)
				Close() error
			}
			if stuff {
				d1, d2 := NewDotWriter(&plain), NewDotWriter(&fast)
				d2.CRLF = true
				w1, w2 = d1, d2
			} else {
				c1, c2 := NewChunkWriter(&plain, 64), NewChunkWriter(&fast, 64)
				c2.CRLF = true
				w1, w2 = c1, c2
			}
			splitWrite(t, r, w1, clean)
			splitWrite(t, r, w2, clean)
			w1.Close()
			w2.Close()
			if !bytes.Equal(plain.all(), fast.all()) {
				t.Fatalf("stuff=%v, content %q:\n with CRLF %q\nwithout   %q", stuff, clean, fast.all(), plain.all())
			}
		}
	}
	// A promise broken by bare LFs: DATA still normalises them.
	for range 200 {
		in := bytes.ReplaceAll(randomContent(r, r.IntN(300)), []byte("\r"), []byte("y"))
		var got writes
		d := NewDotWriter(&got)
		d.CRLF = true
		splitWrite(t, r, d, in)
		d.Close()
		if want := append(normalise(in, true), '.', '\r', '\n'); !bytes.Equal(got.all(), want) {
			t.Fatalf("bare LFs under a CRLF promise, %q:\n got %q\nwant %q", in, got.all(), want)
		}
	}
}

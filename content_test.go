package tlsmail

import (
	"math/rand/v2"
	"testing"
)

// TestContentScanMatchesByteLoop checks the vectorised body scan against
// the byte-at-a-time one, over content split at random points.
func TestContentScanMatchesByteLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte("a.\r\n\xc3")
	for range 2000 {
		p := make([]byte, r.IntN(300))
		for i := range p {
			p[i] = alphabet[r.IntN(len(alphabet))]
			if r.IntN(3) == 0 && i > 100 {
				p[i] = 'x'
			}
		}
		var ref contentScan
		for _, c := range p {
			ref.feedByte(c)
		}
		var got contentScan
		for q := p; len(q) > 0; {
			k := min(len(q), 1+r.IntN(30))
			got.feed(q[:k])
			q = q[k:]
		}
		if got != ref {
			t.Fatalf("%q:\n got %+v\nwant %+v", p, got, ref)
		}
	}
}

func TestIsASCIIBytes(t *testing.T) {
	for n := range 80 {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a'
		}
		if !isASCIIBytes(b) {
			t.Fatalf("%d ASCII bytes reported 8-bit", n)
		}
		for i := range b {
			b[i] = 0x80
			if isASCIIBytes(b) {
				t.Fatalf("0x80 at %d of %d missed", i, n)
			}
			b[i] = 'a'
		}
	}
}

package wire

import "net"

// FirstBytes is a net.Conn that keeps a copy of the first bytes ever read
// from it, so that a failed TLS handshake can say what the server sent (a
// plaintext greeting on a port dialed for implicit TLS). It stays below the
// tls.Conn after a successful handshake, where it costs one comparison per
// read.
type FirstBytes struct {
	net.Conn
	buf [20]byte
	n   int
}

// Read reads from the connection and records what it read while fewer than
// 20 bytes have been recorded.
func (f *FirstBytes) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if f.n < len(f.buf) && n > 0 {
		f.n += copy(f.buf[f.n:], p[:n])
	}
	return n, err
}

// Bytes returns what was recorded. Call it only when no Read can be in
// progress (after the handshake returned).
func (f *FirstBytes) Bytes() []byte { return f.buf[:f.n] }

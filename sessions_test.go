package tlsmail

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// TestSessionResumption: a Dialer used again resumes its TLS session, in
// both modes; a Dialer with another *tls.Config, even an identical clone,
// does not (a session is only resumed under the configuration that
// verified it); a caller's own cache is used as is.
func TestSessionResumption(t *testing.T) {
	srv := smtptest.NewServer(t, nil)
	resumed := func(d *Dialer, mode Mode) bool {
		t.Helper()
		d.Mode = mode
		addr := srv.ImplicitAddr
		if mode == STARTTLS {
			addr = srv.StartTLSAddr
		}
		c, err := d.DialContext(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A TLS 1.3 ticket arrives after the handshake, with the first
		// records the server sends; Noop reads past it.
		if err := c.Noop(); err != nil {
			t.Fatal(err)
		}
		st, ok := c.TLSConnectionState()
		if !ok {
			t.Fatal("not TLS")
		}
		return st.DidResume
	}
	for _, mode := range []Mode{ImplicitTLS, STARTTLS} {
		t.Run(mode.String(), func(t *testing.T) {
			d := testDialer(srv, mode)
			if resumed(d, mode) {
				t.Fatal("first connection resumed")
			}
			if !resumed(d, mode) {
				t.Fatal("second connection of the same Dialer did not resume")
			}
			other := testDialer(srv, mode) // a fresh *tls.Config
			if resumed(other, mode) {
				t.Fatal("a Dialer with another *tls.Config resumed a session it did not verify")
			}
			same := &Dialer{TLSConfig: d.TLSConfig}
			if !resumed(same, mode) {
				t.Fatal("a Dialer sharing the *tls.Config did not resume")
			}
		})
	}
	t.Run("caller's cache", func(t *testing.T) {
		d := testDialer(srv, ImplicitTLS)
		cache := &countingCache{ClientSessionCache: tls.NewLRUClientSessionCache(1)}
		d.TLSConfig.ClientSessionCache = cache
		resumed(d, ImplicitTLS)
		if !resumed(d, ImplicitTLS) || cache.puts == 0 {
			t.Fatalf("the caller's cache was not used (puts=%d)", cache.puts)
		}
	})
	t.Run("tickets disabled", func(t *testing.T) {
		d := testDialer(srv, ImplicitTLS)
		d.TLSConfig.SessionTicketsDisabled = true
		resumed(d, ImplicitTLS)
		if resumed(d, ImplicitTLS) {
			t.Fatal("resumed with SessionTicketsDisabled")
		}
	})
}

type countingCache struct {
	tls.ClientSessionCache
	puts int
}

func (c *countingCache) Put(key string, cs *tls.ClientSessionState) {
	c.puts++
	c.ClientSessionCache.Put(key, cs)
}

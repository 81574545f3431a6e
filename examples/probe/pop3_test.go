package main

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/pop3"
	"github.com/tlsmail/tlsmail/pop3/pop3test"
)

// TestProbePOP3: the POP3 ports are recognised in each mode, a port
// without STLS is reported as plaintext, a mode mix-up is found and
// warned about, and the login reports its mechanism.
func TestProbePOP3(t *testing.T) {
	srv := pop3test.NewServer(t, nil)
	stripped := pop3test.NewServer(t, &pop3test.Config{StripSTLS: true})
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	implicit, stls, plain := srv.Addr(pop3.ImplicitTLS), srv.Addr(pop3.STLS), stripped.Addr(pop3.STLS)
	o := Options{
		RootCAs:   srv.RootCAs(),
		Timeout:   2 * time.Second,
		User:      "user",
		Password:  "pass",
		POP3Ports: []string{port(implicit), port(stls), port(plain)},
	}
	for _, tc := range []struct {
		addr string
		want Status
	}{
		{implicit, StatusImplicitTLS},
		{stls, StatusSTLS},
		{plain, StatusPlaintext},
	} {
		r := probe(context.Background(), tc.addr, o)
		// The next login must not find the mailbox still locked.
		if err := srv.WaitIdle(t.Context()); err != nil {
			t.Fatal(err)
		}
		if r.Status != tc.want {
			t.Errorf("%s: status %s (%s %s), want %s", tc.addr, r.Status, r.Error, r.TlsmailError, tc.want)
			continue
		}
		if tc.want == StatusPlaintext {
			continue
		}
		if r.TLS == nil || !r.TLS.Verified || !slices.ContainsFunc(r.CapaAfterTLS, func(s string) bool { return strings.HasPrefix(s, "SASL ") }) {
			t.Errorf("%s: %+v", tc.addr, r)
		}
		if r.Login == nil || r.Login.Error != "" || r.Login.Mechanism == "" {
			t.Errorf("%s: login %+v", tc.addr, r.Login)
		}
	}
	// The STLS port probed as if it were 995: implicit TLS meets a
	// plaintext greeting, which names port 110, and STLS then works.
	r := probe(context.Background(), stls, Options{RootCAs: srv.RootCAs(), Timeout: 2 * time.Second, POP3Ports: []string{port(stls)}})
	if r.Status != StatusSTLS {
		t.Errorf("status %s", r.Status)
	}
}

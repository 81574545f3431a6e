package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/pop3"
)

// The POP3 side of the probe (issue #16): ports 995 (implicit TLS, RFC
// 8314) and 110 (STLS, RFC 2595) are probed with the pop3 package, which
// verifies the certificate and fails closed, so its verdict is what a
// program built on it would get.

// StatusSTLS is a POP3 port that greets in plaintext, lists STLS and
// upgrades to TLS (RFC 2595).
const StatusSTLS Status = "stls"

// defaultPOP3Ports are the ports probed as POP3 when Options.POP3Ports is
// nil.
var defaultPOP3Ports = []string{"995", "110", "pop3s", "pop3"}

// isPOP3 reports whether addr's port is probed as POP3.
func (p *prober) isPOP3() bool {
	_, port, _ := net.SplitHostPort(p.addr)
	ports := p.o.POP3Ports
	if ports == nil {
		ports = defaultPOP3Ports
	}
	return slices.Contains(ports, port)
}

// runPOP3 probes a POP3 port: implicit TLS first unless the port is 110,
// where the server greets in plaintext; the other mode when the first
// says the port speaks it.
func (p *prober) runPOP3(ctx context.Context) {
	_, port, _ := net.SplitHostPort(p.addr)
	first, second := pop3.ImplicitTLS, pop3.STLS
	if port == "110" || port == "pop3" {
		first, second = second, first
	}
	c, err := p.dialPOP3(ctx, first)
	if c == nil && p.r.Status != StatusClosed && (errors.Is(err, pop3.ErrPlaintextServer) || errors.Is(err, pop3.ErrNoGreeting)) {
		// The port speaks the other mode; the first error (which names
		// the likely port) is kept as a warning.
		p.r.Warnings = append(p.r.Warnings, "POP3 "+first.String()+": "+err.Error())
		c, err = p.dialPOP3(ctx, second)
	}
	if c == nil {
		if errors.Is(err, pop3.ErrSTLSUnsupported) {
			p.r.Status = StatusPlaintext
			p.r.Warnings = append(p.r.Warnings, "POP3 without STLS: passwords and mail would cross the network in plaintext")
		}
		return
	}
	defer c.Close()
	p.fillPOP3(c)
	if p.o.User == "" {
		return
	}
	l := &LoginInfo{User: p.o.User}
	p.r.Login = l
	if err := c.Auth(ctx, tlsmail.PasswordAuth(p.o.User, p.o.Password, p.host)); err != nil {
		l.Error = err.Error()
		return
	}
	l.Mechanism = c.AuthMechanism()
	start := time.Now()
	if err := c.Noop(ctx); err == nil {
		p.r.NoopMS = ms(time.Since(start))
	}
	c.Quit(ctx)
}

// dialPOP3 connects with the pop3 package in mode and records the
// verdict in the report.
func (p *prober) dialPOP3(ctx context.Context, mode pop3.Mode) (*pop3.Client, error) {
	r := p.r
	connected := false
	d := &pop3.Dialer{
		Mode:            mode,
		TLSConfig:       p.verifyConfig(),
		Timeout:         p.o.Timeout,
		GreetingTimeout: p.o.Timeout,
		CommandTimeout:  p.o.Timeout,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var nd net.Dialer
			start := time.Now()
			conn, err := nd.DialContext(ctx, network, addr)
			if err == nil {
				connected, r.ConnectMS = true, ms(time.Since(start))
			}
			return conn, err
		},
	}
	c, err := d.DialContext(ctx, p.addr)
	r.TlsmailMode = "pop3." + mode.String()
	r.TlsmailError = ""
	switch {
	case !connected:
		r.Status, r.Error = StatusClosed, err.Error()
	case err != nil:
		r.Status, r.TlsmailError = StatusNoSMTP, err.Error()
	case mode == pop3.ImplicitTLS:
		r.Status = StatusImplicitTLS
	default:
		r.Status = StatusSTLS
	}
	return c, err
}

// fillPOP3 records the TLS connection and the capabilities of a verified
// session.
func (p *prober) fillPOP3(c *pop3.Client) {
	cs := c.TLSConnectionState()
	t := &TLSInfo{
		Version:     tls.VersionName(cs.Version),
		CipherSuite: tls.CipherSuiteName(cs.CipherSuite),
		ServerName:  p.o.ServerName,
		Verified:    true, // the pop3 package connects only after verifying
		MatchesName: true,
	}
	for _, cert := range cs.PeerCertificates {
		t.Chain = append(t.Chain, certInfo(cert, p.o.Now))
	}
	p.r.TLS = t
	caps := c.Capabilities()
	names := make([]string, 0, len(caps))
	for k, v := range caps {
		line := k
		for _, a := range v {
			line += " " + a
		}
		names = append(names, line)
	}
	slices.Sort(names)
	p.r.CapaAfterTLS = names
}

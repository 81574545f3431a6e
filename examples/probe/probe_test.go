package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

var (
	extTLS   = []string{"PIPELINING", "SIZE 67108864", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "AUTH PLAIN LOGIN CRAM-MD5"}
	extPlain = []string{"PIPELINING", "SIZE 67108864", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "STARTTLS"}
)

const greeting = "220 mx.test ESMTP tlsmail-test"

// newServer starts a test server. Every probe of a STARTTLS port writes
// STARTTLS and NOOP at once, which smtptest counts as a pipelining
// violation: that is the test.
func newServer(t *testing.T, o smtptest.Options) *smtptest.Server {
	o.AllowPipeliningViolations = true
	return smtptest.NewServer(t, &o)
}

func options(srv *smtptest.Server) Options {
	return Options{ServerName: "mx.test", RootCAs: srv.RootCAs(), Timeout: 5 * time.Second}
}

// negotiated returns the TLS version and cipher suite this process and
// srv agree on, which depend on the machine (AES hardware or not).
func negotiated(t *testing.T, srv *smtptest.Server) (string, string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.ImplicitAddr,
		&tls.Config{ServerName: "mx.test", RootCAs: srv.RootCAs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.ConnectionState()
	return tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite)
}

// leaf returns what the probe should report for the certificate of kind,
// which smtptest made when the server started: its validity is checked
// here against the time now, within a minute, and then taken from got.
func leaf(t *testing.T, got Report, kind smtptest.CertKind) Cert {
	t.Helper()
	now := time.Now()
	want := Cert{
		Subject:     "CN=mx.test",
		Issuer:      "CN=tlsmail smtptest CA,O=tlsmail smtptest",
		DNSNames:    []string{"localhost", "mx.test"},
		IPAddresses: []string{"127.0.0.1", "::1"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(30 * 24 * time.Hour),
		DaysLeft:    29, // 30 days, less the time since the server started
	}
	switch kind {
	case smtptest.CertWrongName:
		want.Subject = "CN=wrong.example"
		want.DNSNames = []string{"wrong.example"}
		want.IPAddresses = nil
	case smtptest.CertUntrusted:
		want.Issuer = "CN=tlsmail smtptest untrusted CA,O=tlsmail smtptest"
	case smtptest.CertExpired:
		want.NotBefore = now.Add(-48 * time.Hour)
		want.NotAfter = now.Add(-24 * time.Hour)
		want.DaysLeft, want.Expired = -1, true
	}
	if got.TLS == nil || len(got.TLS.Chain) != 1 {
		t.Errorf("no chain of one certificate: %+v", got.TLS)
		return want
	}
	c := got.TLS.Chain[0]
	for _, tm := range []struct {
		name      string
		got, want time.Time
	}{{"NotBefore", c.NotBefore, want.NotBefore}, {"NotAfter", c.NotAfter, want.NotAfter}} {
		if d := tm.want.Sub(tm.got); d < 0 || d > time.Minute || tm.got.Location() != time.UTC {
			t.Errorf("%s = %v, want %v or up to a minute before, in UTC", tm.name, tm.got, tm.want)
		}
	}
	want.NotBefore, want.NotAfter = c.NotBefore, c.NotAfter
	return want
}

// check compares got with want after checking and clearing the timings,
// which vary.
func check(t *testing.T, got, want Report) {
	t.Helper()
	if want.Status != StatusClosed && got.ConnectMS <= 0 {
		t.Errorf("ConnectMS = %v, want > 0", got.ConnectMS)
	}
	if want.NoopMS != 0 && got.NoopMS <= 0 {
		t.Errorf("NoopMS = %v, want > 0", got.NoopMS)
	}
	got.ConnectMS, got.NoopMS, want.NoopMS = 0, 0, 0
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("report:\n got %s\nwant %s", g, w)
	}
}

// cutPrefix checks that *s starts with prefix and then replaces it with
// prefix, for texts that end in something variable (times, OS errors).
func cutPrefix(t *testing.T, what string, s *string, prefix string) {
	t.Helper()
	if !strings.HasPrefix(*s, prefix) {
		t.Errorf("%s = %q, want prefix %q", what, *s, prefix)
	}
	*s = prefix
}

func TestImplicitOnly(t *testing.T) {
	srv := newServer(t, smtptest.Options{})
	version, suite := negotiated(t, srv)
	o := options(srv)
	o.User, o.Password = "user", "pass"
	got := probe(context.Background(), srv.ImplicitAddr, o)
	check(t, got, Report{
		Addr:         srv.ImplicitAddr,
		Status:       StatusImplicitTLS,
		NoopMS:       1,
		Greeting:     greeting,
		EHLOAfterTLS: extTLS,
		TLS: &TLSInfo{
			Version: version, CipherSuite: suite, ServerName: "mx.test", Verified: true, MatchesName: true,
			Chain: []Cert{leaf(t, got, smtptest.CertValid)},
		},
		TlsmailMode: "ImplicitTLS",
		Login:       &LoginInfo{User: "user", Mechanism: "PLAIN"},
	})
	if version != "TLS 1.3" {
		t.Errorf("negotiated %s, want TLS 1.3", version)
	}
	// The login went through tlsmail, under TLS.
	var authed bool
	for _, l := range srv.Transcript() {
		if strings.HasPrefix(l, "plain: AUTH") {
			t.Errorf("AUTH in plaintext: %q", l)
		}
		authed = authed || strings.HasPrefix(l, "tls: AUTH PLAIN")
	}
	if !authed {
		t.Errorf("no AUTH PLAIN under TLS in %q", srv.Transcript())
	}
}

func TestClosedPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	got := probe(context.Background(), addr, Options{Timeout: 5 * time.Second, User: "u", Password: "p"})
	cutPrefix(t, "Error", &got.Error, "tlsmail: connecting to "+addr+": ")
	check(t, got, Report{Addr: addr, Status: StatusClosed, Error: "tlsmail: connecting to " + addr + ": "})
}

func TestSilentServerDoesNotHang(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(io.Discard, c) }()
		}
	}()
	start := time.Now()
	got := probe(context.Background(), ln.Addr().String(), Options{Timeout: 300 * time.Millisecond})
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("probe took %v", d)
	}
	want := "tlsmail: TLS handshake with " + ln.Addr().String() + ": no TLS handshake within 300ms: i/o timeout"
	check(t, got, Report{
		Addr: ln.Addr().String(), Status: StatusNoSMTP, Error: want,
		TlsmailMode: "ImplicitTLS", TlsmailError: want,
	})
}

func TestNotSMTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	got := probe(context.Background(), addr, Options{Timeout: 5 * time.Second})
	want := "tlsmail: TLS handshake with " + addr + ": server sent \"SSH-2.0-OpenSSH_9.6\" which is not TLS; is this the server's implicit-TLS submission port (465)?"
	cutPrefix(t, "Error", &got.Error, want)
	cutPrefix(t, "TlsmailError", &got.TlsmailError, want)
	check(t, got, Report{Addr: addr, Status: StatusNoSMTP, Error: want, TlsmailMode: "ImplicitTLS", TlsmailError: want})
}

func TestSTARTTLSOnly(t *testing.T) {
	for _, implicitPort := range []bool{false, true} {
		name := "StartTLSAddr"
		if implicitPort {
			name = "PlaintextOnImplicit"
		}
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, smtptest.Options{PlaintextOnImplicit: implicitPort})
			version, suite := negotiated(t, smtptest.NewServer(t, nil))
			addr := srv.StartTLSAddr
			if implicitPort {
				addr = srv.ImplicitAddr
			}
			o := options(srv)
			o.User, o.Password = "user", "pass"
			got := probe(context.Background(), addr, o)
			check(t, got, Report{
				Addr:          addr,
				Status:        StatusSTARTTLS,
				NoopMS:        1,
				Greeting:      greeting,
				EHLOBeforeTLS: extPlain,
				EHLOAfterTLS:  extTLS,
				TLS: &TLSInfo{
					Version: version, CipherSuite: suite, ServerName: "mx.test", Verified: true, MatchesName: true,
					Chain: []Cert{leaf(t, got, smtptest.CertValid)},
				},
				STARTTLS:    &STARTTLSInfo{Offered: true, Reply: "220 2.0.0 Ready to start TLS", CommandInjectionTested: true},
				TlsmailMode: "STARTTLS",
				Login:       &LoginInfo{User: "user", Mechanism: "PLAIN"},
			})
		})
	}
}

// TestGreetingFirst probes as on ports 25 and 587, where the probe waits
// for the greeting before it tries TLS.
func TestGreetingFirst(t *testing.T) {
	srv := newServer(t, smtptest.Options{})
	version, suite := negotiated(t, srv)
	_, starttlsPort, _ := net.SplitHostPort(srv.StartTLSAddr)
	_, implicitPort, _ := net.SplitHostPort(srv.ImplicitAddr)
	o := options(srv)
	o.GreetingFirstPorts = []string{starttlsPort, implicitPort}
	o.Timeout = 500 * time.Millisecond

	got := probe(context.Background(), srv.StartTLSAddr, o)
	check(t, got, Report{
		Addr:          srv.StartTLSAddr,
		Status:        StatusSTARTTLS,
		NoopMS:        1,
		Greeting:      greeting,
		EHLOBeforeTLS: extPlain,
		EHLOAfterTLS:  extTLS,
		TLS: &TLSInfo{
			Version: version, CipherSuite: suite, ServerName: "mx.test", Verified: true, MatchesName: true,
			Chain: []Cert{leaf(t, got, smtptest.CertValid)},
		},
		STARTTLS:    &STARTTLSInfo{Offered: true, Reply: "220 2.0.0 Ready to start TLS", CommandInjectionTested: true},
		TlsmailMode: "STARTTLS",
	})
	// No ClientHello went to the plaintext port: the first thing the
	// server read was EHLO. The NOOP sent with STARTTLS was discarded
	// unread, as it should be.
	if err := srv.WaitIdle(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	checkTranscript(t, srv,
		"plain: EHLO localhost", "plain: STARTTLS",
		"tls: "+probeCommand, "tls: EHLO localhost", "tls: NOOP", "tls: QUIT",
		"plain: EHLO localhost", "plain: STARTTLS")
	srv.Reset()

	// An implicit-TLS server stays silent; after the timeout it is tried
	// with TLS.
	got = probe(context.Background(), srv.ImplicitAddr, o)
	check(t, got, Report{
		Addr:         srv.ImplicitAddr,
		Status:       StatusImplicitTLS,
		NoopMS:       1,
		Greeting:     greeting,
		EHLOAfterTLS: extTLS,
		TLS: &TLSInfo{
			Version: version, CipherSuite: suite, ServerName: "mx.test", Verified: true, MatchesName: true,
			Chain: []Cert{leaf(t, got, smtptest.CertValid)},
		},
		TlsmailMode: "ImplicitTLS",
	})
}

func checkTranscript(t *testing.T, srv *smtptest.Server, want ...string) {
	t.Helper()
	if got := srv.Transcript(); !reflect.DeepEqual(got, want) {
		t.Errorf("transcript:\n got %q\nwant %q", got, want)
	}
}

func TestAuthBeforeTLS(t *testing.T) {
	srv := newServer(t, smtptest.Options{AuthBeforeTLS: true})
	version, suite := negotiated(t, srv)
	got := probe(context.Background(), srv.StartTLSAddr, options(srv))
	check(t, got, Report{
		Addr:          srv.StartTLSAddr,
		Status:        StatusSTARTTLS,
		NoopMS:        1,
		Greeting:      greeting,
		EHLOBeforeTLS: append(extPlain[:len(extPlain):len(extPlain)], "AUTH PLAIN LOGIN CRAM-MD5"),
		EHLOAfterTLS:  extTLS,
		TLS: &TLSInfo{
			Version: version, CipherSuite: suite, ServerName: "mx.test", Verified: true, MatchesName: true,
			Chain: []Cert{leaf(t, got, smtptest.CertValid)},
		},
		STARTTLS:    &STARTTLSInfo{Offered: true, Reply: "220 2.0.0 Ready to start TLS", CommandInjectionTested: true},
		TlsmailMode: "STARTTLS",
		Warnings:    []string{"AUTH offered before TLS (PLAIN LOGIN CRAM-MD5): a client may send its password in plaintext"},
	})
}

func TestPlaintextOnly(t *testing.T) {
	srv := newServer(t, smtptest.Options{StripSTARTTLS: true, AuthBeforeTLS: true})
	o := options(srv)
	o.User, o.Password = "user", "pass"
	got := probe(context.Background(), srv.StartTLSAddr, o)
	check(t, got, Report{
		Addr:          srv.StartTLSAddr,
		Status:        StatusPlaintext,
		NoopMS:        1,
		Greeting:      greeting,
		EHLOBeforeTLS: append(extPlain[:len(extPlain)-1:len(extPlain)-1], "AUTH PLAIN LOGIN CRAM-MD5"),
		STARTTLS:      &STARTTLSInfo{},
		TlsmailMode:   "STARTTLS",
		TlsmailError:  "tlsmail: server does not offer STARTTLS; refusing to continue in plaintext (server 127.0.0.1)",
		Login:         &LoginInfo{User: "user", Error: "not attempted: tlsmail did not connect"},
		Warnings: []string{
			"AUTH offered before TLS (PLAIN LOGIN CRAM-MD5): a client may send its password in plaintext",
			"no STARTTLS: mail and credentials would travel in plaintext",
		},
	})
	for _, l := range srv.Transcript() {
		if strings.HasPrefix(l, "plain: AUTH") {
			t.Errorf("AUTH in plaintext: %q", l)
		}
	}
}

func TestCommandInjection(t *testing.T) {
	srv := newServer(t, smtptest.Options{BufferedCommandsSurviveSTARTTLS: true})
	version, suite := negotiated(t, srv)
	got := probe(context.Background(), srv.StartTLSAddr, options(srv))
	check(t, got, Report{
		Addr:          srv.StartTLSAddr,
		Status:        StatusSTARTTLS,
		NoopMS:        1,
		Greeting:      greeting,
		EHLOBeforeTLS: extPlain,
		EHLOAfterTLS:  extTLS,
		TLS: &TLSInfo{
			Version: version, CipherSuite: suite, ServerName: "mx.test", Verified: true, MatchesName: true,
			Chain: []Cert{leaf(t, got, smtptest.CertValid)},
		},
		STARTTLS: &STARTTLSInfo{
			Offered: true, Reply: "220 2.0.0 Ready to start TLS",
			CommandInjectionTested: true, CommandInjection: true,
		},
		TlsmailMode: "STARTTLS",
		Warnings:    []string{"STARTTLS command injection (CVE-2011-0411): a command sent in plaintext with STARTTLS was answered under TLS"},
	})
}

func TestResponseInjection(t *testing.T) {
	srv := newServer(t, smtptest.Options{InjectAfterSTARTTLS: "250 injected\r\n"})
	version, suite := negotiated(t, srv)
	o := options(srv)
	o.User, o.Password = "user", "pass"
	got := probe(context.Background(), srv.StartTLSAddr, o)
	check(t, got, Report{
		Addr:          srv.StartTLSAddr,
		Status:        StatusSTARTTLS,
		NoopMS:        1,
		Greeting:      greeting,
		EHLOBeforeTLS: extPlain,
		EHLOAfterTLS:  extTLS,
		TLS: &TLSInfo{
			Version: version, CipherSuite: suite, ServerName: "mx.test", Verified: true, MatchesName: true,
			Chain: []Cert{leaf(t, got, smtptest.CertValid)},
		},
		STARTTLS: &STARTTLSInfo{
			Offered: true, Reply: "220 2.0.0 Ready to start TLS",
			ResponseInjectionBytes: 14, ResponseInjection: `"250 injected\r\n"`,
			CommandInjectionTested: true,
		},
		TlsmailMode:  "STARTTLS",
		TlsmailError: "tlsmail: STARTTLS response injection: server sent data before the TLS handshake: 14 unexpected bytes from 127.0.0.1",
		Login:        &LoginInfo{User: "user", Error: "not attempted: tlsmail did not connect"},
		Warnings:     []string{"STARTTLS response injection: 14 bytes after the 220 reply, before the TLS handshake (tlsmail refuses this: ErrResponseInjection)"},
	})
}

func TestCertificateFailures(t *testing.T) {
	for _, tc := range []struct {
		kind     smtptest.CertKind
		starttls bool
		verr     string // the verification error, up to where it varies
	}{
		{smtptest.CertExpired, false, "tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time "},
		{smtptest.CertWrongName, false, "tls: failed to verify certificate: x509: certificate is valid for wrong.example, not mx.test"},
		{smtptest.CertUntrusted, false, "tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{smtptest.CertExpired, true, "tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time "},
		{smtptest.CertWrongName, true, "tls: failed to verify certificate: x509: certificate is valid for wrong.example, not mx.test"},
	} {
		name := tc.kind.String() + "/implicit"
		if tc.starttls {
			name = tc.kind.String() + "/starttls"
		}
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, smtptest.Options{Cert: tc.kind})
			version, suite := negotiated(t, smtptest.NewServer(t, nil))
			o := options(srv)
			o.User, o.Password = "user", "s3cret-password"
			addr := srv.ImplicitAddr
			if tc.starttls {
				addr = srv.StartTLSAddr
			}
			got := probe(context.Background(), addr, o)
			want := Report{
				Addr:         addr,
				Status:       StatusImplicitTLS,
				NoopMS:       1,
				Greeting:     greeting,
				EHLOAfterTLS: extTLS,
				TLS: &TLSInfo{
					Version: version, CipherSuite: suite, ServerName: "mx.test",
					VerifyError: tc.verr, InsecureInspection: true, MatchesName: tc.kind != smtptest.CertWrongName,
					Chain: []Cert{leaf(t, got, tc.kind)},
				},
				TlsmailMode: "ImplicitTLS",
				Login:       &LoginInfo{User: "user", Error: "not attempted: tlsmail did not connect"},
			}
			tlsmailErr := "tlsmail: TLS handshake with " + addr + ": " + tc.verr
			if tc.starttls {
				want.Status = StatusSTARTTLS
				want.EHLOBeforeTLS = extPlain
				want.STARTTLS = &STARTTLSInfo{Offered: true, Reply: "220 2.0.0 Ready to start TLS", CommandInjectionTested: true}
				want.TlsmailMode = "STARTTLS"
				tlsmailErr = "tlsmail: STARTTLS handshake with 127.0.0.1: " + tc.verr
			}
			if got.TLS != nil {
				cutPrefix(t, "VerifyError", &got.TLS.VerifyError, tc.verr)
			}
			cutPrefix(t, "TlsmailError", &got.TlsmailError, tlsmailErr)
			want.TlsmailError = tlsmailErr
			if len(got.Warnings) == 1 {
				cutPrefix(t, "Warnings[0]", &got.Warnings[0], "certificate does not verify for mx.test: "+tc.verr)
			}
			want.Warnings = []string{"certificate does not verify for mx.test: " + tc.verr}
			check(t, got, want)
			// Nothing secret went over the unverified connections.
			for _, l := range srv.Transcript() {
				if strings.Contains(l, "AUTH") {
					t.Errorf("sent %q to a server whose certificate does not verify", l)
				}
			}
		})
	}
}

// TestPasswordNeverShown fails a login and checks that no output repeats
// the password, even when the server echoes it, in its reply to AUTH and
// in its greeting.
func TestPasswordNeverShown(t *testing.T) {
	const password = "s3cret-Pw"
	srv := newServer(t, smtptest.Options{
		Greeting: "220 mx.test ESMTP (the admin password is " + password + ")",
		Handler: func(s *smtptest.Session, line string) bool {
			if strings.HasPrefix(line, "AUTH ") {
				s.Reply("535 5.7.8 bad credentials " + line + " " + password)
				return true
			}
			return false
		},
	})
	o := options(srv)
	o.User, o.Password = "user", password
	res := Result{Ports: []Report{probe(context.Background(), srv.ImplicitAddr, o)}}
	if l := res.Ports[0].Login; l == nil || l.Error == "" || l.Mechanism != "" {
		t.Fatalf("Login = %+v, want a failure", l)
	}
	var text bytes.Buffer
	printText(&text, res)
	js, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{text.String(), string(js)} {
		if strings.Contains(out, password) {
			t.Errorf("output shows the password:\n%s", out)
		}
	}
	if !strings.Contains(text.String(), "login as user: ") {
		t.Errorf("text output lacks the login line:\n%s", text.String())
	}
}

// TestScrubLeavesTheCertificateAlone: scrub rewrites the report in place,
// and a certificate's names must not be rewritten with it (the certificate
// is shared with the TLS stack and with other probes running at once).
func TestScrubLeavesTheCertificateAlone(t *testing.T) {
	cert := &x509.Certificate{DNSNames: []string{"mx.s3cret.test", "other.test"}}
	r := Report{TLS: &TLSInfo{Chain: []Cert{certInfo(cert, time.Now())}}}
	scrub(reflect.ValueOf(&r).Elem(), "s3cret")
	if got := r.TLS.Chain[0].DNSNames[0]; got != "mx.[password].test" {
		t.Errorf("report's name = %q, want it scrubbed", got)
	}
	if got := cert.DNSNames[0]; got != "mx.s3cret.test" {
		t.Errorf("the certificate's own DNSNames[0] became %q", got)
	}
}

func TestTextOutput(t *testing.T) {
	srv := newServer(t, smtptest.Options{BufferedCommandsSurviveSTARTTLS: true, AuthBeforeTLS: true, Cert: smtptest.CertWrongName})
	res := Result{Ports: probeAll(context.Background(), []string{srv.StartTLSAddr, srv.ImplicitAddr}, options(srv))}
	var b bytes.Buffer
	printText(&b, res)
	out := b.String()
	for _, want := range []string{
		srv.StartTLSAddr + ": STARTTLS\n",
		srv.ImplicitAddr + ": implicit TLS\n",
		"  EHLO before TLS: PIPELINING, SIZE 67108864, 8BITMIME, ENHANCEDSTATUSCODES, SMTPUTF8, STARTTLS, AUTH PLAIN LOGIN CRAM-MD5\n",
		"  command injection: VULNERABLE (CVE-2011-0411: the plaintext NOOP was answered under TLS)\n",
		"  certificate does NOT verify for mx.test: tls: failed to verify certificate: x509: certificate is valid for wrong.example, not mx.test\n",
		"  (chain and EHLO below read with InsecureSkipVerify, for inspection only)\n",
		"  [0] CN=wrong.example\n      DNS: wrong.example\n",
		"  WARNING: AUTH offered before TLS (PLAIN LOGIN CRAM-MD5): a client may send its password in plaintext\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestTargetList(t *testing.T) {
	got, err := targetList("smtp.example.com", "465, 587,25", "")
	if want := []string{"smtp.example.com:465", "smtp.example.com:587", "smtp.example.com:25"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("targetList = %q, %v; want %q", got, err, want)
	}
	got, err = targetList("ignored", "465", "a:1,[::1]:2")
	if want := []string{"a:1", "[::1]:2"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("targetList = %q, %v; want %q", got, err, want)
	}
	for _, bad := range [][3]string{{"", "465", ""}, {"h", "", ""}, {"", "", "noport"}} {
		if got, err := targetList(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("targetList(%q) = %q, want an error", bad, got)
		}
	}
}

// TestPostfix probes the Postfix instance of internal/integration when its
// env file exists: skipped otherwise, except under CI=true, where a
// missing server is a failure.
func TestPostfix(t *testing.T) {
	env, why := postfixEnv()
	if env == nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI=true, so this is a failure: start it with `sudo internal/integration/postfix/start.sh`", why)
		}
		t.Skip(why)
	}
	pem, err := os.ReadFile(env["TLSMAIL_CA_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", env["TLSMAIL_CA_FILE"])
	}
	name := env["TLSMAIL_SERVER_NAME"]
	if name == "" {
		name = "mail." + env["TLSMAIL_DOMAIN"]
	}
	o := Options{ServerName: name, RootCAs: roots, Timeout: 10 * time.Second,
		User: env["TLSMAIL_USER"], Password: env["TLSMAIL_PASSWORD"]}
	addrs := []string{env["TLSMAIL_IMPLICIT_ADDR"], env["TLSMAIL_STARTTLS_ADDR"], env["TLSMAIL_PLAIN_ADDR"]}
	reports := probeAll(context.Background(), addrs, o)

	imp := reports[0]
	if imp.Status != StatusImplicitTLS || imp.Error != "" || imp.TLS == nil {
		t.Fatalf("implicit port: %+v", imp)
	}
	if v := imp.TLS.Version; v != "TLS 1.2" && v != "TLS 1.3" {
		t.Errorf("implicit port: TLS version %s, want 1.2 or 1.3", v)
	}
	if !imp.TLS.Verified || imp.TLS.VerifyError != "" || imp.TLS.InsecureInspection || imp.TLS.ServerName != name {
		t.Errorf("implicit port: certificate does not verify for %s: %+v", name, imp.TLS)
	}
	if len(imp.TLS.Chain) == 0 || imp.TLS.Chain[0].Expired {
		t.Errorf("implicit port: chain %+v", imp.TLS.Chain)
	}
	if imp.TlsmailError != "" || len(imp.Warnings) != 0 || imp.EHLOBeforeTLS != nil || authLine(imp.EHLOAfterTLS) == "" {
		t.Errorf("implicit port: %+v", imp)
	}

	for i, r := range reports[:2] {
		if l := r.Login; o.User != "" && (l == nil || l.Error != "" || !strings.HasPrefix(l.Mechanism, "SCRAM-SHA-256")) {
			t.Errorf("%s: login %+v, want SCRAM-SHA-256", addrs[i], l)
		}
	}

	st := reports[1]
	if st.Status != StatusSTARTTLS || st.Error != "" || st.TLS == nil || !st.TLS.Verified || st.TlsmailError != "" {
		t.Fatalf("STARTTLS port: %+v", st)
	}
	if m := authLine(st.EHLOBeforeTLS); m != "" {
		t.Errorf("STARTTLS port offers AUTH %s before TLS", m)
	}
	if s := st.STARTTLS; s == nil || !s.Offered || !s.CommandInjectionTested || s.CommandInjection || s.ResponseInjectionBytes != 0 {
		t.Errorf("STARTTLS port: %+v", s)
	}
	if len(st.Warnings) != 0 {
		t.Errorf("STARTTLS port: warnings %q", st.Warnings)
	}

	pl := reports[2]
	if pl.Status != StatusPlaintext || pl.TLS != nil || pl.STARTTLS == nil || pl.STARTTLS.Offered || hasExt(pl.EHLOBeforeTLS, "STARTTLS") {
		t.Errorf("plain port: %+v", pl)
	}
	if l := pl.Login; o.User != "" && (l == nil || l.Error != "not attempted: tlsmail did not connect") {
		t.Errorf("plain port: login %+v", l)
	}
	if len(pl.Warnings) == 0 || pl.Warnings[len(pl.Warnings)-1] != "no STARTTLS: mail and credentials would travel in plaintext" {
		t.Errorf("plain port: warnings %q", pl.Warnings)
	}
	for _, r := range reports {
		t.Logf("%s: %s, %.1f ms connect, %.1f ms NOOP", r.Addr, r.Status, r.ConnectMS, r.NoopMS)
	}
}

// postfixEnv reads the env file of the Postfix test server as
// internal/integration does, and checks that the server is running.
func postfixEnv() (map[string]string, string) {
	path := os.Getenv("TLSMAIL_POSTFIX_ENV")
	if path == "" {
		path = "/tmp/tlsmail-postfix/env"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "no Postfix test server: " + err.Error()
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	for _, k := range []string{"TLSMAIL_IMPLICIT_ADDR", "TLSMAIL_STARTTLS_ADDR", "TLSMAIL_PLAIN_ADDR", "TLSMAIL_CA_FILE"} {
		if env[k] == "" {
			return nil, "Postfix test server env file " + path + " lacks " + k
		}
	}
	// A stale env file (server stopped) is the same as none.
	for _, k := range []string{"TLSMAIL_IMPLICIT_ADDR", "TLSMAIL_STARTTLS_ADDR", "TLSMAIL_PLAIN_ADDR"} {
		c, err := net.DialTimeout("tcp", env[k], 3*time.Second)
		if err != nil {
			return nil, "Postfix test server from " + path + " is not running: " + err.Error()
		}
		c.Close()
	}
	return env, ""
}

// TestOldTLS probes a server that stops at TLS 1.1: the probe reports the
// version, which tlsmail refuses.
func TestOldTLS(t *testing.T) {
	srv := newServer(t, smtptest.Options{MaxTLSVersion: tls.VersionTLS11})
	o := options(srv)
	o.User, o.Password = "user", "pass"
	got := probe(context.Background(), srv.ImplicitAddr, o)
	var suite string
	if got.TLS != nil {
		suite = got.TLS.CipherSuite // Go's choice among its TLS 1.1 suites
	}
	want := "tlsmail: TLS handshake with " + srv.ImplicitAddr + ": remote error: tls: protocol version not supported; tlsmail requires TLS 1.2 or later (RFC 8996)"
	check(t, got, Report{
		Addr:         srv.ImplicitAddr,
		Status:       StatusImplicitTLS,
		NoopMS:       1,
		Greeting:     greeting,
		EHLOAfterTLS: extTLS,
		TLS: &TLSInfo{
			Version: "TLS 1.1", CipherSuite: suite, ServerName: "mx.test", Verified: true, MatchesName: true,
			Chain: []Cert{leaf(t, got, smtptest.CertValid)},
		},
		TlsmailMode:  "ImplicitTLS",
		TlsmailError: want,
		Login:        &LoginInfo{User: "user", Error: "not attempted: tlsmail did not connect"},
		Warnings:     []string{"TLS 1.1 is deprecated (RFC 8996); tlsmail requires TLS 1.2 or later"},
	})
	if !strings.HasPrefix(suite, "TLS_ECDHE_ECDSA_WITH_AES_") {
		t.Errorf("cipher suite %q", suite)
	}
}

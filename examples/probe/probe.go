package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/tlsmail/tlsmail"
)

// Status says what a port speaks.
type Status string

// The values of Report.Status.
const (
	StatusImplicitTLS Status = "implicit-tls" // TLS from the first byte (RFC 8314)
	StatusSTARTTLS    Status = "starttls"     // plaintext greeting, STARTTLS offered and TLS established (RFC 3207)
	StatusPlaintext   Status = "plaintext"    // SMTP without TLS: STARTTLS not offered, or refused
	StatusClosed      Status = "closed"       // no TCP connection (refused, unreachable, timeout)
	StatusNoSMTP      Status = "no-smtp"      // something answered, but neither SMTP nor SMTP over TLS
)

// Options configures a probe. The zero value probes with the system roots,
// a 10 second bound on each step and no login.
type Options struct {
	// ServerName is the name the certificate must match. Empty means the
	// host of the address probed.
	ServerName string
	// RootCAs verifies certificates; nil means the system roots.
	RootCAs *x509.CertPool
	// Timeout bounds each network step (connect, greeting, handshake,
	// each reply). Zero means 10 seconds.
	Timeout time.Duration
	// LocalName is the EHLO name; empty means "localhost".
	LocalName string
	// User, if set, makes the probe log in with tlsmail.PasswordAuth over
	// a verified TLS connection. Password is never part of the Report.
	User, Password string
	// GreetingFirstPorts are the ports where the probe waits for a
	// plaintext greeting before it tries TLS; on other ports it starts
	// with a TLS ClientHello, as tlsmail's ImplicitTLS mode does. nil
	// means 25 and 587.
	GreetingFirstPorts []string
	// Now is the time certificates are judged against; zero means
	// time.Now().
	Now time.Time
	// POP3Ports are the ports probed as POP3 (pop3.go) instead of SMTP;
	// nil means 995 and 110.
	POP3Ports []string
}

// Report is what a probe found out about one address. It is also the
// JSON structure printed by -json (one per address, inside "ports").
type Report struct {
	Addr   string `json:"addr"`
	Status Status `json:"status"`
	// Error says why a port is closed or not SMTP, or what failed on the
	// way (for example the TLS handshake); empty when all went well.
	Error string `json:"error,omitempty"`

	ConnectMS float64 `json:"connect_ms,omitempty"` // TCP connect time
	NoopMS    float64 `json:"noop_ms,omitempty"`    // one NOOP round trip, under TLS when there is TLS

	Greeting      string   `json:"greeting,omitempty"`        // the greeting's first line, "220 ..."
	EHLOBeforeTLS []string `json:"ehlo_before_tls,omitempty"` // extension lines in plaintext
	EHLOAfterTLS  []string `json:"ehlo_after_tls,omitempty"`  // extension lines under TLS
	CapaAfterTLS  []string `json:"capa_after_tls,omitempty"`  // POP3 capabilities under TLS, sorted

	TLS      *TLSInfo      `json:"tls,omitempty"`
	STARTTLS *STARTTLSInfo `json:"starttls,omitempty"`

	// TlsmailMode and TlsmailError are the tlsmail.Dialer's verdict: the
	// mode it was tried with and its error, empty when it connected.
	TlsmailMode  string `json:"tlsmail_mode,omitempty"`
	TlsmailError string `json:"tlsmail_error,omitempty"`

	Login *LoginInfo `json:"login,omitempty"`

	Warnings []string `json:"warnings,omitempty" scrub:"no"`
}

// TLSInfo describes the TLS connection.
type TLSInfo struct {
	Version     string `json:"version"`      // "TLS 1.3"
	CipherSuite string `json:"cipher_suite"` // "TLS_AES_128_GCM_SHA256"
	ServerName  string `json:"server_name"`  // the name verified against
	Verified    bool   `json:"verified"`     // the chain verifies and matches ServerName
	// MatchesName says whether the leaf certificate names ServerName,
	// whatever the rest of the verification found: it tells a wrong name
	// from an untrusted or expired chain.
	MatchesName bool   `json:"matches_name"`
	VerifyError string `json:"verify_error,omitempty"`
	// InsecureInspection is true when verification failed and the
	// connection described here was made again with InsecureSkipVerify,
	// only to read the chain, the TLS parameters and the EHLO reply.
	// Nothing secret is ever sent on such a connection.
	InsecureInspection bool   `json:"insecure_inspection,omitempty"`
	Chain              []Cert `json:"chain"` // as the server sent it, leaf first
}

// Cert describes one certificate.
type Cert struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	DNSNames    []string  `json:"dns_names,omitempty"`
	IPAddresses []string  `json:"ip_addresses,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DaysLeft    int       `json:"days_left"` // whole days to NotAfter, negative once expired
	Expired     bool      `json:"expired"`
}

// STARTTLSInfo is the STARTTLS part of a plaintext port.
type STARTTLSInfo struct {
	Offered bool   `json:"offered"`
	Reply   string `json:"reply,omitempty"` // the reply to STARTTLS
	// ResponseInjectionBytes counts the bytes the server sent after its
	// 220 reply and before the TLS handshake (RFC 3207 section 6); tlsmail
	// refuses such a server with ErrResponseInjection.
	ResponseInjectionBytes int    `json:"response_injection_bytes"`
	ResponseInjection      string `json:"response_injection,omitempty"` // their start, quoted
	// CommandInjectionTested is true when TLS was established after
	// "STARTTLS\r\nNOOP\r\n" had been sent in one write; CommandInjection
	// is true when the server then answered that plaintext NOOP under
	// TLS, as servers vulnerable to CVE-2011-0411 do.
	CommandInjectionTested bool `json:"command_injection_tested"`
	CommandInjection       bool `json:"command_injection"`
}

// LoginInfo is the result of the login test.
type LoginInfo struct {
	User      string `json:"user"`
	Mechanism string `json:"mechanism,omitempty"` // Client.AuthMechanism after success
	Error     string `json:"error,omitempty"`
}

// probeCommand is sent after the STARTTLS handshake, before anything else:
// a verb no server knows, so that its reply cannot be a 250. A 250 read
// first therefore answers the NOOP sent in plaintext with STARTTLS.
const probeCommand = "XTLSMAILPROBE"

// probe finds out what the server at addr (host:port) speaks. It never
// fails: whatever goes wrong is in the Report.
func probe(ctx context.Context, addr string, o Options) Report {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.LocalName == "" {
		o.LocalName = "localhost"
	}
	if o.GreetingFirstPorts == nil {
		o.GreetingFirstPorts = []string{"25", "587", "smtp", "submission"}
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	r := Report{Addr: addr}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		r.Status, r.Error = StatusClosed, err.Error()
		return r
	}
	if o.ServerName == "" {
		o.ServerName = host
	}
	p := &prober{addr: addr, host: host, o: o, r: &r}
	if p.isPOP3() {
		p.runPOP3(ctx)
	} else {
		p.run(ctx)
	}
	if o.User != "" && r.Login == nil && r.Status != StatusClosed && r.Status != StatusNoSMTP {
		why := "no verified TLS connection"
		if r.TlsmailError != "" {
			why = "tlsmail did not connect"
		}
		r.Login = &LoginInfo{User: o.User, Error: "not attempted: " + why}
	}
	if o.Password != "" {
		scrub(reflect.ValueOf(&r).Elem(), o.Password)
	}
	return r
}

type prober struct {
	addr, host string
	o          Options
	r          *Report
}

func (p *prober) verifyConfig() *tls.Config {
	return &tls.Config{ServerName: p.o.ServerName, RootCAs: p.o.RootCAs}
}

func (p *prober) run(ctx context.Context) {
	r := p.r
	if _, port, _ := net.SplitHostPort(p.addr); slices.Contains(p.o.GreetingFirstPorts, port) {
		// Where a plaintext greeting is expected, wait for it rather than
		// send a TLS ClientHello first: servers that check that clients
		// wait for the greeting (Postfix's postscreen on port 25, for
		// one) would take the probe for a spambot. Only a server that
		// stays silent for the whole timeout is tried with TLS.
		if p.plaintext(ctx) {
			return
		}
		*r = Report{Addr: p.addr}
	}
	// The library first: it says what tlsmail would do, and tells a
	// plaintext greeting from a TLS server without a second connection.
	c, connected, connect, err := p.dial(ctx, tlsmail.ImplicitTLS)
	if !connected {
		r.Status, r.Error = StatusClosed, err.Error()
		return
	}
	r.ConnectMS = ms(connect)
	if errors.Is(err, tlsmail.ErrPlaintextServer) {
		p.plaintext(ctx)
		return
	}
	r.TlsmailMode = tlsmail.ImplicitTLS.String()
	if err != nil {
		r.TlsmailError = err.Error()
	}
	ok, _ := p.inspect(ctx, true)
	if c != nil {
		if ok {
			p.login(c)
		}
		c.Close()
	}
}

// plaintext probes a port that greets in plaintext. It returns false,
// having reported nothing, when the server sent nothing at all before the
// timeout: it may be waiting for a TLS ClientHello.
func (p *prober) plaintext(ctx context.Context) bool {
	r := p.r
	r.Status = StatusPlaintext
	ok, s := p.inspect(ctx, false)
	if s.silent {
		return false
	}
	if r.Status != StatusPlaintext && r.Status != StatusSTARTTLS {
		return true
	}
	// What tlsmail makes of it: on a plaintext-only port, its refusal.
	r.TlsmailMode = tlsmail.STARTTLS.String()
	c, _, _, err := p.dial(ctx, tlsmail.STARTTLS)
	if err != nil {
		r.TlsmailError = err.Error()
		return true
	}
	defer c.Close()
	if ok {
		p.login(c)
	}
	return true
}

// dial connects with tlsmail, verifying the certificate. connected says
// whether a TCP connection was made at all.
func (p *prober) dial(ctx context.Context, mode tlsmail.Mode) (c *tlsmail.Client, connected bool, connect time.Duration, err error) {
	d := &tlsmail.Dialer{
		Mode:            mode,
		TLSConfig:       p.verifyConfig(),
		Timeout:         p.o.Timeout,
		GreetingTimeout: p.o.Timeout,
		CommandTimeout:  p.o.Timeout,
		LocalName:       p.o.LocalName,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var nd net.Dialer
			start := time.Now()
			conn, err := nd.DialContext(ctx, network, addr)
			if err == nil {
				connected, connect = true, time.Since(start)
			}
			return conn, err
		},
	}
	c, err = d.DialContext(ctx, p.addr)
	return c, connected, connect, err
}

// login tries the credentials on c, a verified TLS connection.
func (p *prober) login(c *tlsmail.Client) {
	if p.o.User == "" {
		return
	}
	l := &LoginInfo{User: p.o.User}
	p.r.Login = l
	if err := c.Auth(tlsmail.PasswordAuth(p.o.User, p.o.Password, p.host)); err != nil {
		l.Error = err.Error()
		return
	}
	l.Mechanism = c.AuthMechanism()
	c.Quit()
}

// inspect runs the raw session, verifying the certificate, and again with
// InsecureSkipVerify when verification was what failed. It fills the
// Report and returns whether the certificate verified (or, on a plaintext
// port without TLS, whether the session went well), and the session.
func (p *prober) inspect(ctx context.Context, implicit bool) (bool, session) {
	r := p.r
	cfg := p.verifyConfig()
	// Older versions are allowed here only to report them; tlsmail
	// itself refuses anything below TLS 1.2.
	cfg.MinVersion = tls.VersionTLS10
	s, err := p.session(ctx, implicit, cfg)
	var cve *tls.CertificateVerificationError
	if err != nil && errors.As(err, &cve) {
		verr := cve.Error()
		cfg = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10}
		s, err = p.session(ctx, implicit, cfg)
		if s.state != nil {
			s.state.verifyErr = verr
		}
	}
	if !s.connected {
		r.Status, r.Error = StatusClosed, err.Error()
		return false, s
	}
	if r.ConnectMS == 0 {
		r.ConnectMS = ms(s.connect)
	}
	p.fill(s, implicit)
	if err != nil {
		r.Error = err.Error()
		var alert tls.AlertError
		switch {
		case s.greeting != "":
			// SMTP was spoken: the status fill chose stands.
		case implicit && s.state == nil && errors.As(err, &alert):
			// A TLS server that refused the handshake.
		case implicit && s.state == nil && r.TlsmailError != "":
			// tlsmail's text says what answered instead of TLS.
			r.Status, r.Error = StatusNoSMTP, r.TlsmailError
		default:
			r.Status = StatusNoSMTP
		}
		return false, s
	}
	return s.state == nil || s.state.verifyErr == "", s
}

// session is what one raw connection found.
type session struct {
	greeting      string
	before, after []string
	starttls      *STARTTLSInfo
	state         *tlsState
	noop          time.Duration
	connect       time.Duration
	connected     bool
	silent        bool // no greeting, and not one byte, before the timeout
}

type tlsState struct {
	tls.ConnectionState
	serverName string
	insecure   bool
	verifyErr  string
}

// session connects to the address with net and crypto/tls directly,
// where tlsmail deliberately refuses: EHLO in plaintext, the injection
// tests, and the chain of a certificate that does not verify.
func (p *prober) session(ctx context.Context, implicit bool, cfg *tls.Config) (s session, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var nd net.Dialer
	dctx, dcancel := context.WithTimeout(ctx, p.o.Timeout)
	start := time.Now()
	conn, err := nd.DialContext(dctx, "tcp", p.addr)
	dcancel()
	if err != nil {
		return s, err
	}
	s.connected, s.connect = true, time.Since(start)
	defer conn.Close()
	// Cancelling ctx interrupts whatever I/O is in flight.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	step := func() { conn.SetDeadline(time.Now().Add(p.o.Timeout)) }

	var rw net.Conn = conn
	handshake := func() error {
		step()
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		st := tc.ConnectionState()
		s.state = &tlsState{ConnectionState: st, serverName: cfg.ServerName, insecure: cfg.InsecureSkipVerify}
		rw = tc
		return nil
	}
	if implicit {
		if err := handshake(); err != nil {
			return s, err
		}
	}
	tp := newText(rw)
	step()
	code, msg, err := tp.ReadResponse(220)
	if code != 0 {
		s.greeting = fmt.Sprintf("%d %s", code, firstLine(msg))
	}
	if err != nil {
		var ne net.Error
		s.silent = code == 0 && errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil
		return s, fmt.Errorf("greeting: %w", err)
	}
	ext := func() ([]string, error) {
		step()
		if err := tp.PrintfLine("EHLO %s", p.o.LocalName); err != nil {
			return nil, err
		}
		_, msg, err := tp.ReadResponse(250)
		if err != nil {
			return nil, fmt.Errorf("EHLO: %w", err)
		}
		lines := strings.Split(msg, "\n")[1:]
		for i := range lines {
			lines[i] = clean(lines[i])
		}
		return lines, nil
	}
	if !implicit {
		if s.before, err = ext(); err != nil {
			return s, err
		}
		s.starttls = &STARTTLSInfo{Offered: hasExt(s.before, "STARTTLS")}
		if s.starttls.Offered {
			if err := p.starttls(tp, rw, s.starttls, step); err != nil {
				return s, err
			}
			if err := handshake(); err != nil {
				return s, err
			}
			tp = newText(rw)
			// Whatever the server sends first now either answers the
			// NOOP of the STARTTLS write (vulnerable) or probeCommand.
			step()
			if err := tp.PrintfLine("%s", probeCommand); err != nil {
				return s, err
			}
			code, _, err := tp.ReadResponse(0)
			if err != nil {
				return s, fmt.Errorf("reply to %s after STARTTLS: %w", probeCommand, err)
			}
			s.starttls.CommandInjectionTested = true
			if code == 250 {
				s.starttls.CommandInjection = true
				if _, _, err := tp.ReadResponse(0); err != nil {
					return s, fmt.Errorf("reply to %s after STARTTLS: %w", probeCommand, err)
				}
			}
		}
	}
	if s.state != nil {
		if s.after, err = ext(); err != nil {
			return s, err
		}
	}
	step()
	start = time.Now()
	if err := tp.PrintfLine("NOOP"); err != nil {
		return s, err
	}
	if _, _, err := tp.ReadResponse(250); err != nil {
		return s, fmt.Errorf("NOOP: %w", err)
	}
	s.noop = time.Since(start)
	step()
	if tp.PrintfLine("QUIT") == nil {
		tp.ReadResponse(221)
	}
	return s, nil
}

// starttls sends STARTTLS and NOOP in one write and reads the reply to
// STARTTLS, recording what arrived after it.
func (p *prober) starttls(tp *textproto.Conn, conn net.Conn, st *STARTTLSInfo, step func()) error {
	step()
	// One write, as a pipelining client would: a server that keeps the
	// NOOP across the handshake is vulnerable to command injection.
	if _, err := io.WriteString(conn, "STARTTLS\r\nNOOP\r\n"); err != nil {
		return err
	}
	code, msg, err := tp.ReadResponse(0)
	if err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	st.Reply = fmt.Sprintf("%d %s", code, clean(firstLine(msg)))
	if code != 220 {
		return fmt.Errorf("STARTTLS refused: %s", st.Reply)
	}
	if n := tp.R.Buffered(); n > 0 {
		b, _ := tp.R.Peek(n)
		st.ResponseInjectionBytes = n
		st.ResponseInjection = fmt.Sprintf("%q", b[:min(n, 64)])
	}
	return nil
}

// fill copies what the session found into the Report.
func (p *prober) fill(s session, implicit bool) {
	r := p.r
	r.Greeting = clean(s.greeting)
	r.EHLOBeforeTLS, r.EHLOAfterTLS = s.before, s.after
	r.STARTTLS = s.starttls
	if s.noop > 0 {
		r.NoopMS = ms(s.noop)
	}
	if implicit {
		r.Status = StatusImplicitTLS
	} else if s.state != nil {
		r.Status = StatusSTARTTLS
	}
	if s.state != nil {
		st := s.state
		t := &TLSInfo{
			Version:            tls.VersionName(st.Version),
			CipherSuite:        tls.CipherSuiteName(st.CipherSuite),
			ServerName:         p.o.ServerName,
			Verified:           !st.insecure,
			VerifyError:        clean(st.verifyErr),
			InsecureInspection: st.insecure,
		}
		if len(st.PeerCertificates) > 0 {
			t.MatchesName = st.PeerCertificates[0].VerifyHostname(p.o.ServerName) == nil
		}
		for _, c := range st.PeerCertificates {
			t.Chain = append(t.Chain, certInfo(c, p.o.Now))
		}
		r.TLS = t
	}
	p.warn(s)
}

func (p *prober) warn(s session) {
	r := p.r
	add := func(format string, args ...any) { r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...)) }
	if m := authLine(s.before); m != "" {
		add("AUTH offered before TLS (%s): a client may send its password in plaintext", m)
	}
	if st := s.starttls; st != nil {
		switch {
		case !st.Offered:
			add("no STARTTLS: mail and credentials would travel in plaintext")
		case s.state == nil && strings.HasPrefix(st.Reply, "220"):
			// Handshake failed; the error says why.
		case s.state == nil:
			add("STARTTLS offered but refused (%s)", st.Reply)
		}
		if st.ResponseInjectionBytes > 0 {
			add("STARTTLS response injection: %d bytes after the 220 reply, before the TLS handshake (tlsmail refuses this: ErrResponseInjection)", st.ResponseInjectionBytes)
		}
		if st.CommandInjection {
			add("STARTTLS command injection (CVE-2011-0411): a command sent in plaintext with STARTTLS was answered under TLS")
		}
	}
	if t := r.TLS; t != nil {
		if !t.Verified {
			add("certificate does not verify for %s: %s", t.ServerName, t.VerifyError)
		}
		if s.state.Version < tls.VersionTLS12 {
			add("%s is deprecated (RFC 8996); tlsmail requires TLS 1.2 or later", t.Version)
		}
		if len(t.Chain) > 0 {
			if c := t.Chain[0]; !c.Expired && c.DaysLeft < 14 {
				add("certificate expires in %d days", c.DaysLeft)
			}
		}
	}
}

func certInfo(c *x509.Certificate, now time.Time) Cert {
	ci := Cert{
		Subject: c.Subject.String(),
		Issuer:  c.Issuer.String(),
		// A copy: scrub rewrites the report in place, and the
		// certificate is shared (a session cache, other goroutines).
		DNSNames:  slices.Clone(c.DNSNames),
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
		DaysLeft:  int(c.NotAfter.Sub(now).Hours() / 24),
		Expired:   now.After(c.NotAfter),
	}
	for _, ip := range c.IPAddresses {
		ci.IPAddresses = append(ci.IPAddresses, ip.String())
	}
	return ci
}

// newText reads at most 1 MiB from conn: enough for any honest server,
// and a bound on what a hostile one can make the probe hold.
func newText(conn net.Conn) *textproto.Conn {
	tp := textproto.NewConn(conn)
	tp.Reader = *textproto.NewReader(bufio.NewReader(&io.LimitedReader{R: conn, N: 1 << 20}))
	return tp
}

func hasExt(lines []string, kw string) bool {
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], kw) {
			return true
		}
	}
	return false
}

// authLine returns the mechanisms of an AUTH line (or the old "AUTH="
// form), or "".
func authLine(lines []string) string {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		kw := strings.ToUpper(f[0])
		if kw == "AUTH" {
			return strings.Join(f[1:], " ")
		}
		if rest, ok := strings.CutPrefix(kw, "AUTH="); ok {
			return strings.Join(append([]string{rest}, f[1:]...), " ")
		}
	}
	return ""
}

func firstLine(msg string) string {
	l, _, _ := strings.Cut(msg, "\n")
	return l
}

// clean makes server text safe to print: control characters and invalid
// UTF-8 become U+FFFD, and it is cut to 512 bytes.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
	if len(s) > 512 {
		s = strings.ToValidUTF8(s[:512], "") + "..."
	}
	return s
}

// scrub replaces the password in every string of v, a report or part of
// one, but the warnings: whatever a server repeats (an error, its
// greeting, a certificate name) never shows it, in the text or the JSON.
func scrub(v reflect.Value, password string) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(strings.ReplaceAll(v.String(), password, "[password]"))
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			scrub(v.Elem(), password)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			// The warnings are the probe's own words, where a short
			// password could match a word ("pass" in "password").
			if v.Type().Field(i).Tag.Get("scrub") != "no" {
				scrub(v.Field(i), password)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			scrub(v.Index(i), password)
		}
	}
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

package smtptest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmail/tlsmail"
)

const testBody = "Subject: t\r\n\r\nbody\r\n"

func sendVia(t *testing.T, srv *Server, mode tlsmail.Mode, auth tlsmail.Auth, to ...string) error {
	t.Helper()
	d := srv.Dialer(mode)
	d.CommandTimeout = 5 * time.Second
	d.GreetingTimeout = 5 * time.Second
	return d.SendMail(srv.Addr(mode), auth, "from@example.org", to, []byte(testBody))
}

func TestStartRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"unknown mechanism", Config{AuthMechanisms: []string{"PLAIN", "NTLM"}}, `Config.AuthMechanisms: the server does not implement "NTLM"`},
		{"bad RcptReplies", Config{RcptReplies: map[string]string{"a@b": "nope"}}, `Config.RcptReplies["a@b"]: "nope" is not an SMTP reply`},
		{"unknown step", Config{Faults: []Fault{{At: "RCTP", Drop: true}}}, `Config.Faults[0]: field At is "RCTP"; want a command verb`},
		{"empty step", Config{Faults: []Fault{{Drop: true}}}, `Config.Faults[0]: field At is ""`},
		{"addr at DATA", Config{Faults: []Fault{{At: "DATA", Addr: "a@b", Drop: true}}}, `Addr is set but At is "DATA"`},
		{"drop and reply", Config{Faults: []Fault{{At: "MAIL", Drop: true, Reply: "451 x"}}}, "both Drop and Reply"},
		{"does nothing", Config{Faults: []Fault{{At: "MAIL"}}}, "would do nothing"},
		{"negative times", Config{Faults: []Fault{{At: "MAIL", Drop: true, Times: -1}}}, "Times is -1"},
		{"negative delay", Config{Faults: []Fault{{At: "MAIL", Delay: -time.Second}}}, "Delay is -1s"},
		{"bad reply", Config{Faults: []Fault{{At: "MAIL", Reply: "Try again"}}}, `Config.Faults[0]: field Reply: "Try again" is not an SMTP reply`},
		{"second fault", Config{Faults: []Fault{{At: "MAIL", Drop: true}, {At: "RCPT", Reply: "099 x"}}}, "Config.Faults[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := Start(&tt.cfg)
			if err == nil {
				srv.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.HasPrefix(err.Error(), "smtptest: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestCheckReply(t *testing.T) {
	good := []string{"250 Ok", "451", "550 5.1.1 x", "250-a\r\n250 b", "421 4.3.2 bye"}
	bad := []string{"", "25", "abc", "199 x", "600 x", "250x", "250-a", "250 a\r\n251 b", "250 a\r\n250 b", "250-a\n250 b", "250 a\r\n"}
	for _, r := range good {
		if err := checkReply(r); err != nil {
			t.Errorf("checkReply(%q) = %v", r, err)
		}
	}
	for _, r := range bad {
		if err := checkReply(r); err == nil {
			t.Errorf("checkReply(%q) = nil", r)
		}
	}
}

func TestMessageAndTranscript(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, nil)
	if err := sendVia(t, srv, tlsmail.ImplicitTLS, tlsmail.PlainAuth("", "user", "pass", "127.0.0.1"), "a@example.net", "b@example.net"); err != nil {
		t.Fatal(err)
	}
	m, err := srv.WaitMessage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m.From != "from@example.org" || strings.Join(m.To, ",") != "a@example.net,b@example.net" ||
		string(m.Data) != testBody || !m.TLS || m.TLSVersion != tls.VersionTLS13 || m.CipherSuite == 0 ||
		m.AuthUser != "user" || m.AuthMechanism != "PLAIN" || m.Session != 1 || m.QueueID != "1" ||
		m.MailParams != fmt.Sprintf("SIZE=%d", len(testBody)) || len(m.RcptParams) != 2 {
		t.Errorf("message %+v", m)
	}
	// With two recipients, SendMail's all-or-nothing message goes with
	// DATA even though CHUNKING is a default: the 354 vouches for the
	// RCPT replies before the end of data.
	if len(m.Chunks) != 0 || string(m.Raw) != testBody+".\r\n" {
		t.Errorf("chunks %v raw %q", m.Chunks, m.Raw)
	}
	if err := srv.WaitIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range srv.Transcript() {
		if l.Session != 1 || !l.TLS {
			t.Errorf("line %+v", l)
		}
		got = append(got, l.Text)
	}
	want := []string{"EHLO localhost", "AUTH PLAIN AHVzZXIAcGFzcw==", "MAIL FROM:<from@example.org> SIZE=20",
		"RCPT TO:<a@example.net>", "RCPT TO:<b@example.net>", "DATA", "QUIT"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("transcript\n got %q\nwant %q", got, want)
	}
	if srv.Connections() != 1 {
		t.Errorf("Connections() = %d", srv.Connections())
	}
	srv.Reset()
	if len(srv.Messages()) != 0 || len(srv.Transcript()) != 0 {
		t.Error("Reset kept messages or transcript")
	}
}

func TestServerName(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, nil)
	d := srv.Dialer(tlsmail.ImplicitTLS)
	_, port, _ := net.SplitHostPort(srv.Addr(tlsmail.ImplicitTLS))
	if err := d.SendMail(net.JoinHostPort("localhost", port), nil, "a@example.org", []string{"b@example.net"}, []byte(testBody)); err != nil {
		if strings.Contains(err.Error(), "connect") {
			t.Skip("localhost does not resolve to 127.0.0.1:", err)
		}
		t.Fatal(err)
	}
	if m := srv.Messages()[0]; m.TLSServerName != "localhost" {
		t.Errorf("TLSServerName = %q", m.TLSServerName)
	}
}

func TestAuthMechanisms(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, &Config{
		Users:  map[string]string{"ann": "secret"},
		Tokens: map[string]string{"tok-ann": "ann"},
	})
	// Each mechanism alone, so that PasswordAuth and OAuth2Auth must use it.
	for _, mech := range mechanisms {
		t.Run(mech, func(t *testing.T) {
			srv := NewServer(t, &Config{
				Users:          map[string]string{"ann": "secret"},
				Tokens:         map[string]string{"tok-ann": "ann"},
				AuthMechanisms: []string{mech},
			})
			auth := tlsmail.PasswordAuth("ann", "secret", "127.0.0.1")
			if strings.Contains(mech, "OAUTH") {
				auth = tlsmail.OAuth2Auth("ann", tlsmail.StaticToken("tok-ann"), "127.0.0.1")
			}
			if err := sendVia(t, srv, tlsmail.ImplicitTLS, auth, "b@example.net"); err != nil {
				t.Fatal(err)
			}
			if m := srv.Messages()[0]; m.AuthMechanism != mech || m.AuthUser != "ann" {
				t.Errorf("authenticated as %q with %q", m.AuthUser, m.AuthMechanism)
			}
		})
	}
	t.Run("default advertises all", func(t *testing.T) {
		c, err := srv.Dialer(tlsmail.ImplicitTLS).Dial(srv.Addr(tlsmail.ImplicitTLS))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, params := c.Extension("AUTH"); params != strings.Join(mechanisms, " ") {
			t.Errorf("AUTH %s", params)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		err := sendVia(t, srv, tlsmail.ImplicitTLS, tlsmail.PasswordAuth("ann", "guess", "127.0.0.1"), "b@example.net")
		var e *tlsmail.Error
		if !errors.As(err, &e) || e.Code != 535 {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("token of another user", func(t *testing.T) {
		err := sendVia(t, srv, tlsmail.ImplicitTLS, tlsmail.OAuth2Auth("bob", tlsmail.StaticToken("tok-ann"), "127.0.0.1"), "b@example.net")
		var oe *tlsmail.OAuthError
		if !errors.As(err, &oe) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestExtensions(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, &Config{Extensions: []string{"SIZE 100", "REQUIRETLS", "DSN"}, AuthMechanisms: []string{}})
	c, err := srv.Dialer(tlsmail.STARTTLS).Dial(srv.Addr(tlsmail.STARTTLS))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for ext, want := range map[string]bool{"SIZE": true, "REQUIRETLS": true, "DSN": true, "PIPELINING": false, "CHUNKING": false, "AUTH": false} {
		if ok, _ := c.Extension(ext); ok != want {
			t.Errorf("Extension(%q) = %v", ext, ok)
		}
	}
	_, err = c.Send(context.Background(), &tlsmail.Message{From: "a@example.org", To: []string{"b@example.net"},
		Body: strings.NewReader(strings.Repeat("x", 200))})
	if !errors.Is(err, tlsmail.ErrMessageTooLarge) {
		t.Errorf("Send of 200 bytes with SIZE 100: %v", err)
	}
}

func TestFaultAtEachStep(t *testing.T) {
	t.Parallel()
	tests := []struct {
		at      string
		mode    tlsmail.Mode
		command string // the *tlsmail.Error's Command; "" for none
	}{
		{"EHLO", tlsmail.ImplicitTLS, ""},
		{"STARTTLS", tlsmail.STARTTLS, "STARTTLS"},
		{"AUTH", tlsmail.ImplicitTLS, "AUTH"},
		{"MAIL", tlsmail.ImplicitTLS, "MAIL"},
		{"RCPT", tlsmail.ImplicitTLS, "RCPT"},
		{"BDAT", tlsmail.ImplicitTLS, "BDAT"},
		{EndOfData, tlsmail.ImplicitTLS, ""},
	}
	for _, tt := range tests {
		for _, code := range []string{"451 4.3.0 Try again later", "554 5.3.0 No"} {
			t.Run(tt.at+" "+code[:3], func(t *testing.T) {
				t.Parallel()
				// A refused EHLO is followed by HELO (RFC 5321 section
				// 4.1.4), so refuse both.
				srv := NewServer(t, &Config{Faults: []Fault{{At: tt.at, Reply: code}, {At: "HELO", Reply: code}}})
				err := sendVia(t, srv, tt.mode, tlsmail.PlainAuth("", "user", "pass", "127.0.0.1"), "b@example.net")
				if err == nil {
					t.Fatal("send succeeded")
				}
				if !strings.Contains(err.Error(), code[:3]) {
					t.Errorf("err = %v, want it to carry %s", err, code[:3])
				}
				var e *tlsmail.Error
				if errors.As(err, &e) {
					if tt.command != "" && e.Command != tt.command {
						t.Errorf("Command = %q, want %q", e.Command, tt.command)
					}
					if e.Temporary() != (code[0] == '4') {
						t.Errorf("Temporary() = %v for %s", e.Temporary(), code)
					}
				}
				if n := len(srv.Messages()); n != 0 {
					t.Errorf("%d messages recorded", n)
				}
			})
		}
	}
}

func TestFaultDataWithoutChunking(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, &Config{
		Extensions: []string{"PIPELINING", "8BITMIME"},
		Faults:     []Fault{{At: "DATA", Reply: "451 4.3.0 No DATA now"}},
	})
	err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "b@example.net")
	var e *tlsmail.Error
	if !errors.As(err, &e) || e.Command != "DATA" || e.Code != 451 {
		t.Errorf("err = %v", err)
	}
}

func TestGreetingFault(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, &Config{Faults: []Fault{{At: Greeting, Reply: "421 4.3.2 Too busy", Times: 1}}})
	err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "b@example.net")
	if !errors.Is(err, tlsmail.ErrServerClosing) {
		t.Errorf("first attempt: %v", err)
	}
	if err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "b@example.net"); err != nil {
		t.Errorf("second attempt: %v", err)
	}
}

func TestFault421ClosesConnection(t *testing.T) {
	t.Parallel()
	for _, at := range []string{"MAIL", "RCPT", "BDAT", EndOfData} {
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			srv := NewServer(t, &Config{Faults: []Fault{{At: at, Reply: "421 4.3.2 Shutting down"}}})
			err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "b@example.net")
			if !errors.Is(err, tlsmail.ErrServerClosing) {
				t.Errorf("err = %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.WaitIdle(ctx); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestFaultDrop(t *testing.T) {
	t.Parallel()
	for _, at := range []string{Greeting, "EHLO", "AUTH", "MAIL", "RCPT", "BDAT", EndOfData} {
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			srv := NewServer(t, &Config{Faults: []Fault{{At: at, Drop: true}}})
			err := sendVia(t, srv, tlsmail.ImplicitTLS, tlsmail.PlainAuth("", "user", "pass", "127.0.0.1"), "b@example.net")
			if err == nil {
				t.Fatal("send succeeded")
			}
			// A drop after the whole message leaves the outcome open; so
			// does one at MAIL or RCPT, since with PIPELINING and
			// CHUNKING the message goes out with its envelope. Before
			// that, nothing can have been delivered.
			switch unknown := errors.Is(err, tlsmail.ErrUnknownOutcome); at {
			case EndOfData, "BDAT":
				if !unknown {
					t.Errorf("err = %v, want ErrUnknownOutcome", err)
				}
			case Greeting, "EHLO", "AUTH":
				if unknown {
					t.Errorf("err = %v, want no ErrUnknownOutcome", err)
				}
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("%d messages recorded", n)
			}
		})
	}
}

func TestFaultDelay(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, &Config{Faults: []Fault{{At: "MAIL", Delay: 300 * time.Millisecond}}})
	d := srv.Dialer(tlsmail.ImplicitTLS)
	d.CommandTimeout = 100 * time.Millisecond
	err := d.SendMail(srv.Addr(tlsmail.ImplicitTLS), nil, "a@example.org", []string{"b@example.net"}, []byte(testBody))
	if err == nil || !strings.Contains(err.Error(), "MAIL") {
		t.Errorf("with a 100ms timeout: %v", err)
	}
	d.CommandTimeout = 5 * time.Second
	start := time.Now()
	if err := d.SendMail(srv.Addr(tlsmail.ImplicitTLS), nil, "a@example.org", []string{"b@example.net"}, []byte(testBody)); err != nil {
		t.Fatal(err)
	}
	if e := time.Since(start); e < 300*time.Millisecond {
		t.Errorf("send took %v, less than the delay", e)
	}
}

func TestCloseCutsDelayShort(t *testing.T) {
	t.Parallel()
	srv, err := Start(&Config{Faults: []Fault{{At: Greeting, Delay: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", srv.Addr(tlsmail.STARTTLS))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for srv.Connections() == 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the delay")
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(conn); len(b) != 0 {
		t.Errorf("read %q", b)
	}
}

func TestFaultFilters(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, &Config{Faults: []Fault{
		{At: "rcpt", Addr: "B@example.net", Reply: "550 5.1.1 no b"},
		{At: "MAIL", Session: 2, Reply: "451 4.3.0 not session 2"},
		{At: "RCPT", Reply: "452 4.5.3 twice", Times: 2},
	}})
	var e *tlsmail.Error
	if err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "b@example.net"); !errors.As(err, &e) || e.Code != 550 {
		t.Errorf("session 1: %v", err)
	}
	if err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "c@example.net"); !errors.As(err, &e) || e.Code != 451 {
		t.Errorf("session 2: %v", err)
	}
	for i := 3; i <= 4; i++ {
		if err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "c@example.net"); !errors.As(err, &e) || e.Code != 452 {
			t.Errorf("session %d: %v", i, err)
		}
	}
	if err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "c@example.net"); err != nil {
		t.Errorf("session 5: %v", err)
	}
	srv.Reset() // restarts Times
	if err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "c@example.net"); !errors.As(err, &e) || e.Code != 452 {
		t.Errorf("after Reset: %v", err)
	}
}

func TestReplyHook(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	srv := NewServer(t, &Config{
		Reply: func(cmd Command) (string, bool) {
			mu.Lock()
			seen = append(seen, fmt.Sprintf("%d %v %s %q %q", cmd.Session, cmd.TLS, cmd.Verb, cmd.Addr, cmd.Line))
			mu.Unlock()
			switch {
			case cmd.Verb == "RCPT" && cmd.Addr == "fwd@example.net":
				return "251 2.1.5 User not local; will forward", true
			case cmd.Verb == "RCPT" && cmd.Addr == "bad@example.net":
				return "not a reply", true
			}
			return "", false
		},
		RcptReplies: map[string]string{"Gone@Example.net": "550 5.1.1 gone"},
	})
	if err := sendVia(t, srv, tlsmail.ImplicitTLS, tlsmail.PlainAuth("", "user", "pass", "127.0.0.1"), "fwd@example.net"); err != nil {
		t.Fatal(err)
	}
	if m := srv.Messages(); len(m) != 1 || m[0].To[0] != "fwd@example.net" {
		t.Errorf("messages %+v", m)
	}
	var e *tlsmail.Error
	if err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "gone@example.net"); !errors.As(err, &e) || e.Code != 550 {
		t.Errorf("RcptReplies: %v", err)
	}
	if err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "bad@example.net"); !errors.As(err, &e) || e.Code != 451 ||
		!strings.Contains(e.Message, "Config.Reply returned an invalid reply for RCPT") {
		t.Errorf("invalid scripted reply: %v", err)
	}
	srv.WaitIdle(context.Background())
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		`1 true GREETING "" ""`,
		`1 true EHLO "" "EHLO localhost"`,
		`1 true AUTH "" "AUTH PLAIN AHVzZXIAcGFzcw=="`,
		`1 true MAIL "from@example.org" "MAIL FROM:<from@example.org> SIZE=20"`,
		`1 true RCPT "fwd@example.net" "RCPT TO:<fwd@example.net>"`,
		`1 true BDAT "" "BDAT 20 LAST"`,
		`1 true END-OF-DATA "" ""`,
		`1 true QUIT "" "QUIT"`,
	}
	if len(seen) < len(want) || strings.Join(seen[:len(want)], "\n") != strings.Join(want, "\n") {
		t.Errorf("Reply saw\n%s\nwant first\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

func TestWaitMessage(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := srv.WaitMessage(ctx); !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "smtptest: ") {
		t.Errorf("no message: %v", err)
	}

	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, fmt.Sprintf("r%d@example.net", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	got := map[string]bool{}
	for i := range n {
		m, err := srv.WaitMessage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if m.QueueID != fmt.Sprint(i+1) || got[m.To[0]] {
			t.Errorf("message %d: %+v", i, m)
		}
		got[m.To[0]] = true
	}
	wg.Wait()

	errc := make(chan error)
	go func() { _, err := srv.WaitMessage(context.Background()); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	srv.Close()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("after Close: %v", err)
	}
}

func TestAddrAndDialer(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, nil)
	if srv.Addr(tlsmail.ImplicitTLSOrSTARTTLS) != srv.Addr(tlsmail.ImplicitTLS) || srv.Addr(tlsmail.STARTTLS) == srv.Addr(tlsmail.ImplicitTLS) {
		t.Error("Addr")
	}
	d := srv.Dialer(tlsmail.ImplicitTLSOrSTARTTLS)
	if d.FallbackAddr != srv.Addr(tlsmail.STARTTLS) || d.TLSConfig == nil || d.TLSConfig.RootCAs == nil {
		t.Errorf("Dialer %+v", d)
	}
	if a, b := srv.TLSConfig(), srv.TLSConfig(); a == b {
		t.Error("TLSConfig is shared")
	}
	if !strings.HasPrefix(string(srv.CACertPEM()), "-----BEGIN CERTIFICATE-----") {
		t.Error("CACertPEM")
	}
	for _, f := range []func(){func() { srv.Addr(tlsmail.Mode(99)) }, func() { srv.Dialer(tlsmail.Mode(99)) }} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "unknown tlsmail.Mode") {
					t.Errorf("recover() = %v", r)
				}
			}()
			f()
		}()
	}
}

func TestLineString(t *testing.T) {
	if got := fmt.Sprint([]Line{{TLS: false, Text: "EHLO x"}, {TLS: true, Text: "QUIT"}}); got != "[plain: EHLO x tls: QUIT]" {
		t.Errorf("got %q", got)
	}
}

func TestMultiLineReplyAndStripSTARTTLS(t *testing.T) {
	t.Parallel()
	srv := NewServer(t, &Config{
		Reply: func(cmd Command) (string, bool) {
			return "550-5.7.1 first line\r\n550 5.7.1 second line", cmd.Verb == "MAIL"
		},
		StripSTARTTLS: true,
	})
	var e *tlsmail.Error
	if err := sendVia(t, srv, tlsmail.ImplicitTLS, nil, "b@example.net"); !errors.As(err, &e) || e.Code != 550 ||
		!strings.Contains(e.Message, "first line") || !strings.Contains(e.Message, "second line") {
		t.Errorf("multi-line reply: %v", err)
	}
	if err := sendVia(t, srv, tlsmail.STARTTLS, nil, "b@example.net"); !errors.Is(err, tlsmail.ErrSTARTTLSUnsupported) {
		t.Errorf("StripSTARTTLS: %v", err)
	}
}

func TestParallelServersAreIndependent(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv, err := Start(&Config{Users: map[string]string{fmt.Sprint("u", i): "p"}})
			if err != nil {
				t.Error(err)
				return
			}
			defer srv.Close()
			if err := sendVia(t, srv, tlsmail.ImplicitTLS, tlsmail.PlainAuth("", fmt.Sprint("u", i), "p", "127.0.0.1"), "b@example.net"); err != nil {
				t.Error(err)
				return
			}
			if m := srv.Messages(); len(m) != 1 || m[0].AuthUser != fmt.Sprint("u", i) || m[0].QueueID != "1" {
				t.Errorf("server %d: %+v", i, m)
			}
		}()
	}
	wg.Wait()
}

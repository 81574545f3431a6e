package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// defaultEnvFile is where postfix/start.sh writes its env file unless
// TLSMAIL_POSTFIX_DIR says otherwise.
const defaultEnvFile = "/tmp/tlsmail-postfix/env"

const startHint = "start it with `sudo internal/integration/postfix/start.sh` " +
	"(or run everything with `internal/integration/run.sh`); " +
	"set TLSMAIL_POSTFIX_ENV if its env file is not " + defaultEnvFile

// server describes the Postfix instance started by postfix/start.sh, as read
// from its env file.
type server struct {
	ImplicitAddr string   // TLSMAIL_IMPLICIT_ADDR: implicit TLS submission
	STARTTLSAddr string   // TLSMAIL_STARTTLS_ADDR: STARTTLS required
	PlainAddr    string   // TLSMAIL_PLAIN_ADDR: no STARTTLS, no AUTH
	CAFile       string   // TLSMAIL_CA_FILE
	ServerName   string   // TLSMAIL_SERVER_NAME (in the certificate)
	User         string   // TLSMAIL_USER, also the envelope sender
	Password     string   // TLSMAIL_PASSWORD
	Maildir      string   // TLSMAIL_MAILDIR: one Maildir per local part below it
	Domain       string   // TLSMAIL_DOMAIN
	Maillog      string   // TLSMAIL_MAILLOG
	Rcpts        []string // TLSMAIL_RCPTS

	// Set by start.sh since the oauth2 passdb and the size limit; empty
	// or zero in the env file of an older server, and the tests that need
	// them then fail and say so.
	OAuthPort      string // TLSMAIL_OAUTH_PORT: Dovecot's token introspection endpoint
	SizeLimit      int64  // TLSMAIL_SIZE_LIMIT: Postfix's message_size_limit
	NoChunkingAddr string // TLSMAIL_NOCHUNKING_ADDR: implicit TLS without CHUNKING

	// env is the whole env file, for the tests that need more of it.
	env map[string]string
}

var (
	srv        *server
	srvMissing string // why srv is nil
)

// TestMain reads the env file and points SSL_CERT_FILE at the throwaway CA
// before anything verifies a certificate: tlsmail.SendMail and a Dialer
// without TLSConfig use the system roots, which Go loads once, lazily, from
// SSL_CERT_FILE.
//
// Without a server (and not under CI=true) it runs no test at all, so that
// go test reports the package as "ok ... [no tests to run]" rather than a
// plain "ok" that reads as if the tests had passed: in package list mode
// (go test ./...) go test shows nothing of a passing package but its
// summary line, not even the tests' skip messages. The notice on standard
// error, which says why and how to start the server, is shown in local
// directory mode and with -v. Under CI=true every test runs and fails in
// needServer.
func TestMain(m *testing.M) {
	srv, srvMissing = loadServer()
	if srv != nil {
		os.Setenv("SSL_CERT_FILE", srv.CAFile)
	} else if os.Getenv("CI") != "true" {
		fmt.Fprintf(os.Stderr, "tlsmail integration tests not run: %s; %s\n", srvMissing, startHint)
		flag.Parse()
		// A pattern no test name matches.
		if err := flag.Set("test.run", "^$"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

func loadServer() (*server, string) {
	path := os.Getenv("TLSMAIL_POSTFIX_ENV")
	if path == "" {
		path = defaultEnvFile
	}
	env, err := readEnvFile(path)
	if err != nil {
		return nil, fmt.Sprintf("no Postfix test server: %v", err)
	}
	s := &server{
		env:          env,
		ImplicitAddr: env["TLSMAIL_IMPLICIT_ADDR"],
		STARTTLSAddr: env["TLSMAIL_STARTTLS_ADDR"],
		PlainAddr:    env["TLSMAIL_PLAIN_ADDR"],
		CAFile:       env["TLSMAIL_CA_FILE"],
		ServerName:   env["TLSMAIL_SERVER_NAME"],
		User:         env["TLSMAIL_USER"],
		Password:     env["TLSMAIL_PASSWORD"],
		Maildir:      env["TLSMAIL_MAILDIR"],
		Domain:       env["TLSMAIL_DOMAIN"],
		Maillog:      env["TLSMAIL_MAILLOG"],
		OAuthPort:    env["TLSMAIL_OAUTH_PORT"],

		NoChunkingAddr: env["TLSMAIL_NOCHUNKING_ADDR"],
	}
	if v := env["TLSMAIL_SIZE_LIMIT"]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Sprintf("Postfix test server env file %s: bad TLSMAIL_SIZE_LIMIT %q", path, v)
		}
		s.SizeLimit = n
	}
	if s.ServerName == "" {
		s.ServerName = "mail." + s.Domain
	}
	for _, r := range strings.Split(env["TLSMAIL_RCPTS"], ",") {
		if r = strings.TrimSpace(r); r != "" {
			s.Rcpts = append(s.Rcpts, r)
		}
	}
	for k, v := range map[string]string{
		"TLSMAIL_IMPLICIT_ADDR": s.ImplicitAddr, "TLSMAIL_STARTTLS_ADDR": s.STARTTLSAddr,
		"TLSMAIL_PLAIN_ADDR": s.PlainAddr, "TLSMAIL_CA_FILE": s.CAFile, "TLSMAIL_USER": s.User,
		"TLSMAIL_PASSWORD": s.Password, "TLSMAIL_MAILDIR": s.Maildir, "TLSMAIL_DOMAIN": s.Domain,
		"TLSMAIL_MAILLOG": s.Maillog,
	} {
		if v == "" {
			return nil, fmt.Sprintf("Postfix test server env file %s lacks %s", path, k)
		}
	}
	if len(s.Rcpts) < 3 {
		return nil, fmt.Sprintf("Postfix test server env file %s: TLSMAIL_RCPTS needs 3 addresses, has %q", path, s.Rcpts)
	}
	if _, err := os.Stat(s.CAFile); err != nil {
		return nil, fmt.Sprintf("Postfix test server CA file: %v", err)
	}
	// A stale env file (server stopped, machine rebooted) is the same as none.
	for _, addr := range []string{s.ImplicitAddr, s.STARTTLSAddr, s.PlainAddr} {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return nil, fmt.Sprintf("Postfix test server from %s is not running (%v)", path, err)
		}
		c.Close()
	}
	return s, ""
}

// readEnvFile parses KEY=value lines; blank lines and # comments are ignored.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: malformed line %q", path, line)
		}
		env[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return env, sc.Err()
}

// needServer returns the test server, or skips the test when there is none.
// Under CI=true a missing server is a failure: CI must start it.
func needServer(t *testing.T) *server {
	t.Helper()
	if srv != nil {
		return srv
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI=true, so this is a failure: %s", srvMissing, startHint)
	}
	t.Skipf("%s; %s", srvMissing, startHint)
	return nil
}

// host returns the host part of addr.
func host(t *testing.T, addr string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// closedAddr returns a 127.0.0.1 address on which nothing listens: a port
// that was just bound and released.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// uniqueID returns a Message-ID (without angle brackets) unique to this run.
func uniqueID(t *testing.T) string {
	b := make([]byte, 8)
	rand.Read(b)
	name := regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(t.Name(), ".")
	return fmt.Sprintf("%s.%d.%s@tlsmail.test", strings.Trim(name, "."), time.Now().UnixNano(), hex.EncodeToString(b))
}

// portRecorder is a Dialer.NetDialContext that records the local ports of
// the connections it makes, which is how the tests find their connections
// in the Postfix log (smtpd_client_port_logging = yes).
type portRecorder struct {
	mu    sync.Mutex
	ports []int
}

func (p *portRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.ports = append(p.ports, c.LocalAddr().(*net.TCPAddr).Port)
	p.mu.Unlock()
	return c, nil
}

// only returns the single recorded port, failing the test otherwise.
func (p *portRecorder) only(t *testing.T) int {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ports) != 1 {
		t.Fatalf("want exactly one connection, made %d (%v)", len(p.ports), p.ports)
	}
	return p.ports[0]
}

// ---------------------------------------------------------------------------
// The Postfix log.
// ---------------------------------------------------------------------------

// logOffset returns the current size of the Postfix log; lines after it
// belong to what the test does next.
func (s *server) logOffset(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(s.Maillog)
	if err != nil {
		t.Fatalf("Postfix log: %v", err)
	}
	return fi.Size()
}

// logSince returns the log lines written after offset off.
func (s *server) logSince(t *testing.T, off int64) []string {
	t.Helper()
	b, err := os.ReadFile(s.Maillog)
	if err != nil {
		t.Fatalf("Postfix log: %v", err)
	}
	if off > int64(len(b)) {
		off = 0 // the log was replaced
	}
	return strings.Split(strings.TrimRight(string(b[off:]), "\n"), "\n")
}

// smtpSession is what the Postfix log says about one client connection.
type smtpSession struct {
	Lines []string          // every log line naming the connection
	Stats map[string]string // from the disconnect line: "ehlo" -> "1", "rcpt" -> "0/1", ...
	Queue []string          // queue ids of the messages it submitted

	Elapsed time.Duration // how long the client call took (set by sendRecorded)
}

// session waits (bounded) until Postfix logs the end of the connection from
// local port port, after log offset off, and returns its log.
func (s *server) session(t *testing.T, off int64, port int) smtpSession {
	t.Helper()
	// "... from localhost[127.0.0.1]:PORT" followed by a space, comma or end.
	conn := regexp.MustCompile(`\[127\.0\.0\.1\]:` + strconv.Itoa(port) + `(?:[ ,:]|$)`)
	disc := regexp.MustCompile(`\]: disconnect from \S+\[127\.0\.0\.1\]:` + strconv.Itoa(port) + `(?: (.*))?$`)
	queue := regexp.MustCompile(`\]: ([0-9A-Za-z]+): client=\S+\[127\.0\.0\.1\]:` + strconv.Itoa(port) + `(?:[ ,]|$)`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var sess smtpSession
		done := false
		for _, l := range s.logSince(t, off) {
			if !conn.MatchString(l) {
				continue
			}
			sess.Lines = append(sess.Lines, l)
			if m := queue.FindStringSubmatch(l); m != nil {
				sess.Queue = append(sess.Queue, m[1])
			}
			if m := disc.FindStringSubmatch(l); m != nil {
				done = true
				sess.Stats = map[string]string{}
				for _, f := range strings.Fields(m[1]) {
					if k, v, ok := strings.Cut(f, "="); ok {
						sess.Stats[k] = v
					}
				}
			}
		}
		if done {
			return sess
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix logged no disconnect for client port %d within 15s; lines so far:\n%s",
				port, strings.Join(sess.Lines, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// onlyCommands fails the test unless the session used only the given SMTP
// commands (as counted on Postfix's disconnect line).
func (sess smtpSession) onlyCommands(t *testing.T, allowed ...string) {
	t.Helper()
	ok := map[string]bool{"commands": true}
	for _, a := range allowed {
		ok[a] = true
	}
	for k, v := range sess.Stats {
		if !ok[k] {
			t.Errorf("Postfix saw %s=%s on this connection, want only %v; log:\n%s",
				k, v, allowed, strings.Join(sess.Lines, "\n"))
		}
	}
}

// noQueuedMessage fails the test if Postfix logged a queued message with
// this Message-ID after offset off.
func (s *server) noQueuedMessage(t *testing.T, off int64, msgID string) {
	t.Helper()
	for _, l := range s.logSince(t, off) {
		if strings.Contains(l, "message-id=<"+msgID+">") {
			t.Errorf("Postfix queued the message that should have been refused: %s", l)
		}
	}
}

package pop3test

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// maxCommand is the longest command line the server takes, CRLF included
// (RFC 2449 section 4); lines inside an AUTH exchange may be longer (RFC
// 5034 section 4), up to maxAuthLine.
const (
	maxCommand  = 255
	maxAuthLine = 64 << 10
)

// errDropped ends a session without a reply.
var errDropped = errors.New("dropped")

// session is one connection.
type session struct {
	srv    *Server
	id     int
	raw    net.Conn
	conn   net.Conn
	br     *bufio.Reader
	tls    bool
	user   string       // authenticated user; "" before
	locked bool         // holds the mailbox
	marked map[int]bool // DELE marks
}

func (s *session) end() {
	if s.locked {
		s.srv.mu.Lock()
		s.srv.locked = false
		s.srv.mu.Unlock()
	}
	s.conn.Close()
}

func (s *session) write(lines ...string) error {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		if !strings.HasSuffix(l, "\r\n") {
			b.WriteString("\r\n")
		}
	}
	_, err := s.conn.Write(b.Bytes())
	return err
}

// readLine reads a line of at most max bytes with its CRLF.
func (s *session) readLine(max int) (string, error) {
	s.conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	var b []byte
	for {
		chunk, err := s.br.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > max {
			return "", errors.New("line too long")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	line := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	s.srv.record(s.id, s.tls, line)
	return line, nil
}

// applyFault runs the fault for step, if any: done is true when the
// fault answered (or dropped) in the server's place.
func (s *session) applyFault(step string) (f *Fault, done bool, err error) {
	f = s.srv.fault(s.id, step)
	if f == nil {
		return nil, false, nil
	}
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-s.srv.done:
			t.Stop()
			return f, true, errDropped
		}
	}
	switch {
	case f.Drop:
		return f, true, errDropped
	case f.Reply != "":
		return f, true, s.write(f.Reply)
	}
	return f, false, nil
}

func (s *session) serve(implicit bool) {
	s.br = bufio.NewReaderSize(s.conn, 4096)
	if implicit {
		tc := tls.Server(s.raw, s.srv.tlsCfg)
		tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			return
		}
		tc.SetDeadline(time.Time{})
		s.conn, s.tls = tc, true
		s.br = bufio.NewReaderSize(tc, 4096)
	}
	if _, done, err := s.applyFault(Greeting); done || err != nil {
		return
	}
	if s.write("+OK "+s.srv.cfg.Greeting) != nil {
		return
	}
	for {
		line, err := s.readLine(maxCommand)
		if err != nil {
			if err.Error() == "line too long" {
				s.write("-ERR line too long")
			}
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if !s.tls && verb != "CAPA" && verb != "STLS" && verb != "QUIT" {
			// Why: like Dovecot with disable_plaintext_auth, nothing but
			// the upgrade is served before TLS.
			if s.write("-ERR [AUTH] Plaintext authentication disallowed on non-secure connections") != nil {
				return
			}
			continue
		}
		f, done, err := s.applyFault(verb)
		if err == errDropped && f != nil && f.Drop {
			s.dropAt(verb, arg)
			return
		}
		if err != nil {
			return
		}
		if done && !(verb == "STLS" && strings.HasPrefix(f.Reply, "+OK")) {
			if verb == "QUIT" {
				return
			}
			continue
		}
		if !s.command(verb, arg, done) {
			return
		}
	}
}

// command carries out one command; false ends the session.
func (s *session) command(verb, arg string, replied bool) bool {
	var err error
	switch verb {
	case "CAPA":
		err = s.capa()
	case "STLS":
		return s.stls(replied)
	case "QUIT":
		s.quit()
		return false
	case "AUTH":
		err = s.auth(arg)
	case "USER", "PASS", "APOP":
		err = s.login(verb, arg)
	case "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP":
		if s.user == "" {
			err = s.write("-ERR Unknown command or not logged in")
		} else {
			err = s.transaction(verb, arg)
		}
	default:
		err = s.write("-ERR Unknown command")
	}
	return err == nil
}

func (s *session) capa() error {
	if s.srv.cfg.NoCAPA {
		return s.write("-ERR Unknown command")
	}
	lines := []string{"+OK Capability list follows", "TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if !s.srv.cfg.NoUSER {
		lines = append(lines, "USER")
	}
	if !s.tls && !s.srv.cfg.StripSTLS {
		lines = append(lines, "STLS")
	}
	if mechs := s.mechanisms(); s.tls && len(mechs) > 0 {
		lines = append(lines, "SASL "+strings.Join(mechs, " "))
	}
	return s.write(append(lines, ".")...)
}

// mechanisms are the SASL mechanisms offered on this connection.
func (s *session) mechanisms() []string {
	var out []string
	for _, m := range s.srv.cfg.SASL {
		if strings.HasSuffix(strings.ToUpper(m), "-PLUS") && s.channelBinding() == nil {
			continue
		}
		out = append(out, strings.ToUpper(m))
	}
	return out
}

func (s *session) channelBinding() []byte {
	tc, ok := s.conn.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	cb, err := st.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		return nil
	}
	return cb
}

func (s *session) stls(replied bool) bool {
	if s.tls || s.srv.cfg.StripSTLS {
		return s.write("-ERR STLS not available") == nil
	}
	if !replied && s.write("+OK Begin TLS negotiation now") != nil {
		return false
	}
	tc := tls.Server(s.raw, s.srv.tlsCfg)
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		return false
	}
	tc.SetDeadline(time.Time{})
	s.conn, s.tls = tc, true
	s.br = bufio.NewReaderSize(tc, 4096)
	return true
}

func (s *session) quit() {
	if s.user == "" {
		s.write("+OK Logging out")
		return
	}
	s.commit()
	s.write("+OK Logging out, messages deleted")
}

// commit removes the marked messages (the UPDATE state, RFC 1939
// section 6).
func (s *session) commit() {
	s.srv.mu.Lock()
	for n := range s.marked {
		s.srv.mailbox[n-1] = nil
	}
	s.srv.mu.Unlock()
}

// dropAt is a Drop fault at verb: at RETR and TOP half the message goes
// out first, at QUIT the marks are committed first.
func (s *session) dropAt(verb, arg string) {
	switch {
	case verb == "QUIT" && s.user != "":
		s.commit()
	case (verb == "RETR" || verb == "TOP") && s.user != "":
		num, _, _ := strings.Cut(arg, " ")
		if _, m, ok := s.msg(num); ok {
			s.writeMessage(m, true)
		}
	}
}

// loggedIn takes the mailbox for user, or refuses with [IN-USE].
func (s *session) loggedIn(user string) error {
	s.srv.mu.Lock()
	busy := s.srv.locked
	if !busy {
		s.srv.locked, s.locked = true, true
	}
	s.srv.mu.Unlock()
	if busy {
		return s.write("-ERR [IN-USE] Mailbox is locked by another session")
	}
	s.user, s.marked = user, make(map[int]bool)
	return s.write("+OK Logged in")
}

func (s *session) login(verb, arg string) error {
	if s.user != "" {
		return s.write("-ERR Already logged in")
	}
	switch verb {
	case "USER":
		if s.srv.cfg.NoUSER {
			return s.write("-ERR Unknown command")
		}
		line, err := s.readPass(arg)
		if err != nil || line == "" {
			return err
		}
		if pass, ok := s.srv.users[arg]; ok && pass == line {
			return s.loggedIn(arg)
		}
		return s.write("-ERR [AUTH] Authentication failed")
	case "PASS":
		return s.write("-ERR No USER given")
	}
	// APOP user digest (RFC 1939 section 7).
	user, digest, _ := strings.Cut(arg, " ")
	ts := s.srv.cfg.Greeting[strings.IndexByte(s.srv.cfg.Greeting, '<'):]
	ts = ts[:strings.IndexByte(ts, '>')+1]
	if pass, ok := s.srv.users[user]; ok {
		sum := md5.Sum([]byte(ts + pass))
		if hmac.Equal([]byte(hex.EncodeToString(sum[:])), []byte(digest)) {
			return s.loggedIn(user)
		}
	}
	return s.write("-ERR [AUTH] Authentication failed")
}

// readPass answers USER and reads the PASS line that must follow; "" with
// no error means the client sent something else, already answered.
func (s *session) readPass(user string) (string, error) {
	if s.write("+OK") != nil {
		return "", io.ErrClosedPipe
	}
	line, err := s.readLine(maxCommand)
	if err != nil {
		return "", err
	}
	verb, arg, _ := strings.Cut(line, " ")
	if _, done, err := s.applyFault("PASS"); done || err != nil {
		return "", err
	}
	if !strings.EqualFold(verb, "PASS") {
		return "", s.write("-ERR PASS expected")
	}
	return arg, nil
}

// auth runs AUTH (RFC 5034).
func (s *session) auth(arg string) error {
	if s.user != "" {
		return s.write("-ERR Already logged in")
	}
	mech, initial, hasInitial := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	if !contains(s.mechanisms(), mech) {
		return s.write("-ERR Unsupported authentication mechanism")
	}
	var first []byte
	if hasInitial {
		var ok bool
		if first, ok = decode(initial); !ok {
			return s.write("-ERR Invalid base64 data in initial response")
		}
	}
	// firstResponse returns the initial response, or asks for it with an
	// empty challenge.
	firstResponse := func() ([]byte, bool, error) {
		if hasInitial {
			return first, true, nil
		}
		return s.challenge("")
	}
	fail := func(reason string) error { return s.write("-ERR [AUTH] Authentication failed: " + reason) }
	switch mech {
	case "PLAIN":
		resp, ok, err := firstResponse()
		if !ok {
			return err
		}
		f := strings.Split(string(resp), "\x00")
		if len(f) != 3 || (f[0] != "" && f[0] != f[1]) {
			return fail("malformed PLAIN response")
		}
		if pass, ok := s.srv.users[f[1]]; ok && pass == f[2] {
			return s.loggedIn(f[1])
		}
		return fail("bad credentials")
	case "LOGIN":
		if hasInitial {
			return fail("LOGIN takes no initial response")
		}
		user, ok, err := s.challenge("Username:")
		if !ok {
			return err
		}
		pass, ok, err := s.challenge("Password:")
		if !ok {
			return err
		}
		if p, ok := s.srv.users[string(user)]; ok && p == string(pass) {
			return s.loggedIn(string(user))
		}
		return fail("bad credentials")
	case "CRAM-MD5":
		if hasInitial {
			return fail("CRAM-MD5 takes no initial response")
		}
		chal := "<" + strconv.Itoa(s.id) + ".1@pop3test>"
		resp, ok, err := s.challenge(chal)
		if !ok {
			return err
		}
		user, digest, _ := strings.Cut(string(resp), " ")
		if p, ok := s.srv.users[user]; ok {
			m := hmac.New(md5.New, []byte(p))
			m.Write([]byte(chal))
			if hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(digest)) {
				return s.loggedIn(user)
			}
		}
		return fail("bad credentials")
	case "XOAUTH2", "OAUTHBEARER":
		resp, ok, err := firstResponse()
		if !ok {
			return err
		}
		return s.oauth(mech, resp)
	}
	resp, ok, err := firstResponse()
	if !ok {
		return err
	}
	user, failure, err := smtptest.ScramExchange(smtptest.ScramServer{
		Users: s.srv.users, Salt: s.srv.salt, Iterations: 4096,
		ChannelBinding: s.channelBinding(), OffersPlus: hasPlus(s.mechanisms()),
	}, mech, resp, s.challenge)
	switch {
	case err != nil:
		return err
	case failure != "":
		return fail(failure)
	case user == "":
		return nil // cancelled, already answered
	}
	return s.loggedIn(user)
}

func hasPlus(mechs []string) bool {
	for _, m := range mechs {
		if strings.HasSuffix(m, "-PLUS") {
			return true
		}
	}
	return false
}

func (s *session) oauth(mech string, resp []byte) error {
	var user, token string
	var ok bool
	if mech == "XOAUTH2" {
		user, token, ok = smtptest.ParseXOAUTH2(string(resp))
	} else {
		user, token, ok = smtptest.ParseOAuthBearer(string(resp))
	}
	if !ok {
		return s.write("-ERR [AUTH] Authentication failed: malformed " + mech + " response")
	}
	if owner, known := s.srv.tokens[token]; known && (user == "" || user == owner) {
		return s.loggedIn(owner)
	}
	// A refused token: the status goes in a challenge, the client sends
	// a dummy response, then the exchange fails (RFC 7628 section 3.2.2).
	doc := smtptest.OAuthBearerErrorJSON
	if mech == "XOAUTH2" {
		doc = smtptest.XOAUTH2ErrorJSON
	}
	if _, ok, err := s.challenge(doc); !ok {
		return err
	}
	return s.write("-ERR [AUTH] Authentication failed")
}

// challenge sends "+ base64(c)" and returns the client's decoded
// response; ok is false when the client cancelled with "*" or sent bad
// base64 (both already answered) or on a connection error.
func (s *session) challenge(c string) ([]byte, bool, error) {
	if err := s.write("+ " + base64.StdEncoding.EncodeToString([]byte(c))); err != nil {
		return nil, false, err
	}
	line, err := s.readLine(maxAuthLine)
	if err != nil {
		return nil, false, err
	}
	if line == "*" {
		return nil, false, s.write("-ERR Authentication aborted")
	}
	resp, ok := decode(line)
	if !ok {
		return nil, false, s.write("-ERR Invalid base64 data in continued response")
	}
	return resp, true, nil
}

func decode(s string) ([]byte, bool) {
	if s == "=" {
		return []byte{}, true
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return b, err == nil
}

// msg returns message n (from 1) if it exists and is not marked.
func (s *session) msg(arg string) (int, []byte, bool) {
	n, err := strconv.Atoi(arg)
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if err != nil || n < 1 || n > len(s.srv.mailbox) || s.srv.mailbox[n-1] == nil || s.marked[n] {
		return 0, nil, false
	}
	return n, s.srv.mailbox[n-1], true
}

// live returns the numbers and contents of the messages not marked.
func (s *session) live() ([]int, [][]byte) {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	var ns []int
	var ms [][]byte
	for i, m := range s.srv.mailbox {
		if m != nil && !s.marked[i+1] {
			ns = append(ns, i+1)
			ms = append(ms, m)
		}
	}
	return ns, ms
}

func (s *session) transaction(verb, arg string) error {
	switch verb {
	case "NOOP":
		return s.write("+OK")
	case "RSET":
		clear(s.marked)
		return s.write("+OK")
	case "STAT":
		ns, ms := s.live()
		total := 0
		for _, m := range ms {
			total += len(m)
		}
		return s.write("+OK " + strconv.Itoa(len(ns)) + " " + strconv.Itoa(total))
	case "LIST", "UIDL":
		uid := func(n int, m []byte) string {
			sum := md5.Sum(m)
			return hex.EncodeToString(sum[:8]) + "." + strconv.Itoa(n)
		}
		if arg != "" {
			n, m, ok := s.msg(arg)
			if !ok {
				return s.write("-ERR There's no message " + arg)
			}
			if verb == "LIST" {
				return s.write("+OK " + strconv.Itoa(n) + " " + strconv.Itoa(len(m)))
			}
			return s.write("+OK " + strconv.Itoa(n) + " " + uid(n, m))
		}
		ns, ms := s.live()
		lines := []string{"+OK"}
		for i, n := range ns {
			if verb == "LIST" {
				lines = append(lines, strconv.Itoa(n)+" "+strconv.Itoa(len(ms[i])))
			} else {
				lines = append(lines, strconv.Itoa(n)+" "+uid(n, ms[i]))
			}
		}
		return s.write(append(lines, ".")...)
	case "DELE":
		n, _, ok := s.msg(arg)
		if !ok {
			return s.write("-ERR There's no message " + arg)
		}
		s.marked[n] = true
		return s.write("+OK Marked to be deleted.")
	}
	// RETR n, TOP n lines
	num, rest, _ := strings.Cut(arg, " ")
	_, m, ok := s.msg(num)
	if !ok {
		return s.write("-ERR There's no message " + num)
	}
	if verb == "TOP" {
		k, err := strconv.Atoi(rest)
		if err != nil || k < 0 {
			return s.write("-ERR Invalid number of lines")
		}
		m = top(m, k)
	}
	return s.writeMessage(m, false)
}

// top returns the header of m and its first k body lines.
func top(m []byte, k int) []byte {
	i := bytes.Index(m, []byte("\r\n\r\n"))
	if i < 0 {
		return m
	}
	end := i + 4
	for ; k > 0 && end < len(m); k-- {
		j := bytes.IndexByte(m[end:], '\n')
		if j < 0 {
			end = len(m)
			break
		}
		end += j + 1
	}
	return m[:end]
}

// writeMessage sends "+OK", m dot-stuffed and the terminating line; half
// sends the first half of m only, then fails.
func (s *session) writeMessage(m []byte, half bool) error {
	var b bytes.Buffer
	b.WriteString("+OK " + strconv.Itoa(len(m)) + " octets\r\n")
	if half {
		m = m[:len(m)/2]
	}
	for len(m) > 0 {
		j := bytes.IndexByte(m, '\n')
		line := m
		if j >= 0 {
			line = m[:j+1]
		}
		if line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
		m = m[len(line):]
	}
	if half {
		s.conn.Write(b.Bytes())
		return errDropped
	}
	b.WriteString(".\r\n")
	_, err := s.conn.Write(b.Bytes())
	return err
}

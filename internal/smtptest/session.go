package smtptest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxLine is the longest command line accepted, without its line ending.
const maxLine = 4096

// Session is one client connection, given to hooks. Hooks run on the
// session's own goroutine. Reply, WriteRaw, TLS and Close may also be
// called from other goroutines; Stall and StartTLS must be called from a
// hook.
type Session struct {
	srv   *Server
	id    int      // the connection's number, from 1, in accept order
	raw   net.Conn // the accepted TCP connection
	isTLS atomic.Bool
	// ended is set by Close, Drop and Linger: the session reads no more
	// commands, not even those already in its buffer, as a server whose
	// connection is gone could not.
	ended atomic.Bool

	wmu  sync.Mutex // guards conn and serialises writes
	conn net.Conn   // raw, or the *tls.Conn on top of it

	br *bufio.Reader // reads conn; only used on the session goroutine

	// SMTP state, only used on the session goroutine.
	greeted    bool
	inAuth     bool // inside cmdAUTH
	authUser   string
	authMech   string
	inTx       bool
	from       string
	params     string
	body8      bool // MAIL declared BODY=8BITMIME
	smtputf8   bool // MAIL declared SMTPUTF8
	rcpts      []string
	rcptParams []string
	chunks     []int  // sizes of the BDAT chunks of the transaction so far
	chunkData  []byte // their octets, unless chunkOver
	chunkTotal int64  // the sum of chunks
	chunkOver  bool   // chunkTotal exceeds the data limit; chunkData dropped
}

// ID returns the number of the session's connection: 1 for the first
// connection the server accepted, 2 for the next, and so on.
func (s *Session) ID() int { return s.id }

// InAuth reports whether the session is inside an AUTH exchange, that is
// whether a line given to Handler is a client's SASL response rather than
// a command. Call it from a hook.
func (s *Session) InAuth() bool { return s.inAuth }

// Reply writes each line followed by "\r\n", all in a single write. The
// connection is unbuffered, so nothing further is needed to flush it.
func (s *Session) Reply(lines ...string) error {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	return s.WriteRaw([]byte(b.String()))
}

// WriteRaw writes b to the client as-is, in a single write.
func (s *Session) WriteRaw(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(b)
	return err
}

// Close closes the connection at once, without a TLS close_notify,
// simulating a dropped connection. The session ends when control returns
// to the server.
func (s *Session) Close() {
	s.ended.Store(true)
	s.raw.Close()
}

// Drop ends the connection abruptly, as a crashing server would, but
// with a deterministic result for the client: it stops writing (the
// client reads end of file after what was already sent), discards what
// the client sends for up to a second, then closes. Why not Close: with
// input left unread, closing makes the server's system reset the
// connection, and the reset can overtake the end of file, so the client
// would see ECONNRESET in some runs and io.EOF in others.
func (s *Session) Drop() {
	s.ended.Store(true)
	if cw, ok := s.raw.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		s.raw.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, s.raw)
	}
	s.raw.Close()
}

// Linger ends the session politely after a closing reply such as 421:
// it reads and discards what the client sends until the client closes
// the connection or d has passed, and then closes it. Closing at once
// with unread bytes would make the client's system reset the connection
// and could discard the reply before the client reads it. Call it from a
// hook.
func (s *Session) Linger(d time.Duration) {
	s.ended.Store(true)
	s.raw.SetReadDeadline(time.Now().Add(d))
	io.Copy(io.Discard, s.br)
	s.raw.Close()
}

// Stall blocks, reading and discarding everything the client sends, until
// the client closes the connection, the connection breaks, or the server
// is closed.
func (s *Session) Stall() {
	io.Copy(io.Discard, s.br)
}

// TLS reports whether the session is currently under TLS.
func (s *Session) TLS() bool {
	return s.isTLS.Load()
}

// StartTLS performs the server side of a TLS handshake on the plaintext
// session and, on success, continues the session under TLS with its SMTP
// state (EHLO, authentication, transaction) forgotten, as after a
// successful STARTTLS command. Any plaintext the client sent after the
// command that is still unread is discarded. It does not write a reply;
// a Handler that takes over STARTTLS replies first and then calls
// StartTLS, and should Close the session if it fails.
func (s *Session) StartTLS() error {
	if s.TLS() {
		return errors.New("smtptest: TLS already active")
	}
	tc := tls.Server(s.raw, s.srv.tlsConfig)
	if err := tc.Handshake(); err != nil {
		return err
	}
	s.wmu.Lock()
	s.conn = tc
	s.wmu.Unlock()
	s.isTLS.Store(true)
	s.br = bufio.NewReaderSize(tc, maxLine)
	s.greeted = false
	s.authUser, s.authMech = "", ""
	s.resetTx()
	return nil
}

func (s *Session) resetTx() {
	s.inTx = false
	s.from = ""
	s.params = ""
	s.body8, s.smtputf8 = false, false
	s.rcpts = nil
	s.rcptParams = nil
	s.chunks = nil
	s.chunkData = nil
	s.chunkTotal = 0
	s.chunkOver = false
}

func (srv *Server) serveConn(raw net.Conn, implicitTLS bool, id int) {
	defer srv.connDone(raw)
	if h := srv.opts.OnAccept; h != nil && h(raw) {
		return
	}
	s := &Session{srv: srv, id: id, raw: raw, conn: raw}
	if implicitTLS {
		tc := tls.Server(raw, srv.tlsConfig)
		if err := tc.Handshake(); err != nil {
			return
		}
		s.conn = tc
		s.isTLS.Store(true)
	}
	s.br = bufio.NewReaderSize(s.conn, maxLine)
	defer s.finish()
	if h := srv.opts.OnSession; h != nil && h(s) {
		return
	}
	s.serve()
}

// finish ends the session, sending a TLS close_notify if possible.
func (s *Session) finish() {
	s.wmu.Lock()
	c := s.conn
	s.wmu.Unlock()
	if tc, ok := c.(*tls.Conn); ok {
		tc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		tc.Close()
	}
	s.raw.Close()
}

// readLine reads one line ending in LF (CRLF or bare LF) and returns it
// without the line ending. tooLong reports a line longer than maxLine, in
// which case line holds its first maxLine bytes and the rest was
// discarded.
func (s *Session) readLine() (line string, tooLong bool, err error) {
	var buf []byte
	n := 0
	for {
		frag, err := s.br.ReadSlice('\n')
		n += len(frag)
		if room := maxLine + 2 - len(buf); room > 0 {
			buf = append(buf, frag[:min(room, len(frag))]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", false, err
		}
		break
	}
	if n > len(buf) {
		tooLong = true
	}
	buf = buf[:len(buf)-1] // the LF, unless truncated (then some other byte)
	if !tooLong && len(buf) > 0 && buf[len(buf)-1] == '\r' {
		buf = buf[:len(buf)-1]
	}
	if len(buf) > maxLine {
		buf = buf[:maxLine]
		tooLong = true
	}
	return string(buf), tooLong, nil
}

func (s *Session) serve() {
	srv := s.srv
	greeting := srv.opts.Greeting
	if greeting == "" {
		greeting = "220 " + srv.hostname + " ESMTP tlsmail-test"
	}
	if s.Reply(greeting) != nil {
		return
	}
	for !s.ended.Load() {
		line, tooLong, err := s.readLine()
		if err != nil {
			return
		}
		srv.record(s, line)
		if tooLong {
			if s.Reply("500 5.5.2 Line too long") != nil {
				return
			}
			continue
		}
		if h := srv.opts.Handler; h != nil && h(s, line) {
			continue
		}
		if !s.command(line) {
			return
		}
	}
}

// command handles one command line; it returns false when the session
// must end.
func (s *Session) command(line string) bool {
	verb, arg := line, ""
	if i := strings.IndexByte(line, ' '); i >= 0 {
		verb, arg = line[:i], strings.TrimSpace(line[i+1:])
	}
	upper := strings.ToUpper(verb)
	switch {
	case upper == "DATA" || upper == "BDAT" || upper == "QUIT":
		// DATA and BDAT check where they reply; nothing may follow
		// QUIT anyway.
	case groupEnd(upper):
		s.checkEarly(upper, "", false)
	case !s.pipelining():
		s.checkEarly(upper, "", true)
	}
	var err error
	switch upper {
	case "EHLO":
		err = s.cmdEHLO(arg)
	case "HELO":
		if arg == "" {
			err = s.Reply("501 5.5.4 Syntax: HELO hostname")
			break
		}
		s.greeted = true
		s.resetTx()
		err = s.Reply("250 " + s.srv.hostname)
	case "STARTTLS":
		return s.cmdSTARTTLS(arg)
	case "AUTH":
		err = s.cmdAUTH(arg)
	case "MAIL":
		err = s.cmdMAIL(arg)
	case "RCPT":
		err = s.cmdRCPT(arg)
	case "DATA":
		err = s.cmdDATA(arg)
	case "BDAT":
		return s.cmdBDAT(arg)
	case "RSET":
		s.resetTx()
		err = s.Reply("250 2.0.0 Ok")
	case "NOOP":
		err = s.Reply("250 2.0.0 Ok")
	case "VRFY":
		err = s.Reply("252 2.0.0 Cannot VRFY user")
	case "QUIT":
		s.Reply("221 2.0.0 Bye")
		return false
	case "":
		err = s.Reply("500 5.5.2 Error: bad syntax")
	default:
		err = s.Reply("502 5.5.2 Error: command not recognized")
	}
	return err == nil
}

func (s *Session) cmdEHLO(arg string) error {
	if arg == "" {
		return s.Reply("501 5.5.4 Syntax: EHLO hostname")
	}
	s.greeted = true
	s.resetTx()
	lines := []string{s.srv.hostname}
	lines = append(lines, s.srv.exts...)
	if !s.TLS() && !s.srv.opts.StripSTARTTLS {
		lines = append(lines, "STARTTLS")
	}
	if mechs := s.mechanisms(); len(mechs) > 0 {
		lines = append(lines, "AUTH "+strings.Join(mechs, " "))
	}
	for i := range lines {
		if i == len(lines)-1 {
			lines[i] = "250 " + lines[i]
		} else {
			lines[i] = "250-" + lines[i]
		}
	}
	return s.Reply(lines...)
}

func (s *Session) cmdSTARTTLS(arg string) bool {
	o := &s.srv.opts
	var err error
	switch {
	case s.TLS():
		err = s.Reply("503 5.5.1 Error: TLS already active")
	case o.StripSTARTTLS:
		err = s.Reply("502 5.5.1 STARTTLS not available")
	case arg != "":
		err = s.Reply("501 5.5.4 Syntax: STARTTLS")
	case o.STARTTLSReply != "":
		err = s.Reply(o.STARTTLSReply)
	default:
		var kept []byte
		if o.BufferedCommandsSurviveSTARTTLS {
			// Peek cannot fail for what is already buffered.
			b, _ := s.br.Peek(s.br.Buffered())
			kept = append(kept, b...)
		}
		if err := s.WriteRaw([]byte("220 2.0.0 Ready to start TLS\r\n" + o.InjectAfterSTARTTLS)); err != nil {
			return false
		}
		if err := s.StartTLS(); err != nil {
			return false
		}
		if len(kept) > 0 {
			// The flaw: plaintext read before the handshake is read
			// again as if it had come through TLS.
			s.wmu.Lock()
			tc := s.conn
			s.wmu.Unlock()
			s.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(kept), tc), maxLine)
		}
		return true
	}
	return err == nil
}

// parsePath parses `<keyword>:<addr> rest` (the keyword matched without
// regard to case, spaces allowed after the colon) and returns the address
// without its angle brackets and the trimmed rest.
func parsePath(arg, keyword string) (addr, rest string, ok bool) {
	if len(arg) < len(keyword) || !strings.EqualFold(arg[:len(keyword)], keyword) {
		return "", "", false
	}
	r := strings.TrimLeft(arg[len(keyword):], " ")
	if !strings.HasPrefix(r, "<") {
		return "", "", false
	}
	inQuote, escaped := false, false
	for i := 1; i < len(r); i++ {
		c := r[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && inQuote:
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == '>' && !inQuote:
			rest = r[i+1:]
			if rest != "" && rest[0] != ' ' {
				return "", "", false
			}
			return r[1:i], strings.TrimSpace(rest), true
		case c == '<' && !inQuote:
			return "", "", false
		}
	}
	return "", "", false
}

func (s *Session) cmdMAIL(arg string) error {
	if !s.greeted {
		return s.Reply("503 5.5.1 Error: send HELO/EHLO first")
	}
	if s.inTx {
		return s.Reply("503 5.5.1 Error: nested MAIL command")
	}
	addr, params, ok := parsePath(arg, "FROM:")
	if !ok {
		return s.Reply("501 5.5.4 Syntax: MAIL FROM:<address>")
	}
	mp, reply := s.mailParams(params)
	if reply != "" {
		return s.Reply(reply)
	}
	if s.srv.opts.Strict8Bit && !mp.smtputf8 && !isASCII(addr) {
		return s.Reply(nonASCIIReply)
	}
	s.inTx = true
	s.from = addr
	s.params = params
	s.body8, s.smtputf8 = mp.body8, mp.smtputf8
	s.rcpts, s.rcptParams = nil, nil
	return s.Reply("250 2.1.0 Ok")
}

// nonASCIIReply refuses an internationalized address sent without
// SMTPUTF8 (RFC 6531: X.6.7, "Non-ASCII addresses not permitted for that
// sender/recipient").
const nonASCIIReply = "553 5.6.7 Non-ASCII address without SMTPUTF8"

func (s *Session) cmdRCPT(arg string) error {
	if !s.inTx {
		return s.Reply("503 5.5.1 Error: need MAIL command")
	}
	addr, params, ok := parsePath(arg, "TO:")
	if !ok || addr == "" {
		return s.Reply("501 5.5.4 Syntax: RCPT TO:<address>")
	}
	if reply := s.checkRcptParams(params); reply != "" {
		return s.Reply(reply)
	}
	if s.srv.opts.Strict8Bit && !s.smtputf8 && !isASCII(addr) {
		return s.Reply(nonASCIIReply)
	}
	rcptReply := s.srv.opts.RcptReply
	if rcptReply == nil && s.srv.opts.SessionRcptReply != nil {
		rcptReply = func(addr string) string { return s.srv.opts.SessionRcptReply(s, addr, params) }
	}
	if h := rcptReply; h != nil {
		if reply := h(addr); reply != "" {
			// A positive reply accepts the recipient, whatever its
			// wording (251 and 252 included): a client that saw 2xx
			// will go on to DATA expecting it to count.
			if reply[0] == '2' {
				s.rcpts = append(s.rcpts, addr)
				s.rcptParams = append(s.rcptParams, params)
			}
			return s.Reply(reply)
		}
	}
	s.rcpts = append(s.rcpts, addr)
	s.rcptParams = append(s.rcptParams, params)
	return s.Reply("250 2.1.5 Ok")
}

func (s *Session) cmdDATA(arg string) error {
	var reply string
	switch {
	case !s.inTx || len(s.rcpts) == 0:
		reply = "503 5.5.1 Error: need RCPT command"
	case len(s.chunks) > 0:
		// RFC 3030 section 2: the state is then indeterminate and the
		// client must send RSET, so the transaction is left as it is.
		reply = "503 5.5.1 Error: DATA after BDAT"
	case arg != "":
		reply = "501 5.5.4 Syntax: DATA"
	}
	if reply != "" {
		if !s.pipelining() {
			s.checkEarly("DATA", "", true)
		}
		return s.Reply(reply)
	}
	msg := s.newMessage()
	declared8 := s.body8
	s.resetTx()
	s.checkEarly("DATA", "354", false)
	if err := s.Reply("354 End data with <CR><LF>.<CR><LF>"); err != nil {
		return err
	}
	raw, data, over, err := s.readData(s.srv.dataLimit)
	if err != nil {
		return err
	}
	if !s.pipelining() {
		s.checkEarly("end of data", "", true)
	}
	msg.Raw, msg.Data = raw, data
	return s.deliver(msg, declared8, over)
}

// newMessage returns a Message holding the envelope of the current
// transaction and the session's TLS and authentication state.
func (s *Session) newMessage() *Message {
	msg := &Message{
		From:          s.from,
		To:            s.rcpts,
		MailParams:    s.params,
		RcptParams:    s.rcptParams,
		TLS:           s.TLS(),
		AuthUser:      s.authUser,
		AuthMechanism: s.authMech,
		Session:       s.id,
	}
	if tc, ok := s.conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		msg.TLSVersion, msg.CipherSuite = st.Version, st.CipherSuite
		msg.TLSServerName = st.ServerName
	}
	return msg
}

// deliver ends a message whose content has been read: it refuses it if
// over the size limit or, with Strict8Bit, undeclared 8-bit, and
// otherwise passes it to OnData and records and acknowledges it.
func (s *Session) deliver(msg *Message, declared8, over bool) error {
	if over {
		return s.Reply("552 5.3.4 Error: message file too big")
	}
	if s.srv.opts.Strict8Bit && !declared8 && !isASCII(string(msg.Data)) {
		// Why refuse rather than record: a client that sends 8-bit
		// data without declaring it lets any 7-bit relay on the way
		// mangle the message; the test should see that as a failure.
		return s.Reply("554 5.6.1 8-bit data without BODY=8BITMIME")
	}
	if h := s.srv.opts.OnData; h != nil && h(s, msg) {
		return nil
	}
	id := s.srv.addMessage(msg.clone())
	return s.Reply("250 2.0.0 Ok: queued as " + id)
}

// bdatSyntax is the reply to a BDAT command that cannot be parsed.
const bdatSyntax = "501 5.5.4 Syntax: BDAT size [LAST]"

// parseChunkSize parses the chunk-size of a BDAT command, 1*DIGIT (RFC
// 3030 section 2), and returns -1 if it is malformed or too large.
func parseChunkSize(f string) int64 {
	if f == "" {
		return -1
	}
	for i := 0; i < len(f); i++ {
		if f[i] < '0' || f[i] > '9' {
			return -1
		}
	}
	n, err := strconv.ParseInt(f, 10, 0)
	if err != nil {
		return -1
	}
	return n
}

// cmdBDAT handles "BDAT size [LAST]" (RFC 3030); it returns false when the
// session must end.
func (s *Session) cmdBDAT(arg string) bool {
	if !s.advertised("CHUNKING") {
		// The chunk is not consumed: a server that does not know BDAT
		// reads the octets as commands, and so does this one.
		if !s.pipelining() {
			s.checkEarly("BDAT", "", true)
		}
		return s.Reply("502 5.5.1 BDAT not available") == nil
	}
	f := strings.Fields(arg)
	size := int64(-1)
	if len(f) > 0 {
		size = parseChunkSize(f[0])
	}
	if size < 0 {
		// Without the size the octets that follow cannot be told from
		// the next command.
		s.Reply(bdatSyntax)
		return false
	}
	last := len(f) == 2 && strings.EqualFold(f[1], "LAST")
	var reply string
	switch {
	case len(f) > 2 || len(f) == 2 && !last:
		// RFC 3030 section 2: a refused chunk fails the transaction,
		// and the chunks still in the pipeline get 503 below.
		s.resetTx()
		reply = bdatSyntax
	case !s.inTx || len(s.rcpts) == 0:
		reply = "503 5.5.1 Error: need MAIL and RCPT"
	}
	if reply != "" {
		if _, err := io.CopyN(io.Discard, s.br, size); err != nil {
			return false
		}
		if !s.pipelining() {
			s.checkEarly("BDAT", "", true)
		}
		return s.Reply(reply) == nil
	}
	if err := s.readChunk(size); err != nil {
		return false
	}
	if !s.pipelining() {
		s.checkEarly("BDAT", "", true)
	}
	chunkReply := s.srv.opts.ChunkReply
	if chunkReply == nil && s.srv.opts.SessionChunkReply != nil {
		chunkReply = func(index int, size int64, last bool) string {
			return s.srv.opts.SessionChunkReply(s, index, size, last)
		}
	}
	if h := chunkReply; h != nil {
		if r := h(len(s.chunks)-1, size, last); r != "" {
			s.resetTx()
			return s.Reply(strings.Split(r, "\r\n")...) == nil
		}
	}
	if !last {
		return s.Reply("250 2.0.0 "+strconv.FormatInt(size, 10)+" octets received") == nil
	}
	msg := s.newMessage()
	msg.Data = s.chunkData
	msg.Raw = append([]byte(nil), s.chunkData...)
	msg.Chunks = s.chunks
	declared8, over := s.body8, s.chunkOver
	s.resetTx()
	return s.deliver(msg, declared8, over) == nil
}

// readChunk reads the n octets of a BDAT chunk as they are and adds them
// to the transaction. Once the chunks exceed the data limit nothing more
// is kept, as in readData, but every chunk is still consumed.
func (s *Session) readChunk(n int64) error {
	s.chunks = append(s.chunks, int(n))
	s.chunkTotal += n
	if s.chunkOver || s.chunkTotal > int64(s.srv.dataLimit) {
		s.chunkOver = true
		s.chunkData = nil
		_, err := io.CopyN(io.Discard, s.br, n)
		return err
	}
	off := len(s.chunkData)
	s.chunkData = append(s.chunkData, make([]byte, n)...)
	_, err := io.ReadFull(s.br, s.chunkData[off:])
	return err
}

// pipelining reports whether the server advertises PIPELINING (RFC 2920).
func (s *Session) pipelining() bool {
	return s.advertised("PIPELINING")
}

// groupEnd reports whether verb, in upper case, may only be the last
// command of a pipelined group (RFC 2920 section 3.1), apart from DATA,
// BDAT and QUIT, which are checked elsewhere or not at all.
func groupEnd(verb string) bool {
	switch verb {
	case "EHLO", "HELO", "STARTTLS", "AUTH", "NOOP", "VRFY", "EXPN", "TURN":
		return true
	}
	return false
}

// checkEarly records a pipelining violation if the client has sent bytes
// that the server has already read from the connection but not yet
// processed, just before the server replies to what (a command verb, or
// a description such as "end of data"). code is the reply code about to
// be sent, or "" if it does not matter. unpipelined marks a check made
// only because the server does not advertise PIPELINING.
//
// Only bytes already in the session's buffer are seen, so a violation
// whose bytes arrive after the server's last read is missed; bytes sent
// in the same write as the command line are normally caught.
func (s *Session) checkEarly(what, code string, unpipelined bool) {
	n := s.br.Buffered()
	if n == 0 {
		return
	}
	if what == "" {
		what = "empty command"
	}
	reply := "the reply"
	if code != "" {
		reply = "the " + code + " reply"
	}
	v := fmt.Sprintf("%s: %d bytes sent before %s", what, n, reply)
	if unpipelined {
		v += " (PIPELINING not advertised)"
	}
	s.srv.addViolation(v)
}

// States of the end-of-data scanner.
const (
	dataLineStart = iota // at the start of a line (after CRLF)
	dataDot              // a '.' at the start of a line
	dataDotCR            // ".\r" at the start of a line
	dataMid              // inside a line
	dataCR               // inside a line, after '\r'
)

// readData reads message data up to and including the terminating
// CRLF "." CRLF. Only CRLF ends a line: a bare LF or CR is ordinary
// content. raw holds the bytes as received, data the content without
// dot-stuffing and without the terminator. Once the content exceeds limit
// bytes (counted as data, the way RFC 1870 counts a message's size)
// nothing more is kept and over is true, but the data is still consumed
// to its end.
func (s *Session) readData(limit int) (raw, data []byte, over bool, err error) {
	state := dataLineStart
	size := 0 // length of the content so far, kept or not
	for {
		frag, err := s.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return nil, nil, false, err
		}
		if !over {
			raw = append(raw, frag...)
		}
		for _, c := range frag {
			keep := true
			switch state {
			case dataLineStart:
				switch c {
				case '.':
					state, keep = dataDot, false // dot-stuffing removed
				case '\r':
					state = dataCR
				default:
					state = dataMid
				}
			case dataDot:
				if c == '\r' {
					state, keep = dataDotCR, false // kept below unless the line ends
				} else {
					state = dataMid
				}
			case dataDotCR:
				if c == '\n' {
					// ReadSlice stops at '\n', so this is the last byte
					// of frag and nothing past the terminator is consumed.
					return raw, data, over, nil
				}
				size++
				if !over {
					data = append(data, '\r')
				}
				if c == '\r' {
					state = dataCR
				} else {
					state = dataMid
				}
			case dataMid:
				if c == '\r' {
					state = dataCR
				}
			case dataCR:
				switch c {
				case '\n':
					state = dataLineStart
				case '\r':
					state = dataCR
				default:
					state = dataMid
				}
			}
			if keep {
				size++
				if !over {
					data = append(data, c)
				}
			}
			if !over && size > limit {
				// Why drop what was kept: the limit bounds the memory a
				// client can make the server hold.
				over = true
				raw, data = nil, nil
			}
		}
	}
}

package tlsmail_test

// The oracle's server: a hand-written SMTP submission server on loopback
// that records the truth of every session (which transactions it opened,
// how it answered each recipient, which messages it committed and with
// which bytes) and injects faults chosen from a seed. See oracle_test.go
// for the driver and the checks.
//
// It speaks just enough SMTP for a client: greeting, EHLO/HELO, MAIL,
// RCPT, DATA (with dot-unstuffing), BDAT n [LAST], RSET, NOOP and QUIT,
// and takes pipelined input: it reads a command, answers it, and flushes
// its answers only when no more input is waiting, as real servers do.
// Every byte it writes is decided here; nothing depends on another test
// server that might change.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// oracleCert is a self-signed certificate for 127.0.0.1, made once per
// test binary, and the pool a client needs to trust it.
var oracleCert = sync.OnceValues(func() (*tls.Config, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "oracle.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
})

// A faultKind is what the server does at one reply point instead of, or
// besides, answering normally.
type faultKind int

const (
	fNone         faultKind = iota
	fDelay                  // wait a little, then answer normally
	fRefuse                 // a 4xx or 5xx refusal
	f421                    // 421, then close
	fDropBefore             // close without answering (for an end: before committing)
	fDropAfter              // answer normally, then close
	fDropCommit             // an end only: commit, then close without answering
	fSurplusSame            // "250" that answers nothing, in the same write as the answer
	fSurplusLater           // the same, as a separate write a moment before the answer
	fMixed                  // a multi-line reply whose code changes mid-way
	fWrong                  // a reply code the command cannot take
	fDropMid                // content only: close part-way through the message data
)

var faultNames = [...]string{"none", "delay", "refuse", "421", "drop-before", "drop-after", "drop-after-commit",
	"surplus-same-write", "surplus-later-write", "mixed-code", "wrong-code", "drop-mid-content"}

func (k faultKind) String() string { return faultNames[k] }

// A point is a place where the server decides a fault.
type point int

const (
	pGreeting point = iota
	pEHLO
	pMail
	pRcpt
	pData    // the reply to DATA
	pContent // while reading message data or a chunk
	pChunk   // the reply to a BDAT chunk that is not the last
	pEnd     // the reply to the end of data or BDAT LAST: the commit
	pRset    // RSET and NOOP
	pQuit
)

// allowed lists the faults each point can take.
var allowed = map[point][]faultKind{
	pGreeting: {fDelay, f421, fDropBefore},
	pEHLO:     {fDelay, f421, fDropBefore},
	pMail:     {fDelay, fRefuse, f421, fDropBefore, fDropAfter, fSurplusSame, fSurplusLater, fMixed, fWrong},
	pRcpt:     {fDelay, fRefuse, f421, fDropBefore, fDropAfter, fSurplusSame, fSurplusLater, fMixed, fWrong},
	pData:     {fDelay, fRefuse, f421, fDropBefore, fDropAfter, fSurplusSame, fSurplusLater, fMixed, fWrong},
	pContent:  {fDropMid},
	pChunk:    {fDelay, fRefuse, f421, fDropBefore, fDropAfter, fSurplusSame, fSurplusLater, fMixed, fWrong},
	pEnd:      {fDelay, fRefuse, f421, fDropBefore, fDropCommit, fDropAfter, fSurplusSame, fSurplusLater, fMixed, fWrong},
	pRset:     {fDelay, f421, fDropBefore, fDropAfter},
	pQuit:     {fDelay, f421, fDropBefore, fSurplusSame, fWrong},
}

// pointWeight scales the fault rate at a point. Why: the greeting and
// EHLO come once per connection and a fault there ends the session before
// any mail, while a chunk that is not the last comes only with a large
// message; plain rates would spend most faults on the first and almost
// none on the second.
var pointWeight = map[point]float64{
	pGreeting: 0.2, pEHLO: 0.2, pMail: 1, pRcpt: 1, pData: 1, pContent: 1, pChunk: 4, pEnd: 1.5, pRset: 1, pQuit: 1,
}

// confusing says which faults make the server's replies misleading: after
// one, no client can be expected to know every outcome.
func (k faultKind) confusing() bool {
	return k == fSurplusSame || k == fSurplusLater || k == fMixed || k == fWrong
}

// A decision is the fault drawn for one reply point.
type decision struct {
	kind   faultKind
	code   int           // fRefuse: the refusal code
	accept bool          // fMixed, fWrong: whether the server really took the command
	inner  bool          // fSurplus*: whether the real answer after the surplus is a refusal
	close  closeStyle    // closing faults: how the connection ends
	delay  time.Duration // fDelay, fSurplusLater
	after  int           // fDropMid: bytes of content read before closing
}

// serverConfig is what one oracle session's server offers and does.
type serverConfig struct {
	seed       uint64
	pipelining bool
	chunking   bool
	rate       float64 // chance of a fault at each reply point
	// surplus allows replies that answer nothing. Only sessions that end
	// with QUIT on the same call may have them: the shifted replies then
	// show at the latest in the reply to QUIT. A Client kept for another
	// call returns before any reply it could check arrives, and no client
	// can tell a surplus "250" that arrives late from an honest one.
	surplus bool
	log     func(string) // the wire transcript; nil records nothing
}

// A txRecord is one mail transaction as the server saw it.
type txRecord struct {
	conn    int
	from    string
	mailOK  bool
	rcpts   []rcptRecord
	content bytes.Buffer
	failed  bool // a chunk was refused: LAST will not commit
}

// A rcptRecord is one RCPT command and the server's answer.
type rcptRecord struct {
	addr     string
	accepted bool // the server counts the recipient as accepted
	code     int  // the code sent; 0 when no reply went out, -1 when it was ambiguous
}

func (t *txRecord) accepted() []string {
	var out []string
	for _, r := range t.rcpts {
		if r.accepted {
			out = append(out, r.addr)
		}
	}
	return out
}

// A commit is a message the server took responsibility for.
type commit struct {
	conn    int
	from    string
	rcpts   []string
	content []byte
	acked   bool // a "250" answer to it was written
	tx      *txRecord
}

// connRecord is what happened on one connection.
type connRecord struct {
	confusing bool // a confusing fault was injected
	surplus   bool // a surplus reply was sent
	// hidden: a surplus reply was sent that the client may not have seen
	// before committing: in a write of its own, or without PIPELINING (the
	// client then reads in step and the reply that shows the shift comes
	// only after its next command), or followed by a delay.
	hidden bool
	// goodbye: QUIT was answered 221 with no fault, so a client that
	// ends its session had its closing sync point.
	goodbye bool
}

// closeStyle is how the server ends a connection.
type closeStyle int

const (
	// closeClean sends close_notify and shuts down writing, then reads
	// and discards until the client hangs up: whatever the client
	// writes meanwhile is taken, and every reply reaches it.
	closeClean closeStyle = iota
	// closeFull closes the socket at once, as most servers do after a
	// 421: input the server has not read makes the kernel send a reset,
	// and the client's next write fails, though the replies already
	// sent stay readable.
	closeFull
	// closeReset resets the connection (SO_LINGER 0) without even a
	// close_notify.
	closeReset
)

var closeNames = [...]string{"clean close", "close", "reset"}

// oracleServer is one session's server: a listener, its connections and
// the truth they recorded.
type oracleServer struct {
	cfg serverConfig
	ln  net.Listener
	wg  sync.WaitGroup

	mu      sync.Mutex
	conns   []*connRecord
	live    map[net.Conn]bool
	txs     []*txRecord
	commits []*commit
	faults  []string // "conn/point: fault", for the failure report
}

func startOracleServer(cfg serverConfig) (*oracleServer, error) {
	tcfg, _ := oracleCert()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &oracleServer{cfg: cfg, ln: ln, live: map[net.Conn]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			id := len(s.conns)
			rec := &connRecord{}
			s.conns = append(s.conns, rec)
			s.live[raw] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				c := &srvConn{s: s, id: id, rec: rec, raw: raw}
				c.serve(tcfg)
				raw.Close()
				s.mu.Lock()
				delete(s.live, raw)
				s.mu.Unlock()
			}()
		}
	}()
	return s, nil
}

func (s *oracleServer) addr() string { return s.ln.Addr().String() }

// wait stops accepting and waits up to d for the connections to end,
// which they do when the client closes them. It reports whether they did;
// either way, everything is closed when it returns.
func (s *oracleServer) wait(d time.Duration) bool {
	s.ln.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
	}
	s.mu.Lock()
	for c := range s.live {
		c.Close()
	}
	s.mu.Unlock()
	<-done
	return false
}

func (s *oracleServer) logf(format string, args ...any) {
	if s.cfg.log != nil {
		s.cfg.log(fmt.Sprintf(format, args...))
	}
}

// srvConn is one connection's session.
type srvConn struct {
	s      *oracleServer
	id     int
	rec    *connRecord
	raw    net.Conn
	tc     *tls.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	points int       // reply points so far: the draw of each depends on (seed, conn, points) only
	tx     *txRecord // the open transaction
	// refused is the transaction whose MAIL was refused, until the next
	// MAIL or RSET: the RCPTs that follow it are recorded there, with
	// their 503, so that a client's claims about them can be checked.
	refused *txRecord
	closed  bool
}

// decide draws the fault for the next reply point. Each point has its own
// generator, seeded with the session seed, the connection and the
// point's index, so that a draw does not depend on how many numbers
// earlier points used.
func (c *srvConn) decide(p point) decision {
	rng := mrand.New(mrand.NewPCG(c.s.cfg.seed, uint64(c.id)<<32|uint64(c.points)))
	c.points++
	if rng.Float64() >= min(0.9, c.s.cfg.rate*pointWeight[p]) {
		return decision{}
	}
	var kinds []faultKind
	for _, k := range allowed[p] {
		switch {
		case (k == fSurplusSame || k == fSurplusLater) && (!c.s.cfg.surplus || c.rec.surplus):
			continue
		case c.rec.surplus && k != fDelay && k != fRefuse:
			// After a surplus reply the session goes on to QUIT, so
			// that the shift shows in the reply to QUIT: a client
			// that sees the connection end first could not tell.
			continue
		}
		kinds = append(kinds, k)
	}
	if len(kinds) == 0 {
		return decision{}
	}
	d := decision{kind: kinds[rng.IntN(len(kinds))]}
	d.code = []int{450, 451, 452, 550, 552, 554}[rng.IntN(6)]
	d.accept = rng.IntN(2) == 0
	d.inner = rng.IntN(3) == 0
	d.close = closeStyle(rng.IntN(3))
	d.delay = time.Duration(1+rng.IntN(20)) * time.Millisecond
	d.after = rng.IntN(600)
	if rng.IntN(3) == 0 {
		d.after = rng.IntN(300000) // well into a large message
	}
	if d.kind == fDelay && rng.IntN(10) == 0 {
		d.delay = time.Duration(100+rng.IntN(150)) * time.Millisecond
	}
	s := c.s
	s.mu.Lock()
	s.faults = append(s.faults, fmt.Sprintf("%s at %s", d.kind, pointNames[p]))
	s.mu.Unlock()
	s.logf("S: [conn %d fault at %s: %s]", c.id, pointNames[p], d)
	return d
}

// String describes d for the transcript, with the fields that apply.
func (d decision) String() string {
	s := d.kind.String()
	switch d.kind {
	case fDelay:
		s += " " + d.delay.String()
	case fRefuse:
		s += fmt.Sprintf(" %d", d.code)
	case fSurplusSame, fSurplusLater:
		if d.inner {
			s += fmt.Sprintf(", then the real answer refuses with %d", d.code)
		}
	case fMixed, fWrong:
		s += fmt.Sprintf(", the server takes the command: %v", d.accept)
	case fDropMid:
		s += fmt.Sprintf(" after %d bytes", d.after)
	}
	switch d.kind {
	case f421, fDropBefore, fDropAfter, fDropCommit, fDropMid:
		s += ", " + closeNames[d.close]
	}
	return s
}

var pointNames = [...]string{"greeting", "EHLO", "MAIL", "RCPT", "DATA", "content", "BDAT chunk", "end", "RSET/NOOP", "QUIT"}

func (c *srvConn) serve(tcfg *tls.Config) {
	// A bound on the whole connection, so that no mistake on either side
	// keeps the test waiting.
	c.raw.SetDeadline(time.Now().Add(20 * time.Second))
	c.tc = tls.Server(c.raw, tcfg)
	if err := c.tc.Handshake(); err != nil {
		c.s.logf("S: [conn %d handshake: %v]", c.id, err)
		return
	}
	c.r = bufio.NewReader(c.tc)
	c.w = bufio.NewWriter(c.tc)
	c.s.logf("S: [conn %d open]", c.id)
	if !c.answer(c.decide(pGreeting), "220 oracle.test ESMTP\r\n", "") {
		return
	}
	for !c.closed {
		if c.r.Buffered() == 0 {
			// Pipelining (RFC 2920 section 3.2): answers go out when
			// the client has nothing more queued.
			c.flush()
		}
		line, err := c.readLine()
		if err != nil {
			c.s.logf("S: [conn %d read: %v]", c.id, err)
			return
		}
		c.s.logf("C: %q", line)
		c.command(line)
	}
}

func (c *srvConn) readLine() (string, error) {
	b, err := c.r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func (c *srvConn) flush() {
	if !c.closed {
		c.w.Flush()
	}
}

func (c *srvConn) write(s string) {
	c.s.logf("S: %q", s)
	c.w.WriteString(s)
}

// close ends the connection as style says, after sending the replies
// written so far.
func (c *srvConn) close(style closeStyle) {
	if c.closed {
		return
	}
	c.closed = true
	c.s.logf("S: [conn %d %s]", c.id, closeNames[style])
	c.w.Flush()
	switch style {
	case closeFull:
		// Close alone, below.
	case closeClean:
		c.tc.CloseWrite()
		c.raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c.r)
	case closeReset:
		if tcp, ok := c.raw.(*net.TCPConn); ok {
			tcp.SetLinger(0)
		}
	}
	c.raw.Close()
}

// answer writes reply as d says; bad is the refusal text when d is a
// refusal (empty: "CODE x.y.z refused"). It reports whether the session
// goes on.
func (c *srvConn) answer(d decision, reply, bad string) bool {
	if bad == "" {
		bad = fmt.Sprintf("%d %d.0.0 refused by the oracle\r\n", d.code, d.code/100)
	}
	if d.kind.confusing() {
		c.rec.confusing = true
	}
	if d.kind == fSurplusSame || d.kind == fSurplusLater {
		c.rec.surplus = true
	}
	if c.rec.surplus && (d.kind == fDelay || d.kind == fSurplusLater || !c.s.cfg.pipelining) {
		c.rec.hidden = true
	}
	switch d.kind {
	case fDelay:
		c.flush()
		time.Sleep(d.delay)
		c.write(reply)
	case fRefuse:
		c.write(bad)
	case f421:
		c.write("421 4.3.2 oracle closing\r\n")
		c.close(d.close)
		return false
	case fDropBefore, fDropCommit, fDropMid:
		c.close(d.close)
		return false
	case fDropAfter:
		c.write(reply)
		c.close(d.close)
		return false
	case fSurplusSame, fSurplusLater:
		c.rec.surplus = true
		c.write("250 2.0.0 surplus\r\n")
		if d.kind == fSurplusLater {
			c.flush()
			time.Sleep(d.delay)
		}
		if d.inner {
			c.write(bad)
		} else {
			c.write(reply)
		}
	case fMixed:
		if d.accept {
			c.write("554-5.0.0 no\r\n250 2.0.0 ok\r\n")
		} else {
			c.write("250-2.0.0 ok\r\n554 5.0.0 no\r\n")
		}
	case fWrong:
		c.write(wrongCode(reply))
	default:
		c.write(reply)
	}
	return true
}

// wrongCode returns a reply whose code the command that expects reply
// cannot take.
func wrongCode(reply string) string {
	switch reply[:3] {
	case "354":
		return "250 2.0.0 wrong code\r\n"
	case "221":
		return "354 wrong code\r\n"
	}
	return "354 wrong code\r\n"
}

// took reports whether the server really took a command under d.
func took(d decision) bool {
	switch d.kind {
	case fRefuse, f421, fDropBefore, fDropMid:
		return false
	case fSurplusSame, fSurplusLater:
		return !d.inner
	case fMixed, fWrong:
		return d.accept
	}
	return true
}

// sentCode is the code the client received for a command under d: 0 for
// none, -1 for an ambiguous answer.
func sentCode(d decision, ok int) int {
	switch d.kind {
	case fRefuse:
		return d.code
	case f421:
		return 421
	case fDropBefore:
		return 0
	case fSurplusSame, fSurplusLater:
		if d.inner {
			return d.code
		}
	case fMixed, fWrong:
		return -1
	}
	return ok
}

func (c *srvConn) command(line string) {
	verb, arg, _ := strings.Cut(line, " ")
	switch strings.ToUpper(verb) {
	case "EHLO":
		var b strings.Builder
		b.WriteString("250-oracle.test\r\n")
		if c.s.cfg.pipelining {
			b.WriteString("250-PIPELINING\r\n")
		}
		if c.s.cfg.chunking {
			b.WriteString("250-CHUNKING\r\n")
		}
		b.WriteString("250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE 10485760\r\n")
		c.answer(c.decide(pEHLO), b.String(), "")
	case "HELO":
		c.write("250 oracle.test\r\n")
	case "MAIL":
		c.mail(arg)
	case "RCPT":
		c.rcpt(arg)
	case "DATA":
		c.data()
	case "BDAT":
		c.bdat(arg)
	case "RSET", "NOOP":
		if strings.EqualFold(verb, "RSET") {
			c.tx, c.refused = nil, nil
		}
		c.answer(c.decide(pRset), "250 2.0.0 ok\r\n", "")
	case "QUIT":
		if c.answer(c.decide(pQuit), "221 2.0.0 bye\r\n", "") {
			c.s.mu.Lock()
			c.rec.goodbye = true
			c.s.mu.Unlock()
			c.close(closeClean)
		}
	default:
		c.write("500 5.5.2 unknown command\r\n")
	}
}

// path returns the address inside the angle brackets of a MAIL or RCPT
// argument.
func path(arg string) string {
	i, j := strings.IndexByte(arg, '<'), strings.IndexByte(arg, '>')
	if i < 0 || j < i {
		return ""
	}
	return arg[i+1 : j]
}

func (c *srvConn) mail(arg string) {
	if c.tx != nil {
		c.write("503 5.5.1 nested MAIL\r\n")
		return
	}
	d := c.decide(pMail)
	tx := &txRecord{conn: c.id, from: path(arg), mailOK: took(d)}
	c.s.mu.Lock()
	c.s.txs = append(c.s.txs, tx)
	c.s.mu.Unlock()
	c.refused = nil
	if tx.mailOK {
		c.tx = tx
	} else {
		c.refused = tx
	}
	c.answer(d, "250 2.1.0 sender ok\r\n", "")
}

func (c *srvConn) rcpt(arg string) {
	if c.tx == nil {
		if c.refused != nil {
			c.s.mu.Lock()
			c.refused.rcpts = append(c.refused.rcpts, rcptRecord{addr: path(arg), code: 503})
			c.s.mu.Unlock()
		}
		c.write("503 5.5.1 need MAIL\r\n")
		return
	}
	d := c.decide(pRcpt)
	c.s.mu.Lock()
	c.tx.rcpts = append(c.tx.rcpts, rcptRecord{addr: path(arg), accepted: took(d), code: sentCode(d, 250)})
	c.s.mu.Unlock()
	c.answer(d, "250 2.1.5 recipient ok\r\n", "")
}

func (c *srvConn) data() {
	if c.tx == nil {
		c.write("503 5.5.1 need MAIL\r\n")
		return
	}
	if len(c.tx.accepted()) == 0 {
		c.write("554 5.5.1 no valid recipients\r\n")
		return
	}
	d := c.decide(pData)
	open := took(d)
	if !c.answer(d, "354 go ahead\r\n", "") || !open {
		return
	}
	c.flush()
	// Read the content up to the end-of-data line, un-stuffing dots
	// (RFC 5321 section 4.5.2).
	cut := c.decide(pContent)
	read := 0
	for {
		line, err := c.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long line: keep it whole.
			buf := append([]byte(nil), line...)
			for err == bufio.ErrBufferFull {
				line, err = c.r.ReadSlice('\n')
				buf = append(buf, line...)
			}
			line = buf
		}
		if err != nil {
			c.s.logf("S: [conn %d read in data: %v]", c.id, err)
			c.closed = true
			return
		}
		read += len(line)
		if cut.kind == fDropMid && read > cut.after {
			c.s.logf("C: [data: %d bytes read]", read)
			c.answer(cut, "", "")
			return
		}
		if string(line) == ".\r\n" {
			c.s.logf("C: [data: %d bytes]", c.tx.content.Len())
			c.s.logf("C: %q", ".")
			c.end()
			return
		}
		if line[0] == '.' {
			line = line[1:]
		}
		c.tx.content.Write(line)
	}
}

func (c *srvConn) bdat(arg string) {
	f := strings.Fields(arg)
	n, err := -1, error(nil)
	if len(f) > 0 {
		n, err = strconv.Atoi(f[0])
	}
	if len(f) == 0 || len(f) > 2 || err != nil || n < 0 || len(f) == 2 && !strings.EqualFold(f[1], "LAST") {
		c.write("501 5.5.4 bad BDAT\r\n")
		c.close(closeClean) // the chunk cannot be found: no way to go on
		return
	}
	last := len(f) == 2
	tx := c.tx
	chunkOK := tx != nil && len(tx.accepted()) > 0 && !tx.failed
	cut := decision{}
	if chunkOK {
		cut = c.decide(pContent)
	}
	if cut.kind == fDropMid && cut.after < n {
		io.CopyN(io.Discard, c.r, int64(cut.after))
		c.s.logf("C: [chunk: %d of %d bytes read]", cut.after, n)
		c.answer(cut, "", "")
		return
	}
	var chunk []byte
	if chunkOK {
		chunk = make([]byte, n)
		_, err = io.ReadFull(c.r, chunk)
	} else {
		_, err = io.CopyN(io.Discard, c.r, int64(n))
	}
	if err != nil {
		c.s.logf("S: [conn %d read in chunk: %v]", c.id, err)
		c.closed = true
		return
	}
	c.s.logf("C: [chunk: %d bytes]", n)
	switch {
	case tx == nil:
		c.write("503 5.5.1 need MAIL\r\n")
		return
	case !chunkOK:
		c.write("554 5.5.0 transaction failed\r\n")
		if last {
			c.tx = nil
		}
		return
	}
	tx.content.Write(chunk)
	if last {
		c.end()
		return
	}
	d := c.decide(pChunk)
	if !took(d) {
		tx.failed = true
	}
	c.answer(d, "250 2.0.0 chunk ok\r\n", "")
}

// end answers the end of a message's data: the commit. The commit is
// recorded before any answer is written, as a real server queues the
// message before saying so.
func (c *srvConn) end() {
	tx := c.tx
	c.tx = nil
	d := c.decide(pEnd)
	if took(d) { // fDropCommit included: it commits, then closes
		cm := &commit{conn: c.id, from: tx.from, rcpts: tx.accepted(), content: bytes.Clone(tx.content.Bytes()), tx: tx}
		switch d.kind {
		case fNone, fDelay, fDropAfter:
			cm.acked = true
		case fSurplusSame, fSurplusLater:
			cm.acked = !d.inner
		}
		c.s.mu.Lock()
		c.s.commits = append(c.s.commits, cm)
		c.s.mu.Unlock()
		c.s.logf("S: [conn %d committed %s to %v]", c.id, tx.from, cm.rcpts)
	}
	c.answer(d, "250 2.0.0 queued\r\n", "")
}

package smtptest

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// Steps of a session that are not commands, for Fault.At and
// Command.Verb.
const (
	// Greeting is the server's first reply, "220 mx.test ESMTP
	// tlsmail-test" (with Config.Hostname), sent
	// when a client connects (after the TLS handshake on the implicit-TLS
	// listener). A scripted reply replaces it and the server then closes
	// the connection; 421 and 554 are the usual ones (RFC 5321 section
	// 3.1).
	Greeting = "GREETING"
	// EndOfData is the end of a message's content: the "." line after
	// DATA, or the BDAT chunk marked LAST. A scripted reply there refuses
	// the message (it is not recorded), for example "452 4.3.1
	// Insufficient system storage" or "554 5.7.1 Message rejected as
	// spam".
	EndOfData = "END-OF-DATA"
)

// steps are the values Fault.At may take.
var steps = []string{"EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "VRFY", "QUIT", Greeting, EndOfData}

// Command is a step of a session, as given to Config.Reply.
//
// A scripted reply to a command replaces the server's own and the server
// does nothing else with the command: a refused MAIL starts no
// transaction, a refused AUTH authenticates nobody, a refused DATA reads
// no data. Scripted replies are meant to refuse (4xx, 5xx), with one
// exception: at RCPT a 2xx reply accepts the recipient (the server's own
// checks of the address and its parameters come first there). At BDAT a scripted reply refuses the chunk and ends the
// transaction; at Greeting and EndOfData see those constants. A reply
// with the code 421 is followed by the server closing the connection, as
// RFC 5321 section 3.8 has it.
type Command struct {
	// Session is the number of the connection (see Message.Session).
	Session int
	// TLS reports whether the session is under TLS.
	TLS bool
	// Verb is the command verb in upper case ("EHLO", "AUTH", "MAIL",
	// "RCPT", "DATA", "BDAT", ...), or Greeting or EndOfData.
	Verb string
	// Arg is the rest of the command line, trimmed, for example
	// "FROM:<a@example.org> SIZE=120" or "PLAIN AHVzZXIAcGFzcw==" (AUTH
	// initial responses as sent); "" for Greeting and EndOfData.
	Arg string
	// Addr is the address inside the angle brackets of MAIL FROM or
	// RCPT TO, "" for other commands.
	Addr string
	// Line is the command line as received, without its line ending;
	// "" for Greeting and EndOfData.
	Line string
}

// Fault makes the server misbehave at one step of a session, so that a
// test can check how a program copes with a slow server, a dropped
// connection or a refusal: first it waits Delay, then it closes the
// connection (Drop), sends Reply instead of the usual reply, or, with
// neither, carries on as usual.
//
//	// The first RCPT of the server's life gets 451; the retry succeeds.
//	{At: "RCPT", Reply: "451 4.3.0 Try again later", Times: 1}
//	// The connection drops when the message has been sent, before the
//	// reply: the client cannot know whether it was delivered.
//	{At: smtptest.EndOfData, Drop: true}
//	// Every greeting takes 2 seconds.
//	{At: smtptest.Greeting, Delay: 2 * time.Second}
//
// Start refuses a Fault that does nothing, names an unknown step, sets
// Addr for a step without an address, or has a Reply that is not an SMTP
// reply.
type Fault struct {
	// At is the step: a command verb ("EHLO", "HELO", "STARTTLS", "AUTH",
	// "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "VRFY", "QUIT", in
	// any case), Greeting or EndOfData. A fault at RCPT applies after the
	// server's own checks of the command, and one at BDAT after the chunk
	// has been read; the client's lines inside an AUTH exchange are never
	// a step.
	At string
	// Addr, if set, limits a fault at MAIL or RCPT to commands with this
	// address (compared without regard to case).
	Addr string
	// Session, if not 0, limits the fault to the session with this number
	// (1 for the first connection the server accepts).
	Session int
	// Times, if not 0, is how many times the fault applies, counted over
	// every session of the server (Reset starts the count again): Times 1
	// with Reply "421 ..." makes the first attempt fail and a retry
	// succeed. 0 means every time.
	Times int
	// Delay is how long the server waits before it acts (or replies as
	// usual), to test a client's timeouts. Close cuts it short.
	Delay time.Duration
	// Drop closes the connection without a reply, as a crashed server or
	// a broken network would.
	Drop bool
	// Reply, if set, is sent instead of the usual reply (see Command for
	// what that does at each step): for example "451 4.3.0 Try again
	// later", "550 5.1.1 User unknown", or "421 4.3.2 Service shutting
	// down", after which the server closes the connection. Separate the
	// lines of a multi-line reply with "\r\n".
	Reply string
}

func (f *Fault) check() error {
	known := false
	for _, st := range steps {
		known = known || strings.EqualFold(f.At, st)
	}
	switch {
	case !known:
		return fmt.Errorf("field At is %q; want a command verb (%s) or Greeting or EndOfData", f.At, strings.Join(steps[:len(steps)-2], ", "))
	case f.Addr != "" && !strings.EqualFold(f.At, "MAIL") && !strings.EqualFold(f.At, "RCPT"):
		return fmt.Errorf("field Addr is set but At is %q; only MAIL and RCPT have an address", f.At)
	case f.Drop && f.Reply != "":
		return errors.New("both Drop and Reply are set; a dropped connection sends no reply")
	case f.Times < 0:
		return fmt.Errorf("field Times is %d; want 0 (every time) or more", f.Times)
	case f.Delay < 0:
		return fmt.Errorf("field Delay is %v; want 0 or more", f.Delay)
	case !f.Drop && f.Reply == "" && f.Delay == 0:
		return errors.New("it sets none of Delay, Drop and Reply, so it would do nothing")
	}
	if f.Reply != "" {
		if err := checkReply(f.Reply); err != nil {
			return fmt.Errorf("field Reply: %w", err)
		}
	}
	return nil
}

// checkReply reports why r is not an SMTP reply: lines separated by
// "\r\n", each a three-digit code from 200 to 599 followed by a space, a
// hyphen (all but the last line) or nothing, all with the same code.
func checkReply(r string) error {
	lines := strings.Split(r, "\r\n")
	for i, l := range lines {
		if len(l) < 3 || !isDigits(l[:3]) || l[0] < '2' || l[0] > '5' {
			return fmt.Errorf("%q is not an SMTP reply: each line must start with a code from 200 to 599", r)
		}
		if l[:3] != lines[0][:3] {
			return fmt.Errorf("%q is not an SMTP reply: its lines have different codes", r)
		}
		last := i == len(lines)-1
		if len(l) > 3 && (last && l[3] != ' ' || !last && l[3] != '-') {
			return fmt.Errorf("%q is not an SMTP reply: after the code, the last line needs a space and the others a hyphen", r)
		}
		if !last && len(l) == 3 {
			return fmt.Errorf("%q is not an SMTP reply: after the code, every line but the last needs a hyphen", r)
		}
		if strings.ContainsAny(l, "\r\n") {
			return fmt.Errorf("%q is not an SMTP reply: separate lines with \"\\r\\n\"", r)
		}
	}
	return nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// fault returns the first fault that applies to cmd, counting it, or nil.
func (s *Server) fault(cmd Command) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.cfg.Faults {
		f := &s.cfg.Faults[i]
		if !strings.EqualFold(f.At, cmd.Verb) ||
			f.Addr != "" && !strings.EqualFold(f.Addr, cmd.Addr) ||
			f.Session != 0 && f.Session != cmd.Session ||
			f.Times != 0 && s.fired[i] >= f.Times {
			continue
		}
		s.fired[i]++
		return f
	}
	return nil
}

// decide works out what the server does at cmd: after any Delay, drop the
// connection, send reply, or (neither) carry on as usual. ok is false
// when the server was closed during the delay, in which case the session
// should end.
func (s *Server) decide(cmd Command) (reply string, drop, ok bool) {
	if f := s.fault(cmd); f != nil {
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return "", true, false
			}
		}
		if f.Drop || f.Reply != "" {
			return f.Reply, f.Drop, true
		}
	}
	if h := s.cfg.Reply; h != nil {
		if r, ok := h(cmd); ok && r != "" {
			if err := checkReply(r); err != nil {
				// Why a 451 that says so rather than the bad bytes: the
				// test then fails with a message naming the mistake.
				r = "451 4.3.0 smtptest: Config.Reply returned an invalid reply for " + cmd.Verb + ": " + err.Error()
			}
			return r, false, true
		}
	}
	if cmd.Verb == "RCPT" {
		if r, ok := s.rcpts[strings.ToLower(cmd.Addr)]; ok {
			return r, false, true
		}
	}
	return "", false, true
}

// lingerTime bounds how long the server reads what a client sends after
// a 421 reply before it closes the connection.
const lingerTime = 2 * time.Second

// send writes reply and, for a 421, closes the connection: after reading
// what the client has already sent, since closing with unread bytes
// makes the client's system reset the connection, which can discard the
// 421 before the client reads it (a pipelining client has usually sent
// more by then).
func send(sess *smtptest.Session, reply string) {
	sess.Reply(strings.Split(reply, "\r\n")...)
	if strings.HasPrefix(reply, "421") {
		sess.Linger(lingerTime)
	}
}

// act carries out decide's verdict for a step the hook can answer
// entirely itself, and reports whether it did.
func (s *Server) act(sess *smtptest.Session, cmd Command) bool {
	reply, drop, ok := s.decide(cmd)
	switch {
	case !ok || drop:
		sess.Close()
		return true
	case reply != "":
		send(sess, reply)
		return true
	}
	return false
}

func (s *Server) onSession(sess *smtptest.Session) bool {
	reply, drop, ok := s.decide(Command{Session: sess.ID(), TLS: sess.TLS(), Verb: Greeting})
	switch {
	case !ok || drop:
		sess.Close()
		return true
	case reply != "":
		// A refusing greeting ends the session (RFC 5321 section 3.1
		// allows waiting for QUIT instead; closing is simpler to test).
		sess.Reply(strings.Split(reply, "\r\n")...)
		return true
	}
	return false
}

func (s *Server) handler(sess *smtptest.Session, line string) bool {
	if sess.InAuth() {
		return false
	}
	verb, arg, _ := strings.Cut(line, " ")
	cmd := Command{Session: sess.ID(), TLS: sess.TLS(), Verb: strings.ToUpper(verb), Arg: strings.TrimSpace(arg), Line: line}
	s.mu.Lock()
	s.lastLine[cmd.Session] = line
	s.mu.Unlock()
	switch cmd.Verb {
	case "RCPT", "BDAT":
		// Decided after the server's own checks (rcptReply) and after
		// the chunk is read (chunkReply), so that the session stays in
		// step and a 2xx RCPT reply can accept the recipient.
		return false
	case "MAIL":
		cmd.Addr = pathAddr(cmd.Arg)
	}
	return s.act(sess, cmd)
}

// pathAddr returns the address between the first '<' and the next '>'
// of a MAIL or RCPT argument.
func pathAddr(arg string) string {
	_, rest, ok := strings.Cut(arg, "<")
	if !ok {
		return ""
	}
	addr, _, _ := strings.Cut(rest, ">")
	return addr
}

// lineOf returns the last command line of session id.
func (s *Server) lineOf(id int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastLine[id]
}

func (s *Server) rcptReply(sess *smtptest.Session, addr, params string) string {
	line := s.lineOf(sess.ID())
	_, arg, _ := strings.Cut(line, " ")
	cmd := Command{Session: sess.ID(), TLS: sess.TLS(), Verb: "RCPT", Arg: strings.TrimSpace(arg), Addr: addr, Line: line}
	return s.hookReply(sess, cmd)
}

// hookReply decides cmd for a hook of the internal server that answers
// with the reply it returns ("" for the default).
func (s *Server) hookReply(sess *smtptest.Session, cmd Command) string {
	reply, drop, ok := s.decide(cmd)
	switch {
	case !ok || drop:
		sess.Close()
		// The server's attempt to send this fails on the closed
		// connection, and a non-2xx reply keeps the recipient or the
		// chunk out.
		return "421 4.4.2 connection dropped"
	case strings.HasPrefix(reply, "421"):
		send(sess, reply)
	}
	return reply
}

func (s *Server) chunkReply(sess *smtptest.Session, _ int, _ int64, _ bool) string {
	line := s.lineOf(sess.ID())
	_, arg, _ := strings.Cut(line, " ")
	cmd := Command{Session: sess.ID(), TLS: sess.TLS(), Verb: "BDAT", Arg: strings.TrimSpace(arg), Line: line}
	// With "" the LAST chunk goes on to the end of data (onData).
	return s.hookReply(sess, cmd)
}

func (s *Server) onData(sess *smtptest.Session, _ *smtptest.Message) bool {
	return s.act(sess, Command{Session: sess.ID(), TLS: sess.TLS(), Verb: EndOfData})
}

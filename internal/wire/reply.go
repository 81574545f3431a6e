// Package wire holds the SMTP plumbing shared by tlsmail and its tests:
// bounded reply parsing, EHLO capability parsing, the streaming data writer
// and input validation, and the connection wrapper that the SMTP and POP3
// dialers share to name a plaintext server met where TLS was expected.
// None of it is API.
package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Limits on a single server reply. RFC 5321 section 4.5.3.1.5 sets 512
// octets for a reply line; real servers exceed it (long EHLO lines,
// verbose rejections), so the limit is generous but fixed. The limits exist
// because a hostile server could otherwise grow the client's memory without
// bound with an endless "250-" stream or a line with no end.
const (
	MaxLineLength = 4000      // octets in one reply line, CRLF included
	MaxLines      = 200       // lines in one multi-line reply
	MaxReplyBytes = 64 * 1024 // octets in one reply, all lines together
)

// ReaderSize is the bufio buffer size readers passed to ReadReply must have
// at least, so that a line of MaxLineLength fits.
const ReaderSize = 4096

// ErrReplyTooLarge reports that a reply broke one of the limits above.
var ErrReplyTooLarge = errors.New("reply exceeds size limits")

// ErrMalformedReply reports a reply that is not valid SMTP.
var ErrMalformedReply = errors.New("malformed reply")

// A MalformedError is a reply line that is not valid SMTP. It matches
// ErrMalformedReply. Line is the whole line, so that a caller can check
// it before the shortened quote in Error reaches a log.
type MalformedError struct {
	Line   []byte // the line as received, line ending removed
	Reason string
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("%v: %s: %q", ErrMalformedReply, e.Reason, Quote(e.Line))
}

// Is makes errors.Is(err, ErrMalformedReply) true.
func (e *MalformedError) Is(target error) bool { return target == ErrMalformedReply }

func malformed(line []byte, reason string) error {
	return &MalformedError{Line: append([]byte(nil), line...), Reason: reason}
}

// Reply is one complete server reply.
type Reply struct {
	Code  int      // three-digit reply code
	Lines []string // text of each line, code and separator removed
}

// ReadReply reads one reply from r, enforcing the limits. r must have a
// buffer of at least ReaderSize bytes.
func ReadReply(r *bufio.Reader) (Reply, error) {
	var rep Reply
	total := 0
	for n := 0; ; n++ {
		if n == MaxLines {
			return rep, fmt.Errorf("%w: more than %d lines", ErrReplyTooLarge, MaxLines)
		}
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull || len(line) > MaxLineLength {
			return rep, fmt.Errorf("%w: line longer than %d bytes", ErrReplyTooLarge, MaxLineLength)
		}
		if err != nil {
			if err == io.EOF && (len(line) > 0 || n > 0) {
				// The server hung up inside a reply: that is not a reply.
				return rep, io.ErrUnexpectedEOF
			}
			return rep, err
		}
		total += len(line)
		if total > MaxReplyBytes {
			return rep, fmt.Errorf("%w: more than %d bytes", ErrReplyTooLarge, MaxReplyBytes)
		}
		code, more, text, err := ParseLine(line)
		if err != nil {
			return rep, err
		}
		if n == 0 {
			rep.Code = code
		} else if code != rep.Code {
			return rep, fmt.Errorf("%w: multi-line reply changes code from %d to %d", ErrMalformedReply, rep.Code, code)
		}
		rep.Lines = append(rep.Lines, text)
		if !more {
			return rep, nil
		}
	}
}

// ParseLine parses one reply line (with or without its line ending) into
// its code, whether more lines follow, and its text. RFC 5321 section 4.2:
// Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF,
// with the first digit 2 to 5 and the second 0 to 5.
func ParseLine(line []byte) (code int, more bool, text string, err error) {
	line = trimEOL(line)
	if len(line) < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' || line[2] < '0' || line[2] > '9' {
		return 0, false, "", malformed(line, "line does not start with a reply code")
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case ' ':
	case '-':
		more = true
	default:
		return 0, false, "", malformed(line, "reply code not followed by space or hyphen")
	}
	return code, more, string(line[4:]), nil
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// Quote shortens b for an error message: servers are not trusted to put
// sensible text in our errors, so it is cut at 80 bytes and %q-escaped by
// the caller.
func Quote(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// EnhancedCode splits an RFC 3463 enhanced status code off the start of
// text. RFC 2034 section 4: the class digit must match the first digit of
// the reply code; otherwise the text is not treated as carrying one.
func EnhancedCode(code int, text string) (enh [3]int, rest string, ok bool) {
	word, after, _ := strings.Cut(text, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 {
		return enh, text, false
	}
	limits := [3]int{9, 999, 999} // class is one digit; subject and detail at most three (RFC 3463 section 2)
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 {
			return [3]int{}, text, false
		}
		n := 0
		for _, r := range p {
			if r < '0' || r > '9' {
				return [3]int{}, text, false
			}
			n = n*10 + int(r-'0')
		}
		if n > limits[i] {
			return [3]int{}, text, false
		}
		enh[i] = n
	}
	if enh[0] != code/100 || (enh[0] != 2 && enh[0] != 4 && enh[0] != 5) {
		return [3]int{}, text, false
	}
	return enh, after, true
}

// ParseEHLO turns the lines of a 250 reply to EHLO into a capability map
// keyed by upper-case keyword, with the parameters as the value. The first
// line is the server's greeting name and is skipped.
func ParseEHLO(lines []string) map[string]string {
	ext := make(map[string]string, len(lines))
	for _, l := range lines[min(1, len(lines)):] {
		kw, params, _ := strings.Cut(strings.TrimSpace(l), " ")
		if kw == "" {
			continue
		}
		kw = strings.ToUpper(kw)
		// Some servers send AUTH twice (once as AUTH=PLAIN for old
		// clients); merge rather than drop.
		if old, ok := ext[kw]; ok && old != "" {
			params = old + " " + params
		}
		ext[kw] = strings.TrimSpace(params)
	}
	return ext
}

package tlsmail

// Fuzz targets for everything that parses what a server sends or checks
// what a caller passes in. Their seed corpora are in testdata/fuzz/<name>/
// and run as ordinary tests with go test; explore with, for example,
//
//	go test -run '^$' -fuzz '^FuzzDotWriter$' -fuzztime 60s .

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/tlsmail/tlsmail/internal/wire"
)

// FuzzReadReply: ReadReply never panics, never reads far past its limits,
// fails only in the documented ways, and what it returns is exactly what
// the bytes it consumed say; serialising the reply again and parsing that
// gives the same reply.
func FuzzReadReply(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		r := bufio.NewReaderSize(src, wire.ReaderSize)
		rep, err := wire.ReadReply(r)
		read := len(data) - src.Len()
		consumed := read - r.Buffered()
		if read > wire.MaxReplyBytes+wire.ReaderSize {
			t.Fatalf("read %d bytes; the limits allow at most %d", read, wire.MaxReplyBytes+wire.ReaderSize)
		}
		if err != nil {
			switch {
			case errors.Is(err, wire.ErrReplyTooLarge), errors.Is(err, wire.ErrMalformedReply), err == io.ErrUnexpectedEOF:
			case err == io.EOF:
				if len(data) != 0 {
					t.Fatalf("io.EOF after %d bytes; want io.ErrUnexpectedEOF for a reply cut short", len(data))
				}
			default:
				t.Fatalf("unexpected kind of error %v", err)
			}
			return
		}
		if rep.Code < 200 || rep.Code > 559 {
			t.Fatalf("code %d", rep.Code)
		}
		if len(rep.Lines) == 0 || len(rep.Lines) > wire.MaxLines || consumed > wire.MaxReplyBytes {
			t.Fatalf("%d lines, %d bytes accepted", len(rep.Lines), consumed)
		}

		// Read the consumed bytes independently.
		lines := strings.SplitAfter(string(data[:consumed]), "\n")
		if lines[len(lines)-1] != "" {
			t.Fatalf("consumed %q, which does not end a line", data[:consumed])
		}
		lines = lines[:len(lines)-1]
		if len(lines) != len(rep.Lines) {
			t.Fatalf("%d lines consumed, %d returned", len(lines), len(rep.Lines))
		}
		for i, l := range lines {
			if len(l) > wire.MaxLineLength {
				t.Fatalf("line of %d bytes accepted", len(l))
			}
			body := strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
			if len(body) < 3 || body[:3] != fmt.Sprint(rep.Code) {
				t.Fatalf("line %q in a reply with code %d", l, rep.Code)
			}
			last := i == len(lines)-1
			switch {
			case last && len(body) > 3 && body[3] != ' ':
				t.Fatalf("last line %q", l)
			case !last && (len(body) < 4 || body[3] != '-'):
				t.Fatalf("line %q is not a continuation but more followed", l)
			}
			text := ""
			if len(body) > 4 {
				text = body[4:]
			}
			if text != rep.Lines[i] {
				t.Fatalf("line %q returned as %q", l, rep.Lines[i])
			}
		}

		// Round trip, where the CRLF form still fits the limits (a line
		// received with a bare LF grows by one byte).
		var b strings.Builder
		fits := true
		for i, l := range rep.Lines {
			sep := "-"
			if i == len(rep.Lines)-1 {
				sep = " "
			}
			line := fmt.Sprintf("%d%s%s\r\n", rep.Code, sep, l)
			fits = fits && len(line) <= wire.MaxLineLength
			b.WriteString(line)
		}
		if !fits || b.Len() > wire.MaxReplyBytes {
			return
		}
		r2 := bufio.NewReaderSize(strings.NewReader(b.String()), wire.ReaderSize)
		rep2, err := wire.ReadReply(r2)
		if err != nil || !reflect.DeepEqual(rep, rep2) || r2.Buffered() != 0 {
			t.Fatalf("%q parsed as %+v; serialised as %q it parses as %+v, %v", data[:consumed], rep, b.String(), rep2, err)
		}
	})
}

// FuzzParseEHLO checks ParseEHLO against the shape RFC 5321 section
// 4.1.1.1 gives a reply to EHLO: a first line naming the server, then one
// line per extension, a keyword and its parameters separated by spaces.
// Reading each line after the first that way (surrounding white space
// trimmed, the keyword up to the first space):
//
//   - every key is non-empty, upper-case and has no spaces;
//   - every keyword is a key, upper-cased; every key is some keyword;
//   - a key's value holds the parameters of every line with that keyword,
//     in order (servers that send AUTH twice), and nothing else;
//   - the first line adds no capability, whatever it says.
func FuzzParseEHLO(f *testing.F) {
	for _, seed := range []string{
		"250-mx.example.com Hello\r\n250-auth plain\r\n250-Size 1000\r\n250 8bitmime\r\n",
		"250-mx.example.com\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=LOGIN\r\n250-auth CRAM-MD5\r\n250 AUTH\r\n",
		"250-STARTTLS\r\n250 PIPELINING\r\n",
		"250-SIZE 5\r\n250 SIZE 10\r\n",
		"250-mx\r\n250-  x-Ext   a\tb  c \r\n250 x-ext d\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := strings.Split(string(data), "\n")
		if rep, err := wire.ReadReply(bufio.NewReaderSize(bytes.NewReader(data), wire.ReaderSize)); err == nil {
			lines = rep.Lines
		}
		ext := wire.ParseEHLO(lines)

		split := func(l string) (keyword, params string) {
			keyword, params, _ = strings.Cut(strings.TrimSpace(l), " ")
			return keyword, params
		}
		var later []string // the lines after the first
		if len(lines) > 1 {
			later = lines[1:]
		}
		for k, v := range ext {
			if k == "" || k != strings.ToUpper(k) || strings.Contains(k, " ") {
				t.Fatalf("%q: keyword %q", lines, k)
			}
			if v != strings.TrimSpace(v) {
				t.Fatalf("%q: %s parameters %q not trimmed", lines, k, v)
			}
			var params []string
			found := false
			for _, l := range later {
				if kw, p := split(l); strings.ToUpper(kw) == k {
					found = true
					params = append(params, strings.Fields(p)...)
				}
			}
			if !found {
				t.Fatalf("%q: keyword %q is on no line after the first", lines, k)
			}
			if got := strings.Fields(v); !slices.Equal(got, params) {
				t.Fatalf("%q: %s parameters %q; want the words %q", lines, k, v, params)
			}
		}
		for _, l := range later {
			if kw, _ := split(l); kw != "" {
				if _, ok := ext[strings.ToUpper(kw)]; !ok {
					t.Fatalf("%q: line %q gave no capability", lines, l)
				}
			}
		}
		if len(lines) > 0 {
			greeting, _ := split(lines[0])
			greeting = strings.ToUpper(greeting)
			onLater := slices.ContainsFunc(later, func(l string) bool {
				kw, _ := split(l)
				return strings.ToUpper(kw) == greeting
			})
			if _, ok := ext[greeting]; ok && !onLater {
				t.Fatalf("%q: the first line became capability %q", lines, greeting)
			}
			other := append([]string{"STARTTLS AUTH PLAIN"}, later...)
			if !reflect.DeepEqual(wire.ParseEHLO(other), ext) {
				t.Fatalf("%q: the first line changed the capabilities", lines)
			}
		}
	})
}

// FuzzDotWriter: whatever the message and however it is split into
// writes, the wire form has CRLF line endings only, no line that ends the
// data early, a single end-of-data marker at the end, and un-stuffing it
// gives back exactly the CRLF-normalised message.
func FuzzDotWriter(f *testing.F) {
	f.Fuzz(func(t *testing.T, msg, cuts []byte) {
		var out bytes.Buffer
		d := wire.NewDotWriter(&out)
		rest := msg
		for _, c := range cuts {
			n := min(int(c)%64, len(rest)) // zero-length writes included
			if k, err := d.Write(rest[:n]); k != n || err != nil {
				t.Fatalf("Write(%d bytes) = %d, %v", n, k, err)
			}
			rest = rest[n:]
		}
		if k, err := d.Write(rest); k != len(rest) || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", len(rest), k, err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if problem := checkWireData(msg, out.Bytes()); problem != "" {
			t.Fatalf("message %q (cuts %v) went on the wire as %q: %s", msg, cuts, out.Bytes(), problem)
		}
	})
}

// checkWireData checks that wire is the DATA content for msg, as any
// server reads it, strict or lenient about line endings; it returns what
// is wrong, or "".
func checkWireData(msg, wire []byte) string {
	if !bytes.HasSuffix(wire, []byte(".\r\n")) {
		return "no end-of-data marker"
	}
	for i, b := range wire {
		if b == '\r' && (i+1 == len(wire) || wire[i+1] != '\n') {
			return fmt.Sprintf("bare CR at %d", i)
		}
		if b == '\n' && (i == 0 || wire[i-1] != '\r') {
			return fmt.Sprintf("bare LF at %d", i)
		}
	}
	if end := lenientEnd(wire); end != len(wire) {
		return fmt.Sprintf("a lenient server sees the end of data at byte %d of %d", end, len(wire))
	}
	body := wire[:len(wire)-3]
	if len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n")) {
		return "the last line does not end with CRLF"
	}
	var got []byte
	for _, l := range bytes.SplitAfter(body, []byte("\r\n")) {
		if len(l) == 0 {
			continue
		}
		if l[0] == '.' {
			if len(l) < 2 || l[1] != '.' {
				return fmt.Sprintf("line %q not dot-stuffed", l)
			}
			l = l[1:]
		}
		got = append(got, l...)
	}
	if want := crlfNormalise(msg); !bytes.Equal(got, want) {
		return fmt.Sprintf("un-stuffed %q; want %q", got, want)
	}
	return ""
}

// lenientEnd returns the offset just past the first end-of-data marker a
// server finds that takes CR, LF or CRLF as a line ending on either side
// of the dot (the readings SMTP smuggling exploits, CVE-2023-51764), or -1.
func lenientEnd(wire []byte) int {
	isEOL := func(b byte) bool { return b == '\r' || b == '\n' }
	for i, b := range wire {
		if b != '.' || (i > 0 && !isEOL(wire[i-1])) {
			continue
		}
		if i+1 < len(wire) && isEOL(wire[i+1]) {
			if wire[i+1] == '\r' && i+2 < len(wire) && wire[i+2] == '\n' {
				return i + 3
			}
			return i + 2
		}
	}
	return -1
}

// crlfNormalise is the reference for what a message means on the wire:
// CRLF, a bare CR and a bare LF each end a line, written as CRLF, and a
// last line without an ending gets one. It is written independently of
// wire.DotWriter.
func crlfNormalise(msg []byte) []byte {
	var out []byte
	for i := 0; i < len(msg); i++ {
		switch msg[i] {
		case '\r':
			if i+1 < len(msg) && msg[i+1] == '\n' {
				i++
			}
			out = append(out, '\r', '\n')
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, msg[i])
		}
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}

// FuzzCheckAddress: an address CheckAddress accepts has no line break,
// NUL, control character, angle bracket or space, and placed in a MAIL or
// RCPT command it gives one command line whose path is exactly the
// address, with nothing after it; the same holds for hello names in EHLO.
func FuzzCheckAddress(f *testing.F) {
	f.Fuzz(func(t *testing.T, addr string) {
		if wire.CheckAddress(addr) == nil {
			if !utf8.ValidString(addr) {
				t.Fatalf("%q accepted: not UTF-8", addr)
			}
			for _, r := range addr {
				if unicode.IsControl(r) || r == '<' || r == '>' || r == ' ' {
					t.Fatalf("%q accepted: contains %U", addr, r)
				}
			}
			for _, verb := range []string{"MAIL FROM:", "RCPT TO:"} {
				line := verb + "<" + addr + ">"
				if strings.ContainsAny(line, "\r\n\x00") {
					t.Fatalf("%q accepted: %q is not one line", addr, line)
				}
				path, rest, ok := strings.Cut(strings.TrimPrefix(line, verb+"<"), ">")
				if !ok || rest != "" || path != addr || strings.Count(line, " ") != strings.Count(verb, " ") {
					t.Fatalf("%q accepted: %q reads as path %q and parameters %q", addr, line, path, rest)
				}
			}
		}
		if wire.CheckHelloName(addr) == nil {
			line := "EHLO " + addr
			if addr == "" || strings.ContainsAny(line, "\r\n\x00") || strings.Count(line, " ") != 1 {
				t.Fatalf("hello name %q accepted: %q", addr, line)
			}
		}
	})
}

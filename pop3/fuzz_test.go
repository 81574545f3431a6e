package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzResponse feeds arbitrary server bytes to the status-line reader, the
// listing reader and the STAT/LIST/UIDL parsers: none may panic, and none
// may call anything a success that is not one.
func FuzzResponse(f *testing.F) {
	for _, s := range []string{
		"+OK 2 320\r\n", "+OK\r\n1 120\r\n2 200\r\n.\r\n", "-ERR [IN-USE] locked\r\n",
		"+ dGVzdA==\r\n", "\r\n", "+OK\r\n1 abc\r\n..x\r\n.\n", "-ERR [SYS/TEMP/X] y\r\n",
		"+OK 1 " + strings.Repeat("9", 30) + "\r\n", "+OKAY\r\n", "+OK\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Client{br: bufio.NewReaderSize(bytes.NewReader(data), MaxLineLength)}
		text, cont, err := c.status("X", true)
		first, _, _ := bytes.Cut(data, []byte("\n"))
		var e *Error
		switch {
		case err == nil && !cont && !bytes.HasPrefix(first, []byte("+OK")):
			t.Fatalf("success without +OK: %q", first)
		case err == nil && cont && !bytes.HasPrefix(first, []byte("+")):
			t.Fatalf("continuation without +: %q", first)
		case errors.As(err, &e) && !bytes.HasPrefix(first, []byte("-ERR")):
			t.Fatalf("-ERR error without -ERR: %q", first)
		}
		if err == nil {
			parseCounts(text)
			parseUID(text)
		}
		lines, err := c.listing("LIST", 0)
		if err != nil {
			return
		}
		for _, l := range lines {
			if n, size, ok := parseCounts(l); ok && (n < 0 || size < 0) {
				t.Fatalf("negative numbers from %q", l)
			}
			if m, ok := parseUID(l); ok && (m.Number < 1 || m.UID == "" || len(m.UID) > 70) {
				t.Fatalf("bad UID line accepted: %q", l)
			}
		}
	})
}

// stuff dot-stuffs content as a server does and appends the terminator.
func stuff(content []byte) []byte {
	var b bytes.Buffer
	for len(content) > 0 {
		line := content
		if i := bytes.IndexByte(content, '\n'); i >= 0 {
			line = content[:i+1]
		}
		if line[0] == '.' {
			b.WriteByte('.')
		}
		b.Write(line)
		content = content[len(line):]
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// FuzzDotReader: any byte stream read as a multi-line response ends in
// io.EOF only after a terminating line, never yields more than its limit,
// and content stuffed as a server does (CRLF-terminated) comes back
// byte-exact.
func FuzzDotReader(f *testing.F) {
	for _, s := range []string{".\r\n", "..\r\n.\r\n", "a\r\n.\r\n", ".x\r\n.\r\n", "abc", "a\n.\n", "\r\n.\r\n"} {
		f.Add([]byte(s), uint16(100))
	}
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		d := &dotReader{r: bufio.NewReaderSize(bytes.NewReader(data), 64), maxLine: 64, limit: int64(limit), what: "fuzz"}
		got, err := io.ReadAll(d)
		if int64(len(got)) > int64(limit) {
			t.Fatalf("read %d bytes, limit %d", len(got), limit)
		}
		if err == nil && !bytes.Contains(append([]byte("\n"), data...), []byte("\n.\r\n")) {
			t.Fatalf("success without a terminating line: %q", data)
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("error %v is not ErrProtocol", err)
		}

		// The round trip: CRLF-terminated content, stuffed, comes back
		// exactly.
		content := data
		if len(content) > 0 && !bytes.HasSuffix(content, []byte("\r\n")) {
			content = append(append([]byte(nil), content...), '\r', '\n')
		}
		d = &dotReader{r: bufio.NewReaderSize(bytes.NewReader(stuff(content)), 1<<16), maxLine: 1 << 16, limit: 1 << 20, what: "fuzz"}
		back, err := io.ReadAll(d)
		if err != nil || !bytes.Equal(back, content) {
			t.Fatalf("round trip of %q: got %q, %v", content, back, err)
		}
	})
}

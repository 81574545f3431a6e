package wire

import (
	"fmt"
	"unicode/utf8"
)

// CheckAddress reports whether addr can be placed inside "<...>" in a MAIL
// or RCPT command or after VRFY. It rejects line breaks and NUL, which would
// end the command early and let the rest run as a new command (command
// injection), other control characters (C0, DEL and C1) and the Unicode
// line and paragraph separators, and "<", ">" and spaces, which would let
// the text close the path and add ESMTP parameters of its own.
func CheckAddress(addr string) error {
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; {
		case c == '\r':
			return fmt.Errorf("contains a carriage return (CR)")
		case c == '\n':
			return fmt.Errorf("contains a line feed (LF)")
		case c == 0:
			return fmt.Errorf("contains a NUL byte")
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("contains control character %#02x", c)
		case c == '<' || c == '>':
			return fmt.Errorf("contains %q", c)
		case c == ' ':
			return fmt.Errorf("contains a space")
		}
	}
	if !utf8.ValidString(addr) {
		return fmt.Errorf("is not valid UTF-8")
	}
	for _, r := range addr {
		switch {
		case r >= 0x80 && r <= 0x9f:
			// Why: C1 controls are valid UTF-8 but never part of an
			// address; NEL (U+0085) ends a line for some software and
			// CSI (U+009B) starts a terminal escape in a log.
			return fmt.Errorf("contains control character %U", r)
		case r == '\u2028' || r == '\u2029':
			return fmt.Errorf("contains Unicode line or paragraph separator %U", r)
		}
	}
	return nil
}

// CheckHelloName reports whether name can follow EHLO or HELO: non-empty,
// and free of anything that could end or extend the command.
func CheckHelloName(name string) error {
	if name == "" {
		return fmt.Errorf("is empty")
	}
	if err := CheckAddress(name); err != nil {
		return err
	}
	return nil
}

// IsASCII reports whether s is 7-bit.
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

package tlsmail

import (
	"fmt"
	"strings"
	"unicode"
)

// saslPrep prepares a user name or password for SCRAM as RFC 4013
// (SASLprep) asks, as far as the standard library allows:
//
//   - mapping (section 2.1): non-ASCII spaces become U+0020, and the
//     characters "commonly mapped to nothing" (RFC 3454 table B.1) are
//     removed;
//   - prohibited output (section 2.3): control characters, private use,
//     non-characters, surrogates, characters inappropriate for plain
//     text or canonical representation, display-changing and tagging
//     characters (RFC 3454 tables C.1.2 to C.9) are an error;
//   - bidirectional text (section 2.4, RFC 3454 section 6): a string with
//     right-to-left characters must not also hold left-to-right letters
//     and must start and end with a right-to-left character.
//
// It does not normalise to Unicode form KC (section 2.2): the standard
// library has no NFKC. A string whose characters NFKC would change
// (full-width or other compatibility forms, ligatures, decomposed accents)
// is used as given, so such a password must be stored on the server in
// the same form. The bidirectional classes are approximated by script
// (Hebrew, Arabic and the other right-to-left scripts), since the
// standard library does not expose the Unicode bidi property. ASCII input
// without control characters is returned unchanged.
func saslPrep(s string) (string, error) {
	ascii := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 || c < 0x20 || c == 0x7f {
			ascii = false
			break
		}
	}
	if ascii {
		return s, nil
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case mappedToNothing(r):
			continue
		case r != ' ' && unicode.Is(unicode.Zs, r):
			b.WriteByte(' ') // RFC 3454 C.1.2 mapped to SPACE
			continue
		}
		if prohibited(r) {
			return "", fmt.Errorf("contains %U, which SASLprep prohibits (RFC 4013 section 2.3)", r)
		}
		b.WriteRune(r)
	}
	out := b.String()
	if err := checkBidi(out); err != nil {
		return "", err
	}
	return out, nil
}

// mappedToNothing is RFC 3454 table B.1.
func mappedToNothing(r rune) bool {
	switch {
	case r == 0x00AD, r == 0x034F, r == 0x1806, r == 0x180B, r == 0x180C, r == 0x180D,
		r == 0x200B, r == 0x200C, r == 0x200D, r == 0x2060, r == 0xFEFF:
		return true
	case r >= 0xFE00 && r <= 0xFE0F:
		return true
	}
	return false
}

// prohibited is RFC 3454 tables C.2.1 to C.9 (C.1.2 spaces are mapped
// before this runs).
func prohibited(r rune) bool {
	switch {
	case r < 0x20 || r == 0x7f: // C.2.1
		return true
	case r >= 0x80 && r <= 0x9f, r == 0x06DD, r == 0x070F, r == 0x180E, // C.2.2
		r == 0x200C, r == 0x200D, r == 0x2028, r == 0x2029,
		r >= 0x2060 && r <= 0x2063, r >= 0x206A && r <= 0x206F, r == 0xFEFF,
		r >= 0xFFF9 && r <= 0xFFFC, r >= 0x1D173 && r <= 0x1D17A:
		return true
	case r >= 0xE000 && r <= 0xF8FF, r >= 0xF0000 && r <= 0xFFFFD, r >= 0x100000 && r <= 0x10FFFD: // C.3
		return true
	case r >= 0xFDD0 && r <= 0xFDEF, r&0xFFFE == 0xFFFE: // C.4
		return true
	case r >= 0xD800 && r <= 0xDFFF: // C.5
		return true
	case r >= 0xFFF9 && r <= 0xFFFD: // C.6
		return true
	case r >= 0x2FF0 && r <= 0x2FFB: // C.7
		return true
	case r == 0x0340, r == 0x0341, r == 0x200E, r == 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x206A && r <= 0x206F: // C.8
		return true
	case r == 0xE0001, r >= 0xE0020 && r <= 0xE007F: // C.9
		return true
	}
	return false
}

// rtlScripts approximates the characters of bidi class R and AL.
var rtlScripts = []*unicode.RangeTable{
	unicode.Hebrew, unicode.Arabic, unicode.Syriac, unicode.Thaana, unicode.Nko,
	unicode.Samaritan, unicode.Mandaic, unicode.Adlam, unicode.Hanifi_Rohingya,
}

func isRandAL(r rune) bool {
	return unicode.IsLetter(r) && unicode.In(r, rtlScripts...)
}

// checkBidi applies RFC 3454 section 6 with the approximation above.
func checkBidi(s string) error {
	var runes []rune
	hasRandAL, hasL := false, false
	for _, r := range s {
		runes = append(runes, r)
		switch {
		case isRandAL(r):
			hasRandAL = true
		case unicode.IsLetter(r):
			hasL = true
		}
	}
	if !hasRandAL {
		return nil
	}
	if hasL {
		return fmt.Errorf("mixes right-to-left and left-to-right letters, which SASLprep prohibits (RFC 3454 section 6)")
	}
	if !isRandAL(runes[0]) || !isRandAL(runes[len(runes)-1]) {
		return fmt.Errorf("has right-to-left text that does not start and end with a right-to-left character (RFC 3454 section 6)")
	}
	return nil
}

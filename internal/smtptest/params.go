package smtptest

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// sizeLimit returns the fixed maximum message size of a "SIZE n" line
// in exts (RFC 1870 section 4), or 0 when there is none: no SIZE line, no
// number, or 0, which RFC 1870 uses for "no fixed maximum".
func sizeLimit(exts []string) int64 {
	for _, e := range exts {
		f := strings.Fields(e)
		if len(f) >= 2 && strings.EqualFold(f[0], "SIZE") {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}

// advertised reports whether the EHLO reply of this session lists
// keyword (AUTH included).
func (s *Session) advertised(keyword string) bool {
	if strings.EqualFold(keyword, "AUTH") {
		return len(s.mechanisms()) > 0
	}
	for _, e := range s.srv.exts {
		if f := strings.Fields(e); len(f) > 0 && strings.EqualFold(f[0], keyword) {
			return true
		}
	}
	return false
}

// Replies to MAIL and RCPT parameters.
func unsupportedParam(p string) string { return "555 5.5.4 Unsupported option: " + p }
func badParam(keyword string) string   { return "501 5.5.4 Bad " + keyword + " parameter syntax" }

// mailState is what MAIL parameters declare about the message.
type mailState struct {
	body8    bool // BODY=8BITMIME
	smtputf8 bool // SMTPUTF8
}

// splitParam splits an esmtp-param into its keyword, in upper case, and
// its value.
func splitParam(p string) (keyword, value string, hasValue bool) {
	keyword, value, hasValue = strings.Cut(p, "=")
	return strings.ToUpper(keyword), value, hasValue
}

// isKeyword reports whether k is an esmtp-keyword,
// (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") (RFC 5321 section 4.1.2).
func isKeyword(k string) bool {
	if k == "" || k[0] == '-' {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !isAlnum(c) && c != '-' {
			return false
		}
	}
	return true
}

// mailParamExtension maps each MAIL parameter the server understands to
// the EHLO keyword that must be advertised for it.
var mailParamExtension = map[string]string{
	"SIZE":       "SIZE",
	"BODY":       "8BITMIME",
	"SMTPUTF8":   "SMTPUTF8",
	"RET":        "DSN",
	"ENVID":      "DSN",
	"REQUIRETLS": "REQUIRETLS",
	"AUTH":       "AUTH",
}

// mailParams checks the parameters of MAIL FROM. It returns the reply
// that refuses them, or "" if they are accepted.
func (s *Session) mailParams(params string) (st mailState, reply string) {
	seen := make(map[string]bool)
	for _, p := range strings.Fields(params) {
		k, v, hasV := splitParam(p)
		if !isKeyword(k) {
			return st, unsupportedParam(p)
		}
		ext := mailParamExtension[k]
		if ext == "" || !s.advertised(ext) {
			// RFC 5321 section 4.1.1.11: a parameter the server does not
			// implement, or of an extension it did not offer, is 555.
			return st, unsupportedParam(p)
		}
		if seen[k] {
			return st, "501 5.5.4 Duplicate " + k + " parameter"
		}
		seen[k] = true
		switch k {
		case "SIZE":
			// size-value = 1*20DIGIT (RFC 1870 section 6).
			if !hasV || v == "" || len(v) > 20 || strings.Trim(v, "0123456789") != "" {
				return st, badParam(k)
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if lim := s.srv.sizeLimit; lim > 0 && (err != nil || n > uint64(lim)) {
				return st, "552 5.3.4 Message size exceeds fixed maximum message size"
			}
		case "BODY":
			if !hasV || v == "" {
				return st, badParam(k)
			}
			switch strings.ToUpper(v) {
			case "7BIT":
			case "8BITMIME":
				st.body8 = true
			default:
				// BINARYMIME and the like need extensions this server
				// does not offer.
				return st, unsupportedParam(p)
			}
		case "SMTPUTF8":
			if hasV {
				return st, badParam(k)
			}
			st.smtputf8 = true
		case "RET":
			if u := strings.ToUpper(v); !hasV || u != "FULL" && u != "HDRS" {
				return st, badParam(k)
			}
		case "ENVID":
			if !hasV || !isXtext(v) {
				return st, badParam(k)
			}
		case "REQUIRETLS":
			if hasV {
				return st, badParam(k)
			}
			if !s.TLS() {
				// Why refuse even when advertised: REQUIRETLS asks that
				// the message only ever travel under TLS, and this hop
				// already did not (RFC 8689).
				return st, "530 5.7.10 REQUIRETLS needs a TLS session"
			}
		case "AUTH":
			// AUTH=<> or AUTH=xtext (RFC 4954 section 5).
			if !hasV || v != "<>" && !isXtext(v) {
				return st, badParam(k)
			}
		}
	}
	return st, ""
}

// checkRcptParams checks the parameters of RCPT TO. It returns the reply
// that refuses them, or "" if they are accepted.
func (s *Session) checkRcptParams(params string) string {
	seen := make(map[string]bool)
	for _, p := range strings.Fields(params) {
		k, v, hasV := splitParam(p)
		if !isKeyword(k) || (k != "NOTIFY" && k != "ORCPT") || !s.advertised("DSN") {
			return unsupportedParam(p)
		}
		if seen[k] {
			return "501 5.5.4 Duplicate " + k + " parameter"
		}
		seen[k] = true
		switch k {
		case "NOTIFY":
			if !hasV || !validNotify(v) {
				return badParam(k)
			}
		case "ORCPT":
			if !hasV || !s.validORCPT(v) {
				return badParam(k)
			}
		}
	}
	return ""
}

// validNotify checks a NOTIFY value (RFC 3461 section 4.1): "NEVER"
// alone, or a list of distinct SUCCESS, FAILURE and DELAY.
func validNotify(v string) bool {
	if strings.EqualFold(v, "NEVER") {
		return true
	}
	seen := make(map[string]bool)
	for _, c := range strings.Split(strings.ToUpper(v), ",") {
		if c != "SUCCESS" && c != "FAILURE" && c != "DELAY" || seen[c] {
			return false
		}
		seen[c] = true
	}
	return true
}

// validORCPT checks an ORCPT value (RFC 3461 section 4.2): addr-type ";"
// xtext, addr-type an atom. With SMTPUTF8 on MAIL, a "utf-8" address may
// also hold raw UTF-8 (RFC 6533 utf-8-addr-unitext).
func (s *Session) validORCPT(v string) bool {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || !isAtom(typ) || addr == "" {
		return false
	}
	if strings.EqualFold(typ, "utf-8") && s.smtputf8 && utf8.ValidString(addr) {
		addr = strings.Map(func(r rune) rune {
			if r >= 0x80 {
				return 'x'
			}
			return r
		}, addr)
	}
	return isXtext(addr)
}

// isAtom reports whether s is an RFC 5322 atom: 1*atext.
func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && !strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", rune(c)) {
			return false
		}
	}
	return true
}

// isXtext reports whether s is non-empty RFC 3461 section 4 xtext: the
// characters "!" to "~" except "+" and "=", and "+" followed by two
// upper-case hex digits.
func isXtext(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			if i+2 >= len(s) || !isUpperHex(s[i+1]) || !isUpperHex(s[i+2]) {
				return false
			}
			i += 2
		case c < '!' || c > '~' || c == '=':
			return false
		}
	}
	return true
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

// isASCII reports whether s is all 7-bit.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

package tlsmail

import (
	"bytes"
	"strings"
)

// secretRun is the shortest run of a secret's characters that is withheld
// from server text. Why a run and not the whole secret: a server that
// quotes back the first part of an AUTH line or of a password would
// otherwise put that part into an error, and from there into a log. Six
// bytes hide any fragment long enough to help a guesser while leaving
// ordinary words in replies readable.
const secretRun = 6

// redactedText replaces each withheld part of server text.
const redactedText = "[withheld]"

// A redactor finds credentials, whole or in part, in server text. The zero
// value withholds nothing.
type redactor struct {
	runs  map[string]struct{} // every secretRun-byte run of every secret form
	short []string            // secret forms shorter than secretRun, matched whole
}

// newSecrets returns a func giving access to a new redactor; see
// Client.secrets.
func newSecrets() func() *redactor {
	r := &redactor{}
	return func() *redactor { return r }
}

// add records secret forms (a password, an encoded AUTH line, ...).
func (r *redactor) add(secrets ...string) {
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if len(s) < secretRun {
			r.short = append(r.short, s)
			continue
		}
		if r.runs == nil {
			r.runs = make(map[string]struct{})
		}
		for i := 0; i+secretRun <= len(s); i++ {
			r.runs[s[i:i+secretRun]] = struct{}{}
		}
	}
}

// empty reports whether nothing has been recorded.
func (r *redactor) empty() bool {
	return r == nil || (len(r.runs) == 0 && len(r.short) == 0)
}

// redact returns text with every stretch that repeats a secret run (or a
// whole short secret) replaced by "[withheld]", and whether it changed
// anything.
func (r *redactor) redact(text string) (string, bool) {
	if r.empty() || text == "" {
		return text, false
	}
	var hide []bool
	mark := func(i, n int) {
		if hide == nil {
			hide = make([]bool, len(text))
		}
		for j := i; j < i+n; j++ {
			hide[j] = true
		}
	}
	for i := 0; i+secretRun <= len(text); i++ {
		if _, ok := r.runs[text[i:i+secretRun]]; ok {
			mark(i, secretRun)
		}
	}
	for _, s := range r.short {
		for off := 0; ; {
			j := strings.Index(text[off:], s)
			if j < 0 {
				break
			}
			mark(off+j, len(s))
			off += j + 1
		}
	}
	if hide == nil {
		return text, false
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		if !hide[i] {
			b.WriteByte(text[i])
			i++
			continue
		}
		b.WriteString(redactedText)
		for i < len(text) && hide[i] {
			i++
		}
	}
	return b.String(), true
}

// foreignSecrets returns the parts of an AUTH response from a mechanism
// of another package (a net/smtp Auth) to treat as secret. Such a
// mechanism does not say what its secret is, so the response's structure
// decides. Why not every field: a user name is not secret, and treating
// it as one would hide ordinary replies that mention the user.
func foreignSecrets(mech string, challenge, resp []byte) []string {
	switch {
	case bytes.IndexByte(resp, 0) >= 0:
		// PLAIN (RFC 4616): authzid NUL authcid NUL passwd.
		f := bytes.Split(resp, []byte{0})
		return []string{string(f[len(f)-1])}
	case bytes.IndexByte(resp, 1) >= 0:
		// XOAUTH2 and OAUTHBEARER (RFC 7628): ^A-separated key=value
		// fields, the token in "auth=Bearer ...".
		var out []string
		for _, f := range bytes.Split(resp, []byte{1}) {
			if v, ok := bytes.CutPrefix(f, []byte("auth=")); ok {
				out = append(out, string(v))
			}
		}
		return out
	case strings.EqualFold(mech, "LOGIN") && bytes.Contains(bytes.ToLower(challenge), []byte("user")):
		// The answer to LOGIN's "Username:" prompt.
		return nil
	}
	return []string{string(resp)}
}

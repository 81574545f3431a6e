package tlsmail

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// A secret holds a password or token inside an Auth, masked: the value
// is comparable with reflect.DeepEqual yet shows nothing of the secret to
// fmt, encoding/json or a reflection-based dumper.
//
// Why comparable: net/smtp's Auth values are plain structs, so programs
// and test suites written for it (gomail's, go-mail's) compare two Auths
// made from the same arguments with reflect.DeepEqual and expect true. A
// func, which fmt cannot print, is never DeepEqual to another.
//
// Why masked and not plain text: reflect.DeepEqual reads unexported
// fields, and so do fmt (for an Auth in an unexported struct field, where
// it cannot call Format), go-spew and go-cmp's diff, which print what
// they read. The stored form must therefore be the same for the same
// secret yet reveal nothing of it. It is a deterministic encryption in
// the manner of SIV (RFC 5297): iv is an HMAC-SHA-256 of the secret, and
// masked is the secret encrypted with AES-256-CTR under that iv.
//
// Why a key drawn at random once per process (secretKeys): the mask is
// the same for equal secrets within the process, which is all that
// DeepEqual needs, while a dump that reaches a log or a bug report cannot
// be unmasked without the memory of the process that wrote it, unlike a
// key written in this source. Why the iv depends on the secret: with a
// fixed iv, two secrets of the same length would share a keystream, and
// the XOR of their masked forms would be the XOR of the secrets. This is
// not a defence against code that runs inside the process, which can
// read the key as easily as the password.
type secret struct {
	iv     [aes.BlockSize]byte // HMAC-SHA-256 of the secret, truncated
	masked []byte              // the secret, AES-256-CTR encrypted under iv
}

// secretKeys are the AES-256 key (first 32 bytes) and the HMAC key (last
// 32 bytes) of every secret in this process; see secret.
var secretKeys = func() (k [64]byte) {
	rand.Read(k[:]) // never fails (crypto/rand.Read, Go 1.24 and later)
	return k
}()

// hide returns s masked.
func hide(s string) secret {
	var h secret
	m := hmac.New(sha256.New, secretKeys[32:])
	m.Write([]byte(s))
	copy(h.iv[:], m.Sum(nil))
	h.masked = secretCTR(h.iv, []byte(s))
	return h
}

// reveal returns the secret that hide masked; the zero secret reveals "".
func (h secret) reveal() string {
	return string(secretCTR(h.iv, h.masked))
}

// secretCTR encrypts or decrypts b under iv with the process's key.
func secretCTR(iv [aes.BlockSize]byte, b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	block, err := aes.NewCipher(secretKeys[:32])
	if err != nil {
		panic("tlsmail: AES-256 with a 32-byte key: " + err.Error()) // cannot happen
	}
	out := make([]byte, len(b))
	cipher.NewCTR(block, iv[:]).XORKeyStream(out, b)
	return out
}

// Format prints "[secret]" for every verb. fmt calls it only for a secret
// passed to it directly, not for one inside an Auth's unexported field,
// which fmt prints masked.
func (h secret) Format(f fmt.State, verb rune) { formatSafe(f, "[secret]") }

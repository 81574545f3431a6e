package tlsmail

import (
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

func TestRedactor(t *testing.T) {
	var r redactor
	r.add("correct-horse-battery", "abc", "")
	for _, tc := range []struct{ in, want string }{
		{"nothing here", "nothing here"},
		{"bad password correct-horse-battery!", "bad password [withheld]!"},
		{"starts correct-h...", "starts [withheld]..."},    // 9 characters: withheld
		{"ends ...-battery", "ends ...[withheld]"},         // the end of the secret
		{"middle horse-b here", "middle [withheld] here"},  // 7 characters from the middle
		{"short corre ok", "short corre ok"},               // 5 characters: not a run
		{"two corr and -horse", "two corr and [withheld]"}, // only the 6-run
		{"xabcx abc", "x[withheld]x [withheld]"},           // a short secret, whole
		{"ab", "ab"},
	} {
		got, changed := r.redact(tc.in)
		if got != tc.want || changed != (tc.in != tc.want) {
			t.Errorf("redact(%q) = %q, %v; want %q", tc.in, got, changed, tc.want)
		}
	}
	var zero redactor
	if got, changed := zero.redact("correct-horse"); got != "correct-horse" || changed {
		t.Errorf("zero redactor changed %q", got)
	}
}

func TestForeignSecrets(t *testing.T) {
	for _, tc := range []struct {
		mech      string
		challenge string
		resp      string
		want      []string
	}{
		{"PLAIN", "", "\x00jdoe@example.com\x00s3cret-pass", []string{"s3cret-pass"}},
		{"PLAIN", "", "admin\x00jdoe\x00s3cret-pass", []string{"s3cret-pass"}},
		{"XOAUTH2", "", "user=jdoe@example.com\x01auth=Bearer ya29.token\x01\x01", []string{"Bearer ya29.token"}},
		{"LOGIN", "Username:", "jdoe@example.com", nil},
		{"LOGIN", "Password:", "s3cret-pass", []string{"s3cret-pass"}},
		{"X-CUSTOM", "", "opaque", []string{"opaque"}},
	} {
		got := foreignSecrets(tc.mech, []byte(tc.challenge), []byte(tc.resp))
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("foreignSecrets(%s, %q, %q) = %q; want %q", tc.mech, tc.challenge, tc.resp, got, tc.want)
		}
	}
}

// TestUserNameNotWithheld checks that, after authenticating with a net/smtp
// Auth, replies that mention the user name stay readable: only the
// password is secret.
func TestUserNameNotWithheld(t *testing.T) {
	const user, pass = "jdoe@example.com", "s3cret-password"
	srv := smtptest.NewServer(t, &smtptest.Options{
		Users: map[string]string{user: pass},
		Handler: func(s *smtptest.Session, line string) bool {
			if strings.HasPrefix(line, "MAIL") {
				s.Reply("553 5.7.1 " + user + " may not send as boss@example.com")
				return true
			}
			return false
		},
	})
	c := netsmtpClient(t, srv)
	if err := c.Auth(smtp.PlainAuth("", user, pass, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	err := c.Mail("boss@example.com")
	tp, ok := err.(*textproto.Error)
	if !ok {
		t.Fatalf("Mail = %v", err)
	}
	if want := "5.7.1 " + user + " may not send as boss@example.com"; tp.Msg != want {
		t.Errorf("Msg = %q; want %q", tp.Msg, want)
	}
}

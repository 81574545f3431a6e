package tlsmail

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/tlsmail/tlsmail/internal/smtptest"
)

// fmtUser and fmtPass are the credentials of the fmt tests; fmtPass is
// unlike anything else a test prints, so finding it means a leak.
const fmtUser, fmtPass = "fmt-user", "Ob5cur4-Pa55w0rd!"

// fmtSecrets lists the forms in which fmtPass could show in fmt's output:
// as is, quoted, as hex from %x and %X (with and without spaces), as the
// decimal bytes of %v on a []byte, and base64-encoded, alone or inside the
// PLAIN and LOGIN responses.
func fmtSecrets() []string {
	p := []byte(fmtPass)
	var dec []string
	for _, b := range p {
		dec = append(dec, strconv.Itoa(int(b)))
	}
	forms := []string{
		fmtPass,
		strconv.Quote(fmtPass),
		strconv.Quote(fmtPass)[1 : len(fmtPass)+1],
		hex.EncodeToString(p),
		strings.ToUpper(hex.EncodeToString(p)),
		fmt.Sprintf("% x", p),
		fmt.Sprintf("% X", p),
		strings.Join(dec, " "),
	}
	for _, s := range []string{fmtPass, "\x00" + fmtUser + "\x00" + fmtPass} {
		forms = append(forms,
			base64.StdEncoding.EncodeToString([]byte(s)),
			base64.RawStdEncoding.EncodeToString([]byte(s)),
			base64.URLEncoding.EncodeToString([]byte(s)),
			base64.RawURLEncoding.EncodeToString([]byte(s)))
	}
	return forms
}

// fmtVerbs are the directives tried on each value, with how the
// description is expected to come out: "" for the description as is,
// otherwise a directive that formats the description with %s. %T and %p
// are fmt's own (the type and the address) and are only checked for
// secrets.
var fmtVerbs = []struct{ verb, want string }{
	{"%v", ""}, {"%+v", ""}, {"%#v", ""}, {"%s", ""}, {"%q", ""},
	{"%x", ""}, {"%X", ""}, {"%d", ""}, {"%o", ""}, {"%O", ""}, {"%b", ""},
	{"%c", ""}, {"%U", ""}, {"%e", ""}, {"%E", ""}, {"%f", ""}, {"%g", ""},
	{"%t", ""}, {"%p", "-"}, {"%T", "-"},
	{"%10.3s", "%10s"}, {"%.1v", ""}, {"%-x", ""}, {"%+q", ""}, {"%#q", ""}, {"% x", ""},
	{"%#X", ""}, {"%08d", "%8s"}, {"%+d", ""}, {"%x!", "%s!"},
	{"%-70v", "%-70s"}, {"%70v", "%70s"}, {"%70x", "%70s"}, {"%-70.2q", "%-70s"}, {"%[1]*[2]v", "%70s"},
}

// checkFormat formats x every way in fmtVerbs and with the Print family
// and fails if fmtPass shows in any form. If desc is not empty, every
// verb but %T and %p must print exactly desc, padded where the directive
// has a width.
func checkFormat(t *testing.T, what string, x any, desc string) {
	t.Helper()
	secrets := fmtSecrets()
	check := func(how, got string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(got, s) {
				t.Errorf("%s with %s shows the password as %q: %s", what, how, s, got)
				return
			}
		}
	}
	for _, v := range fmtVerbs {
		got := sprintf(v.verb, x)
		check(v.verb, got)
		if desc == "" || v.want == "-" {
			continue
		}
		want := desc
		if v.want != "" {
			want = fmt.Sprintf(v.want, desc)
		}
		if got != want {
			t.Errorf("%s with %s = %q; want %q", what, v.verb, got, want)
		}
	}
	for how, got := range map[string]string{
		"Sprint":            fmt.Sprint(x),
		"Sprintln":          strings.TrimSuffix(fmt.Sprintln(x), "\n"),
		"Sprint of a slice": strings.TrimSuffix(strings.TrimPrefix(fmt.Sprint([]any{x}), "["), "]"),
		"%v of a map":       strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%v", map[string]any{"k": x}), "map[k:"), "]"),
	} {
		check(how, got)
		if desc != "" && got != desc {
			t.Errorf("%s with %s = %q; want %q", what, how, got, desc)
		}
	}
	// A struct holding x, in an exported field (which fmt formats with
	// x's own methods) and in an unexported one (which it cannot).
	s := struct {
		Auth   any
		hidden any
	}{x, x}
	for _, v := range fmtVerbs {
		check(v.verb+" of a struct holding it", sprintf(v.verb, s))
	}
	if got, want := fmt.Sprintf("%+v", s), "{Auth:"+desc+" hidden:"; desc != "" && !strings.HasPrefix(got, want) {
		t.Errorf("%s in a struct with %%+v = %q; want it to start %q", what, got, want)
	}
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("m", "x", x)
	slog.New(slog.NewJSONHandler(&b, nil)).Info("m", "x", x)
	check("slog", b.String())
}

// sprintf formats x with verb, giving 70 for a width taken from the
// arguments ("%[1]*[2]v").
func sprintf(verb string, x any) string {
	if strings.Contains(verb, "*") {
		return fmt.Sprintf(verb, 70, x)
	}
	return fmt.Sprintf(verb, x)
}

// TestFormatAuth: every Auth this package makes prints as its constructor
// and username, never its password, whatever the verb, as a pointer (what
// the constructors return) and as a value.
func TestFormatAuth(t *testing.T) {
	for _, tc := range []struct {
		a    Auth
		desc string
	}{
		{PlainAuth("", fmtUser, fmtPass, "mx.example.com"), `tlsmail.PlainAuth("fmt-user")`},
		{PlainAuth("admin", fmtUser, fmtPass, "mx.example.com"), `tlsmail.PlainAuth("fmt-user")`},
		{LoginAuth(fmtUser, fmtPass, "mx.example.com"), `tlsmail.LoginAuth("fmt-user")`},
		{CRAMMD5Auth(fmtUser, fmtPass), `tlsmail.CRAMMD5Auth("fmt-user")`},
		{ScramSHA256Auth(fmtUser, fmtPass), `tlsmail.ScramSHA256Auth("fmt-user")`},
		{ScramSHA1Auth(fmtUser, fmtPass), `tlsmail.ScramSHA1Auth("fmt-user")`},
		{ScramSHA256PlusAuth(fmtUser, fmtPass), `tlsmail.ScramSHA256PlusAuth("fmt-user")`},
		{PasswordAuth(fmtUser, fmtPass, "mx.example.com"), `tlsmail.PasswordAuth("fmt-user")`},
		{XOAuth2Auth(fmtUser, StaticToken(fmtPass), "mx.example.com"), `tlsmail.XOAuth2Auth("fmt-user")`},
		{OAuthBearerAuth(fmtUser, StaticToken(fmtPass), "mx.example.com"), `tlsmail.OAuthBearerAuth("fmt-user")`},
		{OAuth2Auth(fmtUser, StaticToken(fmtPass), "mx.example.com"), `tlsmail.OAuth2Auth("fmt-user")`},
	} {
		// After Start, an OAuth Auth holds the token it sent.
		tc.a.Start(&ServerInfo{Name: "mx.example.com", TLS: true, Auth: []string{"PLAIN", "XOAUTH2"}})
		checkFormat(t, tc.desc, tc.a, tc.desc)
		value := reflect.ValueOf(tc.a).Elem().Interface()
		checkFormat(t, tc.desc+" value", value, tc.desc)
		for _, x := range []any{tc.a, value} {
			if s, g := x.(fmt.Stringer).String(), x.(fmt.GoStringer).GoString(); s != tc.desc || g != tc.desc {
				t.Errorf("String() = %q, GoString() = %q; want %q", s, g, tc.desc)
			}
		}
	}
}

// TestFormatClient: a Client that has sent credentials prints as its
// server name and TLS mode, whatever the verb, and shows none of what it
// keeps to recognise the credentials in replies.
func TestFormatClient(t *testing.T) {
	users := map[string]string{fmtUser: fmtPass}
	for _, tc := range []struct {
		name string
		auth Auth
		opts *smtptest.Options
		mode Mode
		desc string
	}{
		{"PLAIN", PlainAuth("", fmtUser, fmtPass, "127.0.0.1"), &smtptest.Options{Users: users}, ImplicitTLS,
			`tlsmail.Client(server "127.0.0.1", ImplicitTLS)`},
		{"LOGIN", LoginAuth(fmtUser, fmtPass, "127.0.0.1"), &smtptest.Options{Users: users}, STARTTLS,
			`tlsmail.Client(server "127.0.0.1", STARTTLS)`},
		{"CRAM-MD5", CRAMMD5Auth(fmtUser, fmtPass), &smtptest.Options{Users: users}, ImplicitTLS,
			`tlsmail.Client(server "127.0.0.1", ImplicitTLS)`},
		{"SCRAM-SHA-256", ScramSHA256Auth(fmtUser, fmtPass), scramServer(fmtUser, fmtPass, nil, nil), ImplicitTLS,
			`tlsmail.Client(server "127.0.0.1", ImplicitTLS)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tc.opts)
			addr := srv.ImplicitAddr
			if tc.mode == STARTTLS {
				addr = srv.StartTLSAddr
			}
			c, err := testDialer(srv, tc.mode).Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Auth(tc.auth); err != nil {
				t.Fatal(err)
			}
			checkFormat(t, "Client", c, tc.desc)
			// A copy of the Client, which fmt prints field by field.
			checkFormat(t, "Client value", reflect.ValueOf(c).Elem().Interface(), "")
		})
	}

	// A Client on a connection that is not TLS says so.
	srv := smtptest.NewServer(t, &smtptest.Options{Users: users, AuthBeforeTLS: true})
	conn, err := net.Dial("tcp", srv.StartTLSAddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(conn, "mx.example.com")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(PlainAuth("", fmtUser, fmtPass, "mx.example.com")); err == nil {
		t.Fatal("Auth on a plaintext connection succeeded")
	}
	checkFormat(t, "plaintext Client", c, `tlsmail.Client(server "mx.example.com", plaintext)`)
	checkFormat(t, "nil Client", (*Client)(nil), "<nil>")
}

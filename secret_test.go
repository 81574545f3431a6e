package tlsmail

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/smtp"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// walkPass is the secret of the reflection tests: long, and unlike any
// other text of the package, so that any six characters of it in a
// walked value are a leak.
const walkPass = "Wq9#zR-walk-Secret-77"

// secretRuns returns every secretRun-byte run of s, and s itself when it
// is shorter.
func secretRuns(s string) []string {
	if len(s) < secretRun {
		return []string{s}
	}
	var out []string
	for i := 0; i+secretRun <= len(s); i++ {
		out = append(out, s[i:i+secretRun])
	}
	return out
}

// reachableText walks v with reflect, as a dumper does (through
// pointers, structs, unexported fields included, slices, arrays, maps and
// interfaces), and returns every string and every byte slice or array it
// reaches, each with its path. A func is reported as "func" at its path:
// reflect cannot see into it.
func reachableText(v reflect.Value) map[string]string {
	out := map[string]string{}
	seen := map[uintptr]bool{}
	var walk func(path string, v reflect.Value)
	walk = func(path string, v reflect.Value) {
		if !v.IsValid() {
			return
		}
		switch v.Kind() {
		case reflect.String:
			out[path] = v.String()
		case reflect.Pointer:
			if v.IsNil() || seen[v.Pointer()] {
				return
			}
			seen[v.Pointer()] = true
			walk("(*"+path+")", v.Elem())
		case reflect.Interface:
			walk(path, v.Elem())
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				walk(path+"."+v.Type().Field(i).Name, v.Field(i))
			}
		case reflect.Slice, reflect.Array:
			if v.Type().Elem().Kind() == reflect.Uint8 {
				b := make([]byte, v.Len())
				for i := range b {
					b[i] = byte(v.Index(i).Uint())
				}
				out[path] = string(b)
				return
			}
			for i := 0; i < v.Len(); i++ {
				walk(fmt.Sprintf("%s[%d]", path, i), v.Index(i))
			}
		case reflect.Map:
			iter := v.MapRange()
			for iter.Next() {
				k := fmt.Sprint(iter.Key())
				walk(path+"[key "+k+"]", iter.Key())
				walk(path+"["+k+"]", iter.Value())
			}
		case reflect.Func:
			if !v.IsNil() {
				out[path] = "func"
			}
		}
	}
	walk("x", v)
	return out
}

// leaks returns the paths of the text reachable from x that holds six
// characters of secret, as is or base64-encoded, with the run found.
func leaks(x any, secret string) []string {
	runs := append(secretRuns(secret), secretRuns(base64.StdEncoding.EncodeToString([]byte(secret)))...)
	var out []string
	for path, text := range reachableText(reflect.ValueOf(x)) {
		for _, r := range runs {
			if strings.Contains(text, r) {
				out = append(out, fmt.Sprintf("%s holds %q", path, r))
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestReachableTextFindsPlainSecrets checks the walker itself: a secret
// kept in clear in an unexported field, behind a pointer, a map, a slice
// or an interface, is found.
func TestReachableTextFindsPlainSecrets(t *testing.T) {
	type inner struct{ b []byte }
	x := &struct {
		s string
		m map[string]any
		l []inner
		a [3]byte
	}{
		s: "user",
		m: map[string]any{"k": &inner{b: []byte("pre " + walkPass[3:9] + " post")}},
		l: []inner{{}, {b: []byte(base64.StdEncoding.EncodeToString([]byte(walkPass)))}},
		a: [3]byte{'a', 'b', 'c'},
	}
	got := leaks(x, walkPass)
	want := []string{
		`(*(*x).m[k]).b holds "#zR-wa"`,
		`(*x).l[1].b holds "V3E5I3"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("leaks = %q; want %q", got, want)
	}
}

// allAuths returns one Auth of every constructor, each with walkPass as
// its secret (for the OAuth ones, the token of a StaticToken).
func allAuths() map[string]Auth {
	tok := StaticToken(walkPass)
	return map[string]Auth{
		"PlainAuth":           PlainAuth("id", "user", walkPass, "mx.example.com"),
		"LoginAuth":           LoginAuth("user", walkPass, "mx.example.com"),
		"CRAMMD5Auth":         CRAMMD5Auth("user", walkPass),
		"PasswordAuth":        PasswordAuth("user", walkPass, "mx.example.com"),
		"ScramSHA1Auth":       ScramSHA1Auth("user", walkPass),
		"ScramSHA256Auth":     ScramSHA256Auth("user", walkPass),
		"ScramSHA256PlusAuth": ScramSHA256PlusAuth("user", walkPass),
		"XOAuth2Auth":         XOAuth2Auth("user", tok, "mx.example.com"),
		"OAuthBearerAuth":     OAuthBearerAuth("user", tok, "mx.example.com"),
		"OAuth2Auth":          OAuth2Auth("user", tok, "mx.example.com"),
	}
}

// exercise runs a, used directly as net/smtp's Client would, as far as it
// goes without a real server, so that the state of an exchange is in it.
func exercise(t *testing.T, a Auth) {
	t.Helper()
	info := &ServerInfo{Name: "mx.example.com", TLS: true, Auth: []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "XOAUTH2"}}
	mech, _, err := a.Start(info)
	if err != nil {
		if strings.HasSuffix(mech, "-PLUS") || strings.Contains(err.Error(), "channel binding") {
			return
		}
		t.Fatalf("Start: %v", err)
	}
	switch mech {
	case "LOGIN":
		a.Next([]byte("Username:"), true)
		a.Next([]byte("Password:"), true)
	case "CRAM-MD5":
		a.Next([]byte("<1.2@mx.example.com>"), true)
	case "SCRAM-SHA-256", "SCRAM-SHA-1":
		s, ok := a.(*scramAuth)
		if p, isPW := a.(*passwordAuth); isPW {
			s, ok = p.chosen.(*scramAuth)
		}
		if !ok {
			t.Fatalf("%s from a %T", mech, a)
		}
		_, nonce, _ := strings.Cut(s.clientFirstBare, ",r=")
		if _, err := a.Next([]byte("r="+nonce+"-more,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), true); err != nil {
			t.Fatalf("client-final: %v", err)
		}
	case "XOAUTH2", "OAUTHBEARER":
		a.Next([]byte(`{"status":"401","schemes":"bearer","scope":"x"}`), true)
	}
}

// TestNoSecretReachable walks every Auth with reflect, fresh and after
// an exchange run on it directly, and fails if any string or byte slice
// or array in it holds six characters of the secret. A dumper (go-spew,
// go-cmp's diff, fmt on an Auth in an unexported field) sees no more.
func TestNoSecretReachable(t *testing.T) {
	for name, a := range allAuths() {
		if got := leaks(a, walkPass); len(got) != 0 {
			t.Errorf("%s: %s", name, strings.Join(got, "; "))
		}
		if s, ok := a.(sessionAuth); ok {
			cs := &tls.ConnectionState{Version: tls.VersionTLS13}
			if got := leaks(s.session(cs), walkPass); len(got) != 0 {
				t.Errorf("%s session copy: %s", name, strings.Join(got, "; "))
			}
		}
		exercise(t, a)
		if got := leaks(a, walkPass); len(got) != 0 {
			t.Errorf("%s after an exchange: %s", name, strings.Join(got, "; "))
		}
		// What a caller might print or encode.
		holder := struct {
			A Auth
			a Auth
		}{a, a}
		for _, out := range []string{
			fmt.Sprintf("%v", holder), fmt.Sprintf("%+v", holder), fmt.Sprintf("%#v", holder),
			fmt.Sprintf("%s", holder), fmt.Sprintf("%q", holder), fmt.Sprintf("%x", holder),
			fmt.Sprintf("%+v", &holder), fmt.Sprintf("%#v", []any{a}),
		} {
			for _, r := range secretRuns(walkPass) {
				if strings.Contains(out, r) {
					t.Errorf("%s: fmt shows %q: %s", name, r, out)
					break
				}
			}
		}
		j, err := json.Marshal(holder)
		if err != nil || string(j) != `{"A":{}}` {
			t.Errorf("%s: json.Marshal = %s, %v; want {\"A\":{}}", name, j, err)
		}
	}
}

// TestSecretRoundTrip checks that hide and reveal are inverse, that
// equal secrets mask alike and different ones (even of equal length)
// differently, and that a secret passed to fmt directly prints as
// "[secret]".
func TestSecretRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a", walkPass, strings.Repeat("\x00\xff", 300)} {
		if got := hide(s).reveal(); got != s {
			t.Errorf("reveal(hide(%q)) = %q", s, got)
		}
		if !reflect.DeepEqual(hide(s), hide(s)) {
			t.Errorf("hide(%q) differs from itself", s)
		}
	}
	if got := (secret{}).reveal(); got != "" {
		t.Errorf("zero secret reveals %q", got)
	}
	a, b := hide("password-one"), hide("password-two")
	if reflect.DeepEqual(a, b) || a.iv == b.iv || string(a.masked[:8]) == string(b.masked[:8]) {
		t.Errorf("two secrets of equal length share an iv or a keystream: %x %x, %x %x", a.iv, a.masked, b.iv, b.masked)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		if got := fmt.Sprintf(verb, a); got != "[secret]" {
			t.Errorf("%s of a secret = %q; want [secret]", verb, got)
		}
	}
}

// TestNetsmtpAuthDeepEqual records the net/smtp behaviour that tlsmail
// mirrors: two Auths from the same arguments are reflect.DeepEqual, and
// from different arguments they are not.
func TestNetsmtpAuthDeepEqual(t *testing.T) {
	if !reflect.DeepEqual(smtp.PlainAuth("i", "u", "p", "h"), smtp.PlainAuth("i", "u", "p", "h")) {
		t.Error("net/smtp: PlainAuth values with equal arguments are not DeepEqual")
	}
	if reflect.DeepEqual(smtp.PlainAuth("i", "u", "p", "h"), smtp.PlainAuth("i", "u", "q", "h")) {
		t.Error("net/smtp: PlainAuth values with different passwords are DeepEqual")
	}
	if !reflect.DeepEqual(smtp.CRAMMD5Auth("u", "s"), smtp.CRAMMD5Auth("u", "s")) {
		t.Error("net/smtp: CRAMMD5Auth values with equal arguments are not DeepEqual")
	}
}

// TestAuthDeepEqual checks, for every constructor, that two Auths from
// the same arguments are reflect.DeepEqual and that changing any one
// argument makes them differ. The OAuth constructors are checked with a
// nil TokenSource: a non-nil one is a func, and reflect.DeepEqual never
// finds two non-nil funcs equal, not even a func and itself.
func TestAuthDeepEqual(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(a []string) Auth
		args []string
	}{
		{"PlainAuth", func(a []string) Auth { return PlainAuth(a[0], a[1], a[2], a[3]) }, []string{"id", "user", "pass", "host"}},
		{"LoginAuth", func(a []string) Auth { return LoginAuth(a[0], a[1], a[2]) }, []string{"user", "pass", "host"}},
		{"CRAMMD5Auth", func(a []string) Auth { return CRAMMD5Auth(a[0], a[1]) }, []string{"user", "pass"}},
		{"PasswordAuth", func(a []string) Auth { return PasswordAuth(a[0], a[1], a[2]) }, []string{"user", "pass", "host"}},
		{"ScramSHA1Auth", func(a []string) Auth { return ScramSHA1Auth(a[0], a[1]) }, []string{"user", "pass"}},
		{"ScramSHA256Auth", func(a []string) Auth { return ScramSHA256Auth(a[0], a[1]) }, []string{"user", "pass"}},
		{"ScramSHA256PlusAuth", func(a []string) Auth { return ScramSHA256PlusAuth(a[0], a[1]) }, []string{"user", "pass"}},
		{"XOAuth2Auth", func(a []string) Auth { return XOAuth2Auth(a[0], nil, a[1]) }, []string{"user", "host"}},
		{"OAuthBearerAuth", func(a []string) Auth { return OAuthBearerAuth(a[0], nil, a[1]) }, []string{"user", "host"}},
		{"OAuth2Auth", func(a []string) Auth { return OAuth2Auth(a[0], nil, a[1]) }, []string{"user", "host"}},
	} {
		if !reflect.DeepEqual(tc.make(tc.args), tc.make(slices.Clone(tc.args))) {
			t.Errorf("%s%q: two values are not DeepEqual", tc.name, tc.args)
		}
		for i := range tc.args {
			other := slices.Clone(tc.args)
			other[i] += "x"
			if reflect.DeepEqual(tc.make(tc.args), tc.make(other)) {
				t.Errorf("%s%q and %s%q are DeepEqual", tc.name, tc.args, tc.name, other)
			}
		}
	}
	// The SCRAM variants differ from one another.
	if reflect.DeepEqual(ScramSHA1Auth("u", "p"), ScramSHA256Auth("u", "p")) || reflect.DeepEqual(ScramSHA256Auth("u", "p"), ScramSHA256PlusAuth("u", "p")) {
		t.Error("two SCRAM variants are DeepEqual")
	}
	// The OAuth constructors differ from one another.
	if reflect.DeepEqual(XOAuth2Auth("u", nil, "h"), OAuthBearerAuth("u", nil, "h")) || reflect.DeepEqual(OAuthBearerAuth("u", nil, "h"), OAuth2Auth("u", nil, "h")) {
		t.Error("two OAuth constructors are DeepEqual")
	}
	// A non-nil TokenSource is a func: never DeepEqual, as documented.
	tok := StaticToken("t")
	if reflect.DeepEqual(XOAuth2Auth("u", tok, "h"), XOAuth2Auth("u", tok, "h")) {
		t.Error("XOAuth2Auth values with a non-nil TokenSource are DeepEqual")
	}
}

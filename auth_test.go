package tlsmail

import (
	"errors"
	"strings"
	"testing"
)

// TestScramSHA256Vector runs the exchange of RFC 7677 section 3.
func TestScramSHA256Vector(t *testing.T) {
	a := &scramAuth{username: "user", password: "pencil", clientNonce: "rOprNGfwEbeRWgbNEkqO"}
	mech, first, err := a.Start(&ServerInfo{Name: "h", TLS: true, Auth: []string{"SCRAM-SHA-256"}})
	if err != nil || mech != "SCRAM-SHA-256" || string(first) != "n,,n=user,r=rOprNGfwEbeRWgbNEkqO" {
		t.Fatalf("Start = %q, %q, %v", mech, first, err)
	}
	final, err := a.Next([]byte("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), true)
	want := "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	if err != nil || string(final) != want {
		t.Fatalf("client-final = %q, %v; want %q", final, err, want)
	}
	if resp, err := a.Next([]byte("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="), true); err != nil || len(resp) != 0 {
		t.Fatalf("server-final: %q, %v", resp, err)
	}
	if _, err := a.Next([]byte("2.7.0 Authentication successful"), false); err != nil {
		t.Fatalf("235: %v", err)
	}
}

func TestScramSHA256RejectsBadServers(t *testing.T) {
	start := func() *scramAuth {
		a := &scramAuth{username: "user", password: "pencil", clientNonce: "abc"}
		a.Start(&ServerInfo{TLS: true})
		return a
	}
	for name, serverFirst := range map[string]string{
		"nonce not extended": "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"foreign nonce":      "r=xyz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		"low iterations":     "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
		"huge iterations":    "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999",
		"bad salt":           "r=abcdef,s=!!!,i=4096",
		"extension":          "m=x,r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	} {
		if _, err := start().Next([]byte(serverFirst), true); err == nil {
			t.Errorf("%s: accepted %q", name, serverFirst)
		}
	}
	// A server that cannot prove it knows the password.
	a := start()
	if _, err := a.Next([]byte("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Next([]byte("v=AAAA"), true); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("forged server signature accepted: %v", err)
	}
	// A server that says 235 without its signature.
	a = start()
	a.Next([]byte("r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"), true)
	if _, err := a.Next(nil, false); err == nil {
		t.Error("success without server signature accepted")
	}
}

func TestPlainAndLoginGuards(t *testing.T) {
	for _, a := range []Auth{PlainAuth("", "u", "p", "mail.example.com"), LoginAuth("u", "p", "mail.example.com")} {
		if _, _, err := a.Start(&ServerInfo{Name: "mail.example.com", TLS: false}); !errors.Is(err, ErrPlaintextAuth) {
			t.Errorf("%v without TLS: %v", a, err)
		}
		if _, _, err := a.Start(&ServerInfo{Name: "localhost", TLS: false}); !errors.Is(err, ErrPlaintextAuth) {
			t.Errorf("%v on localhost without TLS: %v", a, err)
		}
		if _, _, err := a.Start(&ServerInfo{Name: "evil.example.com", TLS: true}); err == nil {
			t.Errorf("%v sent to another host", a)
		}
	}
	_, resp, err := PlainAuth("admin", "u", "p", "h").Start(&ServerInfo{Name: "h", TLS: true})
	if err != nil || string(resp) != "admin\x00u\x00p" {
		t.Errorf("PLAIN response %q, %v", resp, err)
	}
}

func TestCRAMMD5Vector(t *testing.T) {
	// RFC 2195 section 2.
	a := CRAMMD5Auth("tim", "tanstaaftanstaaf")
	resp, err := a.Next([]byte("<1896.697170952@postoffice.reston.mci.net>"), true)
	if err != nil || string(resp) != "tim b913a602c7eda7a495b4e6e7334d3890" {
		t.Errorf("CRAM-MD5 = %q, %v", resp, err)
	}
}

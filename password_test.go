package tlsmail

import (
	"strings"
	"testing"
)

// TestPasswordAuthWithoutBinding checks PasswordAuth's choice on a
// connection that cannot provide channel binding, as its documentation
// states it: the -PLUS variants are skipped, SCRAM without the binding
// comes first, then PLAIN, LOGIN or CRAM-MD5 even beside -PLUS, and a
// server that offers nothing but -PLUS is refused.
func TestPasswordAuthWithoutBinding(t *testing.T) {
	for _, tc := range []struct {
		offers    []string
		mech      string // "" for a refusal
		firstLine string // the start of the initial response, or the error
	}{
		{[]string{"SCRAM-SHA-256-PLUS", "PLAIN"}, "PLAIN", "\x00jdoe\x00pw"},
		{[]string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "LOGIN"}, "LOGIN", ""},
		{[]string{"SCRAM-SHA-256-PLUS", "CRAM-MD5"}, "CRAM-MD5", ""},
		{[]string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"}, "SCRAM-SHA-256", "n,,n=jdoe,r="},
		{[]string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1", "PLAIN"}, "SCRAM-SHA-1", "n,,n=jdoe,r="},
		{[]string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"}, "",
			"the server offers only SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, which needs channel binding, and the connection is not TLS"},
	} {
		// No TLS state: the binding is impossible.
		p := PasswordAuth("jdoe", "pw", "h").(*passwordAuth).session(nil)
		mech, resp, err := p.Start(&ServerInfo{Name: "h", TLS: true, Auth: tc.offers})
		if tc.mech == "" {
			if err == nil || err.Error() != tc.firstLine {
				t.Errorf("%q: Start = %q, %v; want the error %q", tc.offers, mech, err, tc.firstLine)
			}
			continue
		}
		if err != nil || mech != tc.mech || !strings.HasPrefix(string(resp), tc.firstLine) || (tc.firstLine == "" && resp != nil) {
			t.Errorf("%q: Start = %q, %q, %v; want %s with %q", tc.offers, mech, resp, err, tc.mech, tc.firstLine)
		}
	}
}

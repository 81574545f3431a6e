package smtptest

import (
	"crypto/tls"
	"crypto/x509"
)

// What other protocols' test servers (pop3/pop3test) share with this
// one: the process's test CA and certificates, and the SASL checks.

// Certificate returns a server certificate of kind, signed as a Server's
// is, and a pool holding the CA that every trusted kind chains to.
func Certificate(kind CertKind) (tls.Certificate, *x509.CertPool, []byte, error) {
	certs, err := newCertSet(kind)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(certs.caCert)
	return certs.leaf, pool, certs.caPEM, nil
}

// ParseXOAUTH2 parses an XOAUTH2 initial response into user and token.
func ParseXOAUTH2(msg string) (user, token string, ok bool) { return parseXOAUTH2(msg) }

// ParseOAuthBearer parses an OAUTHBEARER (RFC 7628) initial response
// into user (may be empty) and token.
func ParseOAuthBearer(msg string) (user, token string, ok bool) { return parseOAuthBearer(msg) }

// XOAUTH2ErrorJSON and OAuthBearerErrorJSON are the JSON statuses sent
// for a refused token.
const (
	XOAUTH2ErrorJSON     = xoauth2ErrorJSON
	OAuthBearerErrorJSON = oauthBearerErrorJSON
)

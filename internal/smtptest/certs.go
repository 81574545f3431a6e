package smtptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync"
	"time"
)

// certSet is the throwaway PKI of one Server.
type certSet struct {
	caCert *x509.Certificate // the CA placed in RootCAs
	caPEM  []byte
	leaf   tls.Certificate // what the server presents
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newCA(name string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"tlsmail smtptest"}},
		NotBefore:             now.Add(-72 * time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// sharedCA is the one trusted CA of this process. Every Server uses it, so
// that a test binary or example can install it once as a system root
// (SSL_CERT_FILE, which Go reads once) and reach any Server through APIs
// that use the system roots, such as tlsmail.SendMail.
var sharedCA = sync.OnceValues(func() (caPair, error) {
	cert, key, err := newCA("tlsmail smtptest CA", time.Now())
	return caPair{cert, key}, err
})

type caPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// CACertPEM returns the PEM form of the CA that signs every Server's
// trusted certificates in this process.
func CACertPEM() ([]byte, error) {
	ca, err := sharedCA()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), nil
}

func newCertSet(kind CertKind) (*certSet, error) {
	now := time.Now()
	pair, err := sharedCA()
	if err != nil {
		return nil, err
	}
	ca, caKey := pair.cert, pair.key
	signer, signerKey := ca, caKey
	if kind == CertUntrusted {
		signer, signerKey, err = newCA("tlsmail smtptest untrusted CA", now)
		if err != nil {
			return nil, err
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "mx.test"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "mx.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	switch kind {
	case CertWrongName:
		tmpl.Subject.CommonName = "wrong.example"
		tmpl.DNSNames = []string{"wrong.example"}
		tmpl.IPAddresses = nil
	case CertExpired:
		tmpl.NotBefore = now.Add(-48 * time.Hour)
		tmpl.NotAfter = now.Add(-24 * time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &certSet{
		caCert: ca,
		caPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
		leaf: tls.Certificate{
			Certificate: [][]byte{der},
			PrivateKey:  key,
			Leaf:        leaf,
		},
	}, nil
}

package keymanager

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"software.sslmate.com/src/go-pkcs12"

	"neutrino/internal/attr"
	"neutrino/internal/plugin"
)

// ErrUnreadable marks a certificate that was found but is not usable.
var ErrUnreadable = errors.New("unreadable certificate")

// Certificate reads the server certificate ref names, as c's caller may:
// a secret holding a PKCS12 bundle without a passphrase (Octavia's way),
// or a certificate container (its older way). It returns the certificate,
// its intermediates and its private key as one PEM document, haproxy's
// form, checked to pair up.
func (s *Service) Certificate(c *plugin.Ctx, ref string) ([]byte, error) {
	if strings.Contains(ref, "/containers/") {
		return s.containerCert(c, refID(ref))
	}
	data, err := s.payload(c, refID(ref))
	if err != nil {
		return nil, err
	}
	key, cert, chain, err := pkcs12.DecodeChain(data, "")
	if err != nil {
		return nil, fmt.Errorf("%w: the PKCS12 bundle does not decode without a pass phrase: %v", ErrUnreadable, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnreadable, err)
	}
	var b bytes.Buffer
	for _, crt := range append([]*x509.Certificate{cert}, chain...) {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: crt.Raw})
	}
	pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return b.Bytes(), nil
}

// containerCert is a certificate container's certificate, intermediates
// and key.
func (s *Service) containerCert(c *plugin.Ctx, id string) ([]byte, error) {
	o, err := loadContainer(c, id, "Container retrieval")
	if err != nil {
		return nil, err
	}
	parts := map[string][]byte{}
	for _, r := range attr.Objects(o, "secret_refs") {
		if parts[attr.Str(r, "name")], err = s.payload(c, attr.Str(r, "secret_id")); err != nil {
			return nil, err
		}
	}
	if parts["private_key_passphrase"] != nil {
		return nil, fmt.Errorf("%w: private keys with a pass phrase are not supported", ErrUnreadable)
	}
	certPEM, keyPEM := asPEM(parts["certificate"], "CERTIFICATE"), asPEM(parts["private_key"], "PRIVATE KEY")
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnreadable, err)
	}
	out := append(append([]byte{}, certPEM...), '\n')
	if in := parts["intermediates"]; in != nil {
		out = append(append(out, asPEM(in, "CERTIFICATE")...), '\n')
	}
	return append(out, keyPEM...), nil
}

// asPEM is data as PEM: itself when it is PEM, else DER wrapped as typ.
func asPEM(data []byte, typ string) []byte {
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		return data
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: data})
}

// Secret reads the payload of the secret ref names, as c's caller may
// (a CA's certificates, a revocation list), as PEM.
func (s *Service) Secret(c *plugin.Ctx, ref, pemType string) ([]byte, error) {
	data, err := s.payload(c, refID(ref))
	if err != nil {
		return nil, err
	}
	return asPEM(data, pemType), nil
}

// payload reads and decrypts a secret's payload.
func (s *Service) payload(c *plugin.Ctx, id string) ([]byte, error) {
	o, err := loadSecret(c, id, "Secret payload retrieval")
	if err != nil {
		return nil, err
	}
	if attr.Str(o, "payload") == "" {
		return nil, notFound("Not Found. Sorry but your secret has no payload.")
	}
	return s.open(id, attr.Str(o, "payload"))
}

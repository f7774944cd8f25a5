package lbaas

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"neutrino/internal/attr"
	"neutrino/internal/fault"
	"neutrino/internal/plugin"
	"neutrino/internal/services/keymanager"
)

// TLS: a TERMINATED_HTTPS listener's certificates (the default one and
// those SNI chooses among), the CA its clients' certificates must chain
// to, and a pool's re-encryption to its members all come from the key
// manager by reference, read as the user who names them (Octavia's
// rules); the agent is given them as PEM in its load balancer's bundle.

// Headers a listener may insert (Octavia's); the SSL ones on
// TERMINATED_HTTPS listeners only.
var (
	httpHeaders = []string{"X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"}
	sslHeaders  = []string{"X-SSL-Client-Verify", "X-SSL-Client-Has-Cert", "X-SSL-Client-DN", "X-SSL-Client-CN",
		"X-SSL-Issuer", "X-SSL-Client-SHA1", "X-SSL-Client-Not-Before", "X-SSL-Client-Not-After"}
)

// pyList renders names as Python prints a list of strings (Octavia's
// messages do).
func pyList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func invalidOption(value, option string) error {
	return fault.New(http.StatusBadRequest, "InvalidOption", "%s is not a valid option for %s", value, option)
}

// checkListenerTLS applies Octavia's rules to a listener (as it would be
// after the change) and checks that the caller may read the certificates
// it names.
func checkListenerTLS(c *plugin.Ctx, l plugin.Object) error {
	proto := attr.Str(l, "protocol")
	headers, _ := l["insert_headers"].(map[string]any)
	if len(headers) > 0 {
		if proto != "HTTP" && proto != "TERMINATED_HTTPS" {
			return invalidOption("insert-headers", "a "+proto+" protocol listener.")
		}
		var ssl []string
		for _, h := range slices.Sorted(maps.Keys(headers)) {
			if !slices.Contains(httpHeaders, h) && !slices.Contains(sslHeaders, h) {
				return invalidOption(pyList(slices.Sorted(maps.Keys(headers))), "insert_headers")
			}
			if slices.Contains(sslHeaders, h) {
				ssl = append(ssl, h)
			}
		}
		if len(ssl) > 0 && proto != "TERMINATED_HTTPS" {
			return invalidOption(pyList(ssl), proto+" protocol listener.")
		}
	}
	def, ca, crl := attr.Str(l, "default_tls_container_ref"), attr.Str(l, "client_ca_tls_container_ref"), attr.Str(l, "client_crl_container_ref")
	sni := attr.List(l, "sni_container_refs")
	hasRefs := def != "" || ca != "" || len(sni) > 0
	switch {
	case (proto == "UDP" || proto == "SCTP") && (hasRefs || len(headers) > 0):
		return invalid("%s protocol listener does not support TLS.", proto)
	case proto != "TERMINATED_HTTPS" && hasRefs:
		return invalid("Certificate container references are not allowed on %s protocol listeners.", proto)
	case ca != "" && def == "" && len(sni) == 0:
		return invalid("An SNI or default certificate container reference must be provided with a client CA container reference.")
	case proto == "TERMINATED_HTTPS" && def == "" && len(sni) == 0:
		return invalid("An SNI or default certificate container reference must be provided for TERMINATED_HTTPS protocol listeners.")
	case attr.Str(l, "client_authentication") != "NONE" && attr.Str(l, "client_authentication") != "" && ca == "":
		return invalid("Client authentication setting %s requires a client CA container reference.", attr.Str(l, "client_authentication"))
	case crl != "" && ca == "":
		return invalid("A client authentication CA reference is required to specify a client authentication revocation list.")
	}
	refs := []string{}
	for _, r := range sni {
		if s, ok := r.(string); ok {
			refs = append(refs, s)
		}
	}
	if def != "" {
		refs = append(refs, def)
	}
	if err := checkCerts(c, refs); err != nil {
		return err
	}
	return checkSecrets(c, ca, crl)
}

// checkPoolTLS applies Octavia's rules to a pool's re-encryption
// references.
func checkPoolTLS(c *plugin.Ctx, p plugin.Object) error {
	ca, crl := attr.Str(p, "ca_tls_container_ref"), attr.Str(p, "crl_container_ref")
	if crl != "" && ca == "" {
		return invalid("A CA certificate reference is required to specify a revocation list.")
	}
	if cert := attr.Str(p, "tls_container_ref"); cert != "" {
		if err := checkCerts(c, []string{cert}); err != nil {
			return err
		}
	}
	return checkSecrets(c, ca, crl)
}

// keyManager is the key-manager service (nil when it does not run).
func keyManager(c *plugin.Ctx) *keymanager.Service {
	km, _ := plugin.Find[*keymanager.Service](c.Reg)
	return km
}

// checkCerts reads each certificate as the caller: those that cannot be
// read are named in one error (an unreadable bundle has its own).
func checkCerts(c *plugin.Ctx, refs []string) error {
	var bad []string
	for _, r := range refs {
		km := keyManager(c)
		if km == nil {
			bad = append(bad, r)
			continue
		}
		if _, err := km.Certificate(c, r); errors.Is(err, keymanager.ErrUnreadable) {
			return fault.New(http.StatusBadRequest, "UnreadablePKCS12", "The PKCS12 bundle is unreadable. Please check the PKCS12 bundle validity. In addition, make sure it does not require a pass phrase. Error: %v", err)
		} else if err != nil {
			bad = append(bad, r)
		}
	}
	if len(bad) > 0 {
		return retrievalError(pyList(bad))
	}
	return nil
}

func retrievalError(ref string) error {
	return fault.New(http.StatusBadRequest, "CertificateRetrievalException", "Could not retrieve certificate: %s", ref)
}

// checkSecrets reads a CA's certificates and a revocation list as the
// caller.
func checkSecrets(c *plugin.Ctx, ca, crl string) error {
	var bad []string
	for _, r := range []string{ca, crl} {
		if r == "" {
			continue
		}
		if km := keyManager(c); km == nil {
			bad = append(bad, r)
		} else if _, err := km.Secret(c, r, "CERTIFICATE"); err != nil {
			bad = append(bad, r)
		}
	}
	if len(bad) > 0 {
		return retrievalError(pyList(bad))
	}
	return nil
}

// listenerTLS is what the agent needs of a listener's TLS: its
// certificates (default first, then SNI's), and the client CA and
// revocation list; an error when one cannot be read any more.
func listenerTLS(c *plugin.Ctx, l plugin.Object) (map[string]any, error) {
	km := keyManager(c)
	if km == nil {
		return nil, errors.New("no key manager")
	}
	c = c.AsAdmin()
	var certs []any
	refs := attr.List(l, "sni_container_refs")
	if def := attr.Str(l, "default_tls_container_ref"); def != "" {
		refs = append([]any{def}, refs...)
	}
	for _, r := range refs {
		pem, err := km.Certificate(c, fmt.Sprint(r))
		if err != nil {
			return nil, err
		}
		certs = append(certs, string(pem))
	}
	out := map[string]any{"certs": certs}
	for key, ref := range map[string]string{"client_ca": attr.Str(l, "client_ca_tls_container_ref"), "client_crl": attr.Str(l, "client_crl_container_ref")} {
		if ref == "" {
			continue
		}
		typ := map[string]string{"client_ca": "CERTIFICATE", "client_crl": "X509 CRL"}[key]
		pem, err := km.Secret(c, ref, typ)
		if err != nil {
			return nil, err
		}
		out[key] = string(pem)
	}
	return out, nil
}

// poolTLS is what the agent needs of a pool's re-encryption: the client
// certificate it presents, the CA members' certificates must chain to and
// a revocation list (each when named).
func poolTLS(c *plugin.Ctx, p plugin.Object) (map[string]any, error) {
	km := keyManager(c)
	out := map[string]any{}
	if km == nil {
		return out, errors.New("no key manager")
	}
	c = c.AsAdmin()
	if r := attr.Str(p, "tls_container_ref"); r != "" {
		pem, err := km.Certificate(c, r)
		if err != nil {
			return nil, err
		}
		out["cert"] = string(pem)
	}
	for key, typ := range map[string]string{"ca_tls_container_ref": "CERTIFICATE", "crl_container_ref": "X509 CRL"} {
		if r := attr.Str(p, key); r != "" {
			pem, err := km.Secret(c, r, typ)
			if err != nil {
				return nil, err
			}
			out[strings.TrimSuffix(strings.TrimSuffix(key, "_container_ref"), "_tls")] = string(pem)
		}
	}
	return out, nil
}

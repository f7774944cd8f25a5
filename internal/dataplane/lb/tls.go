package lb

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TLS files live in <dir>/tls, named after the listener or pool and the
// part: <listener>-<n>.pem (certificates, the default first),
// <listener>-ca.pem, <listener>-crl.pem, <pool>-client.pem, <pool>-ca.pem,
// <pool>-crl.pem; each readable by its owner alone.

func tlsPath(dir, owner, part string) string {
	return filepath.Join(dir, "tls", owner+"-"+part+".pem")
}

// tlsFiles are the TLS files spec needs, by path.
func tlsFiles(spec Spec, dir string) map[string][]byte {
	out := map[string][]byte{}
	add := func(owner, part string, data []byte) {
		if len(data) > 0 {
			out[tlsPath(dir, owner, part)] = data
		}
	}
	for _, l := range spec.Listeners {
		for i, c := range l.Certs {
			add(l.ID, fmt.Sprint(i), c)
		}
		add(l.ID, "ca", l.ClientCA)
		add(l.ID, "crl", l.ClientCRL)
		pools := []*Pool{l.Pool}
		for _, p := range l.Policies {
			pools = append(pools, p.Pool)
		}
		for _, p := range pools {
			if p != nil && p.TLS {
				add(p.ID, "client", p.ClientCert)
				add(p.ID, "ca", p.CA)
				add(p.ID, "crl", p.CRL)
			}
		}
	}
	return out
}

// writeTLS writes spec's TLS files and removes those it no longer needs.
func writeTLS(spec Spec, dir string) error {
	files := tlsFiles(spec, dir)
	tdir := filepath.Join(dir, "tls")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return err
	}
	for path, data := range files {
		if err := os.WriteFile(path+".new", data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(path+".new", path); err != nil {
			return err
		}
	}
	old, _ := os.ReadDir(tdir)
	for _, e := range old {
		if _, ok := files[filepath.Join(tdir, e.Name())]; !ok {
			os.Remove(filepath.Join(tdir, e.Name()))
		}
	}
	return nil
}

// bindTLS is the TLS part of a TERMINATED_HTTPS listener's bind line.
func bindTLS(l Listener, dir string) string {
	if l.Protocol != "TERMINATED_HTTPS" || len(l.Certs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" ssl")
	for i := range l.Certs {
		fmt.Fprintf(&b, " crt %s", tlsPath(dir, l.ID, fmt.Sprint(i)))
	}
	if len(l.ClientCA) > 0 && l.ClientAuth != "" && l.ClientAuth != "NONE" {
		verify := "optional"
		if l.ClientAuth == "MANDATORY" {
			verify = "required"
		}
		fmt.Fprintf(&b, " ca-file %s verify %s", tlsPath(dir, l.ID, "ca"), verify)
		if len(l.ClientCRL) > 0 {
			fmt.Fprintf(&b, " crl-file %s", tlsPath(dir, l.ID, "crl"))
		}
	}
	return b.String()
}

// serverTLS is the TLS part of a pool's server lines.
func serverTLS(p *Pool, dir string) string {
	if !p.TLS {
		return ""
	}
	s := " ssl"
	if len(p.ClientCert) > 0 {
		s += " crt " + tlsPath(dir, p.ID, "client")
	}
	if len(p.CA) == 0 {
		return s + " verify none"
	}
	s += " ca-file " + tlsPath(dir, p.ID, "ca") + " verify required"
	if len(p.CRL) > 0 {
		s += " crl-file " + tlsPath(dir, p.ID, "crl")
	}
	return s
}

// headerValues are haproxy's values for the headers Octavia inserts.
var headerValues = map[string]string{
	"X-Forwarded-Port":        "%[dst_port]",
	"X-SSL-Client-Verify":     "%[ssl_c_verify]",
	"X-SSL-Client-Has-Cert":   "%[ssl_c_used]",
	"X-SSL-Client-DN":         "%{+Q}[ssl_c_s_dn]",
	"X-SSL-Client-CN":         "%{+Q}[ssl_c_s_dn(cn)]",
	"X-SSL-Issuer":            "%{+Q}[ssl_c_i_dn]",
	"X-SSL-Client-SHA1":       "%{+Q}[ssl_c_sha1,hex]",
	"X-SSL-Client-Not-Before": "%{+Q}[ssl_c_notbefore]",
	"X-SSL-Client-Not-After":  "%{+Q}[ssl_c_notafter]",
}

// writeHeaders writes the headers an HTTP listener inserts.
func writeHeaders(b *strings.Builder, l Listener) {
	for _, h := range l.Headers {
		switch {
		case h == "X-Forwarded-Proto":
			fmt.Fprintf(b, "    http-request set-header X-Forwarded-Proto %s\n", map[bool]string{true: "https", false: "http"}[l.Protocol == "TERMINATED_HTTPS"])
		case headerValues[h] != "":
			fmt.Fprintf(b, "    http-request set-header %s %s\n", h, headerValues[h])
		}
	}
}

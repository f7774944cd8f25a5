package lb

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// Config is haproxy's configuration for spec, its files in dir: a
// frontend per listener on the VIP, a backend per pool with its members
// as servers, health checks per the pool's monitor.
func Config(spec Spec, dir string) string {
	var b strings.Builder
	// (haproxy is given its pid file on the command line; maxconn within
	// what the agent's open file limit leaves it.)
	fmt.Fprintf(&b, "global\n    daemon\n    stats socket %s mode 600 level admin\n    maxconn 8000\n", filepath.Join(dir, "haproxy.sock"))
	if files := tlsFiles(spec, dir); len(files) > 0 {
		// The certificates' digest: a new certificate is a new
		// configuration, which reloads haproxy.
		h := sha256.New()
		for _, name := range slices.Sorted(maps.Keys(files)) {
			h.Write([]byte(name))
			h.Write(files[name])
		}
		fmt.Fprintf(&b, "    # tls %x\n", h.Sum(nil)[:12])
	}
	b.WriteString("\n")
	b.WriteString("defaults\n    timeout connect 5000\n    timeout client 50000\n    timeout server 50000\n\n")
	vips := map[bool]string{}
	for _, c := range spec.Addrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			if _, ok := vips[p.Addr().Is4()]; !ok {
				vips[p.Addr().Is4()] = p.Addr().String()
			}
		}
	}
	pools := map[string]*Pool{}
	for _, l := range spec.Listeners {
		mode := modeOf(l.Protocol)
		fmt.Fprintf(&b, "frontend %s\n    mode %s\n", l.ID, mode)
		for _, v4 := range []bool{true, false} {
			if a, ok := vips[v4]; ok {
				if !v4 {
					a = "[" + a + "]"
				}
				fmt.Fprintf(&b, "    bind %s:%d%s\n", a, l.Port, bindTLS(l, dir))
			}
		}
		if len(l.Allowed) > 0 {
			fmt.Fprintf(&b, "    tcp-request connection reject unless { src %s }\n", strings.Join(l.Allowed, " "))
		}
		if l.ConnLimit > 0 {
			fmt.Fprintf(&b, "    maxconn %d\n", l.ConnLimit)
		}
		if l.ClientData > 0 {
			fmt.Fprintf(&b, "    timeout client %d\n", l.ClientData)
		}
		if mode == "http" {
			b.WriteString("    option forwardfor\n")
			writeHeaders(&b, l)
			writePolicies(&b, l.Policies)
		}
		if l.Pool != nil {
			fmt.Fprintf(&b, "    default_backend %s\n", l.Pool.ID)
		}
		// One backend per pool: the default one and those policies use.
		used := []*Pool{l.Pool}
		for _, p := range l.Policies {
			used = append(used, p.Pool)
		}
		for _, p := range used {
			if p != nil && pools[p.ID] == nil {
				pools[p.ID] = p
				writeBackend(&b, l, p, dir)
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// writePolicies writes a listener's L7 policies in order: each rule an
// acl, each policy an action under all its rules' acls.
func writePolicies(b *strings.Builder, policies []Policy) {
	for _, p := range policies {
		var conds []string
		for _, r := range p.Rules {
			fetch := map[string]string{"HOST_NAME": "req.hdr(host)", "PATH": "path", "FILE_TYPE": "path",
				"HEADER": "req.hdr(" + r.Key + ")", "COOKIE": "req.cook(" + r.Key + ")"}[r.Type]
			match := map[string]string{"REGEX": "-m reg", "STARTS_WITH": "-m beg", "ENDS_WITH": "-m end",
				"CONTAINS": "-m sub", "EQUAL_TO": "-m str"}[r.Compare]
			if r.Type == "FILE_TYPE" && r.Compare == "EQUAL_TO" {
				match = "-m end"
			}
			if fetch == "" || match == "" {
				continue
			}
			fmt.Fprintf(b, "    acl %s %s %s %s\n", r.ID, fetch, match, quote(r.Value))
			if r.Invert {
				conds = append(conds, "!"+r.ID)
			} else {
				conds = append(conds, r.ID)
			}
		}
		if len(conds) == 0 {
			continue // a policy without rules matches nothing
		}
		cond := "if " + strings.Join(conds, " ")
		code := p.Code
		if code == 0 {
			code = 302
		}
		switch p.Action {
		case "REJECT":
			fmt.Fprintf(b, "    http-request deny %s\n", cond)
		case "REDIRECT_TO_URL":
			fmt.Fprintf(b, "    http-request redirect location %s code %d %s\n", quote(p.URL), code, cond)
		case "REDIRECT_PREFIX":
			fmt.Fprintf(b, "    http-request redirect prefix %s code %d %s\n", quote(p.Prefix), code, cond)
		case "REDIRECT_TO_POOL":
			if p.Pool != nil {
				fmt.Fprintf(b, "    use_backend %s %s\n", p.Pool.ID, cond)
			}
		}
	}
}

// quote makes s one haproxy word (its quoting: double quotes, backslash
// escapes).
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// modeOf is haproxy's mode for a protocol: http for HTTP and
// TERMINATED_HTTPS, tcp otherwise (HTTPS is passed through).
func modeOf(protocol string) string {
	if protocol == "HTTP" || protocol == "TERMINATED_HTTPS" {
		return "http"
	}
	return "tcp"
}

func writeBackend(b *strings.Builder, l Listener, p *Pool, dir string) {
	fmt.Fprintf(b, "\nbackend %s\n    mode %s\n", p.ID, modeOf(p.Protocol))
	switch p.Algorithm {
	case "LEAST_CONNECTIONS":
		b.WriteString("    balance leastconn\n")
	case "SOURCE_IP":
		b.WriteString("    balance source\n")
	case "SOURCE_IP_PORT":
		b.WriteString("    balance source\n    hash-type consistent\n")
	default:
		b.WriteString("    balance roundrobin\n")
	}
	if l.MemberConnect > 0 {
		fmt.Fprintf(b, "    timeout connect %d\n", l.MemberConnect)
	}
	if l.MemberData > 0 {
		fmt.Fprintf(b, "    timeout server %d\n", l.MemberData)
	}
	switch p.Persistence {
	case "SOURCE_IP":
		b.WriteString("    stick-table type ip size 10k\n    stick on src\n")
	case "HTTP_COOKIE":
		b.WriteString("    cookie SRV insert indirect nocache\n")
	case "APP_COOKIE":
		if p.Cookie != "" {
			fmt.Fprintf(b, "    stick-table type string len 64 size 10k\n    stick store-response res.cook(%s)\n    stick match req.cook(%s)\n", p.Cookie, p.Cookie)
		}
	}
	check := ""
	if m := p.Monitor; m != nil {
		switch m.Type {
		case "HTTP", "HTTPS":
			fmt.Fprintf(b, "    option httpchk %s %s\n", orDefault(m.Method, "GET"), orDefault(m.Path, "/"))
			fmt.Fprintf(b, "    http-check expect rstatus %s\n", codesRE(orDefault(m.Codes, "200")))
		case "TLS-HELLO":
			b.WriteString("    option ssl-hello-chk\n")
		}
		fmt.Fprintf(b, "    timeout check %ds\n", max(m.Timeout, 1))
		check = fmt.Sprintf(" check inter %ds fall %d rise %d", max(m.Delay, 1), max(m.Fall, 1), max(m.Rise, 1))
		if m.Type == "HTTPS" {
			check += " check-ssl verify none"
		}
	}
	for _, mb := range p.Members {
		addr := mb.Address
		if a, err := netip.ParseAddr(addr); err == nil && a.Is6() {
			addr = "[" + addr + "]"
		}
		fmt.Fprintf(b, "    server %s %s:%d weight %d%s%s", mb.ID, addr, mb.Port, mb.Weight, check, serverTLS(p, dir))
		if p.Persistence == "HTTP_COOKIE" {
			fmt.Fprintf(b, " cookie %s", mb.ID)
		}
		if mb.Backup {
			b.WriteString(" backup")
		}
		if mb.Down {
			b.WriteString(" disabled")
		}
		b.WriteString("\n")
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// codesRE turns Octavia's expected_codes ("200", "200,202", "200-204")
// into a regular expression of status codes.
func codesRE(codes string) string {
	var alts []string
	for _, part := range strings.Split(codes, ",") {
		part = strings.TrimSpace(part)
		if lo, hi, ok := strings.Cut(part, "-"); ok {
			var l, h int
			fmt.Sscan(lo, &l)
			fmt.Sscan(hi, &h)
			for c := l; c <= h && h-l < 1000; c++ {
				alts = append(alts, fmt.Sprint(c))
			}
			continue
		}
		if part != "" {
			alts = append(alts, part)
		}
	}
	return "^(" + strings.Join(alts, "|") + ")$"
}

package schema

import (
	"testing"

	"neutrino/internal/fault"
	"neutrino/internal/policy"
)

// FuzzParseCreate: any request body decodes to items or a 4xx Neutron
// error, never a panic or a server error.
func FuzzParseCreate(f *testing.F) {
	for _, s := range []string{
		`{"network": {"name": "n", "admin_state_up": "true", "mtu": "1400"}}`,
		`{"networks": [{"name": 1}, {"shared": null}]}`,
		`{"subnet": {"network_id": "x", "ip_version": 4, "cidr": "10.0.0.0/24", "allocation_pools": [{}]}}`,
		`{"port": {"network_id": "00000000-0000-0000-0000-000000000000", "fixed_ips": [{"ip_address": 7}], "mac_address": "zz"}}`,
		`{"security_group_rule": {"direction": "ingress", "protocol": ["tcp"], "port_range_min": 1.5}}`,
		`[]`, `null`, `{"network": []}`, `{"port": {"tenant_id": "a", "project_id": "b"}}`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, admin bool) {
		c := &policy.Caller{ProjectID: "p", Admin: admin}
		for _, r := range []*Resource{Network, Subnet, Port, SecurityGroup, SecurityGroupRule, SubnetPool, RBACPolicy} {
			items, _, err := r.ParseBody(body)
			if err != nil {
				check4xx(t, err)
				continue
			}
			for _, it := range items {
				if _, err := r.ParseCreate(c, it); err != nil {
					check4xx(t, err)
				}
				if _, err := r.ParseUpdate(c, it); err != nil {
					check4xx(t, err)
				}
			}
		}
	})
}

func check4xx(t *testing.T, err error) {
	t.Helper()
	fe, ok := fault.As(err)
	if !ok || fe.Status < 400 || fe.Status >= 500 {
		t.Fatalf("want a 4xx Neutron error, got %#v", err)
	}
}

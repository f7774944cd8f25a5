// Package identity authenticates API requests. Three modes: "builtin", a
// Keystone v3-compatible subset served by Neutrino itself (tokens, projects,
// users, roles) so that the openstack CLI and Tempest work with nothing else
// installed; "keystone", which validates tokens against an external Keystone
// v3 and caches them until they expire; and "noauth" for tests.
package identity

import (
	"context"
	"net/http"
	"strings"

	"neutrino/internal/policy"
)

// Authenticator turns a request's credentials into a caller.
type Authenticator interface {
	// Authenticate returns the caller of r, or an error for a missing or
	// invalid token (the API answers 401).
	Authenticate(ctx context.Context, r *http.Request) (*policy.Caller, error)
}

// NoAuth trusts headers, as Neutron's noauth strategy does: the project comes
// from X-Project-Id (or X-Tenant-Id), roles from X-Roles; without a project
// the caller is an admin.
type NoAuth struct{}

// Authenticate implements Authenticator.
func (NoAuth) Authenticate(ctx context.Context, r *http.Request) (*policy.Caller, error) {
	project := r.Header.Get("X-Project-Id")
	if project == "" {
		project = r.Header.Get("X-Tenant-Id")
	}
	c := &policy.Caller{ProjectID: project, UserID: r.Header.Get("X-User-Id")}
	for _, role := range strings.Split(r.Header.Get("X-Roles"), ",") {
		if role = strings.TrimSpace(role); role != "" {
			c.Roles = append(c.Roles, role)
		}
	}
	c.Admin = project == "" || c.HasRole("admin")
	if project == "" {
		c.ProjectID = "admin"
	}
	return c, nil
}

// Package policy holds who is calling and the small set of rules Neutron's
// default policy applies: admin versus project member, ownership, and
// resources shared with other projects.
package policy

import (
	"context"
	"strings"
)

// Caller is the authenticated identity of a request.
type Caller struct {
	UserID    string
	UserName  string
	ProjectID string
	Roles     []string
	Admin     bool
	// Service marks Neutrino's own agents and internal callers.
	Service bool
}

// HasRole reports whether the caller holds role.
func (c *Caller) HasRole(role string) bool {
	for _, r := range c.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// HasRoleFold reports whether the caller holds role, ignoring case
// (Keystone's role names are case-insensitive: Tempest assigns "Member").
func (c *Caller) HasRoleFold(role string) bool {
	for _, r := range c.Roles {
		if strings.EqualFold(r, role) {
			return true
		}
	}
	return false
}

// Owns reports whether the caller may act as the owner of a resource of
// project (admins own everything).
func (c *Caller) Owns(project string) bool {
	return c.Admin || (project != "" && project == c.ProjectID)
}

type ctxKey struct{}

// With returns ctx carrying c.
func With(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// From returns the caller in ctx; a caller-less context is an admin
// (internal work such as bootstrap).
func From(ctx context.Context) *Caller {
	if c, ok := ctx.Value(ctxKey{}).(*Caller); ok {
		return c
	}
	return &Caller{Admin: true, Service: true, Roles: []string{"admin"}}
}

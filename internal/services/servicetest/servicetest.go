// Package servicetest builds a server's services over a throw-away SQLite
// store for the services' own unit tests.
package servicetest

import (
	"context"
	"path/filepath"
	"testing"

	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services"
	"neutrino/internal/store"
)

// Env is a registry over a fresh store.
type Env struct {
	T   testing.TB
	Reg *plugin.Registry
}

// New builds the services of cfg over a new SQLite store in t's temp dir.
func New(t testing.TB, cfg services.Config) *Env {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg, err := services.Build(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, Reg: reg}
}

// Write runs fn in a write transaction as an admin and returns its error.
func (e *Env) Write(fn func(c *plugin.Ctx) error) error {
	_, err := e.Reg.Write(context.Background(), fn)
	return err
}

// Read runs fn in a read transaction as an admin; errors fail the test.
func (e *Env) Read(fn func(c *plugin.Ctx) error) {
	e.T.Helper()
	if err := e.Reg.Read(context.Background(), fn); err != nil {
		e.T.Fatal(err)
	}
}

// Create parses in as an admin's create request for res and creates it;
// errors fail the test.
func (e *Env) Create(res *schema.Resource, in map[string]any) plugin.Object {
	e.T.Helper()
	o, err := e.TryCreate(res, in)
	if err != nil {
		e.T.Fatalf("create %s: %v", res.Member, err)
	}
	return o
}

// TryCreate is Create returning the error.
func (e *Env) TryCreate(res *schema.Resource, in map[string]any) (plugin.Object, error) {
	var out plugin.Object
	err := e.Write(func(c *plugin.Ctx) error {
		p, err := res.ParseCreate(c.Caller, schema.CloneObject(in))
		if err != nil {
			return err
		}
		out, err = c.Create(res, p)
		return err
	})
	return out, err
}

// Delete deletes a resource as an admin; errors fail the test.
func (e *Env) Delete(res *schema.Resource, id string) {
	e.T.Helper()
	if err := e.Write(func(c *plugin.Ctx) error { return c.Delete(res, id, -1) }); err != nil {
		e.T.Fatalf("delete %s %s: %v", res.Member, id, err)
	}
}

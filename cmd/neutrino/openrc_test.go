package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"neutrino/internal/identity"
	"neutrino/internal/store"
)

// A server that bootstraps a database another server bootstrapped (shared
// PostgreSQL) with other passwords writes no openrc that would fail, and
// says why; with the database's passwords it writes both.
func TestOpenrcOnlyWithTheDatabasesPasswords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "n.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ident := identity.NewBuiltin(db)
	if _, err := ident.Bootstrap(ctx, "first-admin", "first-demo"); err != nil {
		t.Fatal(err)
	}
	msg, err := writeOpenrcs(ctx, ident, dir, "http://127.0.0.1:1", "first-admin", "first-demo")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"admin", "demo"} {
		b, err := os.ReadFile(filepath.Join(dir, "openrc-"+u))
		if err != nil || !strings.Contains(string(b), "OS_PASSWORD=first-"+u) {
			t.Fatalf("openrc-%s: %q %v (%s)", u, b, err, msg)
		}
	}
	// A second server, its own data dir's passwords.
	if _, err := ident.Bootstrap(ctx, "second-admin", "first-demo"); err != nil {
		t.Fatal(err)
	}
	msg, err = writeOpenrcs(ctx, ident, dir, "http://127.0.0.1:1", "second-admin", "first-demo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "openrc-admin")); !os.IsNotExist(err) {
		t.Fatalf("an openrc with the wrong admin password is left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "openrc-demo")); err != nil {
		t.Fatalf("openrc-demo: %v", err)
	}
	if !strings.Contains(msg, "another password for user admin") || !strings.Contains(msg, "--admin-password") {
		t.Fatalf("message: %s", msg)
	}
	if ok, _ := ident.PasswordMatches(ctx, "nobody", "x"); ok {
		t.Fatal("a missing user matched")
	}
}

package store

import (
	"context"
	"fmt"
	"strings"
)

// migrations are applied in order, each once, in its own transaction. The SQL
// is common to SQLite and PostgreSQL; append, never edit.
var migrations = []string{
	// 1: resources, change log, allocation tables, quotas, identity.
	`
CREATE TABLE revision (id INTEGER PRIMARY KEY, rev BIGINT NOT NULL, compacted BIGINT NOT NULL);
INSERT INTO revision (id, rev, compacted) VALUES (1, 0, 0);
CREATE TABLE resources (
  kind TEXT NOT NULL, id TEXT NOT NULL, project_id TEXT NOT NULL, parent_id TEXT NOT NULL,
  rev BIGINT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id));
CREATE INDEX resources_by_parent ON resources (kind, parent_id);
CREATE INDEX resources_by_project ON resources (kind, project_id);
CREATE TABLE changes (
  rev BIGINT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL,
  project_id TEXT NOT NULL, parent_id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (rev, seq));
CREATE TABLE ip_allocations (
  subnet_id TEXT NOT NULL, ip_address TEXT NOT NULL, port_id TEXT NOT NULL, network_id TEXT NOT NULL,
  PRIMARY KEY (subnet_id, ip_address));
CREATE INDEX ip_allocations_by_port ON ip_allocations (port_id);
CREATE TABLE mac_addresses (
  network_id TEXT NOT NULL, mac_address TEXT NOT NULL, port_id TEXT NOT NULL,
  PRIMARY KEY (network_id, mac_address));
CREATE TABLE segment_allocations (
  network_type TEXT NOT NULL, physical_network TEXT NOT NULL, segmentation_id BIGINT NOT NULL,
  network_id TEXT NOT NULL, PRIMARY KEY (network_type, physical_network, segmentation_id));
CREATE INDEX segment_allocations_by_network ON segment_allocations (network_id);
CREATE TABLE quotas (
  project_id TEXT NOT NULL, resource TEXT NOT NULL, hard_limit BIGINT NOT NULL,
  PRIMARY KEY (project_id, resource));
CREATE TABLE id_projects (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, domain_id TEXT NOT NULL, description TEXT NOT NULL,
  enabled BOOLEAN NOT NULL, parent_id TEXT NOT NULL, is_domain BOOLEAN NOT NULL, UNIQUE (domain_id, name));
CREATE TABLE id_users (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, domain_id TEXT NOT NULL, password_hash TEXT NOT NULL,
  enabled BOOLEAN NOT NULL, default_project_id TEXT NOT NULL, description TEXT NOT NULL, email TEXT NOT NULL,
  UNIQUE (domain_id, name));
CREATE TABLE id_roles (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE id_assignments (
  user_id TEXT NOT NULL, project_id TEXT NOT NULL, role_id TEXT NOT NULL,
  PRIMARY KEY (user_id, project_id, role_id));
CREATE TABLE id_tokens (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, project_id TEXT NOT NULL,
  issued_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX id_tokens_by_expiry ON id_tokens (expires_at);
`,
	// 2: quota overrides live in resources (kind "quota"), read from the view.
	`DROP TABLE quotas`,
	// 3: reads come from the in-memory view, so resources need no secondary
	// indexes; every index page is another page written at each commit.
	`DROP INDEX resources_by_parent; DROP INDEX resources_by_project`,
	// 4 (SQLite): tables keyed by their primary key alone (WITHOUT ROWID), so
	// a row is written to one B-tree, not a rowid table plus a key index.
	sqliteOnly + `
CREATE TABLE resources_k (
  kind TEXT NOT NULL, id TEXT NOT NULL, project_id TEXT NOT NULL, parent_id TEXT NOT NULL,
  rev BIGINT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
INSERT INTO resources_k SELECT kind, id, project_id, parent_id, rev, body FROM resources;
DROP TABLE resources;
ALTER TABLE resources_k RENAME TO resources;
CREATE TABLE changes_k (
  rev BIGINT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL,
  project_id TEXT NOT NULL, parent_id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (rev, seq)) WITHOUT ROWID;
INSERT INTO changes_k SELECT rev, seq, kind, id, op, project_id, parent_id, body FROM changes;
DROP TABLE changes;
ALTER TABLE changes_k RENAME TO changes;
CREATE TABLE ip_allocations_k (
  subnet_id TEXT NOT NULL, ip_address TEXT NOT NULL, port_id TEXT NOT NULL, network_id TEXT NOT NULL,
  PRIMARY KEY (subnet_id, ip_address)) WITHOUT ROWID;
INSERT INTO ip_allocations_k SELECT subnet_id, ip_address, port_id, network_id FROM ip_allocations;
DROP TABLE ip_allocations;
ALTER TABLE ip_allocations_k RENAME TO ip_allocations;
CREATE INDEX ip_allocations_by_port ON ip_allocations (port_id);
CREATE TABLE mac_addresses_k (
  network_id TEXT NOT NULL, mac_address TEXT NOT NULL, port_id TEXT NOT NULL,
  PRIMARY KEY (network_id, mac_address)) WITHOUT ROWID;
INSERT INTO mac_addresses_k SELECT network_id, mac_address, port_id FROM mac_addresses;
DROP TABLE mac_addresses;
ALTER TABLE mac_addresses_k RENAME TO mac_addresses;
CREATE TABLE segment_allocations_k (
  network_type TEXT NOT NULL, physical_network TEXT NOT NULL, segmentation_id BIGINT NOT NULL,
  network_id TEXT NOT NULL, PRIMARY KEY (network_type, physical_network, segmentation_id)) WITHOUT ROWID;
INSERT INTO segment_allocations_k SELECT network_type, physical_network, segmentation_id, network_id FROM segment_allocations;
DROP TABLE segment_allocations;
ALTER TABLE segment_allocations_k RENAME TO segment_allocations;
CREATE INDEX segment_allocations_by_network ON segment_allocations (network_id)`,
	// 5: segments are released by their key (the network lists them), so
	// the index by network, another page at every network create, goes.
	`DROP INDEX segment_allocations_by_network`,
	// 6: agents' heartbeats, kept out of the change log (see heartbeats.go).
	`CREATE TABLE agent_heartbeats (id TEXT PRIMARY KEY, at BIGINT NOT NULL)`,
}

// sqliteOnly marks a migration that PostgreSQL records as applied without
// running it.
const sqliteOnly = "-- sqlite only\n"

// Migrate applies the migrations not yet applied and returns how many ran.
func (db *DB) Migrate(ctx context.Context) (int, error) {
	if _, err := db.write(ctx, func(tx *Tx) error {
		_, err := tx.Exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
		return err
	}, false); err != nil {
		return 0, fmt.Errorf("store: migrate: %w", err)
	}
	return db.apply(ctx, migrations, "SELECT COUNT(*) FROM schema_migrations WHERE version = ?",
		"INSERT INTO schema_migrations (version) VALUES (?)")
}

// MigrateService applies a service's own migrations not yet applied (its
// tables), in order, each once; steps are appended to, never edited.
func (db *DB) MigrateService(ctx context.Context, service string, steps []string) (int, error) {
	if _, err := db.write(ctx, func(tx *Tx) error {
		_, err := tx.Exec("CREATE TABLE IF NOT EXISTS service_migrations (service TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (service, version))")
		return err
	}, false); err != nil {
		return 0, fmt.Errorf("store: migrate %s: %w", service, err)
	}
	n, err := db.apply(ctx, steps, "SELECT COUNT(*) FROM service_migrations WHERE version = ? AND service = ?",
		"INSERT INTO service_migrations (version, service) VALUES (?, ?)", service)
	if err != nil {
		return n, fmt.Errorf("%s: %w", service, err)
	}
	return n, nil
}

// apply runs the steps not yet recorded (applied counts those recorded,
// record records one; both take the version, then keys).
func (db *DB) apply(ctx context.Context, steps []string, applied, record string, keys ...any) (int, error) {
	ran := 0
	for i, m := range steps {
		version := i + 1
		done := false
		_, err := db.write(ctx, func(tx *Tx) error {
			if db.Dialect == Postgres {
				// Several servers may start at once: one migrates, the others wait.
				if _, err := tx.Exec("SELECT pg_advisory_xact_lock(7470)"); err != nil {
					return err
				}
			}
			args := append([]any{version}, keys...)
			var n int
			if err := tx.QueryRow(applied, args...).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			body := m
			if strings.HasPrefix(m, sqliteOnly) && db.Dialect != SQLite {
				body = ""
			}
			for _, stmt := range strings.Split(body, ";") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.Exec(stmt); err != nil {
					return fmt.Errorf("migration %d: %w", version, err)
				}
			}
			done = true
			_, err := tx.Exec(record, args...)
			return err
		}, false)
		if err != nil {
			return ran, fmt.Errorf("store: migrate: %w", err)
		}
		if done {
			ran++
		}
	}
	return ran, nil
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// pgPair opens two handles on one fresh PostgreSQL database, as two API
// servers sharing it would, or skips without NEUTRINO_TEST_POSTGRES.
func pgPair(t *testing.T) (*DB, *DB) {
	t.Helper()
	dsn := freshPG(t)
	a, b := openTest(t, dsn), openTest(t, dsn)
	t.Cleanup(func() { a.Close(); b.Close() })
	// Load both views, so that both write optimistically from now on.
	for _, db := range []*DB{a, b} {
		if err := db.Read(context.Background(), func(tx *Tx) error { _, err := tx.List("thing", Filter{}); return err }); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

// freshPG returns the DSN of an empty database on NEUTRINO_TEST_POSTGRES,
// or skips without it.
func freshPG(t *testing.T) string {
	t.Helper()
	base := os.Getenv("NEUTRINO_TEST_POSTGRES")
	if base == "" {
		t.Skip("NEUTRINO_TEST_POSTGRES is not set")
	}
	// A database of its own: other packages' tests reset theirs meanwhile.
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	admin.Exec("CREATE DATABASE neutrino_store_test")
	u.Path = "/neutrino_store_test"
	dsn := u.String()
	c, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	return dsn
}

// Each server's optimistic writes assume its view is current; a write by
// the other server in between must be noticed, never overwritten.
func TestPostgresServersSeeEachOthersWrites(t *testing.T) {
	a, b := pgPair(t)
	ctx := context.Background()
	put(t, a, Object{"id": "x", "project_id": "p", "n": float64(1)})
	// b's view has not seen x: its write must still find it.
	var runs int
	_, err := b.Write(ctx, func(tx *Tx) error {
		runs++
		o, err := tx.Get("thing", "x")
		if err != nil {
			return err
		}
		o["n"] = o["n"].(float64) + 1
		return tx.Put("thing", "", o)
	})
	if err != nil {
		t.Fatalf("b's write: %v (after %d runs)", err, runs)
	}
	// An error found in a current view stands, and fn runs once.
	mine := errors.New("refused")
	runs = 0
	if _, err := b.Write(ctx, func(tx *Tx) error { runs++; return mine }); !errors.Is(err, mine) || runs != 1 {
		t.Fatalf("error %v after %d runs, want %v after 1", err, runs, mine)
	}
	// Found in a stale view, it is checked against a current one.
	put(t, b, Object{"id": "y", "project_id": "p"})
	_, err = a.Write(ctx, func(tx *Tx) error {
		if _, err := tx.Get("thing", "y"); err != nil {
			return err
		}
		return tx.Delete("thing", "y")
	})
	if err != nil {
		t.Fatalf("a's delete of b's object: %v", err)
	}
	// A write that logs no change still takes a revision; a write from a
	// view that missed it must not reuse that revision.
	if _, err := b.Write(ctx, func(tx *Tx) error {
		_, err := tx.Claim("INSERT INTO mac_addresses (network_id, mac_address, port_id) VALUES (?, ?, ?)", 2, "n", "m", "p")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	put(t, a, Object{"id": "z", "project_id": "p"})
	err = b.Read(ctx, func(tx *Tx) error {
		if _, err := tx.Get("thing", "z"); err != nil {
			return fmt.Errorf("z: %v", err)
		}
		if _, err := tx.Get("thing", "y"); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("y still there: %v", err)
		}
		o, err := tx.Get("thing", "x")
		if err != nil || o["n"] != float64(2) {
			return fmt.Errorf("x = %v, %v; want n=2", o, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Read-modify-write from both servers at once loses no update, and claims
// of the same keys from both are granted once each.
func TestPostgresConcurrentWritersAndClaims(t *testing.T) {
	a, b := pgPair(t)
	ctx := context.Background()
	put(t, a, Object{"id": "counter", "project_id": "p", "n": float64(0)})
	const n = 40
	var wg sync.WaitGroup
	var granted atomic.Int64
	claimed := make([]string, n)
	for i := 0; i < n; i++ {
		db := a
		if i%2 == 1 {
			db = b
		}
		wg.Add(1)
		go func(i int, db *DB) {
			defer wg.Done()
			_, err := db.Write(ctx, func(tx *Tx) error {
				o, err := tx.Get("thing", "counter")
				if err != nil {
					return err
				}
				o["n"] = o["n"].(float64) + 1
				if err := tx.Put("thing", "", o); err != nil {
					return err
				}
				// 40 writers, 10 keys: each key granted to exactly one.
				claimed[i] = ""
				for k := 0; k < 10; k++ {
					ok, err := tx.Claim("INSERT INTO ip_allocations (subnet_id, ip_address, port_id, network_id) VALUES (?, ?, ?, ?)", 2,
						"s", fmt.Sprint("10.0.0.", k), fmt.Sprint("port", i), "n")
					if err != nil {
						return err
					}
					if ok {
						claimed[i] = fmt.Sprint(k)
						break
					}
				}
				return nil
			})
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}(i, db)
	}
	wg.Wait()
	seen := map[string]int{}
	for i, k := range claimed {
		if k != "" {
			granted.Add(1)
			if j, dup := seen[k]; dup {
				t.Errorf("key %s granted to writers %d and %d", k, j, i)
			}
			seen[k] = i
		}
	}
	if granted.Load() != 10 {
		t.Errorf("%d keys granted, want 10", granted.Load())
	}
	for _, db := range []*DB{a, b} {
		db.Read(ctx, func(tx *Tx) error {
			if o, err := tx.Get("thing", "counter"); err != nil || o["n"] != float64(n) {
				t.Errorf("counter = %v, %v; want %d", o, err, n)
			}
			return nil
		})
	}
	var rows int
	a.r.QueryRow("SELECT COUNT(*) FROM ip_allocations").Scan(&rows)
	if rows != 10 {
		t.Errorf("%d allocation rows, want 10", rows)
	}
}

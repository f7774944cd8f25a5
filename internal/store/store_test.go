package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

func openTest(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

func put(t *testing.T, db *DB, objs ...Object) int64 {
	t.Helper()
	rev, err := db.Write(context.Background(), func(tx *Tx) error {
		for _, o := range objs {
			if err := tx.Put("thing", "", o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func TestRevisionsAndChangeLog(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	defer db.Close()
	r1 := put(t, db, Object{"id": "a", "project_id": "p", "v": 1.0})
	r2 := put(t, db, Object{"id": "b", "project_id": "p"}, Object{"id": "a", "project_id": "p", "v": 2.0})
	if r1 != 1 || r2 != 2 {
		t.Fatalf("revisions %d %d, want 1 2", r1, r2)
	}
	// A write that changes nothing takes no revision.
	if rev, err := db.Write(ctx, func(tx *Tx) error { return nil }); err != nil || rev != 0 {
		t.Fatalf("empty write: %d %v", rev, err)
	}
	// A failed write leaves no trace.
	boom := errors.New("boom")
	if _, err := db.Write(ctx, func(tx *Tx) error {
		tx.Put("thing", "", Object{"id": "c"})
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	del, err := db.Write(ctx, func(tx *Tx) error { return tx.Delete("thing", "b") })
	if err != nil || del != 3 {
		t.Fatalf("delete rev %d %v", del, err)
	}
	// A batch ends at a revision boundary: with a limit of 2, revision 2
	// (two changes) comes whole after revision 1, never cut in half.
	if ch, err := db.Changes(ctx, 0, 2); err != nil || len(ch) != 3 || ch[2].Rev != 2 {
		t.Fatalf("limited batch: %+v %v", ch, err)
	}
	ch, err := db.Changes(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range ch {
		got = append(got, fmt.Sprintf("%d:%d:%s:%s", c.Rev, c.Seq, c.Op, c.ID))
	}
	if fmt.Sprint(got) != "[2:1:put:b 2:2:put:a 3:1:delete:b]" {
		t.Fatalf("changes after 1: %v", got)
	}
	if ch[1].Body["v"] != 2.0 {
		t.Fatalf("change body: %v", ch[1].Body)
	}
	// compactedTo checks that the log now starts after rev: a reader
	// behind it must list again, one at it reads the n changes since.
	compactedTo := func(rev int64, n int) {
		t.Helper()
		if _, err := db.Changes(ctx, rev-1, 100); !errors.Is(err, ErrCompacted) {
			t.Fatalf("reading after %d, behind compaction: %v", rev-1, err)
		}
		if ch, err := db.Changes(ctx, rev, 100); err != nil || len(ch) != n {
			t.Fatalf("reading after %d: %v %v, want %d changes", rev, ch, err, n)
		}
	}
	// Compaction: a reader behind it must list again.
	if err := db.Compact(ctx, 2); err != nil {
		t.Fatal(err)
	}
	compactedTo(2, 1)
	// Keeping one revision is a no-op now (2 of 3 are compacted already);
	// keeping none compacts to the head.
	if err := db.CompactKeeping(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Changes(ctx, 2, 100); err != nil {
		t.Fatalf("CompactKeeping(1) compacted too much: %v", err)
	}
	if err := db.CompactKeeping(ctx, 0); err != nil {
		t.Fatal(err)
	}
	compactedTo(3, 0)
	err = db.Read(ctx, func(tx *Tx) error {
		l, err := tx.List("thing", Filter{})
		if err != nil || len(l) != 1 || l[0]["v"] != 2.0 {
			return fmt.Errorf("list: %v %v", l, err)
		}
		_, err = tx.Get("thing", "c")
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("rolled-back put visible: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// With the whole log compacted, revisions go on from the head.
	if r := put(t, db, Object{"id": "d", "project_id": "p"}); r != 4 {
		t.Fatalf("revision after compacting everything: %d, want 4", r)
	}
	// A revision row ahead of the log (SQLite databases kept before writes
	// stopped moving it): revisions go on from the row.
	if _, err := db.Write(ctx, func(tx *Tx) error {
		_, err := tx.Exec("UPDATE revision SET rev = 9 WHERE id = 1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if r := put(t, db, Object{"id": "e", "project_id": "p"}); r != 10 {
		t.Fatalf("revision after the row: %d, want 10", r)
	}
	if ch, err := db.Changes(ctx, 4, 100); err != nil || len(ch) != 1 || ch[0].Rev != 10 {
		t.Fatalf("changes after 4: %+v %v", ch, err)
	}
}

// TestDurableAcrossReopen: what a write committed is there after the process
// (here: the handle) goes away, and a second handle on the same database
// sees writes made through the first.
func TestDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	a := openTest(t, path)
	b := openTest(t, path)
	put(t, a, Object{"id": "x", "project_id": "p"})
	// b's view catches up from the change log.
	if err := b.Read(ctx, func(tx *Tx) error { _, err := tx.Get("thing", "x"); return err }); err != nil {
		t.Fatalf("second handle: %v", err)
	}
	put(t, b, Object{"id": "y", "project_id": "p"})
	if err := a.Read(ctx, func(tx *Tx) error { _, err := tx.Get("thing", "y"); return err }); err != nil {
		t.Fatalf("first handle after the second wrote: %v", err)
	}
	a.Close()
	b.Close()
	c := openTest(t, path)
	defer c.Close()
	err := c.Read(ctx, func(tx *Tx) error {
		l, err := tx.List("thing", Filter{Projects: []string{"p"}})
		if err == nil && len(l) != 2 {
			err = fmt.Errorf("%d objects after reopen", len(l))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentWritersKeepRevisionOrder: revisions are gapless and every
// change is logged exactly once under parallel writers.
func TestConcurrentWritersKeepRevisionOrder(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	defer db.Close()
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			put(t, db, Object{"id": fmt.Sprint("o", i), "project_id": "p"})
		}(i)
	}
	wg.Wait()
	ch, err := db.Changes(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != 40 {
		t.Fatalf("%d changes", len(ch))
	}
	for i, c := range ch {
		if c.Rev != int64(i+1) {
			t.Fatalf("change %d has revision %d", i, c.Rev)
		}
	}
}

func TestWriteSeesItsOwnChanges(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	defer db.Close()
	put(t, db, Object{"id": "a", "project_id": "p"}, Object{"id": "b", "project_id": "q"})
	_, err := db.Write(ctx, func(tx *Tx) error {
		if err := tx.Put("thing", "", Object{"id": "c", "project_id": "p"}); err != nil {
			return err
		}
		if err := tx.Delete("thing", "a"); err != nil {
			return err
		}
		l, err := tx.List("thing", Filter{Projects: []string{"p"}})
		if err != nil || len(l) != 1 || l[0]["id"] != "c" {
			return fmt.Errorf("list in write: %v %v", l, err)
		}
		if _, err := tx.Get("thing", "a"); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("deleted object still visible: %v", err)
		}
		o, err := tx.Get("thing", "b")
		if err != nil {
			return err
		}
		o["mutated"] = true // the caller's copy: must not leak into the view
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Read(ctx, func(tx *Tx) error {
		o, err := tx.Get("thing", "b")
		if err == nil && o["mutated"] != nil {
			t.Error("a write's copy leaked into the view")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// The view's copy of a put equals what decoding the stored row gives.
func TestViewCopyMatchesStoredJSON(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	db := openTest(t, path)
	defer db.Close()
	obj := Object{"id": "j", "project_id": "p", "n": 3, "big": int64(1 << 40), "f": 1.5, "l": []any{"a", 2, nil, map[string]any{"x": true}},
		"s": []string{"u", "v"}, "m": map[string]any{}, "e": "ünï\x01"}
	put(t, db, obj)
	var fromView Object
	if err := db.Read(ctx, func(tx *Tx) (err error) { fromView, err = tx.Get("thing", "j"); return err }); err != nil {
		t.Fatal(err)
	}
	other := openTest(t, path) // a second handle loads from the rows
	defer other.Close()
	var fromRows Object
	if err := other.Read(ctx, func(tx *Tx) (err error) { fromRows, err = tx.Get("thing", "j"); return err }); err != nil {
		t.Fatal(err)
	}
	if fromView["e"] != "ünï\x01" || fmt.Sprint(fromView) != fmt.Sprint(fromRows) {
		t.Fatalf("view %v\nrows %v", fromView, fromRows)
	}
}

// A write that fails or panics leaves nothing behind, and the writer
// connection serves the next write.
func TestFailedWritesLeaveTheWriterUsable(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	defer db.Close()
	boom := errors.New("boom")
	if _, err := db.Write(ctx, func(tx *Tx) error {
		tx.Put("thing", "", Object{"id": "a", "project_id": "p"})
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	func() {
		defer func() { recover() }()
		db.Write(ctx, func(tx *Tx) error {
			tx.Put("thing", "", Object{"id": "b", "project_id": "p"})
			panic("fn panicked")
		})
	}()
	put(t, db, Object{"id": "c", "project_id": "p"})
	if err := db.Read(ctx, func(tx *Tx) error {
		l, err := tx.List("thing", Filter{})
		if err == nil && (len(l) != 1 || l[0]["id"] != "c") {
			t.Errorf("after a failed and a panicked write: %v", l)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestIndexedAttributes: lists by an indexed attribute (a string, or each
// string of a list) find exactly the objects that hold the value, as they
// change and go, in reads and in a write's own view of itself; an
// attribute indexed after objects exist finds those too.
func TestIndexedAttributes(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	defer db.Close()
	put(t, db, Object{"id": "a", "project_id": "p", "host": "h1", "groups": []any{"g1", "g2"}},
		Object{"id": "b", "project_id": "p", "host": "h2", "groups": []any{"g2"}})
	db.IndexAttr("thing", "host")
	db.IndexAttr("thing", "groups")
	ids := func(tx *Tx, attr string, values ...string) string {
		l, err := tx.List("thing", Filter{Attr: attr, Values: values})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range l {
			out = append(out, o["id"].(string))
		}
		return fmt.Sprint(out)
	}
	check := func(attr string, values []string, want string) {
		t.Helper()
		if err := db.Read(ctx, func(tx *Tx) error {
			if got := ids(tx, attr, values...); got != want {
				t.Errorf("%s in %v: %s, want %s", attr, values, got, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check("host", []string{"h1"}, "[a]")
	check("groups", []string{"g2"}, "[a b]")
	check("groups", []string{"g1", "g9"}, "[a]")
	put(t, db, Object{"id": "a", "project_id": "p", "host": "h2", "groups": []any{"g3"}}) // moved, regrouped
	check("host", []string{"h1"}, "[]")
	check("host", []string{"h2"}, "[a b]")
	check("groups", []string{"g1"}, "[]")
	check("groups", []string{"g3"}, "[a]")
	if _, err := db.Write(ctx, func(tx *Tx) error {
		if err := tx.Delete("thing", "b"); err != nil {
			return err
		}
		if err := tx.Put("thing", "", Object{"id": "c", "project_id": "p", "host": "h2"}); err != nil {
			return err
		}
		if got := ids(tx, "host", "h2"); got != "[a c]" {
			t.Errorf("in the write: %s", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("host", []string{"h2"}, "[a c]")
	check("groups", []string{"g2"}, "[]")
	// Not indexed: found by a scan, the same.
	check("project_id", []string{"p"}, "[a c]")
	// Derived: a host and group pair per group, found as stored ones are,
	// also in a write's own view.
	db.IndexDerived("thing", "test:host_group", func(o Object) []string {
		var out []string
		gs, _ := o["groups"].([]any)
		for _, g := range gs {
			out = append(out, o["host"].(string)+"/"+g.(string))
		}
		return out
	})
	check("test:host_group", []string{"h2/g3"}, "[a]")
	if _, err := db.Write(ctx, func(tx *Tx) error {
		if err := tx.Put("thing", "", Object{"id": "d", "project_id": "p", "host": "h2", "groups": []any{"g3"}}); err != nil {
			return err
		}
		if got := ids(tx, "test:host_group", "h2/g3"); got != "[a d]" {
			t.Errorf("derived, in the write: %s", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	check("test:host_group", []string{"h2/g3", "h1/g3"}, "[a d]")
}

// TestRecentChangesAsLogged: watchers read the latest changes from the
// view; they are what the log holds, for writes of this process (grouped
// or not), for writes of another handle the view replayed, and at every
// starting revision and limit.
func TestRecentChangesAsLogged(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	db, other := openTest(t, path), openTest(t, path)
	defer db.Close()
	defer other.Close()
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			w := db
			if i%3 == 0 {
				w = other
			}
			put(t, w, Object{"id": fmt.Sprint("o", i%7), "project_id": "p", "n": float64(i)}, Object{"id": fmt.Sprint("x", i), "project_id": "p"})
			if i%5 == 0 {
				if _, err := w.Write(ctx, func(tx *Tx) error { return tx.Delete("thing", fmt.Sprint("x", i)) }); err != nil {
					t.Error(err)
				}
			}
		}(i)
	}
	wg.Wait()
	key := func(ch []Change) string {
		var out []string
		for _, c := range ch {
			out = append(out, fmt.Sprintf("%d:%d:%s:%s:%s:%v", c.Rev, c.Seq, c.Op, c.Kind, c.ID, c.Body))
		}
		return fmt.Sprint(out)
	}
	for _, h := range []*DB{db, other} {
		head, err := h.currentRevision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for after := int64(0); after <= head; after++ {
			for _, limit := range []int{1, 3, 1000} {
				fromView, err := h.Changes(ctx, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := h.view.ChangesAfter(after, limit); !ok && after >= head-5 {
					// (Those before the view was loaded are not.)
					t.Fatalf("changes after %d of %d not in the view", after, head)
				}
				fromLog, err := h.changesFromLog(ctx, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if a, b := key(fromView), key(fromLog); a != b {
					t.Fatalf("after %d limit %d: the view has\n%s\nthe log\n%s", after, limit, a, b)
				}
			}
		}
	}
}

// TestVersions: the version of a list moves when an object it selects is
// put or deleted (or moves in or out), and only then.
func TestVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	db := openTest(t, path)
	defer db.Close()
	db.IndexAttr("thing", "tags")
	write := func(fn func(tx *Tx) error) int64 {
		t.Helper()
		rev, err := db.Write(ctx, fn)
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	versions := func() (parentA, parentB, tagX, tagY, all int64) {
		t.Helper()
		db.Read(ctx, func(tx *Tx) error {
			var ok [5]bool
			parentA, ok[0] = tx.Version("thing", Filter{Parent: "A"})
			parentB, ok[1] = tx.Version("thing", Filter{Parent: "B"})
			tagX, ok[2] = tx.Version("thing", Filter{Attr: "tags", Values: []string{"x"}})
			tagY, ok[3] = tx.Version("thing", Filter{Attr: "tags", Values: []string{"y"}})
			all, ok[4] = tx.Version("thing", Filter{})
			if ok != [5]bool{true, true, true, true, true} {
				t.Fatalf("versions not known: %v", ok)
			}
			if _, ok := tx.Version("thing", Filter{Attr: "name", Values: []string{"n"}}); ok {
				t.Fatal("a version for an attribute not indexed")
			}
			return nil
		})
		return
	}
	check := func(what string, got, want [5]int64) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: versions (parent A, parent B, tag x, tag y, all) %v, want %v", what, got, want)
		}
	}
	v := func() [5]int64 { a, b, x, y, all := versions(); return [5]int64{a, b, x, y, all} }
	check("empty", v(), [5]int64{})
	r1 := write(func(tx *Tx) error { return tx.Put("thing", "A", Object{"id": "1", "tags": []any{"x"}}) })
	check("one in A tagged x", v(), [5]int64{r1, 0, r1, 0, r1})
	r2 := write(func(tx *Tx) error { return tx.Put("thing", "B", Object{"id": "2", "tags": []any{"y"}}) })
	check("one in B tagged y", v(), [5]int64{r1, r2, r1, r2, r2})
	r3 := write(func(tx *Tx) error { return tx.Put("thing", "A", Object{"id": "1", "tags": []any{"x"}, "status": "up"}) })
	check("A's changed", v(), [5]int64{r3, r2, r3, r2, r3})
	r4 := write(func(tx *Tx) error { return tx.Put("thing", "B", Object{"id": "2", "tags": []any{"x"}}) })
	check("2 tagged x, not y", v(), [5]int64{r3, r4, r4, 0, r4})
	r5 := write(func(tx *Tx) error { return tx.Delete("thing", "1") })
	check("1 gone", v(), [5]int64{0, r4, r5, 0, r5})
	// Another handle replays the log: the same versions.
	other := openTest(t, path)
	defer other.Close()
	other.Read(ctx, func(tx *Tx) error { _, err := tx.Get("thing", "2"); return err })
	r6 := write(func(tx *Tx) error { return tx.Put("thing", "A", Object{"id": "3", "tags": []any{"y"}}) })
	check("3 in A tagged y", v(), [5]int64{r6, r4, r5, r6, r6})
	var got [5]int64
	other.IndexAttr("thing", "tags")
	other.Read(ctx, func(tx *Tx) error {
		got[0], _ = tx.Version("thing", Filter{Parent: "A"})
		got[3], _ = tx.Version("thing", Filter{Attr: "tags", Values: []string{"y"}})
		return nil
	})
	if got[0] != r6 || got[3] != r6 {
		t.Fatalf("replayed versions: %v, want A and y at %d", got, r6)
	}
	if _, err := db.Write(ctx, func(tx *Tx) error {
		if _, ok := tx.Version("thing", Filter{}); ok {
			t.Error("a version in a write transaction")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

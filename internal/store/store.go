// Package store keeps Neutrino's state in SQL (SQLite embedded, or
// PostgreSQL) as JSON documents per resource kind, plus the tables that make
// allocations unique, and a change log: every write transaction takes the next
// revision and records each change under it, in the same transaction.
//
// Writers are serialized (one in-process mutex plus, on PostgreSQL, a
// transaction-scoped advisory lock) so that revisions commit in order: a
// reader that has seen revision R has seen every change up to R.
//
// The current revision is the revision row's on PostgreSQL, which every
// write moves (it orders writers across servers). SQLite's write lock
// orders writers already, so there a write does not touch that row: the
// revision is the newest in the change log (or the compaction point, or
// the row's, which a database kept before this), one page fewer per commit.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver

	"neutrino/internal/jsonx"
	"neutrino/internal/store/view"

	_ "modernc.org/sqlite" // SQLite driver
)

// Object is one resource as the API shows it: a JSON object.
type Object = view.Object

// ErrNotFound is returned by Get when no such resource exists.
var ErrNotFound = errors.New("store: not found")

// ErrCompacted is returned by Changes when the requested revision is older
// than the oldest change kept: the reader must list again.
var ErrCompacted = errors.New("store: revision compacted")

// Dialect names the SQL engine behind a DB.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is the store.
type DB struct {
	Dialect Dialect
	w       *sql.DB // writes (one connection on SQLite)
	r       *sql.DB // reads
	wmu     sync.Mutex

	view view.View // every resource, current to the newest revision read

	wc *wconn // SQLite writer connection (guarded by wmu)
	// beforeBatch, when set (tests), runs before each batch of writes.
	beforeBatch func()

	qmu     sync.Mutex  // guards queue and leading (group commit)
	queue   []*writeReq // writes waiting for a batch
	leading bool        // a writer is running batches

	dsn string    // PostgreSQL: for the writer connection
	pgw *pgx.Conn // PostgreSQL writer connection (guarded by wmu)

	nmu    sync.Mutex
	notify chan struct{} // closed and replaced at every commit
	// committedRev is the latest revision this process committed.
	committedRev atomic.Int64

	revMu   sync.Mutex
	revStmt *sql.Stmt // revisionQuery on the read pool, prepared once
}

// Open connects to dsn: a postgres:// or postgresql:// URL selects PostgreSQL,
// anything else is a SQLite file path (created with its directory).
func Open(dsn string) (*DB, error) {
	db := &DB{notify: make(chan struct{})}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		db.Dialect = Postgres
		db.dsn = dsn
		c, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("store: open postgres: %w", err)
		}
		c.SetMaxOpenConns(16)
		c.SetMaxIdleConns(16)
		db.w, db.r = c, c
	} else {
		db.Dialect = SQLite
		if dir := filepath.Dir(dsn); dir != "" {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("store: %w", err)
			}
		}
		q := "file:" + dsn + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"
		// Writers take the database lock at BEGIN; readers never wait for it
		// (WAL gives them a snapshot).
		w, err := sql.Open("sqlite", q+"&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		w.SetMaxOpenConns(1)
		r, err := sql.Open("sqlite", q)
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		r.SetMaxOpenConns(8)
		r.SetMaxIdleConns(8)
		db.w, db.r = w, r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.w.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	return db, nil
}

// Close releases the connections.
func (db *DB) Close() error {
	db.revMu.Lock()
	if db.revStmt != nil {
		db.revStmt.Close()
		db.revStmt = nil
	}
	db.revMu.Unlock()
	db.wmu.Lock()
	if db.wc != nil {
		db.wc.close()
		db.wc = nil
	}
	if db.pgw != nil {
		db.pgw.Close(context.Background())
		db.pgw = nil
	}
	db.wmu.Unlock()
	err := db.w.Close()
	if db.r != db.w {
		if e := db.r.Close(); err == nil {
			err = e
		}
	}
	return err
}

// rebind turns ? placeholders into $n for PostgreSQL.
func (db *DB) rebind(q string) string {
	if db.Dialect != Postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// Tx is one transaction, read-only or writing.
type Tx struct {
	db      *DB
	tx      *sql.Tx
	write   bool
	rev     int64 // revision taken by this write (0 until the first change)
	base    int64 // SQLite write: the revision when it began (read with the view)
	seq     int
	changes []Change // this write's changes, applied to the view on commit
	synced  bool     // read: the view has caught up
	floor   int64    // read: the revision it must see at least (see ReadAtLeast)
	ctx     context.Context
	err     error // a read snapshot that could not be opened

	wc      *wconn              // SQLite write on the pinned writer connection
	overlay map[string]*ovEntry // write: this transaction's puts and deletes
	pg      *pgWriter           // PostgreSQL write on the pipelined connection
	claimed map[string]bool     // optimistic PostgreSQL write: claims made
	held    map[string]bool     // and those of its batch's writes before it and its own, never forgotten (see runBatchPG)
}

type ovEntry struct {
	kind, id, project, parent string
	obj                       Object // nil when deleted
}

func ovKey(kind, id string) string { return kind + "\x00" + id }

// Write runs fn in a serialized write transaction and returns the revision it
// took (0 if fn changed nothing). fn's error rolls everything back.
func (db *DB) Write(ctx context.Context, fn func(tx *Tx) error) (int64, error) {
	return db.write(ctx, fn, true)
}

// write runs fn holding the writer lock. With useView, resource reads are
// served from the in-memory view (current to the last commit, which the
// lock makes this transaction's snapshot) overlaid with the transaction's
// own changes, so only allocation tables cost SQL round trips.
//
// A write, once begun, is not abandoned when its caller goes away (a client
// that hangs up mid-request): the context's values are kept, its
// cancellation is not. This also spares a goroutine per statement, which
// the SQLite driver (and database/sql for queries) starts to watch a
// cancellable context.
func (db *DB) write(ctx context.Context, fn func(tx *Tx) error, useView bool) (int64, error) {
	ctx = context.WithoutCancel(ctx)
	if useView {
		return db.writeGrouped(ctx, fn) // it takes the lock for each batch
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if db.Dialect == SQLite {
		return db.writeSQLite(ctx, fn)
	}
	if useView {
		return db.writePG(ctx, fn)
	}
	// PostgreSQL without the view (migrations): a plain transaction under
	// an advisory lock.
	sqltx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: begin: %w", err)
	}
	tx := &Tx{db: db, tx: sqltx, write: true, ctx: ctx}
	done := false
	defer func() {
		if !done { // fn panicked: free the connection before anything else
			sqltx.Rollback()
		}
	}()
	if _, err := sqltx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(7471)"); err != nil {
		return 0, fmt.Errorf("store: lock: %w", err)
	}
	err = fn(tx)
	done = true
	if err != nil {
		sqltx.Rollback()
		return 0, err
	}
	if err := sqltx.Commit(); err != nil {
		return 0, fmt.Errorf("store: commit: %w", err)
	}
	return db.committed(tx), nil
}

// writePG is write on PostgreSQL: optimistically in one round trip when
// the view is loaded (see pgwrite.go), else, or when that fails, with the
// revision row taken first, which orders every writer across servers.
func (db *DB) writePG(ctx context.Context, fn func(tx *Tx) error) (int64, error) {
	if rev, ok := db.view.Revision(); ok {
		n, err, retry := db.writeSpec(ctx, fn, rev+1)
		if !retry {
			return n, err
		}
	}
	w, rev, err := db.beginPG(ctx)
	if err != nil {
		return 0, err
	}
	tx := &Tx{db: db, write: true, ctx: ctx, pg: w, rev: rev, overlay: map[string]*ovEntry{}}
	done := false
	defer func() {
		if !done {
			db.rollbackPG(w)
		}
	}()
	if err := db.syncView(ctx, rev-1, true); err != nil {
		return 0, fmt.Errorf("store: sync: %w", err)
	}
	if err := fn(tx); err != nil {
		return 0, err
	}
	if aborted, err := w.commit(); err != nil {
		if aborted {
			return 0, fmt.Errorf("store: commit: %w", err)
		}
		db.dropPG(w.conn) // the outcome is unknown: start afresh
		done = true
		return 0, fmt.Errorf("store: commit: %w", err)
	}
	done = true
	return db.committed(tx), nil
}

// writeSpec runs fn optimistically at revision rev (the view's plus one).
// retry asks for the careful path: the view was not current, a claim
// failed, or fn failed in a way a current view might not have.
func (db *DB) writeSpec(ctx context.Context, fn func(tx *Tx) error, rev int64) (n int64, err error, retry bool) {
	w, err := db.beginSpec(ctx, rev)
	if err != nil {
		return 0, err, false
	}
	tx := &Tx{db: db, write: true, ctx: ctx, pg: w, rev: rev, overlay: map[string]*ovEntry{}}
	done := false
	defer func() {
		if !done && w.sent {
			db.rollbackPG(w)
		}
	}()
	if err := fn(tx); err != nil {
		// An error found in a stale view (another server wrote since)
		// may not stand: it does if the guard went through, or if the
		// revision has not moved; else the careful path, which catches up
		// first, decides.
		if w.failed != nil {
			return 0, err, true
		}
		if !w.sent {
			var cur int64
			if e := w.conn.QueryRow(ctx, "SELECT rev FROM revision WHERE id = 1").Scan(&cur); e != nil || cur != rev-1 {
				return 0, err, true
			}
		}
		return 0, err, false
	}
	if tx.seq == 0 && w.idle() {
		done = true
		return 0, nil, false // nothing to write
	}
	if aborted, err := w.commit(); err != nil {
		if aborted {
			return 0, err, true
		}
		db.dropPG(w.conn) // the outcome is unknown: start afresh
		done = true
		return 0, fmt.Errorf("store: commit: %w", err), false
	}
	done = true
	return db.committed(tx), nil, false
}

// committed publishes a committed write to the view and to watchers.
func (db *DB) committed(tx *Tx) int64 {
	if tx.rev != 0 {
		db.view.ApplyCommitted(tx.rev, tx.changes)
		for {
			if c := db.committedRev.Load(); c >= tx.rev || db.committedRev.CompareAndSwap(c, tx.rev) {
				break
			}
		}
		db.nmu.Lock()
		close(db.notify)
		db.notify = make(chan struct{})
		db.nmu.Unlock()
	}
	if tx.seq == 0 {
		return 0
	}
	return tx.rev
}

// Read runs fn in a read transaction (a consistent snapshot).
//
// Get and List read the in-memory view (brought up to the newest committed
// revision first); a SQL snapshot is opened only if fn runs SQL itself.
func (db *DB) Read(ctx context.Context, fn func(tx *Tx) error) error {
	return db.ReadAtLeast(ctx, 0, fn)
}

// ReadAtLeast is Read for a reader that needs to see revision rev and
// every commit of this process, not necessarily every commit of other
// servers sharing the database: when the view has those, it is read as
// it is, without asking the database for the latest revision.
func (db *DB) ReadAtLeast(ctx context.Context, rev int64, fn func(tx *Tx) error) error {
	return db.read(&Tx{db: db, ctx: ctx, floor: rev}, fn)
}

func (db *DB) read(tx *Tx, fn func(tx *Tx) error) error {
	defer func() {
		if tx.tx != nil {
			tx.tx.Rollback()
		}
	}()
	return fn(tx)
}

// snapshot is the isolation of read transactions: one snapshot for all
// their statements (SQLite's WAL readers have that already).
func (db *DB) snapshot() *sql.TxOptions {
	if db.Dialect == Postgres {
		return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	}
	return nil
}

// sql returns the transaction, opening a read snapshot on first use.
func (tx *Tx) sql() *sql.Tx {
	if tx.tx == nil {
		t, err := tx.db.r.BeginTx(tx.ctx, tx.db.snapshot())
		if err != nil {
			tx.err = fmt.Errorf("store: begin: %w", err)
			return nil
		}
		tx.tx = t
	}
	return tx.tx
}

// Changed returns a channel closed at the next committed write.
func (db *DB) Changed() <-chan struct{} {
	db.nmu.Lock()
	defer db.nmu.Unlock()
	return db.notify
}

// Exec runs a statement inside the transaction.
func (tx *Tx) Exec(q string, args ...any) (Result, error) {
	if tx.pg != nil {
		return tx.pg.exec(tx.db.rebind(q), args...)
	}
	if tx.wc != nil {
		return tx.wc.exec(tx.ctx, q, args...)
	}
	t := tx.sql()
	if t == nil {
		return nil, tx.err
	}
	return t.Exec(tx.db.rebind(q), args...)
}

// Query runs a query inside the transaction.
func (tx *Tx) Query(q string, args ...any) (Rows, error) {
	if tx.pg != nil {
		return tx.pg.query(tx.db.rebind(q), args...)
	}
	if tx.wc != nil {
		return tx.wc.query(tx.ctx, q, args...)
	}
	t := tx.sql()
	if t == nil {
		return nil, tx.err
	}
	rows, err := t.Query(tx.db.rebind(q), args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// QueryRow runs a single-row query inside the transaction.
func (tx *Tx) QueryRow(q string, args ...any) Row {
	if tx.pg != nil {
		return tx.pg.queryRow(tx.db.rebind(q), args...)
	}
	if tx.wc != nil {
		return tx.wc.queryRow(tx.ctx, q, args...)
	}
	t := tx.sql()
	if t == nil {
		return errRow{tx.err}
	}
	return t.QueryRow(tx.db.rebind(q), args...)
}

// Claim inserts a row into an allocation table and reports whether its key
// was free; a taken key changes nothing. q is an INSERT whose first keyCols
// values are the table's primary key (the thing allocated). In an optimistic PostgreSQL write the claim is
// sent with COMMIT and assumed to succeed: if the key was taken after all,
// the whole write runs again and this claim is answered then.
func (tx *Tx) Claim(q string, keyCols int, args ...any) (bool, error) {
	if tx.pg != nil && tx.pg.spec {
		// Keys claimed earlier in this transaction are known to be taken.
		key := fmt.Sprint(q, args[:keyCols])
		if tx.claimed[key] || tx.held[key] {
			return false, nil // (a key freed since in the batch is only skipped)
		}
		if tx.claimed == nil {
			tx.claimed = map[string]bool{}
		}
		tx.claimed[key] = true
		if tx.held != nil {
			tx.held[key] = true
		}
		tx.pg.queue(tx.db.rebind(q), args...)
		return true, nil
	}
	res, err := tx.Exec(q+" ON CONFLICT DO NOTHING", args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return err == nil && n == 1, err
}

// Do runs a statement whose result is not needed (on PostgreSQL it is sent
// with the next statement that needs an answer, or with COMMIT).
func (tx *Tx) Do(q string, args ...any) error {
	tx.claimed = nil // it may free a key claimed before
	if tx.pg != nil {
		tx.pg.queue(tx.db.rebind(q), args...)
		return nil
	}
	_, err := tx.Exec(q, args...)
	return err
}

// EachRow runs query q and calls row with each result row's Scan, until
// the rows end or row fails.
func (tx *Tx) EachRow(q string, args []any, row func(scan func(dest ...any) error) error) error {
	rows, err := tx.Query(q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Collect runs query q and returns what row makes of each result row.
func Collect[T any](tx *Tx, q string, args []any, row func(scan func(dest ...any) error) (T, error)) ([]T, error) {
	var out []T
	if err := tx.EachRow(q, args, func(scan func(...any) error) error {
		v, err := row(scan)
		if err != nil {
			return err
		}
		out = append(out, v)
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// Strings runs a query whose rows are one text column.
func (tx *Tx) Strings(q string, args ...any) ([]string, error) {
	return Collect(tx, q, args, func(scan func(...any) error) (string, error) {
		var s string
		err := scan(&s)
		return s, err
	})
}

// Revision takes (once per transaction) and returns this write's revision.
func (tx *Tx) Revision() (int64, error) {
	if !tx.write {
		return 0, errors.New("store: revision in a read transaction")
	}
	if tx.rev != 0 {
		return tx.rev, nil
	}
	if tx.wc != nil { // SQLite: see the package comment
		if tx.overlay == nil { // a write without the view did not read it
			if err := tx.QueryRow(tx.db.revisionQuery()).Scan(&tx.base); err != nil {
				return 0, fmt.Errorf("store: revision: %w", err)
			}
		}
		tx.rev = tx.base + 1
		return tx.rev, nil
	}
	var rev int64
	if err := tx.QueryRow("UPDATE revision SET rev = rev + 1 WHERE id = 1 RETURNING rev").Scan(&rev); err != nil {
		return 0, fmt.Errorf("store: next revision: %w", err)
	}
	tx.rev = rev
	return rev, nil
}

// Revision is the latest committed revision.
func (db *DB) Revision(ctx context.Context) (int64, error) { return db.currentRevision(ctx) }

// currentRevision reads the current revision, which every read does: with
// a statement prepared once (on SQLite, parsing it each time cost more
// than the rest of a small read).
func (db *DB) currentRevision(ctx context.Context) (int64, error) {
	db.revMu.Lock()
	st := db.revStmt
	if st == nil {
		var err error
		if st, err = db.r.PrepareContext(ctx, db.revisionQuery()); err != nil {
			db.revMu.Unlock()
			return 0, err
		}
		db.revStmt = st
	}
	db.revMu.Unlock()
	var rev int64
	err := st.QueryRowContext(ctx).Scan(&rev)
	return rev, err
}

// revisionQuery selects the current revision (see the package comment).
func (db *DB) revisionQuery() string {
	if db.Dialect == SQLite {
		return "SELECT max(rev, compacted, coalesce((SELECT max(rev) FROM changes), 0)) FROM revision WHERE id = 1"
	}
	return "SELECT rev FROM revision WHERE id = 1"
}

// Get returns one resource. In a write transaction the result is the caller's
// own copy; in a read transaction it is shared and must not be modified.
func (tx *Tx) Get(kind, id string) (Object, error) {
	if !tx.write {
		if err := tx.syncView(); err != nil {
			return nil, err
		}
		if o, ok := tx.db.view.Get(kind, id); ok {
			return o, nil
		}
		return nil, ErrNotFound
	}
	if tx.overlay != nil {
		if e, ok := tx.overlay[ovKey(kind, id)]; ok {
			if e.obj == nil {
				return nil, ErrNotFound
			}
			return copyObject(e.obj), nil
		}
		if o, ok := tx.db.view.Get(kind, id); ok {
			return copyObject(o), nil
		}
		return nil, ErrNotFound
	}
	var body string
	err := tx.QueryRow("SELECT body FROM resources WHERE kind = ? AND id = ?", kind, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s %s: %w", kind, id, err)
	}
	return decode(kind, id, body)
}

// syncView brings the in-memory view up to this read's snapshot.
func (tx *Tx) syncView() error {
	if tx.synced {
		return nil
	}
	if tx.floor > 0 {
		if r, ok := tx.db.view.Revision(); ok && r >= tx.floor && r >= tx.db.committedRev.Load() {
			tx.synced = true
			return nil
		}
	}
	// Outside any snapshot: revisions commit in order and changes up to a
	// committed revision never change, so replaying up to rev is consistent.
	// Both are short; a cancellable context would cost a watcher goroutine
	// per query (see write).
	if err := tx.db.syncToHead(context.WithoutCancel(tx.ctx)); err != nil {
		return err
	}
	tx.synced = true
	return nil
}

// syncToHead brings the view up to the latest committed revision.
func (db *DB) syncToHead(ctx context.Context) error {
	rev, err := db.currentRevision(ctx)
	if err != nil {
		return fmt.Errorf("store: revision: %w", err)
	}
	if err := db.syncView(ctx, rev, false); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	return nil
}

func decode(kind, id, body string) (Object, error) {
	var obj Object
	if err := json.Unmarshal([]byte(body), &obj); err != nil {
		return nil, fmt.Errorf("store: decode %s/%s: %w", kind, id, err)
	}
	return obj, nil
}

// Filter narrows a List by indexed columns; empty fields do not filter
// (see view.Filter).
type Filter = view.Filter

// IndexAttr indexes attribute attr of kind's objects in the view (a
// string, or each string of a list), so that lists filtered by it cost what
// they find, not the whole kind.
func (db *DB) IndexAttr(kind, attr string) { db.view.Index(kind, attr) }

// IndexDerived indexes kind by a derived attribute: name's values are what
// fn makes of an object (strings), for Filter.Attr as a stored attribute's.
// Names are one namespace across kinds and stores.
func (db *DB) IndexDerived(kind, name string, fn func(Object) []string) {
	view.Derive(name, fn)
	db.view.Index(kind, name)
}

// List returns the resources of kind matching f, ordered by id. In a read
// transaction the objects are shared: copy before modifying.
func (tx *Tx) List(kind string, f Filter) ([]Object, error) {
	if !tx.write {
		if err := tx.syncView(); err != nil {
			return nil, err
		}
		return tx.db.view.List(kind, f), nil
	}
	if tx.overlay != nil {
		return tx.listOverlaid(kind, f), nil
	}
	q := "SELECT id, body FROM resources WHERE kind = ?"
	args := []any{kind}
	in := func(col string, vals []string) {
		q += " AND " + col + " IN (" + strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",") + ")"
		for _, v := range vals {
			args = append(args, v)
		}
	}
	if len(f.Projects) > 0 {
		in("project_id", f.Projects)
	}
	if f.Parent != "" {
		q += " AND parent_id = ?"
		args = append(args, f.Parent)
	}
	if len(f.Parents) > 0 {
		in("parent_id", f.Parents)
	}
	if len(f.IDs) > 0 {
		in("id", f.IDs)
	}
	rows, err := tx.Query(q+" ORDER BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", kind, err)
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			return nil, err
		}
		obj, err := decode(kind, id, body)
		if err != nil {
			return nil, err
		}
		if f.MatchAttr(obj) {
			out = append(out, obj)
		}
	}
	return out, rows.Err()
}

// Select returns the resources of kind for which keep is true, as List
// does (nil when none is kept).
func (tx *Tx) Select(kind string, keep func(Object) bool) ([]Object, error) {
	all, err := tx.List(kind, Filter{})
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, o := range all {
		if keep(o) {
			out = append(out, o)
		}
	}
	return out, nil
}

// DeleteChildren deletes the resources of kind whose parent is parent (a
// deleted object's dependents) and returns them.
func (tx *Tx) DeleteChildren(kind, parent string) ([]Object, error) {
	children, err := tx.List(kind, Filter{Parent: parent})
	if err != nil {
		return nil, err
	}
	for _, o := range children {
		id, _ := o["id"].(string)
		if err := tx.Delete(kind, id); err != nil {
			return nil, err
		}
	}
	return children, nil
}

// Version is the revision at which the objects of kind that f selects
// last changed (one was put or deleted): by f.Parent alone, by f.Attr with
// one value (an indexed attribute), or the whole kind for an empty filter;
// 0 when none is there. What a cache of such a list can be keyed by: the
// same version, the same list. ok is false in a write transaction and for
// other filters.
func (tx *Tx) Version(kind string, f Filter) (v int64, ok bool) {
	if tx.write {
		return 0, false
	}
	if err := tx.syncView(); err != nil {
		return 0, false
	}
	return tx.db.view.Version(kind, f)
}

// ChangedSince returns the ids of the objects of kind changed (put or
// deleted) after revision after, as far as the view has applied changes,
// and at most limit of them; ok is false when the view's recent changes do
// not reach back to after, when there are more than limit, and in a write
// transaction. What a cache worked out at revision after needs to look at
// again.
func (tx *Tx) ChangedSince(kind string, after int64, limit int) (ids []string, ok bool) {
	if tx.write {
		return nil, false
	}
	if err := tx.syncView(); err != nil {
		return nil, false
	}
	return tx.db.view.ChangedSince(kind, after, limit)
}

// Memo returns the memo of o if o is the current version of its object in
// the view (read transactions only), else nil.
func (tx *Tx) Memo(kind string, o Object) *Memo {
	if tx.write {
		return nil
	}
	return tx.db.view.Memo(kind, o)
}

// Count counts the resources of kind in a project.
func (tx *Tx) Count(kind, project string) (int, error) {
	if !tx.write || tx.overlay != nil {
		if !tx.write {
			if err := tx.syncView(); err != nil {
				return 0, err
			}
		}
		n := tx.db.view.Count(kind, project)
		for _, e := range tx.overlay {
			if e.kind != kind {
				continue
			}
			before, _, had := tx.db.view.Meta(kind, e.id)
			was := had && before == project
			now := e.obj != nil && e.project == project
			switch {
			case was && !now:
				n--
			case now && !was:
				n++
			}
		}
		return n, nil
	}
	var n int
	err := tx.QueryRow("SELECT COUNT(*) FROM resources WHERE kind = ? AND project_id = ?", kind, project).Scan(&n)
	return n, err
}

// Put inserts or replaces a resource and logs the change.
func (tx *Tx) Put(kind, parent string, obj Object) error {
	id, _ := obj["id"].(string)
	if id == "" {
		return errors.New("store: put without id")
	}
	project, _ := obj["project_id"].(string)
	body, err := jsonx.Append(nil, obj)
	if err != nil {
		return fmt.Errorf("store: encode %s %s: %w", kind, id, err)
	}
	rev, err := tx.Revision()
	if err != nil {
		return err
	}
	if tx.db.Dialect == Postgres {
		// One round trip for the row and its change-log entry.
		tx.seq++
		q := `WITH r AS (INSERT INTO resources (kind, id, project_id, parent_id, rev, body) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (kind, id) DO UPDATE SET project_id = EXCLUDED.project_id, parent_id = EXCLUDED.parent_id, rev = EXCLUDED.rev, body = EXCLUDED.body RETURNING 1)
INSERT INTO changes (rev, seq, kind, id, op, project_id, parent_id, body) SELECT $5, $7, $1, $2, 'put', $3, $4, $6 FROM r`
		args := []any{kind, id, project, parent, rev, string(body), tx.seq}
		if tx.pg != nil {
			tx.pg.queue(q, args...) // sent with the next read or with COMMIT
		} else if _, err := tx.Exec(q, args...); err != nil {
			return fmt.Errorf("store: put %s %s: %w", kind, id, err)
		}
		return tx.recordPut(rev, kind, id, project, parent, obj)
	}
	// SQLite (PostgreSQL returned above).
	q := "INSERT OR REPLACE INTO resources (kind, id, project_id, parent_id, rev, body) VALUES (?, ?, ?, ?, ?, ?)"
	if _, err := tx.Exec(q, kind, id, project, parent, rev, string(body)); err != nil {
		return fmt.Errorf("store: put %s %s: %w", kind, id, err)
	}
	if err := tx.recordPut(rev, kind, id, project, parent, obj); err != nil {
		return err
	}
	return tx.logChange(rev, kind, id, "put", project, parent, string(body))
}

// recordPut remembers a put for the view and this transaction's reads. The
// view gets the stored form: a deep copy normalized to JSON's types, which
// is what a reader decoding the row would get, sharing nothing with the
// caller's map.
func (tx *Tx) recordPut(rev int64, kind, id, project, parent string, obj Object) error {
	stored, err := jsonCopy(obj)
	if err != nil {
		return fmt.Errorf("store: copy %s/%s: %w", kind, id, err)
	}
	tx.changes = append(tx.changes, Change{Rev: rev, Kind: kind, ID: id, Op: "put", Project: project, Parent: parent, Body: stored})
	if tx.overlay != nil {
		tx.overlay[ovKey(kind, id)] = &ovEntry{kind: kind, id: id, project: project, parent: parent, obj: stored}
	}
	return nil
}

// Delete removes a resource and logs the change. Deleting a missing resource
// returns ErrNotFound.
func (tx *Tx) Delete(kind, id string) error {
	var project, parent string
	if tx.overlay != nil {
		m, ok := tx.meta(kind, id)
		if !ok {
			return ErrNotFound
		}
		project, parent = m.project, m.parent
	} else {
		err := tx.QueryRow("SELECT project_id, parent_id FROM resources WHERE kind = ? AND id = ?", kind, id).Scan(&project, &parent)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("store: delete %s %s: %w", kind, id, err)
		}
	}
	rev, err := tx.Revision()
	if err != nil {
		return err
	}
	if tx.pg != nil {
		tx.pg.queue("DELETE FROM resources WHERE kind = $1 AND id = $2", kind, id)
	} else if _, err := tx.Exec("DELETE FROM resources WHERE kind = ? AND id = ?", kind, id); err != nil {
		return fmt.Errorf("store: delete %s %s: %w", kind, id, err)
	}
	tx.changes = append(tx.changes, Change{Rev: rev, Kind: kind, ID: id, Op: "delete", Project: project, Parent: parent})
	if tx.overlay != nil {
		tx.overlay[ovKey(kind, id)] = &ovEntry{kind: kind, id: id, project: project, parent: parent}
	}
	return tx.logChange(rev, kind, id, "delete", project, parent, "")
}

func (tx *Tx) logChange(rev int64, kind, id, op, project, parent, body string) error {
	tx.seq++
	if tx.pg != nil {
		tx.pg.queue("INSERT INTO changes (rev, seq, kind, id, op, project_id, parent_id, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
			rev, tx.seq, kind, id, op, project, parent, body)
		return nil
	}
	_, err := tx.Exec("INSERT INTO changes (rev, seq, kind, id, op, project_id, parent_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		rev, tx.seq, kind, id, op, project, parent, body)
	if err != nil {
		return fmt.Errorf("store: log change: %w", err)
	}
	return nil
}

// Change is one entry of the change log.
type Change = view.Change

// Memo holds values derived from one version of one object (such as its
// encoded response), dropped with that version.
type Memo = view.Memo

// Changes returns about limit changes with revision > after, oldest first.
// A batch always ends at a revision boundary (the last revision's changes
// are all included, even past limit), so a reader resuming after the last
// revision it saw misses nothing. ErrCompacted means changes after `after`
// are no longer all kept.
func (db *DB) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	// The view holds the latest changes: once it is current, watchers
	// near the head read them there (shared: the bodies must not be
	// modified), not from the database.
	if err := db.syncToHead(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	if out, ok := db.view.ChangesAfter(after, limit); ok {
		return out, nil
	}
	return db.changesFromLog(ctx, after, limit)
}

// RecentChanges returns the changes after revision after as Changes
// does, without asking the database, when the view holds them and every
// commit of this process: what a watcher woken by a commit here reads
// (commits of other servers sharing the database are found by Changes).
func (db *DB) RecentChanges(after int64, limit int) ([]Change, bool) {
	if rev, ok := db.view.Revision(); !ok || rev < db.committedRev.Load() {
		return nil, false
	}
	return db.view.ChangesAfter(after, limit)
}

// changesFromLog reads the changes after revision after from the log.
func (db *DB) changesFromLog(ctx context.Context, after int64, limit int) ([]Change, error) {
	var out []Change
	err := db.Read(ctx, func(tx *Tx) error {
		var compacted int64
		if err := tx.QueryRow("SELECT compacted FROM revision WHERE id = 1").Scan(&compacted); err != nil {
			return err
		}
		if after < compacted {
			return ErrCompacted
		}
		const cols = "SELECT rev, seq, kind, id, op, project_id, parent_id, body FROM changes "
		scan := func(query string, args ...any) error {
			return tx.EachRow(query, args, func(scanRow func(...any) error) error {
				var c Change
				var body string
				if err := scanRow(&c.Rev, &c.Seq, &c.Kind, &c.ID, &c.Op, &c.Project, &c.Parent, &body); err != nil {
					return err
				}
				if body != "" {
					if err := json.Unmarshal([]byte(body), &c.Body); err != nil {
						return err
					}
				}
				out = append(out, c)
				return nil
			})
		}
		if err := scan(cols+"WHERE rev > ? ORDER BY rev, seq LIMIT ?", after, limit); err != nil {
			return err
		}
		if len(out) == limit {
			last := out[len(out)-1]
			return scan(cols+"WHERE rev = ? AND seq > ? ORDER BY seq", last.Rev, last.Seq)
		}
		return nil
	})
	return out, err
}

// Compact drops change-log entries at or below rev; later readers behind it
// get ErrCompacted.
func (db *DB) Compact(ctx context.Context, rev int64) error {
	_, err := db.Write(ctx, func(tx *Tx) error {
		if _, err := tx.Exec("DELETE FROM changes WHERE rev <= ?", rev); err != nil {
			return err
		}
		_, err := tx.Exec("UPDATE revision SET compacted = ? WHERE id = 1 AND compacted < ?", rev, rev)
		return err
	})
	if err == nil {
		db.view.Forget(rev)
	}
	return err
}

// CompactKeeping compacts the log so that the newest keep revisions remain
// (readers within that distance resume from the log; older ones re-list).
func (db *DB) CompactKeeping(ctx context.Context, keep int64) error {
	var compacted int64
	rev, err := db.currentRevision(ctx)
	if err != nil {
		return err
	}
	if err := db.r.QueryRowContext(ctx, "SELECT compacted FROM revision WHERE id = 1").Scan(&compacted); err != nil {
		return err
	}
	if rev-keep <= compacted {
		return nil
	}
	return db.Compact(ctx, rev-keep)
}

// IsUniqueViolation reports whether err is a unique-constraint failure.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "UNIQUE constraint failed") || strings.Contains(s, "SQLSTATE 23505") || strings.Contains(s, "duplicate key value")
}

// meta returns a resource's project and parent as this write sees them.
// rowMeta is an object's project and parent.
type rowMeta struct{ project, parent string }

func (tx *Tx) meta(kind, id string) (rowMeta, bool) {
	if e, ok := tx.overlay[ovKey(kind, id)]; ok {
		return rowMeta{e.project, e.parent}, e.obj != nil
	}
	project, parent, ok := tx.db.view.Meta(kind, id)
	return rowMeta{project, parent}, ok
}

// listOverlaid is List for a write: the view's rows with this transaction's
// changes applied, each a copy the caller owns.
func (tx *Tx) listOverlaid(kind string, f Filter) []Object {
	base := tx.db.view.List(kind, f)
	byID := make(map[string]Object, len(base))
	for _, o := range base {
		id, _ := o["id"].(string)
		byID[id] = o
	}
	for _, e := range tx.overlay {
		if e.kind != kind {
			continue
		}
		if e.obj == nil || !f.Match(e.id, e.project, e.parent) || !f.MatchAttr(e.obj) {
			delete(byID, e.id)
			continue
		}
		byID[e.id] = e.obj
	}
	ids := slices.Sorted(maps.Keys(byID))
	out := make([]Object, 0, len(ids))
	for _, id := range ids {
		out = append(out, copyObject(byID[id]))
	}
	return out
}

// copyObject deep-copies a JSON object.
func copyObject(o Object) Object {
	c, _ := jsonx.Copy(o).(map[string]any)
	return c
}

// jsonCopy deep-copies o into the types encoding/json decodes to (objects,
// arrays, strings, float64, bool, nil); other values take a JSON round trip.
func jsonCopy(o Object) (Object, error) {
	v, err := jsonValue(o)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	return m, nil
}

func jsonValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool, float64:
		return x, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			m[k] = c
		}
		return m, nil
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			c, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			l[i] = c
		}
		return l, nil
	default:
		raw, err := json.Marshal(x)
		if err != nil {
			return nil, err
		}
		var out any
		err = json.Unmarshal(raw, &out)
		return out, err
	}
}

// ViewRevision brings the view up to date and returns the revision it is
// at: everything committed up to it is visible to this read (and possibly a
// little more, which a watcher resuming from it replays harmlessly).
func (tx *Tx) ViewRevision() (int64, error) {
	if err := tx.syncView(); err != nil {
		return 0, err
	}
	rev, _ := tx.db.view.Revision()
	return rev, nil
}

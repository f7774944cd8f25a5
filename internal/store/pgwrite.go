package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostgreSQL writes run on one dedicated pgx connection (writers are
// serialized anyway) so that statements can be pipelined.
//
// A write is first tried optimistically, in one round trip: it assumes the
// in-memory view is current (revision V), runs the transaction against it,
// and sends BEGIN, a guard that takes revision V+1 and fails unless the
// revision row held V, the allocation claims (plain INSERTs that fail on a
// taken key), the resource rows, the change-log entries and COMMIT together.
// The view knows every allocation that was committed up to V, and the guard
// holds the revision row until COMMIT, so a claim fails only when the
// guard's assumption was wrong or a random candidate was taken. Any failure
// before COMMIT leaves nothing behind; the write then runs again the careful
// way: BEGIN with the revision update in one round trip, the view brought up
// to date under that lock, each claim answered by the database (ON CONFLICT
// DO NOTHING), and the rows with COMMIT.
//
// An optimistic write that needs no answer before its end is sent without
// BEGIN and COMMIT: statements pipelined up to one Sync are one implicit
// transaction, committed at the Sync if every statement succeeded and
// rolled back otherwise. BEGIN goes with the first statements sent early
// (a read through SQL), and COMMIT then ends the write.

// Result is what Exec returns.
type Result interface{ RowsAffected() (int64, error) }

// Row is what QueryRow returns.
type Row interface{ Scan(dest ...any) error }

// Rows is what Query returns.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Close() error
	Err() error
}

type pgResult struct{ tag pgconn.CommandTag }

func (r pgResult) RowsAffected() (int64, error) { return r.tag.RowsAffected(), nil }

type pgRows struct {
	pgx.Rows
	w *pgWriter
}

func (r pgRows) Close() error { r.Rows.Close(); return r.w.note(r.Rows.Err()) }

func (r pgRows) Err() error { return r.w.note(r.Rows.Err()) }

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

type queued struct {
	q    string
	args []any
}

// pgWriter is a write transaction's use of the dedicated connection.
type pgWriter struct {
	conn    *pgx.Conn
	ctx     context.Context
	pending []queued
	spec    bool  // optimistic: claims are assumed to succeed
	sent    bool  // statements of this transaction reached the server
	begun   bool  // an explicit transaction (BEGIN) is open
	failed  error // a statement failed: the transaction is aborted
}

// pgConn returns the writer connection, (re)connecting when needed. The
// caller holds db.wmu.
func (db *DB) pgConn(ctx context.Context) (*pgx.Conn, error) {
	if db.pgw != nil && !db.pgw.IsClosed() {
		return db.pgw, nil
	}
	c, err := pgx.Connect(ctx, db.dsn)
	if err != nil {
		return nil, fmt.Errorf("store: writer connection: %w", err)
	}
	db.pgw = c
	return c, nil
}

// beginPG starts a write and takes the next revision in one round trip.
func (db *DB) beginPG(ctx context.Context) (*pgWriter, int64, error) {
	c, err := db.pgConn(ctx)
	if err != nil {
		return nil, 0, err
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("UPDATE revision SET rev = rev + 1 WHERE id = 1 RETURNING rev")
	br := c.SendBatch(ctx, b)
	var rev int64
	_, err = br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&rev)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		db.dropPG(c)
		return nil, 0, fmt.Errorf("store: begin: %w", err)
	}
	return &pgWriter{conn: c, ctx: ctx, begun: true}, rev, nil
}

// dropPG closes a writer connection left in an unknown state.
func (db *DB) dropPG(c *pgx.Conn) {
	c.Close(context.Background())
	if db.pgw == c {
		db.pgw = nil
	}
}

// specGuard takes the next revision only if the revision row still holds
// the one the optimistic write assumed ($1 is that plus one): otherwise it
// divides by zero, which aborts the transaction.
const specGuard = "UPDATE revision SET rev = rev + 1 WHERE id = 1 RETURNING 1 / (rev = $1)::int"

// beginSpec starts an optimistic write at revision rev; nothing is sent yet.
func (db *DB) beginSpec(ctx context.Context, rev int64) (*pgWriter, error) {
	c, err := db.pgConn(ctx)
	if err != nil {
		return nil, err
	}
	w := &pgWriter{conn: c, ctx: ctx, spec: true}
	w.queue(specGuard, rev)
	return w, nil
}

// idle reports whether nothing but the guard is queued or sent.
func (w *pgWriter) idle() bool { return !w.sent && len(w.pending) <= 1 }

// note records a statement's failure: the transaction is aborted.
func (w *pgWriter) note(err error) error {
	if err != nil && w.failed == nil && !errors.Is(err, pgx.ErrNoRows) {
		w.failed = err
	}
	return err
}

// flush sends the queued statements (before anything reads through SQL).
func (w *pgWriter) flush() error {
	if w.failed != nil {
		return w.failed
	}
	if len(w.pending) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	if !w.begun { // more follows after this answer: an explicit transaction
		b.Queue("BEGIN")
		w.begun = true
	}
	for _, p := range w.pending {
		b.Queue(p.q, p.args...)
	}
	w.pending = nil
	w.sent = true
	return w.note(w.conn.SendBatch(w.ctx, b).Close())
}

func (w *pgWriter) queue(q string, args ...any) { w.pending = append(w.pending, queued{q, args}) }

func (w *pgWriter) exec(q string, args ...any) (Result, error) {
	if err := w.flush(); err != nil {
		return nil, err
	}
	tag, err := w.conn.Exec(w.ctx, q, args...)
	return pgResult{tag}, w.note(err)
}

func (w *pgWriter) query(q string, args ...any) (Rows, error) {
	if err := w.flush(); err != nil {
		return nil, err
	}
	rows, err := w.conn.Query(w.ctx, q, args...)
	if err != nil {
		return nil, w.note(err)
	}
	return pgRows{rows, w}, nil
}

func (w *pgWriter) queryRow(q string, args ...any) Row {
	if err := w.flush(); err != nil {
		return errRow{err}
	}
	return pgRow{w.conn.QueryRow(w.ctx, q, args...), w}
}

type pgRow struct {
	pgx.Row
	w *pgWriter
}

func (r pgRow) Scan(dest ...any) error { return r.w.note(r.Row.Scan(dest...)) }

// commit sends what is queued and COMMIT (or, with no transaction begun,
// the Sync that ends the implicit one) together. aborted reports that the
// server refused a statement before the commit, so nothing was committed
// and nothing is left open but a transaction to roll back; otherwise an
// error leaves the outcome unknown.
func (w *pgWriter) commit() (aborted bool, err error) {
	if w.failed != nil {
		return true, w.failed
	}
	explicit := w.begun
	if explicit {
		w.queue("COMMIT")
	}
	b := &pgx.Batch{}
	for _, p := range w.pending {
		b.Queue(p.q, p.args...)
	}
	n := len(w.pending)
	w.pending = nil
	w.sent = true
	br := w.conn.SendBatch(w.ctx, b)
	for i := 0; i < n; i++ {
		if _, err = br.Exec(); err != nil {
			var pe *pgconn.PgError
			// A statement's error rolls the transaction back, except
			// COMMIT's own (then the outcome is not known). The
			// implicit transaction commits at the Sync, after every
			// statement's answer: a failure there comes from Close.
			aborted = (i < n-1 || !explicit) && errors.As(err, &pe)
			break
		}
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		w.failed = err
	}
	return aborted, err
}

// rollback ends the transaction; a connection that cannot is dropped.
func (db *DB) rollbackPG(w *pgWriter) {
	w.pending = nil
	if !w.begun {
		return // an implicit transaction ends with its batch
	}
	if _, err := w.conn.Exec(context.Background(), "ROLLBACK"); err != nil {
		db.dropPG(w.conn)
	}
}

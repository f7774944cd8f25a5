package store

import (
	"context"
	"errors"
	"fmt"
	"maps"

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
	sends   int   // round trips made before commit (a batch's writes are told apart by it)
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
	w.sends++
	tag, err := w.conn.Exec(w.ctx, q, args...)
	return pgResult{tag}, w.note(err)
}

func (w *pgWriter) query(q string, args ...any) (Rows, error) {
	if err := w.flush(); err != nil {
		return nil, err
	}
	w.sends++
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
	w.sends++
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

// Group commit on PostgreSQL. The writes queued while one commits (see
// writeGrouped) are run optimistically as one transaction: the guard takes
// the view's revision plus one, and each write runs against the view and
// what the writes before it in the batch changed and claimed, taking the
// next revision if it changes anything; the revision row is set to the
// last at the end, and everything goes in one round trip with COMMIT (one
// fsync for the batch). A write that fails is taken out of the batch (its
// statements were only queued) and runs again on its own after it, where
// its failure is judged as any write's is. When the batch cannot commit (a
// claim found taken, another server wrote first, a statement failed) or a
// write had to read through SQL before failing, nothing of it was
// committed, and every write of it runs again on its own: the way a single
// write retries. Nothing is acknowledged before its commit; revisions
// commit in order; a claim stays the database's to grant.

// runBatchPG runs a batch of writes on PostgreSQL and answers each. The
// caller holds db.wmu.
func (db *DB) runBatchPG(batch []*writeReq) {
	rev, ok := db.view.Revision()
	if len(batch) == 1 || !ok {
		for _, req := range batch {
			db.writeAlonePG(req)
		}
		return
	}
	ctx := context.Background()
	w, err := db.beginSpec(ctx, rev+1)
	if err != nil {
		for _, req := range batch {
			req.res <- writeRes{err: err}
		}
		return
	}
	overlay := map[string]*ovEntry{}
	var claimed map[string]bool
	held := map[string]bool{} // every key claimed in the batch
	cur := rev                // the last revision taken
	var done []ran
	var alone []*writeReq // to run on their own, after the batch
	for i, req := range batch {
		mark, sends := len(w.pending), w.sends
		tx := &Tx{db: db, write: true, ctx: req.ctx, pg: w, rev: cur + 1, overlay: maps.Clone(overlay), claimed: maps.Clone(claimed), held: maps.Clone(held)}
		err, panicked := call(req.fn, tx)
		if err != nil || panicked != nil || w.failed != nil {
			if w.sends != sends || w.failed != nil {
				// What it sent cannot be taken back: the batch is over.
				db.rollbackPG(w)
				w.sent = false // ended
				alone = append(append(reqsOf(done), alone...), batch[i:]...)
				done = nil
				break
			}
			w.pending = w.pending[:mark]
			alone = append(alone, req)
			continue
		}
		if tx.seq == 0 {
			if w.sends == sends && len(w.pending) == mark {
				req.res <- writeRes{} // it wrote nothing
				continue
			}
			tx.rev = 0 // rows (or reads) but no change: no revision
		} else {
			cur = tx.rev
		}
		overlay, claimed, held = tx.overlay, tx.claimed, tx.held
		done = append(done, ran{req, tx})
	}
	if len(done) > 0 {
		w.queue("UPDATE revision SET rev = $1 WHERE id = 1", cur)
		aborted, err := w.commit()
		switch {
		case err == nil:
			for _, d := range done {
				d.req.res <- writeRes{rev: db.committed(d.tx)}
			}
		case aborted:
			if w.begun {
				db.rollbackPG(w)
			}
			alone = append(reqsOf(done), alone...)
		default:
			db.dropPG(w.conn) // the outcome is unknown: start afresh
			for _, d := range done {
				d.req.res <- writeRes{err: fmt.Errorf("store: commit: %w", err)}
			}
		}
	} else if w.sent {
		db.rollbackPG(w)
	}
	for _, req := range alone {
		db.writeAlonePG(req)
	}
}

// writeAlonePG runs one write as a transaction of its own and answers it.
func (db *DB) writeAlonePG(req *writeReq) {
	var res writeRes
	func() {
		defer func() {
			if p := recover(); p != nil {
				res = writeRes{panicked: p}
			}
		}()
		res.rev, res.err = db.writePG(req.ctx, req.fn)
	}()
	req.res <- res
}

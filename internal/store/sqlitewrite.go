package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
)

// SQLite writes run on the one writer connection, pinned for the life of
// the DB, with every statement prepared once: parsing SQL, BEGIN IMMEDIATE
// and COMMIT included, was a large part of a small write's cost.

// maxStmts bounds the statement cache (statements built with a variable
// number of placeholders run unprepared past it).
const maxStmts = 512

type wconn struct {
	c     *sql.Conn
	stmts map[string]*sql.Stmt
}

// sqliteConn returns the writer connection. The caller holds db.wmu.
func (db *DB) sqliteConn(ctx context.Context) (*wconn, error) {
	if db.wc != nil {
		return db.wc, nil
	}
	c, err := db.w.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: writer connection: %w", err)
	}
	db.wc = &wconn{c: c, stmts: map[string]*sql.Stmt{}}
	return db.wc, nil
}

// stmt returns q prepared, or nil when the cache is full.
func (w *wconn) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := w.stmts[q]; ok {
		return st, nil
	}
	if len(w.stmts) >= maxStmts {
		return nil, nil
	}
	st, err := w.c.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	w.stmts[q] = st
	return st, nil
}

func (w *wconn) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := w.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return w.c.ExecContext(ctx, q, args...)
	}
	return st.ExecContext(ctx, args...)
}

func (w *wconn) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := w.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return w.c.QueryContext(ctx, q, args...)
	}
	return st.QueryContext(ctx, args...)
}

func (w *wconn) queryRow(ctx context.Context, q string, args ...any) Row {
	rows, err := w.query(ctx, q, args...)
	if err != nil {
		return errRow{err}
	}
	return &sqlRow{rows}
}

// sqlRow is QueryRow's answer built from Query (sql.Row cannot be).
type sqlRow struct{ rows *sql.Rows }

func (r *sqlRow) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	return r.rows.Close()
}

// close releases the connection (the DB is closing).
func (w *wconn) close() {
	for _, st := range w.stmts {
		st.Close()
	}
	w.c.Close()
}

// discard closes the connection for good (not back to the pool): it may be
// left inside a transaction.
func (w *wconn) discard() {
	for _, st := range w.stmts {
		st.Close()
	}
	w.c.Raw(func(any) error { return driver.ErrBadConn })
	w.c.Close()
}

// writeSQLite is write on SQLite without the view (migrations): BEGIN
// IMMEDIATE takes the database's write lock, which orders writers across
// processes sharing the file. Writes with the view go in batches
// (writeGrouped).
func (db *DB) writeSQLite(ctx context.Context, fn func(tx *Tx) error) (int64, error) {
	w, err := db.sqliteConn(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := w.exec(ctx, "BEGIN IMMEDIATE"); err != nil {
		return 0, fmt.Errorf("store: begin: %w", err)
	}
	tx := &Tx{db: db, wc: w, write: true, ctx: ctx}
	done := false
	defer func() {
		if !done { // fn panicked, or failed: end the transaction
			if _, err := w.exec(context.Background(), "ROLLBACK"); err != nil {
				w.discard() // leave no transaction open on the writer
				db.wc = nil
			}
		}
	}()
	if err := fn(tx); err != nil {
		return 0, err
	}
	if _, err := w.exec(ctx, "COMMIT"); err != nil {
		return 0, fmt.Errorf("store: commit: %w", err)
	}
	done = true
	return db.committed(tx), nil
}

// Group commit (SQLite): concurrent writers share one transaction and its
// fsync. The first writer to find no batch running leads: it takes every
// write queued, runs each in a savepoint of one transaction (in queue
// order, each seeing the ones before it and taking the next revision),
// commits once, and answers each writer; then it hands the lead to the
// first writer queued meanwhile. A write that fails is rolled back to its
// savepoint alone. Nothing is acknowledged before the commit, revisions
// commit in order, and allocations stay serialized: every guarantee of
// one write per transaction holds.

// maxBatch bounds the writes of one transaction.
const maxBatch = 128

type writeReq struct {
	ctx context.Context
	fn  func(tx *Tx) error
	res chan writeRes // the answer, or (lead) the lead of the next batch
}

type writeRes struct {
	rev      int64
	err      error
	panicked any
	lead     bool
}

// writeGrouped is write with the view on SQLite, in a batch.
func (db *DB) writeGrouped(ctx context.Context, fn func(tx *Tx) error) (int64, error) {
	req := &writeReq{ctx: ctx, fn: fn, res: make(chan writeRes, 1)}
	db.qmu.Lock()
	db.queue = append(db.queue, req)
	lead := !db.leading
	db.leading = true
	db.qmu.Unlock()
	for {
		if lead {
			db.lead()
		}
		r := <-req.res
		if r.lead {
			lead = true
			continue
		}
		if r.panicked != nil {
			panic(r.panicked)
		}
		return r.rev, r.err
	}
}

// lead runs the queued writes as one batch, then passes the lead to the
// first writer queued since, if any.
func (db *DB) lead() {
	db.qmu.Lock()
	n := min(len(db.queue), maxBatch)
	batch := db.queue[:n:n]
	db.queue = db.queue[n:]
	db.qmu.Unlock()
	db.wmu.Lock()
	db.runBatchSafely(batch)
	db.wmu.Unlock()
	db.qmu.Lock()
	if len(db.queue) > 0 {
		next := db.queue[0]
		db.qmu.Unlock()
		next.res <- writeRes{lead: true}
		return
	}
	db.leading = false
	db.qmu.Unlock()
}

// runBatchSafely runs a batch; should the batch's own machinery panic (the
// writes' panics are caught and answered), every write not answered yet
// is answered with an error of unknown outcome, and the lead goes on: a
// leader left dead would leave every later writer waiting.
func (db *DB) runBatchSafely(batch []*writeReq) {
	defer func() {
		if p := recover(); p != nil {
			err := fmt.Errorf("store: write batch failed, outcome unknown: %v", p)
			for _, req := range batch {
				select {
				case req.res <- writeRes{err: err}:
				default: // answered already
				}
			}
			if db.Dialect == SQLite && db.wc != nil {
				db.wc.discard() // its transaction may be open: a new connection
				db.wc = nil
			} else if db.pgw != nil {
				db.dropPG(db.pgw)
			}
		}
	}()
	if db.beforeBatch != nil {
		db.beforeBatch()
	}
	if db.Dialect == SQLite {
		db.runBatch(batch)
	} else {
		db.runBatchPG(batch)
	}
}

// runBatch runs a batch of writes in one transaction and answers each.
// The caller holds db.wmu.
func (db *DB) runBatch(batch []*writeReq) {
	ctx := context.Background()
	failAll := func(reqs []*writeReq, err error) {
		for _, r := range reqs {
			r.res <- writeRes{err: err}
		}
	}
	w, err := db.sqliteConn(ctx)
	if err != nil {
		failAll(batch, err)
		return
	}
	if _, err := w.exec(ctx, "BEGIN IMMEDIATE"); err != nil {
		failAll(batch, fmt.Errorf("store: begin: %w", err))
		return
	}
	rollback := func() {
		if _, err := w.exec(ctx, "ROLLBACK"); err != nil {
			w.discard() // leave no transaction open on the writer
			db.wc = nil
		}
	}
	var base int64
	if err := w.queryRow(ctx, db.revisionQuery()).Scan(&base); err != nil {
		rollback()
		failAll(batch, fmt.Errorf("store: revision: %w", err))
		return
	}
	if err := db.syncView(ctx, base, true); err != nil {
		rollback()
		failAll(batch, fmt.Errorf("store: sync: %w", err))
		return
	}
	overlay := map[string]*ovEntry{} // what the batch's writes so far changed
	var done []ran
	// abort ends the transaction and fails what is left: the writes that
	// ran (their work is gone) and those not run yet.
	abort := func(rest []*writeReq, err error) {
		rollback()
		failAll(reqsOf(done), err)
		failAll(rest, err)
	}
	for i, req := range batch {
		if _, err := w.exec(ctx, "SAVEPOINT w"); err != nil {
			abort(batch[i:], fmt.Errorf("store: savepoint: %w", err))
			return
		}
		tx := &Tx{db: db, wc: w, write: true, ctx: req.ctx, base: base, overlay: make(map[string]*ovEntry, len(overlay))}
		for k, v := range overlay {
			tx.overlay[k] = v
		}
		err, panicked := call(req.fn, tx)
		if err != nil || panicked != nil {
			_, rerr := w.exec(ctx, "ROLLBACK TO w")
			if rerr == nil {
				_, rerr = w.exec(ctx, "RELEASE w")
			}
			req.res <- writeRes{err: err, panicked: panicked}
			if rerr != nil {
				abort(batch[i+1:], fmt.Errorf("store: rollback to savepoint: %w", rerr))
				return
			}
			continue
		}
		if _, err := w.exec(ctx, "RELEASE w"); err != nil {
			abort(batch[i:], fmt.Errorf("store: release savepoint: %w", err))
			return
		}
		overlay = tx.overlay
		if tx.rev != 0 {
			base = tx.rev
		}
		done = append(done, ran{req, tx})
	}
	if len(done) == 0 {
		rollback()
		return
	}
	if _, err := w.exec(ctx, "COMMIT"); err != nil {
		abort(nil, fmt.Errorf("store: commit: %w", err))
		return
	}
	for _, d := range done {
		d.req.res <- writeRes{rev: db.committed(d.tx)}
	}
}

// ran is a write of a batch that ran, waiting for the commit.
type ran struct {
	req *writeReq
	tx  *Tx
}

func reqsOf(done []ran) []*writeReq {
	out := make([]*writeReq, 0, len(done))
	for _, d := range done {
		out = append(out, d.req)
	}
	return out
}

// call runs fn, turning a panic into its value.
func call(fn func(tx *Tx) error, tx *Tx) (err error, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
		}
	}()
	return fn(tx), nil
}

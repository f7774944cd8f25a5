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

// writeSQLite is write on SQLite: BEGIN IMMEDIATE takes the database's
// write lock, which orders writers across processes sharing the file.
func (db *DB) writeSQLite(ctx context.Context, fn func(tx *Tx) error, useView bool) (int64, error) {
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
	if useView {
		if err := w.queryRow(ctx, db.revisionQuery()).Scan(&tx.base); err != nil {
			return 0, fmt.Errorf("store: revision: %w", err)
		}
		if err := db.view.sync(ctx, db, tx.base, true); err != nil {
			return 0, fmt.Errorf("store: sync: %w", err)
		}
		tx.overlay = map[string]*ovEntry{}
	}
	if err := fn(tx); err != nil {
		return 0, err
	}
	if _, err := w.exec(ctx, "COMMIT"); err != nil {
		return 0, fmt.Errorf("store: commit: %w", err)
	}
	done = true
	return db.committed(tx), nil
}

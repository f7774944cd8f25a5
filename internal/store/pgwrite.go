package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PostgreSQL writes run on one dedicated pgx connection (writers are
// serialized anyway) so that statements can be pipelined: BEGIN travels with
// the revision update, and the resource rows and change-log entries, which
// nothing in the transaction reads back through SQL, travel with COMMIT. A
// network create costs three round trips instead of five.

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

type pgRows struct{ pgx.Rows }

func (r pgRows) Close() error { r.Rows.Close(); return r.Rows.Err() }

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
	return &pgWriter{conn: c, ctx: ctx}, rev, nil
}

// dropPG closes a writer connection left in an unknown state.
func (db *DB) dropPG(c *pgx.Conn) {
	c.Close(context.Background())
	if db.pgw == c {
		db.pgw = nil
	}
}

// flush sends the queued statements (before anything reads through SQL).
func (w *pgWriter) flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, p := range w.pending {
		b.Queue(p.q, p.args...)
	}
	w.pending = nil
	return w.conn.SendBatch(w.ctx, b).Close()
}

func (w *pgWriter) queue(q string, args ...any) { w.pending = append(w.pending, queued{q, args}) }

func (w *pgWriter) exec(q string, args ...any) (Result, error) {
	if err := w.flush(); err != nil {
		return nil, err
	}
	tag, err := w.conn.Exec(w.ctx, q, args...)
	return pgResult{tag}, err
}

func (w *pgWriter) query(q string, args ...any) (Rows, error) {
	if err := w.flush(); err != nil {
		return nil, err
	}
	rows, err := w.conn.Query(w.ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgRows{rows}, nil
}

func (w *pgWriter) queryRow(q string, args ...any) Row {
	if err := w.flush(); err != nil {
		return errRow{err}
	}
	return w.conn.QueryRow(w.ctx, q, args...)
}

// commit sends what is queued and COMMIT together.
func (w *pgWriter) commit() error {
	w.queue("COMMIT")
	err := w.flush()
	if err != nil {
		return err
	}
	return nil
}

// rollback ends the transaction; a connection that cannot is dropped.
func (db *DB) rollbackPG(w *pgWriter) {
	w.pending = nil
	if _, err := w.conn.Exec(context.Background(), "ROLLBACK"); err != nil {
		db.dropPG(w.conn)
	}
}

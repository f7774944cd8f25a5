package store

import (
	"context"
	"encoding/json"
	"fmt"

	"neutrino/internal/store/view"
)

// syncView brings the view to at least revision rev (committed): the
// changes logged since its revision are replayed, or everything is loaded
// again when they are no longer all logged. With exact (a writer holding
// the lock, so nothing newer can exist), a view ahead of rev means the
// database was replaced under this server (restored or recreated), and the
// view is reloaded; a reader may find the view ahead of the revision it
// read, because a write committed in between.
func (db *DB) syncView(ctx context.Context, rev int64, exact bool) error {
	if db.view.Current(rev, exact) {
		return nil
	}
	return db.view.Update(func(u view.Updater) error {
		if u.Current(rev, exact) {
			return nil
		}
		from, loaded := u.State()
		if loaded && from > rev {
			return db.loadView(ctx, u)
		}
		var compacted int64
		if err := db.r.QueryRowContext(ctx, "SELECT compacted FROM revision WHERE id = 1").Scan(&compacted); err != nil {
			return err
		}
		if !loaded || from < compacted {
			return db.loadView(ctx, u)
		}
		rows, err := db.r.QueryContext(ctx, db.rebind("SELECT rev, seq, kind, id, op, project_id, parent_id, body FROM changes WHERE rev > ? AND rev <= ? ORDER BY rev, seq"), from, rev)
		if err != nil {
			return err
		}
		defer rows.Close()
		// Decode everything first: a replay that stops half way (a
		// cancelled request, a bad row) must not leave a half-applied
		// revision behind.
		var batch []Change
		for rows.Next() {
			var c Change
			var body string
			if err := rows.Scan(&c.Rev, &c.Seq, &c.Kind, &c.ID, &c.Op, &c.Project, &c.Parent, &body); err != nil {
				return err
			}
			if c.Op != "delete" {
				if err := json.Unmarshal([]byte(body), &c.Body); err != nil {
					return fmt.Errorf("store: change %d %s/%s: %w", c.Rev, c.Kind, c.ID, err)
				}
			}
			batch = append(batch, c)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// A compaction between reading `compacted` and the changes may
		// have removed some of them: then the replay is incomplete, load
		// instead.
		var after int64
		if err := db.r.QueryRowContext(ctx, "SELECT compacted FROM revision WHERE id = 1").Scan(&after); err != nil {
			return err
		}
		if after > from {
			return db.loadView(ctx, u)
		}
		u.Replay(batch, rev)
		return nil
	})
}

// loadView reads every resource, with the revision they are current at,
// from one snapshot, into the view.
func (db *DB) loadView(ctx context.Context, u view.Updater) error {
	tx, err := db.r.BeginTx(ctx, db.snapshot())
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var rev int64
	if err := tx.QueryRow(db.revisionQuery()).Scan(&rev); err != nil {
		return err
	}
	rows, err := tx.Query("SELECT kind, id, project_id, parent_id, body FROM resources")
	if err != nil {
		return err
	}
	defer rows.Close()
	return u.Load(rev, func(put func(kind, id, project, parent string, o Object)) error {
		for rows.Next() {
			var kind, id, project, parent, body string
			if err := rows.Scan(&kind, &id, &project, &parent, &body); err != nil {
				return err
			}
			var o Object
			if err := json.Unmarshal([]byte(body), &o); err != nil {
				return fmt.Errorf("store: load %s/%s: %w", kind, id, err)
			}
			put(kind, id, project, parent, o)
		}
		return rows.Err()
	})
}

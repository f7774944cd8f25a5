package store

import (
	"context"
	"fmt"
	"sort"
)

// Heartbeats: when each agent last reported. They are not resources: a
// heartbeat is no change anyone watches, so it is written without a
// revision or a change-log entry (waking no watcher), several in one
// transaction, and read with a query.

const putHeartbeat = "INSERT INTO agent_heartbeats (id, at) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at WHERE excluded.at > agent_heartbeats.at"

// PutHeartbeats records agents' last reports (agent id -> Unix
// nanoseconds); an older time never replaces a newer one.
func (db *DB) PutHeartbeats(ctx context.Context, beats map[string]int64) error {
	if len(beats) == 0 {
		return nil
	}
	ids := make([]string, 0, len(beats))
	for id := range beats {
		ids = append(ids, id)
	}
	sort.Strings(ids) // one order for all servers: no deadlock between them
	ctx = context.WithoutCancel(ctx)
	if db.Dialect == SQLite {
		db.wmu.Lock()
		defer db.wmu.Unlock()
		w, err := db.sqliteConn(ctx)
		if err != nil {
			return err
		}
		if _, err := w.exec(ctx, "BEGIN IMMEDIATE"); err != nil {
			return fmt.Errorf("store: heartbeats: %w", err)
		}
		for _, id := range ids {
			if _, err := w.exec(ctx, putHeartbeat, id, beats[id]); err != nil {
				w.exec(ctx, "ROLLBACK")
				return fmt.Errorf("store: heartbeats: %w", err)
			}
		}
		if _, err := w.exec(ctx, "COMMIT"); err != nil {
			w.exec(ctx, "ROLLBACK")
			return fmt.Errorf("store: heartbeats: %w", err)
		}
		return nil
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: heartbeats: %w", err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, db.rebind(putHeartbeat), id, beats[id]); err != nil {
			return fmt.Errorf("store: heartbeats: %w", err)
		}
	}
	return tx.Commit()
}

// Heartbeats returns every agent's last report (Unix nanoseconds).
func (db *DB) Heartbeats(ctx context.Context) (map[string]int64, error) {
	rows, err := db.r.QueryContext(context.WithoutCancel(ctx), "SELECT id, at FROM agent_heartbeats")
	if err != nil {
		return nil, fmt.Errorf("store: heartbeats: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var id string
		var at int64
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		out[id] = at
	}
	return out, rows.Err()
}

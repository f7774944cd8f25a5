package identity

import (
	"context"
	"errors"
	"fmt"

	"neutrino/internal/store"
)

// The identity revision tells every server sharing the database, at the
// cost of the revision check that any store read makes anyway, whether its
// cached tokens may still be trusted.
//
// Every identity write that can take authority away (disabling or deleting
// a project or user, removing a role, a new password, a revocation) or
// change what a token says (roles granted, names) stores, in the same
// transaction, one store resource whose body is that write's store
// revision. A server caches each token with the identity revision current
// when it read the token from the database, and trusts the cached copy only
// while the identity revision is unchanged; otherwise it reads the token
// again. Reading the identity revision is a DB.Read of one object of the
// store's in-memory view: the store first asks the database for its current
// revision (one prepared single-row query) and replays the change log up to
// it, so a change committed by any server is seen by the very next request
// on every server. Issuing a token (a login) is not such a write and does
// not make the other servers read their tokens again.
//
// A store resource, rather than a table of the identity's own, because the
// store already orders, logs and replays resource writes across servers;
// agents following the change log ignore kinds they do not know.
const (
	revisionKind = "identity"
	revisionID   = "revision"
)

// currentRevision returns the identity revision as tx sees it (0 before
// any identity write). In a read it must come before the transaction's
// first SQL statement: the snapshot those statements see then holds every
// change up to the revision returned, so a token read in it is at least as
// new as the revision it is cached with.
func currentRevision(tx *store.Tx) (int64, error) {
	o, err := tx.Get(revisionKind, revisionID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("identity: revision: %w", err)
	}
	rev, _ := o["revision"].(float64) // stored as JSON: a number is a float64
	return int64(rev), nil
}

// bumpRevision moves the identity revision to this write's store revision.
func bumpRevision(tx *store.Tx) error {
	rev, err := tx.Revision()
	if err != nil {
		return err
	}
	return tx.Put(revisionKind, "", store.Object{"id": revisionID, "revision": rev})
}

// change runs fn as an identity write that moves the identity revision
// (see above), so that every server checks its cached tokens again before
// trusting them.
func (b *Builtin) change(ctx context.Context, fn func(tx *store.Tx) error) error {
	_, err := b.DB.Write(ctx, func(tx *store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return bumpRevision(tx)
	})
	return err
}

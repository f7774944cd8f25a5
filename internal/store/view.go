package store

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
)

// view is an in-memory copy of every resource, kept current by replaying
// the change log: a read first learns the committed revision in its snapshot
// and applies the changes up to it, so reads see every write committed
// before them, by this server or any other sharing the database, without
// scanning or decoding rows. Objects in the view are immutable: writers
// store new ones.
type view struct {
	mu     sync.RWMutex
	loaded bool
	rev    int64
	kinds  map[string]*index
	// indexed are the attributes indexed per kind (see DB.IndexAttr).
	indexed map[string][]string
	// recent are the latest changes the view applied, in order: every
	// change after revision recentFrom up to rev. Watchers read them
	// here rather than from the database (see DB.Changes).
	recent     []Change
	recentFrom int64
}

// keepRecent is about how many changes the view keeps for watchers.
const keepRecent = 8192

// remember adds changes just applied to the recent ones, dropping the
// oldest revisions beyond keepRecent.
func (v *view) remember(changes []Change) {
	v.recent = append(v.recent, changes...)
	if len(v.recent) <= 2*keepRecent {
		return
	}
	i := len(v.recent) - keepRecent
	for i < len(v.recent) && v.recent[i].Rev == v.recent[i-1].Rev {
		i++
	}
	v.recentFrom = v.recent[i-1].Rev
	v.recent = append([]Change(nil), v.recent[i:]...)
}

// forget drops the recent changes at or below rev (compacted away).
func (v *view) forget(rev int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if rev <= v.recentFrom {
		return
	}
	i := sort.Search(len(v.recent), func(i int) bool { return v.recent[i].Rev > rev })
	v.recent = append([]Change(nil), v.recent[i:]...)
	v.recentFrom = rev
}

// changesAfter returns about limit of the recent changes after revision
// after, ending at a revision boundary; ok is false when the view does not
// hold them all.
func (v *view) changesAfter(after int64, limit int) (out []Change, ok bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if !v.loaded || after < v.recentFrom {
		return nil, false
	}
	i := sort.Search(len(v.recent), func(i int) bool { return v.recent[i].Rev > after })
	j := min(len(v.recent), i+limit)
	for j < len(v.recent) && j > i && v.recent[j].Rev == v.recent[j-1].Rev {
		j++
	}
	return append([]Change(nil), v.recent[i:j]...), true
}

// changedSince returns the ids of kind among the recent changes after
// revision after (each once), if the view holds them all and there are at
// most limit.
func (v *view) changedSince(kind string, after int64, limit int) ([]string, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if !v.loaded || after < v.recentFrom {
		return nil, false
	}
	seen := map[string]bool{}
	ids := []string{}
	for i := sort.Search(len(v.recent), func(i int) bool { return v.recent[i].Rev > after }); i < len(v.recent); i++ {
		if c := &v.recent[i]; c.Kind == kind && !seen[c.ID] {
			if len(ids) == limit {
				return nil, false
			}
			seen[c.ID] = true
			ids = append(ids, c.ID)
		}
	}
	return ids, true
}

type index struct {
	objs map[string]Object
	// memos are made on first use (see view.memo).
	memos   map[string]*Memo
	meta    map[string]rowMeta
	parent  map[string]ids
	project map[string]ids
	// attrs: attribute -> value -> ids, for the attributes indexed.
	attrs map[string]map[string]ids
	// The revisions at which objects of the kind last changed: any, by
	// parent, by indexed attribute value (see Tx.Version).
	changed       int64
	parentChanged map[string]int64
	attrChanged   map[string]map[string]int64
}

type rowMeta struct{ project, parent string }

func newIndex(attrs []string) *index {
	ix := &index{objs: map[string]Object{}, memos: map[string]*Memo{}, meta: map[string]rowMeta{},
		parent: map[string]ids{}, project: map[string]ids{},
		attrs: map[string]map[string]ids{}, parentChanged: map[string]int64{}, attrChanged: map[string]map[string]int64{}}
	for _, a := range attrs {
		ix.attrs[a] = map[string]ids{}
		ix.attrChanged[a] = map[string]int64{}
	}
	return ix
}

// attrValues are what an attribute of o is indexed under: a string, or
// each string of a list (a port's security groups).
func attrValues(o Object, attr string) []string {
	if d := derived.Load(); d != nil {
		if fn := (*d)[attr]; fn != nil {
			return fn(o)
		}
	}
	switch x := o[attr].(type) {
	case string:
		if x != "" {
			return []string{x}
		}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// indexAttr indexes one more attribute of the objects already there.
func (ix *index) indexAttr(attr string) {
	if _, ok := ix.attrs[attr]; ok {
		return
	}
	m := map[string]ids{}
	for id, o := range ix.objs {
		for _, v := range attrValues(o, attr) {
			addTo(m, v, id)
		}
	}
	ix.attrs[attr] = m
	ix.attrChanged[attr] = map[string]int64{}
}

// ids is a set of object ids: one held inline (most values of some
// indexes name a single object, as a port's device does), more in a map.
type ids struct {
	one  string
	many map[string]struct{}
}

func (s ids) len() int {
	if s.many != nil {
		return len(s.many)
	}
	if s.one != "" {
		return 1
	}
	return 0
}

func (s ids) each(fn func(id string)) {
	if s.many == nil {
		if s.one != "" {
			fn(s.one)
		}
		return
	}
	for id := range s.many {
		fn(id)
	}
}

func addTo(m map[string]ids, k, id string) {
	s := m[k]
	switch {
	case s.many != nil:
		s.many[id] = struct{}{}
		return
	case s.one == "" || s.one == id:
		s.one = id
	default:
		s = ids{many: map[string]struct{}{s.one: {}, id: {}}}
	}
	m[k] = s
}

// removeFrom takes id out of m[k], and k out of m when nothing is left
// under it; it reports whether k went.
func removeFrom(m map[string]ids, k, id string) bool {
	s, ok := m[k]
	if !ok {
		return false
	}
	if s.many != nil {
		delete(s.many, id)
	} else if s.one == id {
		s.one = ""
	}
	if s.len() == 0 {
		delete(m, k)
		return true
	}
	return false
}

// remove takes object id out (a change at revision rev).
func (ix *index) remove(id string, rev int64) {
	m, ok := ix.meta[id]
	if !ok {
		return
	}
	ix.touch(rev, m.parent)
	for attr, byValue := range ix.attrs {
		for _, v := range attrValues(ix.objs[id], attr) {
			ix.attrChanged[attr][v] = max(ix.attrChanged[attr][v], rev)
			if removeFrom(byValue, v, id) {
				// None left: version 0, as for values never seen.
				delete(ix.attrChanged[attr], v)
			}
		}
	}
	if removeFrom(ix.parent, m.parent, id) {
		delete(ix.parentChanged, m.parent)
	}
	removeFrom(ix.project, m.project, id)
	delete(ix.meta, id)
	delete(ix.objs, id)
	delete(ix.memos, id)
}

// touch notes a change at revision rev among the objects of parent.
func (ix *index) touch(rev int64, parent string) {
	ix.changed = max(ix.changed, rev)
	ix.parentChanged[parent] = max(ix.parentChanged[parent], rev)
}

// put stores object o (a change at revision rev).
func (ix *index) put(id, project, parent string, o Object, rev int64) {
	ix.remove(id, rev)
	ix.touch(rev, parent)
	ix.objs[id] = o
	ix.meta[id] = rowMeta{project, parent}
	addTo(ix.parent, parent, id)
	addTo(ix.project, project, id)
	for attr, byValue := range ix.attrs {
		for _, v := range attrValues(o, attr) {
			addTo(byValue, v, id)
			ix.attrChanged[attr][v] = max(ix.attrChanged[attr][v], rev)
		}
	}
}

// version is the revision at which the objects f selects last changed,
// for a filter on one parent or one value of an indexed attribute, or
// none (the whole kind); ok is false for other filters.
func (ix *index) version(f Filter) (int64, bool) {
	switch {
	case f.Parent != "" && len(f.Parents) == 0 && len(f.Projects) == 0 && len(f.IDs) == 0 && f.Attr == "":
		return ix.parentChanged[f.Parent], true
	case f.Attr != "" && len(f.Values) == 1 && f.Parent == "" && len(f.Parents) == 0 && len(f.Projects) == 0 && len(f.IDs) == 0:
		byValue, indexed := ix.attrChanged[f.Attr]
		if !indexed {
			return 0, false
		}
		return byValue[f.Values[0]], true
	case f.Parent == "" && len(f.Parents) == 0 && len(f.Projects) == 0 && len(f.IDs) == 0 && f.Attr == "":
		return ix.changed, true
	}
	return 0, false
}

func (v *view) kind(k string) *index {
	ix := v.kinds[k]
	if ix == nil {
		ix = newIndex(v.indexed[k])
		v.kinds[k] = ix
	}
	return ix
}

// index makes the view index attribute attr of kind (kept as objects
// change, and built now for those already there).
func (v *view) index(kind, attr string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.indexed == nil {
		v.indexed = map[string][]string{}
	}
	for _, a := range v.indexed[kind] {
		if a == attr {
			return
		}
	}
	v.indexed[kind] = append(v.indexed[kind], attr)
	if ix := v.kinds[kind]; ix != nil {
		ix.indexAttr(attr)
	}
}

// sync brings the view to at least revision rev (committed).
// With exact (a writer holding the lock, so nothing newer can exist), a view
// ahead of rev means the database was replaced under this server (restored
// or recreated), and the view is reloaded; a reader may find the view ahead
// of the revision it read, because a write committed in between.
func (v *view) sync(ctx context.Context, db *DB, rev int64, exact bool) error {
	current := func() bool { return v.loaded && (v.rev == rev || !exact && v.rev > rev) }
	v.mu.RLock()
	ok := current()
	v.mu.RUnlock()
	if ok {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if current() {
		return nil
	}
	if v.loaded && v.rev > rev {
		return v.load(ctx, db)
	}
	var compacted int64
	if err := db.r.QueryRowContext(ctx, "SELECT compacted FROM revision WHERE id = 1").Scan(&compacted); err != nil {
		return err
	}
	if !v.loaded || v.rev < compacted {
		return v.load(ctx, db)
	}
	from := v.rev
	rows, err := db.r.QueryContext(ctx, db.rebind("SELECT rev, seq, kind, id, op, project_id, parent_id, body FROM changes WHERE rev > ? AND rev <= ? ORDER BY rev, seq"), from, rev)
	if err != nil {
		return err
	}
	defer rows.Close()
	// Decode everything first: a replay that stops half way (a cancelled
	// request, a bad row) must not leave a half-applied revision behind.
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
	// A compaction between reading `compacted` and the changes may have
	// removed some of them: then the replay is incomplete, load instead.
	var after int64
	if err := db.r.QueryRowContext(ctx, "SELECT compacted FROM revision WHERE id = 1").Scan(&after); err != nil {
		return err
	}
	if after > from {
		return v.load(ctx, db)
	}
	for _, c := range batch {
		if c.Op == "delete" {
			v.kind(c.Kind).remove(c.ID, c.Rev)
		} else {
			v.kind(c.Kind).put(c.ID, c.Project, c.Parent, c.Body, c.Rev)
		}
	}
	v.remember(batch)
	v.rev = rev
	return nil
}

// load reads every resource, with the revision they are current at, from
// one snapshot.
func (v *view) load(ctx context.Context, db *DB) error {
	kinds := map[string]*index{}
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
	for rows.Next() {
		var kind, id, project, parent, body string
		if err := rows.Scan(&kind, &id, &project, &parent, &body); err != nil {
			return err
		}
		var o Object
		if err := json.Unmarshal([]byte(body), &o); err != nil {
			return fmt.Errorf("store: load %s/%s: %w", kind, id, err)
		}
		ix := kinds[kind]
		if ix == nil {
			ix = newIndex(v.indexed[kind])
			kinds[kind] = ix
		}
		ix.put(id, project, parent, o, rev)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	v.kinds, v.rev, v.loaded = kinds, rev, true
	v.recent, v.recentFrom = nil, rev
	return nil
}

// revision returns the revision the view is at, if it is loaded.
func (v *view) revision() (int64, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.rev, v.loaded
}

// applyCommitted applies a write this process just committed at rev, when
// the view is exactly one revision behind (otherwise the next read syncs
// from the log).
func (v *view) applyCommitted(rev int64, changes []Change) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.loaded || v.rev != rev-1 {
		return
	}
	for i := range changes {
		c := &changes[i]
		c.Seq = i + 1 // as logged
		if c.Op == "delete" {
			v.kind(c.Kind).remove(c.ID, rev)
		} else {
			v.kind(c.Kind).put(c.ID, c.Project, c.Parent, c.Body, rev)
		}
	}
	v.remember(changes)
	v.rev = rev
}

func (v *view) get(kind, id string) (Object, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	ix := v.kinds[kind]
	if ix == nil {
		return nil, false
	}
	o, ok := ix.objs[id]
	return o, ok
}

func (v *view) list(kind string, f Filter) []Object {
	v.mu.RLock()
	defer v.mu.RUnlock()
	ix := v.kinds[kind]
	if ix == nil {
		return nil
	}
	// Start from the narrowest index, then check the other conditions.
	var found []string
	collect := func(s ids) { s.each(func(id string) { found = append(found, id) }) }
	parents := f.Parents
	if f.Parent != "" {
		parents = append([]string{f.Parent}, parents...)
	}
	byValue, attrIndexed := ix.attrs[f.Attr]
	switch {
	case len(f.IDs) > 0:
		for _, id := range f.IDs {
			if _, ok := ix.objs[id]; ok {
				found = append(found, id)
			}
		}
	case f.Attr != "" && attrIndexed:
		for _, v := range f.Values {
			collect(byValue[v])
		}
	case len(parents) > 0:
		for _, p := range parents {
			collect(ix.parent[p])
		}
	case len(f.Projects) > 0:
		for _, p := range f.Projects {
			collect(ix.project[p])
		}
	default:
		for id := range ix.objs {
			found = append(found, id)
		}
	}
	// Ids found by the attribute's index have its value.
	byAttr := len(f.IDs) == 0 && f.Attr != "" && attrIndexed
	sort.Strings(found)
	out := make([]Object, 0, len(found))
	for i, id := range found {
		if i > 0 && found[i-1] == id {
			continue
		}
		m := ix.meta[id]
		if !f.match(id, m.project, m.parent) || !byAttr && !f.matchAttr(ix.objs[id]) {
			continue
		}
		out = append(out, ix.objs[id])
	}
	return out
}

func (v *view) meta(kind, id string) (rowMeta, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	ix := v.kinds[kind]
	if ix == nil {
		return rowMeta{}, false
	}
	m, ok := ix.meta[id]
	return m, ok
}

// matchAttr reports whether o passes the filter's attribute condition.
func (f Filter) matchAttr(o Object) bool {
	if f.Attr == "" {
		return true
	}
	for _, v := range attrValues(o, f.Attr) {
		for _, want := range f.Values {
			if v == want {
				return true
			}
		}
	}
	return false
}

// match reports whether a row with these keys passes the filter.
func (f Filter) match(id, project, parent string) bool {
	in := func(v string, set []string) bool {
		if len(set) == 0 {
			return true
		}
		for _, s := range set {
			if s == v {
				return true
			}
		}
		return false
	}
	if f.Parent != "" && parent != f.Parent {
		return false
	}
	return in(project, f.Projects) && in(parent, f.Parents) && in(id, f.IDs)
}

func (v *view) count(kind, project string) int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if ix := v.kinds[kind]; ix != nil {
		return ix.project[project].len()
	}
	return 0
}

// Memo holds values derived from one version of one object (such as its
// encoded response), dropped with that version.
type Memo struct{ m sync.Map }

// Load returns the value stored under key.
func (m *Memo) Load(key string) ([]byte, bool) {
	v, ok := m.m.Load(key)
	if !ok {
		return nil, false
	}
	return v.([]byte), true
}

// Store keeps v under key.
func (m *Memo) Store(key string, v []byte) { m.m.Store(key, v) }

func (v *view) memo(kind string, o Object) *Memo {
	id, _ := o["id"].(string)
	current := func() (*index, bool) {
		ix := v.kinds[kind]
		if ix == nil {
			return nil, false
		}
		cur, ok := ix.objs[id]
		return ix, ok && reflect.ValueOf(cur).UnsafePointer() == reflect.ValueOf(o).UnsafePointer()
	}
	v.mu.RLock()
	ix, ok := current()
	var m *Memo
	if ok {
		m = ix.memos[id]
	}
	v.mu.RUnlock()
	if !ok || m != nil {
		return m
	}
	// The first use of this version of the object: most are never
	// rendered whole, and keep no memo.
	v.mu.Lock()
	defer v.mu.Unlock()
	if ix, ok = current(); !ok {
		return nil
	}
	if m = ix.memos[id]; m == nil {
		m = &Memo{}
		ix.memos[id] = m
	}
	return m
}

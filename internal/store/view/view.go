// Package view is the store's in-memory copy of every resource: objects by
// kind with their indexes (by project, parent, indexed and derived
// attributes), the revisions at which they last changed, and the latest
// changes for watchers. The store keeps it current by replaying its change
// log (a read first learns the committed revision in its snapshot and
// applies the changes up to it, so reads see every write committed before
// them, by this server or any other sharing the database, without scanning
// or decoding rows). Objects in the view are immutable: writers store new
// ones. It holds no SQL: the store reads, the view indexes.
package view

import (
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
)

// Object is a resource as JSON decodes it.
type Object = map[string]any

// Filter narrows a List by indexed columns; empty fields do not filter.
type Filter struct {
	Projects []string // any of these project ids
	Parent   string   // parent id (network of a subnet or port, group of a rule, ...)
	Parents  []string // any of these parent ids
	IDs      []string // any of these ids
	// Attr and Values: objects whose attribute Attr (a string, or a list
	// of strings) holds one of Values. An attribute indexed with
	// Index is found without a scan.
	Attr   string
	Values []string
}

// Change is one entry of the change log.
type Change struct {
	Rev     int64
	Seq     int
	Kind    string
	ID      string
	Op      string // "put" or "delete"
	Project string
	Parent  string
	Body    Object // nil for deletes
}

// derived are the derived attributes (Derive), by name.
var derived atomic.Pointer[map[string]func(Object) []string]

// Derive names a derived attribute: its values are what fn makes of an
// object (strings), for Filter.Attr as a stored attribute's. Names are one
// namespace across kinds and views.
func Derive(name string, fn func(Object) []string) {
	for {
		old := derived.Load()
		m := map[string]func(Object) []string{name: fn}
		if old != nil {
			for k, v := range *old {
				if k != name {
					m[k] = v
				}
			}
		}
		if derived.CompareAndSwap(old, &m) {
			return
		}
	}
}

// View is the in-memory copy. The zero View is empty and not loaded.
type View struct {
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
func (v *View) remember(changes []Change) {
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

// Forget drops the recent changes at or below rev (compacted away).
func (v *View) Forget(rev int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if rev <= v.recentFrom {
		return
	}
	i := sort.Search(len(v.recent), func(i int) bool { return v.recent[i].Rev > rev })
	v.recent = append([]Change(nil), v.recent[i:]...)
	v.recentFrom = rev
}

// ChangesAfter returns about limit of the recent changes after revision
// after, ending at a revision boundary; ok is false when the view does not
// hold them all.
func (v *View) ChangesAfter(after int64, limit int) (out []Change, ok bool) {
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

// ChangedSince returns the ids of kind among the recent changes after
// revision after (each once), if the view holds them all and there are at
// most limit.
func (v *View) ChangedSince(kind string, after int64, limit int) ([]string, bool) {
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

func (v *View) kind(k string) *index {
	ix := v.kinds[k]
	if ix == nil {
		ix = newIndex(v.indexed[k])
		v.kinds[k] = ix
	}
	return ix
}

// Index makes the view index attribute attr of kind (kept as objects
// change, and built now for those already there).
func (v *View) Index(kind, attr string) {
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

// Revision returns the revision the view is at, if it is loaded.
func (v *View) Revision() (int64, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.rev, v.loaded
}

// ApplyCommitted applies a write this process just committed at rev, when
// the view is exactly one revision behind (otherwise the next read syncs
// from the log).
func (v *View) ApplyCommitted(rev int64, changes []Change) {
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

// Get is object id of kind.
func (v *View) Get(kind, id string) (Object, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	ix := v.kinds[kind]
	if ix == nil {
		return nil, false
	}
	o, ok := ix.objs[id]
	return o, ok
}

// List is the objects of kind f selects, ordered by id (shared: not to be
// changed).
func (v *View) List(kind string, f Filter) []Object {
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
		if !f.Match(id, m.project, m.parent) || !byAttr && !f.MatchAttr(ix.objs[id]) {
			continue
		}
		out = append(out, ix.objs[id])
	}
	return out
}

// Meta is the project and parent of object id of kind.
func (v *View) Meta(kind, id string) (project, parent string, ok bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	ix := v.kinds[kind]
	if ix == nil {
		return "", "", false
	}
	m, ok := ix.meta[id]
	return m.project, m.parent, ok
}

// MatchAttr reports whether o passes the filter's attribute condition.
func (f Filter) MatchAttr(o Object) bool {
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

// Match reports whether a row with these keys passes the filter.
func (f Filter) Match(id, project, parent string) bool {
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

// Count counts the objects of kind in a project.
func (v *View) Count(kind, project string) int {
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

// Memo is the memo of o if o is the current version of its object, else
// nil.
func (v *View) Memo(kind string, o Object) *Memo {
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

// Version is the revision at which the objects f selects last changed,
// for a filter on one parent or one value of an indexed attribute, or the
// whole kind for an empty filter (0 when none is there); ok is false for
// other filters.
func (v *View) Version(kind string, f Filter) (int64, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	ix := v.kinds[kind]
	if ix == nil {
		return 0, f.Attr == "" || slices.Contains(v.indexed[kind], f.Attr)
	}
	return ix.version(f)
}

// current reports whether the view is loaded at revision rev (exact), or
// at rev or later. The caller holds the lock.
func (v *View) current(rev int64, exact bool) bool {
	return v.loaded && (v.rev == rev || !exact && v.rev > rev)
}

// Current is current under the read lock.
func (v *View) Current(rev int64, exact bool) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.current(rev, exact)
}

// Update runs fn with the view's write lock held: what brings the view up
// to date (replaying the log, or loading everything again) happens once,
// whoever else waits for it.
func (v *View) Update(fn func(u Updater) error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return fn(Updater{v})
}

// Updater changes the view under its write lock (see Update).
type Updater struct{ v *View }

// Current reports whether the view is loaded at rev (exact) or later.
func (u Updater) Current(rev int64, exact bool) bool { return u.v.current(rev, exact) }

// State is the revision the view is at and whether it is loaded.
func (u Updater) State() (rev int64, loaded bool) { return u.v.rev, u.v.loaded }

// Replay applies the changes logged after the view's revision up to rev,
// in order.
func (u Updater) Replay(batch []Change, rev int64) {
	v := u.v
	for _, c := range batch {
		if c.Op == "delete" {
			v.kind(c.Kind).remove(c.ID, c.Rev)
		} else {
			v.kind(c.Kind).put(c.ID, c.Project, c.Parent, c.Body, c.Rev)
		}
	}
	v.remember(batch)
	v.rev = rev
}

// Load replaces the view with the objects rows gives (through put), all
// current at revision rev; on an error nothing changes.
func (u Updater) Load(rev int64, rows func(put func(kind, id, project, parent string, o Object)) error) error {
	v := u.v
	kinds := map[string]*index{}
	put := func(kind, id, project, parent string, o Object) {
		ix := kinds[kind]
		if ix == nil {
			ix = newIndex(v.indexed[kind])
			kinds[kind] = ix
		}
		ix.put(id, project, parent, o, rev)
	}
	if err := rows(put); err != nil {
		return err
	}
	v.kinds, v.rev, v.loaded = kinds, rev, true
	v.recent, v.recentFrom = nil, rev
	return nil
}

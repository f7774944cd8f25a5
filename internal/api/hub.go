package api

import (
	"context"
	"reflect"
	"sync"
	"time"

	"neutrino/internal/hostapi"
	"neutrino/internal/store"
)

// hostHub wakes the hosts' watches. One goroutine reads each commit's
// changes once and wakes only the watches that find one of them relevant:
// a change costs the hosts that do not need it nothing, not even a
// wake-up. It runs while some watch waits.
type hostHub struct {
	mu      sync.Mutex
	running bool
	rev     int64 // changes up to this revision are dispatched
	waiters map[*hostWaiter]struct{}
	// byKey finds the watches a change may concern by the change's keys
	// (hostapi.ChangeKeys), so that a change costs what the hosts it
	// concerns cost, not one look per waiting host.
	byKey map[string]map[*hostWaiter]struct{}
	// members are the member maps of the remote groups the watches hold
	// (each map as many times as watches hold it): a member port's change
	// concerns the watches of the groups whose maps hold the port.
	members map[string]map[*map[string]string]int
}

// hostWaiter is one waiting watch.
type hostWaiter struct {
	in      *hostapi.Interest
	keys    []string
	members map[string]*map[string]string
	wake    chan struct{} // signalled (buffered, one deep) when a change may concern it
}

// wait registers a watch that finds changes relevant by in. Once wait
// returns, every change after the revision committed then wakes it if
// relevant: changes up to that revision the watch reads itself.
func (s *Server) wait(in *hostapi.Interest) (*hostWaiter, error) {
	h := &s.hub
	w := &hostWaiter{in: in, keys: in.Keys(), members: map[string]*map[string]string{}, wake: make(chan struct{}, 1)}
	for g, m := range in.MemberMaps() {
		w.members[g] = &m
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running {
		rev, err := s.DB.Revision(context.Background())
		if err != nil {
			return nil, err
		}
		h.running, h.rev, h.waiters = true, rev, map[*hostWaiter]struct{}{}
		h.byKey, h.members = map[string]map[*hostWaiter]struct{}{}, map[string]map[*map[string]string]int{}
		go s.dispatch()
	}
	h.waiters[w] = struct{}{}
	for _, k := range w.keys {
		set := h.byKey[k]
		if set == nil {
			set = map[*hostWaiter]struct{}{}
			h.byKey[k] = set
		}
		set[w] = struct{}{}
	}
	for g, m := range w.members {
		maps := h.members[g]
		if maps == nil {
			maps = map[*map[string]string]int{}
			h.members[g] = maps
		}
		maps[h.canonical(g, m)]++
	}
	return w, nil
}

// canonical is the pointer the hub counts member map *m of group g by:
// watches holding the same map (shared by the member cache) share one.
func (h *hostHub) canonical(g string, m *map[string]string) *map[string]string {
	for p := range h.members[g] {
		if sameMap(*p, *m) {
			return p
		}
	}
	return m
}

func sameMap(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// done unregisters a watch.
func (s *Server) done(w *hostWaiter) {
	h := &s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.waiters, w)
	for _, k := range w.keys {
		if set := h.byKey[k]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(h.byKey, k)
			}
		}
	}
	for g, m := range w.members {
		maps := h.members[g]
		p := h.canonical(g, m)
		if maps[p]--; maps[p] <= 0 {
			delete(maps, p)
		}
		if len(maps) == 0 {
			delete(h.members, g)
		}
	}
}

// concerned calls fn for each watch change c may be relevant to (fn judges
// by the watch's interest), each at most once per call. The caller holds
// h.mu.
func (h *hostHub) concerned(c hostapi.Change, seen map[*hostWaiter]bool, fn func(w *hostWaiter)) {
	visit := func(set map[*hostWaiter]struct{}) {
		for w := range set {
			if !seen[w] {
				seen[w] = true
				fn(w)
			}
		}
	}
	keys := hostapi.ChangeKeys(c)
	if keys == nil {
		visit(h.waiters)
		return
	}
	for _, k := range keys {
		visit(h.byKey[k])
	}
	if c.Kind == "port" {
		for g, maps := range h.members {
			for m := range maps {
				if _, ok := (*m)[c.ID]; ok {
					visit(h.byKey["remote:"+g])
					break
				}
			}
		}
	}
}

// dispatch reads the changes as they commit and wakes the watches they
// concern, until none waits.
func (s *Server) dispatch() {
	h := &s.hub
	local := false // woken by a commit of this server: the changes are in memory
	for {
		changed := s.DB.Changed()
		h.mu.Lock()
		if len(h.waiters) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		after := h.rev
		h.mu.Unlock()
		ch, err := s.changesAfter(context.Background(), after, local)
		if err != nil {
			// Compacted past (or the database failing): every watch
			// looks for itself.
			rev, rerr := s.DB.Revision(context.Background())
			h.mu.Lock()
			for w := range h.waiters {
				signal(w)
			}
			if rerr == nil {
				h.rev = max(h.rev, rev)
			}
			h.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if len(ch) > 0 {
			hcs := make([]hostapi.Change, len(ch))
			for i, c := range ch {
				hcs[i] = hostChange(c)
			}
			h.mu.Lock()
			woken := map[*hostWaiter]bool{}
			for _, c := range hcs {
				judged := map[*hostWaiter]bool{}
				h.concerned(c, judged, func(w *hostWaiter) {
					if !woken[w] && w.in.Relevant(c) {
						woken[w] = true
						signal(w)
					}
				})
			}
			h.rev = max(h.rev, ch[len(ch)-1].Rev)
			h.mu.Unlock()
			local = true
			continue // more may be there already
		}
		select {
		case <-changed:
			local = true
		case <-time.After(s.repoll()):
			local = false // commits by other servers sharing the database
		}
	}
}

// changesAfter reads the changes after revision after: from memory when
// local (woken by a commit of this server, whose changes the view holds),
// else from the store, which first catches up with other servers'.
func (s *Server) changesAfter(ctx context.Context, after int64, local bool) ([]store.Change, error) {
	if local {
		if ch, ok := s.DB.RecentChanges(after, 1000); ok {
			return ch, nil
		}
	}
	return s.DB.Changes(ctx, after, 1000)
}

// hostChange is a change as hosts' interests judge it.
func hostChange(c store.Change) hostapi.Change {
	return hostapi.Change{Revision: c.Rev, Kind: c.Kind, ID: c.ID, Op: c.Op, Parent: c.Parent, Object: c.Body}
}

func signal(w *hostWaiter) {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

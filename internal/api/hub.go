package api

import (
	"context"
	"sync"
	"time"

	"neutrino/internal/hostapi"
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
}

// hostWaiter is one waiting watch.
type hostWaiter struct {
	in   *hostapi.Interest
	wake chan struct{} // signalled (buffered, one deep) when a change may concern it
}

// wait registers a watch that finds changes relevant by in. Once wait
// returns, every change after the revision committed then wakes it if
// relevant: changes up to that revision the watch reads itself.
func (s *Server) wait(in *hostapi.Interest) (*hostWaiter, error) {
	h := &s.hub
	w := &hostWaiter{in: in, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running {
		rev, err := s.DB.Revision(context.Background())
		if err != nil {
			return nil, err
		}
		h.running, h.rev, h.waiters = true, rev, map[*hostWaiter]struct{}{}
		go s.dispatch()
	}
	h.waiters[w] = struct{}{}
	return w, nil
}

// done unregisters a watch.
func (s *Server) done(w *hostWaiter) {
	s.hub.mu.Lock()
	delete(s.hub.waiters, w)
	s.hub.mu.Unlock()
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
		ch, ok := s.DB.RecentChanges(after, 1000)
		if !ok || !local {
			var err error
			if ch, err = s.DB.Changes(context.Background(), after, 1000); err != nil {
				// Compacted past (or the database failing): every
				// watch looks for itself.
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
		}
		if len(ch) > 0 {
			hcs := make([]hostapi.Change, len(ch))
			for i, c := range ch {
				hcs[i] = hostapi.Change{Revision: c.Rev, Kind: c.Kind, ID: c.ID, Op: c.Op, Parent: c.Parent, Object: c.Body}
			}
			h.mu.Lock()
			for w := range h.waiters {
				for _, c := range hcs {
					if w.in.Relevant(c) {
						signal(w)
						break
					}
				}
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

func signal(w *hostWaiter) {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

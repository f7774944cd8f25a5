package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"neutrino/internal/fault"
	"neutrino/internal/hostapi"
	"neutrino/internal/plugin"
	"neutrino/internal/policy"
	"neutrino/internal/store"
)

// internal serves Neutrino's own API for its agents, beside the Neutron
// API (admin or service callers only): the generic part here,
//
//	GET  /neutrino/v1/hosts/{host}/state?kinds=K,...      desired state of a host at a revision
//	GET  /neutrino/v1/hosts/{host}/changes?after=R&span=S&kinds=K,...&wait=W[&delta=1]
//	                                         the changes after R that concern that state (long poll),
//	                                         and what they change in it
//	GET  /neutrino/v1/changes?after=R&wait=S every change after R (long poll); 410 when compacted
//
// and what services registered (agent reports, port status, metering).
func (s *Server) internal(w http.ResponseWriter, r *http.Request, c *policy.Caller, parts []string) {
	var err error
	switch {
	case !c.Admin && !c.Service:
		err = fault.Forbidden("rule:neutrino_agent_api is disallowed by policy")
	case len(parts) == 0 || parts[0] != "v1":
		err = notFoundErr
	case len(parts) == 4 && parts[1] == "hosts" && parts[3] == "state" && r.Method == http.MethodGet:
		err = s.hostState(w, r, parts[2])
	case len(parts) == 4 && parts[1] == "hosts" && parts[3] == "changes" && r.Method == http.MethodGet:
		err = s.hostChanges(w, r, parts[2])
	case len(parts) == 2 && parts[1] == "changes":
		if r.Method != http.MethodGet {
			err = fault.MethodNotAllowed()
		} else {
			err = s.changes(w, r)
		}
	default:
		s.route(w, r, c, true, parts[1:])
		return
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

func (s *Server) hostState(w http.ResponseWriter, r *http.Request, host string) error {
	opts := plugin.SpanOptions{DHCP: r.URL.Query().Get("dhcp") == "1"}
	st, err := s.span(r, host, opts, 0)
	if err != nil {
		return err
	}
	// What this state depends on, for the host's watch (see hostChanges).
	kinds := r.URL.Query().Get("kinds")
	s.interests.Store(host, newHostInterest(host, kinds, opts, st))
	writeJSON(w, http.StatusOK, st)
	return nil
}

// span computes host's state, at the latest revision (rev 0) or at least
// at revision rev.
func (s *Server) span(r *http.Request, host string, opts plugin.SpanOptions, rev int64) (*hostapi.Span, error) {
	return s.readSpan(r, rev, func(c *plugin.Ctx) (*hostapi.Span, error) { return s.Reg.Span(c, host, opts) })
}

// spanMembers is the host's state known with its remote groups' members
// as they are now, at revision rev or later (nil if no service fills
// members).
func (s *Server) spanMembers(r *http.Request, host string, known *hostInterest, rev int64) (*hostapi.Span, error) {
	return s.readSpan(r, rev, func(c *plugin.Ctx) (*hostapi.Span, error) {
		st, _, err := s.Reg.SpanMembers(c, host, known.state, known.opts)
		return st, err
	})
}

// readSpan runs build in a read at revision rev or later.
func (s *Server) readSpan(r *http.Request, rev int64, build func(c *plugin.Ctx) (*hostapi.Span, error)) (*hostapi.Span, error) {
	var st *hostapi.Span
	err := s.Reg.ReadAtLeast(r.Context(), rev, func(c *plugin.Ctx) error {
		var err error
		st, err = build(c)
		return err
	})
	return st, err
}

// hostInterest is the state a host was last given (the host says which
// by its revision), and what that state depends on.
type hostInterest struct {
	span  int64  // the state's revision
	kinds string // the concerns' kinds the host asked with
	opts  plugin.SpanOptions
	state *hostapi.Span
	in    *hostapi.Interest
}

func newHostInterest(host, kinds string, opts plugin.SpanOptions, st *hostapi.Span) *hostInterest {
	return &hostInterest{span: st.Revision, kinds: kinds, opts: opts, state: st,
		in: hostapi.NewInterest(host, strings.Split(kinds, ","), st)}
}

// hostChanges answers a host's watch with only the changes after R that
// may alter the state it was given at revision S (span=S), so a change
// elsewhere in the cloud costs that host nothing: no answer, no wake-up.
// The answer's "revision" is where the host resumes. With delta=1, the
// answer carries a "delta" that turns the host's state at S into its state
// at that revision (hostapi.Delta): the host applies it and need not list
// its state again; changes that leave the state as it was are not sent. A server that did not
// serve that state (another server, or after a restart) cannot judge: it
// sends every change of the host's kinds, and the host lists its state
// again, here.
func (s *Server) hostChanges(w http.ResponseWriter, r *http.Request, host string) error {
	q := r.URL.Query()
	after, err := strconv.ParseInt(q.Get("after"), 10, 64)
	if err != nil || after < 0 {
		return fault.BadRequest("after must be a revision number")
	}
	span, _ := strconv.ParseInt(q.Get("span"), 10, 64)
	kinds := q.Get("kinds")
	wait, err := waitParam(q.Get("wait"))
	if err != nil {
		return err
	}
	var in *hostapi.Interest
	var known *hostInterest // the state the host holds, when this server gave it
	if v, ok := s.interests.Load(host); ok {
		if hi := v.(*hostInterest); hi.span == span && hi.kinds == kinds {
			in, known = hi.in, hi
		}
	}
	if in == nil {
		in = hostapi.EveryChange(strings.Split(kinds, ","))
	}
	deltas := q.Get("delta") == "1" && known != nil
	// Registered before the first read: a change committed after it
	// wakes this watch if it may concern the host (see hostHub).
	waiter, err := s.wait(in)
	if err != nil {
		return err
	}
	defer s.done(waiter)
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	// The changes are read from memory (those of other servers sharing
	// the database reach it within a second: hostHub).
	local := true
	timedOut := false
	for {
		ch, err := s.changesAfter(r.Context(), after, local)
		if errors.Is(err, store.ErrCompacted) {
			return fault.New(http.StatusGone, "RevisionCompacted", "Changes after revision %d are no longer kept: list the state again", after)
		}
		if err != nil {
			return err
		}
		out := []any{}
		membersOnly := true // every relevant change can alter only remote groups' members
		for _, c := range ch {
			after = max(after, c.Rev)
			hc := hostChange(c)
			if in.Relevant(hc) {
				out = append(out, map[string]any{"revision": c.Rev, "kind": c.Kind, "id": c.ID, "op": c.Op})
				membersOnly = membersOnly && in.MembersOnly(hc)
			}
		}
		if len(out) > 0 && deltas {
			// The host's state now, and what it needs of it: nothing, if
			// these changes leave it as it was (the host goes on waiting).
			// Changes among remote groups' members elsewhere (a new VM in
			// the default group) renew those members only.
			var st *hostapi.Span
			var next *hostInterest
			if membersOnly {
				st, err = s.spanMembers(r, host, known, after)
				if st != nil {
					next = &hostInterest{span: st.Revision, kinds: kinds, opts: known.opts, state: st, in: known.in.WithMembers(st.Members)}
				}
			}
			if st == nil && err == nil {
				st, err = s.span(r, host, known.opts, after)
			}
			if err != nil {
				return err
			}
			d := hostapi.Diff(known.state, st)
			if next == nil {
				next = newHostInterest(host, kinds, known.opts, st)
			}
			if d.Empty() {
				out = out[:0]
			} else if s.interests.CompareAndSwap(host, known, next) {
				writeJSON(w, http.StatusOK, map[string]any{"changes": out, "revision": st.Revision, "delta": d})
				return nil
			}
			// else the host listed its state meanwhile: it is told of
			// the changes and lists again.
		}
		if len(out) > 0 || wait == 0 || timedOut {
			writeJSON(w, http.StatusOK, map[string]any{"changes": out, "revision": after})
			return nil
		}
		if len(ch) >= 1000 {
			continue // more may be there already
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-waiter.wake:
			local = true
		case <-timeout.C:
			// Once more: the host resumes after what it was not woken
			// for (irrelevant here), not before it.
			timedOut, local = true, true
		}
	}
}

func waitParam(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || secs < 0 {
		return 0, fault.BadRequest("wait must be a number of seconds")
	}
	return min(time.Duration(secs*float64(time.Second)), maxWait), nil
}

// maxWait bounds a long poll.
const maxWait = 60 * time.Second

func (s *Server) changes(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	after, err := strconv.ParseInt(q.Get("after"), 10, 64)
	if err != nil || after < 0 {
		return fault.BadRequest("after must be a revision number")
	}
	limit := 1000
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 || limit > 10000 {
			return fault.BadRequest("limit must be 1 to 10000")
		}
	}
	wait, err := waitParam(q.Get("wait"))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for {
		changed := s.DB.Changed()
		ch, err := s.DB.Changes(r.Context(), after, limit)
		if errors.Is(err, store.ErrCompacted) {
			return fault.New(http.StatusGone, "RevisionCompacted", "Changes after revision %d are no longer kept: list the state again", after)
		}
		if err != nil {
			return err
		}
		left := time.Until(deadline)
		if len(ch) > 0 || left <= 0 {
			out := make([]any, 0, len(ch))
			for _, c := range ch {
				out = append(out, map[string]any{"revision": c.Rev, "seq": c.Seq, "kind": c.Kind, "id": c.ID, "op": c.Op,
					"project_id": c.Project, "parent_id": c.Parent, "object": c.Body})
			}
			writeJSON(w, http.StatusOK, map[string]any{"changes": out})
			return nil
		}
		// Woken by a commit here, or every second for commits by other
		// servers sharing the database.
		select {
		case <-r.Context().Done():
			return nil
		case <-changed:
		case <-time.After(min(left, s.repoll())):
		}
	}
}

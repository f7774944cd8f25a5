package api

import (
	"errors"
	"net/http"
	"strconv"
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
//	GET  /neutrino/v1/hosts/{host}/state     desired state of a host at a revision
//	GET  /neutrino/v1/changes?after=R&wait=S changes after R (long poll); 410 when compacted
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
	case len(parts) == 2 && parts[1] == "changes":
		if r.Method != http.MethodGet {
			err = methodNotAllowed()
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
	var st *hostapi.Span
	err := s.Reg.Read(r.Context(), func(c *plugin.Ctx) error {
		var err error
		st, err = s.Reg.Span(c, host, plugin.SpanOptions{DHCP: r.URL.Query().Get("dhcp") == "1"})
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
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
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs < 0 {
			return fault.BadRequest("wait must be a number of seconds")
		}
		wait = min(time.Duration(secs*float64(time.Second)), maxWait)
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
		case <-time.After(min(left, time.Second)):
		}
	}
}

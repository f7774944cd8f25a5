package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"neutrino/internal/core"
	"neutrino/internal/fault"
	"neutrino/internal/policy"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// internal serves Neutrino's own API for its agents, beside the Neutron
// API (admin or service callers only):
//
//	POST /neutrino/v1/agents/report          register / heartbeat
//	GET  /neutrino/v1/hosts/{host}/state     desired state of a host at a revision
//	PUT  /neutrino/v1/hosts/{host}/ports     {"active": [ids]}: the ports wired there
//	GET  /neutrino/v1/changes?after=R&wait=S changes after R (long poll); 410 when compacted
//	PUT  /neutrino/v1/hosts/{host}/metering  {"counters": [...]}: metering counts of its routers
func (s *Server) internal(w http.ResponseWriter, r *http.Request, parts []string) {
	path := strings.Join(parts, "/")
	c := policy.From(r.Context())
	var err error
	switch {
	case !c.Admin && !c.Service:
		err = fault.Forbidden("rule:neutrino_agent_api is disallowed by policy")
	case path == "v1/agents/report" && r.Method == http.MethodPost:
		err = s.reportAgent(w, r)
	case len(parts) == 4 && parts[0] == "v1" && parts[1] == "hosts" && parts[3] == "state" && r.Method == http.MethodGet:
		err = s.hostState(w, r, parts[2])
	case len(parts) == 4 && parts[0] == "v1" && parts[1] == "hosts" && parts[3] == "ports" && r.Method == http.MethodPut:
		err = s.hostPorts(w, r, parts[2])
	case len(parts) == 4 && parts[0] == "v1" && parts[1] == "hosts" && parts[3] == "metering" && r.Method == http.MethodPut:
		err = s.hostMetering(w, r, parts[2])
	case path == "v1/changes" && r.Method == http.MethodGet:
		err = s.changes(w, r)
	case path == "v1/agents/report" || path == "v1/changes":
		err = methodNotAllowed()
	default:
		err = notFoundErr
	}
	if err != nil {
		s.writeError(w, r, err)
	}
}

func (s *Server) hostState(w http.ResponseWriter, r *http.Request, host string) error {
	var st *core.HostState
	err := s.DB.Read(r.Context(), func(tx *store.Tx) error {
		var err error
		st, err = s.Core.HostState(s.Core.NewCtx(r.Context(), tx), host, r.URL.Query().Get("dhcp") == "1")
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) hostPorts(w http.ResponseWriter, r *http.Request, host string) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var doc struct {
		Active []string `json:"active"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fault.BadRequest("Malformed request body")
	}
	var changed int
	_, err = s.DB.Write(r.Context(), func(tx *store.Tx) error {
		changed, err = s.Core.SetHostPorts(s.Core.NewCtx(r.Context(), tx), host, doc.Active)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"changed": changed})
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

func (s *Server) reportAgent(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var doc struct {
		Agent core.AgentReport `json:"agent"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fault.BadRequest("Malformed request body")
	}
	var out schema.Ordered
	_, err = s.DB.Write(r.Context(), func(tx *store.Tx) error {
		cc := s.Core.NewCtx(r.Context(), tx)
		o, err := s.Core.ReportAgent(cc, doc.Agent)
		if err != nil {
			return err
		}
		out = s.render(cc, schema.Agent, o, nil)
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"agent": out})
	return nil
}

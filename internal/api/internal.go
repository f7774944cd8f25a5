package api

import (
	"encoding/json"
	"net/http"
	"strings"

	"neutrino/internal/core"
	"neutrino/internal/fault"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// internal serves Neutrino's own API for its agents, beside the Neutron
// API: /neutrino/v1/agents/report.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, parts []string) {
	path := strings.Join(parts, "/")
	var err error
	switch {
	case path == "v1/agents/report" && r.Method == http.MethodPost:
		err = s.reportAgent(w, r)
	case path == "v1/agents/report":
		err = methodNotAllowed()
	default:
		err = notFoundErr
	}
	if err != nil {
		s.writeError(w, r, err)
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

package api

import (
	"path/filepath"
	"testing"

	"neutrino/internal/plugin"
	"neutrino/internal/schema"
	"neutrino/internal/services"
	"neutrino/internal/store"
)

// colors is a service of the tests' own: it adds a "color" attribute to
// networks, as an extension brings attributes to another's resource.
type colors struct{}

func (colors) Name() string { return "colors" }

func (colors) Register(r *plugin.Registry) error {
	r.Extension(plugin.Extension{Alias: "test-colors", Name: "Colors", Description: "Networks have a color.", Updated: "2026-12-03T00:00:00-00:00"})
	r.ExtendResource(schema.Network, schema.Sorted(schema.RW("color", schema.String(16), "none")))
	r.Migration("CREATE TABLE test_palette (color TEXT PRIMARY KEY)", "INSERT INTO test_palette (color) VALUES ('red')")
	keep := func(c *plugin.Ctx, p *plugin.Payload) error {
		if v, ok := p.Request["color"]; ok {
			p.New["color"] = v
		}
		return nil
	}
	r.Subscribe(schema.Network.Kind, plugin.Create, plugin.Precommit, keep)
	r.Subscribe(schema.Network.Kind, plugin.Update, plugin.Precommit, keep)
	return nil
}

// TestServiceExtendsAnotherResource: a service adds an attribute to
// networks; where it runs, the attribute is accepted, stored, rendered,
// filtered and updated, and its extension listed; where it does not, the
// attribute is unknown.
func TestServiceExtendsAnotherResource(t *testing.T) {
	e := newEnv(t, filepath.Join(t.TempDir(), "n.db"), services.Config{Extra: []plugin.Service{colors{}}})
	n := e.network(userA, map[string]any{"name": "n1", "color": "red"})
	if n["color"] != "red" {
		t.Fatalf("created: %v", n)
	}
	e.network(userA, map[string]any{"name": "n2"})
	if l := e.list(userA, "/v2.0/networks?color=red", "networks"); len(l) != 1 {
		t.Fatalf("filtered by color: %v", l)
	}
	u := e.must(200, e.do(userA, "PUT", "/v2.0/networks/"+n["id"].(string), map[string]any{"network": map[string]any{"color": "blue"}}), "network")
	if u["color"] != "blue" {
		t.Fatalf("updated: %v", u)
	}
	if got := e.must(200, e.do(userA, "GET", "/v2.0/networks/"+n["id"].(string), nil), "network"); got["color"] != "blue" {
		t.Fatalf("stored: %v", got)
	}
	e.must(200, e.do(userA, "GET", "/v2.0/extensions/test-colors", nil), "extension")
	// Its own table was made, once: building the services again over the
	// same store runs no migration twice.
	if _, err := services.Build(e.db.DB, services.Config{Extra: []plugin.Service{colors{}}}); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := e.db.Read(t.Context(), func(tx *store.Tx) error {
		return tx.QueryRow("SELECT COUNT(*) FROM test_palette").Scan(&rows)
	}); err != nil || rows != 1 {
		t.Fatalf("the service's table: %d rows, %v", rows, err)
	}
	e.fault(e.do(userA, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"color": "a very long color name"}}), 400, "HTTPBadRequest")

	plain := newEnv(t, filepath.Join(t.TempDir(), "p.db"), services.Config{})
	plain.fault(plain.do(userA, "POST", "/v2.0/networks", map[string]any{"network": map[string]any{"color": "red"}}), 400, "HTTPBadRequest")
	if got := plain.network(userA, nil); got["color"] != nil {
		t.Fatalf("a network without the service has a color: %v", got)
	}
}

// TestServicePlugins: a service left out of --service-plugins is absent
// from the API and from the extensions; one that needs a missing service
// refuses to start.
func TestServicePlugins(t *testing.T) {
	e := newEnv(t, filepath.Join(t.TempDir(), "n.db"), services.Config{ServicePlugins: []string{}})
	e.fault(e.do(userA, "GET", "/v2.0/routers", nil), 404, "HTTPNotFound")
	e.fault(e.do(userA, "GET", "/v2.0/metering/metering-labels", nil), 404, "HTTPNotFound")
	for _, x := range e.list(userA, "/v2.0/extensions", "extensions") {
		switch alias := x.(map[string]any)["alias"]; alias {
		case "router", "l3_agent_scheduler", "metering", "extraroute":
			t.Errorf("extension %s listed without its service", alias)
		}
	}
	e.network(userA, nil) // the core still serves
	if _, err := services.Build(nil, services.Config{ServicePlugins: []string{"metering"}}); err == nil {
		t.Error("metering without the router service starts")
	}
	if _, err := services.Build(nil, services.Config{ServicePlugins: []string{"nonesuch"}}); err == nil {
		t.Error("an unknown service plugin starts")
	}
}

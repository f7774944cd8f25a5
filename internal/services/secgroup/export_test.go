package secgroup

import (
	"neutrino/internal/plugin"
)

// Members is a group's members as the tests see them.
type Members struct {
	Addrs   []string
	Keys    map[string]string
	AddrsOf map[string][][]string
	m       members
}

func wrap(m members) *Members {
	out := &Members{Addrs: m.addrs, Keys: m.keys, AddrsOf: map[string][][]string{}, m: m}
	for id, a := range m.addrsOf {
		out.AddrsOf[id] = [][]string{a}
	}
	return out
}

// CachedMembers are group gid's members through the service's cache.
func (s *Service) CachedMembers(c *plugin.Ctx, gid string) (*Members, error) {
	m, err := s.cache.members(c, gid)
	return wrap(m), err
}

// GatheredMembers are group gid's members gathered afresh.
func GatheredMembers(c *plugin.Ctx, gid string) (*Members, error) {
	m, err := gatherMembers(c, groupFilter(gid))
	return wrap(m), err
}

// StepMembers works out gid's members from prev, as of revision at.
func StepMembers(c *plugin.Ctx, gid string, prev *Members, at int64) (*Members, bool) {
	m, ok := stepMembers(c, gid, &prev.m, at)
	return wrap(m), ok
}

var (
	CancelOut   = cancelOut
	MergeSorted = mergeSorted
)

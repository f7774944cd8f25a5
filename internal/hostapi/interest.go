package hostapi

import "neutrino/internal/attr"

// Change is one entry of the change log as agents see it.
type Change struct {
	Revision int64          `json:"revision"`
	Kind     string         `json:"kind"`
	ID       string         `json:"id"`
	Op       string         `json:"op,omitempty"`
	Parent   string         `json:"parent_id,omitempty"`
	Object   map[string]any `json:"object,omitempty"` // nil for deletes
}

// Interest is what a host's span depends on, so that changes elsewhere in
// the cloud cost that host nothing: the server sends a host only the
// changes its interest finds relevant.
type Interest struct {
	host     string
	kinds    map[string]bool              // what the host's concerns depend on
	ports    map[string]bool              // bound here
	members  map[string]map[string]string // members of the remote groups here (by group), with their MemberKey
	remote   map[string]bool              // the groups whose members the span holds
	networks map[string]bool
	groups   map[string]bool // used here, or remote groups of rules used here
	vteps    map[string]string
	all      bool // every change of the kinds (the span is not known)
}

// EveryChange is the interest of a host whose span is not known: every
// change of kinds.
func EveryChange(kinds []string) *Interest {
	in := NewInterest("", kinds, &Span{})
	in.all = true
	return in
}

// NewInterest is what host's span st depends on, for a host whose
// concerns depend on changes of kinds.
func NewInterest(host string, kinds []string, st *Span) *Interest {
	in := &Interest{host: host, kinds: map[string]bool{}, ports: map[string]bool{}, networks: map[string]bool{},
		groups: map[string]bool{}, vteps: map[string]string{}}
	for _, k := range kinds {
		in.kinds[k] = true
	}
	for _, p := range st.Ports {
		in.ports[attr.Str(p, "id")] = true
	}
	in.members, in.remote = st.Members, map[string]bool{}
	for _, n := range st.Networks {
		in.networks[attr.Str(n, "id")] = true
	}
	for _, g := range st.SecurityGroups {
		in.groups[attr.Str(g, "id")] = true
	}
	for g := range st.GroupMembers {
		in.groups[g] = true
		in.remote[g] = true
	}
	for _, p := range st.Peers {
		in.vteps[p.Host] = p.VTEP
	}
	return in
}

// WithMembers is the interest of the same span with its remote groups'
// members now m (see plugin.Registry.SpanMembers).
func (in *Interest) WithMembers(m map[string]map[string]string) *Interest {
	out := *in
	out.members = m
	return &out
}

// Keys are what the changes relevant to the interest are found by (see
// ChangeKeys): a change that has none of them is not relevant. Member
// ports are not among them: they are found by their groups (MemberKeys).
func (in *Interest) Keys() []string {
	if in.all {
		return []string{"*"}
	}
	keys := []string{"host:" + in.host}
	for k := range in.kinds {
		if !narrowed[k] {
			keys = append(keys, "kind:"+k) // every change of such a kind
		}
	}
	for id := range in.ports {
		keys = append(keys, "port:"+id)
	}
	for id := range in.networks {
		keys = append(keys, "net:"+id)
	}
	for id := range in.groups {
		keys = append(keys, "group:"+id)
	}
	for id := range in.remote {
		keys = append(keys, "remote:"+id)
	}
	for h := range in.vteps {
		keys = append(keys, "agent:"+h)
	}
	return keys
}

// MemberMaps are the member ports of the interest's remote groups, by
// group: a change of a port in one of them concerns the interests with
// the key "remote:" and the group.
func (in *Interest) MemberMaps() map[string]map[string]string { return in.members }

// narrowed are the kinds Relevant judges by more than their kind.
var narrowed = map[string]bool{"port": true, "network": true, "subnet": true, "security_group": true, "agent": true}

// ChangeKeys are the keys of the interests a change may be relevant to
// (with "*", every interest that knows no span): a port by its id, network,
// host and the groups it joins; a network by its id; a subnet by its
// network; a group by its id; an agent by its host (nil, meaning every
// interest, when it goes); any other kind by kind. A member port leaving or changing is found
// by its groups' member maps (Interest.MemberMaps), not here.
func ChangeKeys(c Change) []string {
	keys := []string{"*"}
	o := c.Object
	switch c.Kind {
	case "port":
		keys = append(keys, "port:"+c.ID, "net:"+c.Parent)
		if h := attr.Str(o, "binding:host_id"); h != "" {
			keys = append(keys, "host:"+h)
		}
		groups, _ := o["security_groups"].([]any)
		for _, g := range groups {
			if s, _ := g.(string); s != "" {
				keys = append(keys, "remote:"+s)
			}
		}
	case "network":
		keys = append(keys, "net:"+c.ID)
	case "subnet":
		keys = append(keys, "net:"+c.Parent)
	case "security_group":
		keys = append(keys, "group:"+c.ID)
	case "agent":
		if o == nil {
			return nil // every interest
		}
		keys = append(keys, "agent:"+attr.Str(o, "host"))
	default:
		keys = append(keys, "kind:"+c.Kind)
	}
	return keys
}

// MembersOnly reports whether a relevant change can alter only the
// members of the span's remote groups: a port neither bound here nor on a
// network here, that is or was a member of one.
func (in *Interest) MembersOnly(c Change) bool {
	if in == nil || in.all || c.Kind != "port" {
		return false
	}
	return !in.ports[c.ID] && !in.networks[c.Parent] && attr.Str(c.Object, "binding:host_id") != in.host
}

// Relevant reports whether a change may alter the span. A nil Interest
// (the span is not known) finds every change relevant.
func (in *Interest) Relevant(c Change) bool {
	if in == nil {
		return true
	}
	if !in.kinds[c.Kind] {
		return false
	}
	if in.all {
		return true
	}
	o := c.Object
	switch c.Kind {
	case "port":
		if in.ports[c.ID] || in.networks[c.Parent] || attr.Str(o, "binding:host_id") == in.host {
			return true
		}
		// A member of a group here elsewhere: only its addresses and
		// groups matter (not its status, its name...).
		for _, m := range in.members {
			if key, ok := m[c.ID]; ok {
				return o == nil || MemberKey(o) != key
			}
		}
		groups, _ := o["security_groups"].([]any)
		for _, g := range groups {
			if s, _ := g.(string); in.remote[s] {
				return true // a new member
			}
		}
		return false
	case "network":
		return in.networks[c.ID]
	case "subnet":
		return in.networks[c.Parent]
	case "security_group":
		return in.groups[c.ID]
	case "agent":
		// Heartbeats change nothing here; a peer host's tunnel endpoint,
		// or an agent going, may (other agent types carry no endpoint).
		if o == nil {
			return true
		}
		if attr.Str(o, "agent_type") != HostAgentType {
			return false
		}
		conf, _ := o["configurations"].(map[string]any)
		vtep, ok := in.vteps[attr.Str(o, "host")]
		return ok && vtep != attr.Str(conf, "tunneling_ip")
	}
	return true // a kind only some concern here depends on, whole
}

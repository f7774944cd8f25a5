package api

import (
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"neutrino/internal/fault"
	"neutrino/internal/policy"
	"neutrino/internal/schema"
	"neutrino/internal/store"
)

// listQuery is a parsed collection GET query.
type listQuery struct {
	filters     map[string][]string
	fields      []string
	sortKeys    []string
	sortDirs    []bool // true = descending
	limit       int
	marker      string
	pageReverse bool
	tags        [4][]string // tags, tags-any, not-tags, not-tags-any
}

var reserved = map[string]bool{"fields": true, "sort_key": true, "sort_dir": true, "limit": true,
	"marker": true, "page_reverse": true, "tags": true, "tags-any": true, "not-tags": true, "not-tags-any": true}

func parseList(r *schema.Resource, c *policy.Caller, q url.Values) (*listQuery, error) {
	lq := &listQuery{filters: map[string][]string{}}
	for k, vals := range q {
		if reserved[k] {
			continue
		}
		a := r.Attr(k)
		if a == nil && !r.ExtraFilters[k] {
			return nil, fault.BadRequest("['%s'] is invalid attribute for filtering", k)
		}
		if a != nil && (a.NoFilter && k != "fixed_ips" || !a.Visible(c)) {
			return nil, fault.BadRequest("['%s'] is invalid attribute for filtering", k)
		}
		if k == "tenant_id" {
			k = "project_id"
		}
		lq.filters[k] = append(lq.filters[k], vals...)
	}
	for _, f := range q["fields"] {
		for _, x := range strings.Split(f, ",") {
			if x = strings.TrimSpace(x); x != "" {
				lq.fields = append(lq.fields, x)
			}
		}
	}
	keys, dirs := q["sort_key"], q["sort_dir"]
	if len(keys) != len(dirs) {
		return nil, fault.BadRequest("The number of sort_keys and sort_dirs must be same")
	}
	for i, k := range keys {
		a := r.Attr(k)
		if a == nil || !a.Sort || !a.Visible(c) {
			return nil, fault.BadRequest("%s is an invalid attribute for sort_key", k)
		}
		desc := false
		switch dirs[i] {
		case "asc":
		case "desc":
			desc = true
		default:
			return nil, fault.BadRequest("['%s'] is invalid value for sort_dirs, valid value is 'asc' and 'desc'", dirs[i])
		}
		if k == "tenant_id" {
			k = "project_id"
		}
		lq.sortKeys = append(lq.sortKeys, k)
		lq.sortDirs = append(lq.sortDirs, desc)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return nil, fault.New(400, "BadRequest", "Bad limit request: Limit must be an integer 0 or greater and not '%s'.", l)
		}
		lq.limit = n
	}
	lq.marker = q.Get("marker")
	if pr := q.Get("page_reverse"); pr != "" {
		v, err := schema.Bool("page_reverse", pr)
		if err != nil {
			return nil, err
		}
		lq.pageReverse = v.(bool)
	}
	for i, name := range []string{"tags", "tags-any", "not-tags", "not-tags-any"} {
		for _, v := range q[name] {
			for _, t := range strings.Split(v, ",") {
				if t != "" {
					lq.tags[i] = append(lq.tags[i], t)
				}
			}
		}
	}
	return lq, nil
}

// pushdown is the part of the filters the store can apply by index.
func (lq *listQuery) pushdown(r *schema.Resource) store.Filter {
	var f store.Filter
	if ids := lq.filters["id"]; len(ids) > 0 {
		f.IDs = ids
	}
	if p := lq.filters["project_id"]; len(p) > 0 {
		f.Projects = p
	}
	if r.Parent != "" {
		if p := lq.filters[r.Parent]; len(p) > 0 {
			f.Parents = p
		}
	}
	return f
}

// match applies the attribute and tag filters to one object.
func (lq *listQuery) match(r *schema.Resource, o schema.Object) bool {
	for k, vals := range lq.filters {
		if !matchFilter(r, k, o, vals) {
			return false
		}
	}
	if len(lq.tags[0])+len(lq.tags[1])+len(lq.tags[2])+len(lq.tags[3]) > 0 {
		have := map[string]bool{}
		if tl, ok := o["tags"].([]any); ok {
			for _, t := range tl {
				have[schema.Render(t)] = true
			}
		}
		all := func(ts []string) bool {
			for _, t := range ts {
				if !have[t] {
					return false
				}
			}
			return true
		}
		anyOf := func(ts []string) bool {
			for _, t := range ts {
				if have[t] {
					return true
				}
			}
			return false
		}
		if len(lq.tags[0]) > 0 && !all(lq.tags[0]) {
			return false
		}
		if len(lq.tags[1]) > 0 && !anyOf(lq.tags[1]) {
			return false
		}
		if len(lq.tags[2]) > 0 && all(lq.tags[2]) {
			return false
		}
		if len(lq.tags[3]) > 0 && anyOf(lq.tags[3]) {
			return false
		}
	}
	return true
}

func matchFilter(r *schema.Resource, k string, o schema.Object, vals []string) bool {
	switch k {
	case "fixed_ips":
		return matchFixedIPs(o, vals)
	case "ip_address_substr":
		for _, v := range vals {
			if matchFixedIPs(o, []string{"ip_address_substr=" + v}) {
				return true
			}
		}
		return false
	}
	a := r.Attr(k)
	v := o[k]
	switch x := v.(type) {
	case []any: // list attributes match when any element matches
		for _, want := range vals {
			for _, e := range x {
				if schema.Render(e) == want {
					return true
				}
			}
		}
		return false
	}
	have := schema.Render(v)
	for _, want := range vals {
		if a != nil && a.Convert != nil && want != "" {
			if cv, err := a.Convert(k, want); err == nil {
				want = schema.Render(cv)
			}
		}
		if have == want || (v == nil && want == "") {
			return true
		}
	}
	return false
}

// matchFixedIPs implements fixed_ips=ip_address=X, subnet_id=Y and
// ip_address_substr=Z filters (each value is one condition; any may match).
func matchFixedIPs(o schema.Object, vals []string) bool {
	ips, _ := o["fixed_ips"].([]any)
	for _, cond := range vals {
		k, v, _ := strings.Cut(cond, "=")
		for _, e := range ips {
			m, _ := e.(map[string]any)
			ip, _ := m["ip_address"].(string)
			switch k {
			case "ip_address":
				if a, err := netip.ParseAddr(v); err == nil && a.String() == ip || v == ip {
					return true
				}
			case "subnet_id":
				if m["subnet_id"] == v {
					return true
				}
			case "ip_address_substr":
				if strings.Contains(ip, v) {
					return true
				}
			}
		}
	}
	return false
}

// order sorts objs by the query's sort keys (id breaks ties) and applies the
// marker, limit and page_reverse; it returns the page and its links.
func (lq *listQuery) page(objs []schema.Object, marker schema.Object, base string, q url.Values) ([]schema.Object, []map[string]any) {
	keys := append([]string{}, lq.sortKeys...)
	dirs := append([]bool{}, lq.sortDirs...)
	hasID := false
	for _, k := range keys {
		hasID = hasID || k == "id"
	}
	if !hasID {
		keys = append(keys, "id")
		dirs = append(dirs, false)
	}
	less := func(a, b schema.Object) bool {
		for i, k := range keys {
			c := compare(a[k], b[k])
			if c == 0 {
				continue
			}
			if dirs[i] {
				return c > 0
			}
			return c < 0
		}
		return false
	}
	// The store returns objects ordered by id: only other orders need sorting.
	if len(lq.sortKeys) > 0 && !(len(lq.sortKeys) == 1 && lq.sortKeys[0] == "id" && !lq.sortDirs[0]) {
		sort.SliceStable(objs, func(i, j int) bool { return less(objs[i], objs[j]) })
	}
	if lq.limit == 0 && marker == nil {
		return objs, nil
	}
	if lq.pageReverse {
		for i, j := 0, len(objs)-1; i < j; i, j = i+1, j-1 {
			objs[i], objs[j] = objs[j], objs[i]
		}
	}
	if marker != nil {
		// Items strictly after the marker in this page's direction.
		after := objs[:0:0]
		for _, o := range objs {
			if lq.pageReverse && less(o, marker) || !lq.pageReverse && less(marker, o) {
				after = append(after, o)
			}
		}
		objs = after
	}
	if lq.limit > 0 && len(objs) > lq.limit {
		objs = objs[:lq.limit]
	}
	if lq.pageReverse {
		for i, j := 0, len(objs)-1; i < j; i, j = i+1, j-1 {
			objs[i], objs[j] = objs[j], objs[i]
		}
	}
	var links []map[string]any
	if lq.limit == 0 || len(objs) == 0 {
		return objs, links
	}
	link := func(rel, marker string, reverse bool) {
		v := url.Values{}
		for k, vals := range q {
			if k != "marker" && k != "page_reverse" {
				v[k] = vals
			}
		}
		v.Set("marker", marker)
		if reverse {
			v.Set("page_reverse", "True")
		}
		links = append(links, map[string]any{"rel": rel, "href": base + "?" + v.Encode()})
	}
	first, last := objs[0]["id"].(string), objs[len(objs)-1]["id"].(string)
	// Neutron's rule: a next link unless a forward page came back short, a
	// previous link unless a reverse page came back short.
	if !(len(objs) < lq.limit && !lq.pageReverse) {
		link("next", last, false)
	}
	if !(len(objs) < lq.limit && lq.pageReverse) {
		link("previous", first, true)
	}
	return objs, links
}

func compare(a, b any) int {
	switch x := a.(type) {
	case float64:
		if y, ok := b.(float64); ok {
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
	case bool:
		if y, ok := b.(bool); ok {
			switch {
			case x == y:
				return 0
			case !x:
				return -1
			}
			return 1
		}
	}
	if a == nil && b != nil {
		return -1
	}
	if b == nil && a != nil {
		return 1
	}
	return strings.Compare(schema.Render(a), schema.Render(b))
}

// Package attr reads and updates decoded JSON objects (map[string]any), the
// form resources take between the API, the services and the agents. A
// missing attribute, or one of another type, reads as the zero value:
// callers validate attributes where they enter (schema), not where they
// are read.
package attr

// Str reads a string attribute.
func Str(o map[string]any, k string) string { s, _ := o[k].(string); return s }

// Bool reads a boolean attribute.
func Bool(o map[string]any, k string) bool { b, _ := o[k].(bool); return b }

// List reads a list attribute.
func List(o map[string]any, k string) []any { l, _ := o[k].([]any); return l }

// Objects reads the objects of a list attribute, skipping other elements.
func Objects(o map[string]any, k string) []map[string]any {
	l, _ := o[k].([]any)
	out := make([]map[string]any, 0, len(l))
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// Num reads a JSON number, or def if v is not one.
func Num(v any, def float64) float64 {
	if f, ok := v.(float64); ok {
		return f
	}
	return def
}

// Merge copies the attributes of in onto cur, and returns cur.
func Merge(cur, in map[string]any) map[string]any {
	for k, v := range in {
		cur[k] = v
	}
	return cur
}

// OrEmpty is l, or an empty list for nil (which JSON would render null).
func OrEmpty(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

package attr

import (
	"reflect"
	"testing"
)

// TestReaders: an attribute of the wrong type, or none, reads as the zero
// value (OrEmpty: an empty list, which JSON renders [] and not null).
func TestReaders(t *testing.T) {
	o := map[string]any{"s": "x", "b": true, "n": 2.0, "l": []any{"a", map[string]any{"k": "v"}}}
	got := []any{Str(o, "s"), Str(o, "b"), Bool(o, "b"), Bool(o, "s"), len(List(o, "l")), List(o, "s"),
		Objects(o, "l"), Num(o["n"], 7), Num(o["s"], 7), OrEmpty(nil)}
	want := []any{"x", "", true, false, 2, []any(nil),
		[]map[string]any{{"k": "v"}}, 2.0, 7.0, []any{}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if m := Merge(map[string]any{"a": 1, "b": 2}, map[string]any{"b": 3}); !reflect.DeepEqual(m, map[string]any{"a": 1, "b": 3}) {
		t.Fatalf("merge: %v", m)
	}
}

package jsonx

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The hand-written encoder must produce what encoding/json decodes back to
// the same value, for any string.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl\x00\x01\n\t", "bad\xff utf8", "\u2028 sep", "ünïcødé 🙂"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := map[string]any{s: []any{s, 1.5, 3.0, true, nil, map[string]any{"k": s}}}
		b, err := Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		var back any
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		std, _ := json.Marshal(v)
		var want any
		json.Unmarshal(std, &want)
		if !reflect.DeepEqual(back, want) {
			t.Fatalf("round trip: %q vs %q", b, std)
		}
	})
}

package main

import (
	"os"
	"strings"
	"testing"
)

// The sandbox warns when its hosts may outgrow the kernel's ARP table,
// and only then.
func TestARPTableWarning(t *testing.T) {
	if _, err := os.Stat("/proc/sys/net/ipv4/neigh/default/gc_thresh3"); err != nil {
		t.Skip("no ARP table limit to read here")
	}
	if w := arpTableWarning(1); w != "" {
		t.Fatalf("one host warned: %s", w)
	}
	if w := arpTableWarning(1_000_000); !strings.Contains(w, "gc_thresh3") {
		t.Fatalf("a million hosts were not warned of: %q", w)
	}
}

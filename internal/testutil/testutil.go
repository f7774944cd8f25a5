// Package testutil holds what the test suites share: the gate in front of
// tests that need root and kernel tools, and one way to wait for a
// condition.
package testutil

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// RequireEnv names the environment variable that turns the data-plane
// gate from a skip into a failure. The test command sets it when it runs
// as root, so that a tier that cannot run there fails CI instead of
// passing silently.
const RequireEnv = "NEUTRINO_REQUIRE_DATAPLANE"

// RequireDataplane skips t unless it runs as root with every tool on PATH;
// with NEUTRINO_REQUIRE_DATAPLANE=1 it fails instead of skipping.
func RequireDataplane(t testing.TB, tools ...string) {
	t.Helper()
	stop := t.Skip
	if os.Getenv(RequireEnv) == "1" {
		stop = t.Fatal
	}
	if os.Geteuid() != 0 {
		stop("data-plane tests need root (network namespaces)")
		return
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			stop(tool + " is not on PATH (" + os.Getenv("PATH") + ")")
			return
		}
	}
}

// Eventually polls cond every few milliseconds until it holds or within
// has passed, then fails t with what was awaited. cond may report why it
// does not hold yet; the last reason is printed on failure.
func Eventually(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	wait := 5 * time.Millisecond
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if why != "" {
				t.Fatalf("%s: not within %v: %s", what, within, why)
			}
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}

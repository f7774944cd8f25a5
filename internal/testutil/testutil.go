// Package testutil holds what the test suites share: the gate in front of
// tests that need root and kernel tools, and one way to wait for a
// condition.
package testutil

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
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

// PingLoss runs ping (its argv after "-c 500 -i 0.01 -W 1": the target,
// through run, which returns ping's output) while fail runs a second in,
// and returns how long replies were missing (lost echoes × 10 ms) and
// whether the last echo was answered.
func PingLoss(t testing.TB, run func(args ...string) string, target string, fail func()) (time.Duration, bool) {
	t.Helper()
	out := make(chan string, 1)
	go func() { out <- run("ping", "-c", "500", "-i", "0.01", "-W", "1", target) }()
	time.Sleep(time.Second)
	fail()
	o := <-out
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(o)
	if m == nil {
		t.Fatalf("ping said:\n%s", o)
	}
	sent, _ := strconv.Atoi(m[1])
	got, _ := strconv.Atoi(m[2])
	last := o[strings.LastIndex(o, "icmp_seq=")+1:]
	return time.Duration(sent-got) * 10 * time.Millisecond, got > 0 && strings.Contains(last, "ttl=")
}

// ReportP50Max reports the median and the maximum of durations as the
// benchmark's metrics name-p50-ms and name-max-ms.
func ReportP50Max(b *testing.B, name string, d []time.Duration) {
	d = slices.Clone(d)
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Milliseconds()), name+"-p50-ms")
	b.ReportMetric(float64(d[len(d)-1].Milliseconds()), name+"-max-ms")
}

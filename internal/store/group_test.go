package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGroupCommit: concurrent writes share transactions, yet each stands
// alone: the ones that succeed are all there with revisions one apart in
// commit order, each seeing the writes before it (no claim granted twice);
// one that fails or panics leaves nothing behind and takes no other write
// with it.
func TestGroupCommit(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "g.db"))
	defer db.Close()
	testGroupCommit(t, db)
}

// TestGroupCommitPostgres is TestGroupCommit on PostgreSQL, the writers
// spread over two servers sharing the database (each batching its own,
// each batch's guard failing when the other wrote first).
func TestGroupCommitPostgres(t *testing.T) {
	a, b := pgPair(t)
	testGroupCommit(t, a, b)
}

func testGroupCommit(t *testing.T, dbs ...*DB) {
	db := dbs[0]
	ctx := context.Background()
	boom := errors.New("boom")
	const writers = 60
	type result struct {
		rev   int64
		err   error
		panic any
	}
	results := make([]result, writers)
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { results[i].panic = recover() }()
			rev, err := dbs[i%len(dbs)].Write(ctx, func(tx *Tx) error {
				if err := tx.Put("thing", "", Object{"id": fmt.Sprint("t", i), "project_id": "p"}); err != nil {
					return err
				}
				if i%4 == 1 { // a read through SQL: on PostgreSQL, the batch so far goes to the server
					var one int
					if err := tx.QueryRow("SELECT 1").Scan(&one); err != nil {
						return err
					}
				}
				// Ten keys for sixty writers: each granted to one write.
				ok, err := tx.ClaimIP("s", fmt.Sprint("10.0.0.", i%10), fmt.Sprint("t", i), "n")
				if err != nil {
					return err
				}
				if !ok {
					return boom
				}
				switch i % 7 {
				case 3:
					return boom
				case 5:
					panic("write panicked")
				}
				return nil
			})
			results[i].rev, results[i].err = rev, err
		}()
	}
	wg.Wait()
	var revs []int64
	stored := map[string]bool{}
	if err := db.Read(ctx, func(tx *Tx) error {
		all, err := tx.List("thing", Filter{})
		for _, o := range all {
			stored[o["id"].(string)] = true
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	granted := 0
	for i, r := range results {
		id := fmt.Sprint("t", i)
		switch {
		case r.panic != nil:
			if i%7 != 5 || stored[id] {
				t.Errorf("%s: panic %v, stored %v", id, r.panic, stored[id])
			}
		case r.err != nil:
			if !errors.Is(r.err, boom) || stored[id] {
				t.Errorf("%s: error %v, stored %v", id, r.err, stored[id])
			}
		default:
			granted++
			revs = append(revs, r.rev)
			if !stored[id] {
				t.Errorf("%s: acknowledged at revision %d but not stored", id, r.rev)
			}
		}
	}
	if granted == 0 || granted > 10 {
		t.Fatalf("%d writes were granted a claim on ten keys", granted)
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	for i := 1; i < len(revs); i++ {
		if revs[i] == revs[i-1] {
			t.Fatalf("two writes took revision %d", revs[i])
		}
	}
	ch, err := db.Changes(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch) != granted {
		t.Fatalf("%d changes logged for %d writes", len(ch), granted)
	}
	for i, c := range ch {
		if c.Rev != revs[i] {
			t.Fatalf("change %d at revision %d, the writes took %v", i, c.Rev, revs)
		}
	}
}

// TestKilledWriterLosesNothing: a process writing from many goroutines is
// killed (SIGKILL) mid-stream; every write it had acknowledged is there
// when the store opens again.
func TestKilledWriterLosesNothing(t *testing.T) {
	if dsn := os.Getenv("NEUTRINO_STORE_WRITER"); dsn != "" {
		writeUntilKilled(dsn)
		return
	}
	killWriter(t, filepath.Join(t.TempDir(), "k.db"))
}

// TestKilledWriterLosesNothingPostgres is the same on PostgreSQL, where
// writes commit in batches too.
func TestKilledWriterLosesNothingPostgres(t *testing.T) {
	if os.Getenv("NEUTRINO_STORE_WRITER") != "" {
		return // the writer runs in TestKilledWriterLosesNothing
	}
	killWriter(t, freshPG(t))
}

// killWriter runs writeUntilKilled on dsn in a process of its own, kills
// it, and checks every write it acknowledged.
func killWriter(t *testing.T, dsn string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterLosesNothing$")
	cmd.Env = append(os.Environ(), "NEUTRINO_STORE_WRITER="+dsn)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 400 {
		if id, ok := strings.CutPrefix(sc.Text(), "ack "); ok {
			acked[id] = true
		}
	}
	cmd.Process.Kill() // SIGKILL: no deferred work, no clean close
	cmd.Wait()
	if len(acked) < 400 {
		t.Fatalf("the writer acknowledged %d writes before it stopped", len(acked))
	}
	db := openTest(t, dsn)
	defer db.Close()
	if err := db.Read(context.Background(), func(tx *Tx) error {
		for id := range acked {
			if _, err := tx.Get("thing", id); err != nil {
				return fmt.Errorf("acknowledged %s: %w", id, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// writeUntilKilled writes from 16 goroutines, printing each write it was
// told committed, until it is killed.
func writeUntilKilled(dsn string) {
	db, err := Open(dsn)
	if err != nil {
		panic(err)
	}
	if _, err := db.Migrate(context.Background()); err != nil {
		panic(err)
	}
	var mu sync.Mutex
	for g := 0; g < 16; g++ {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprint("w", g, "-", i)
				if _, err := db.Write(context.Background(), func(tx *Tx) error {
					return tx.Put("thing", "", Object{"id": id, "project_id": "p"})
				}); err != nil {
					panic(err)
				}
				mu.Lock()
				fmt.Println("ack " + id)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Minute)
}

// TestPostgresBatchWithReads: one batch (run directly, so that it is one)
// whose writes read through SQL, which sends the batch so far to the
// server, and one of which fails after its read: what it sent cannot be
// taken back, so every write of the batch runs again on its own; the
// failed one leaves nothing, the others are all there, revisions in order.
func TestPostgresBatchWithReads(t *testing.T) {
	db, _ := pgPair(t)
	boom := errors.New("boom")
	write := func(id string, read, fail bool) *writeReq {
		return &writeReq{ctx: context.Background(), res: make(chan writeRes, 1), fn: func(tx *Tx) error {
			if err := tx.Put("thing", "", Object{"id": id, "project_id": "p"}); err != nil {
				return err
			}
			if read {
				var one int
				if err := tx.QueryRow("SELECT 1").Scan(&one); err != nil {
					return err
				}
				if fail {
					return boom // right after its read: nothing of it queued since
				}
			}
			if _, err := tx.ClaimIP("s", "10.0.0."+id[1:], id, "n"); err != nil {
				return err
			}
			if fail {
				return boom
			}
			return nil
		}}
	}
	for round, reads := range [][3]bool{{true, true, false}, {false, true, true}, {true, false, false}} {
		base := fmt.Sprint(round * 3)
		ids := []string{"a" + base + "1", "b" + base + "2", "c" + base + "3"}
		batch := []*writeReq{write(ids[0], reads[0], false), write(ids[1], reads[1], true), write(ids[2], reads[2], false)}
		db.wmu.Lock()
		db.runBatchPG(batch)
		db.wmu.Unlock()
		var revs []int64
		for i, req := range batch {
			r := <-req.res
			if i == 1 {
				if !errors.Is(r.err, boom) || r.rev != 0 {
					t.Fatalf("round %d: the failing write: %+v", round, r)
				}
				continue
			}
			if r.err != nil || r.panicked != nil {
				t.Fatalf("round %d, write %d: %+v", round, i, r)
			}
			revs = append(revs, r.rev)
		}
		if revs[1] != revs[0]+1 {
			t.Fatalf("round %d: revisions %v", round, revs)
		}
		if err := db.Read(context.Background(), func(tx *Tx) error {
			if _, err := tx.Get("thing", ids[1]); !errors.Is(err, ErrNotFound) {
				t.Errorf("round %d: the failed write is there (%v)", round, err)
			}
			for _, k := range []int{0, 2} {
				if _, err := tx.Get("thing", ids[k]); err != nil {
					t.Errorf("round %d: write %d: %v", round, k, err)
				}
			}
			ips, err := tx.SubnetIPs("s")
			if err == nil && len(ips) != 2*(round+1) {
				t.Errorf("round %d: %d addresses claimed, want %d: %v", round, len(ips), 2*(round+1), ips)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBatchFailureLeavesNoWriterWaiting: should a batch itself fail (not a
// write of it), its writes are answered with an error and the writes after
// it go on.
func TestBatchFailureLeavesNoWriterWaiting(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "b.db"))
	defer db.Close()
	ctx := context.Background()
	db.wmu.Lock()
	db.beforeBatch = func() { panic("batch machinery") }
	db.wmu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = db.Write(ctx, func(tx *Tx) error { return tx.Put("thing", "", Object{"id": fmt.Sprint("x", i), "project_id": "p"}) })
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "outcome unknown") {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	db.wmu.Lock()
	db.beforeBatch = nil
	db.wmu.Unlock()
	if _, err := db.Write(ctx, func(tx *Tx) error { return tx.Put("thing", "", Object{"id": "after", "project_id": "p"}) }); err != nil {
		t.Fatalf("a write after the failed batch: %v", err)
	}
}

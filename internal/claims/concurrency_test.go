package claims

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestHelperProcess is not a real test: TestConcurrentProcesses re-executes
// the test binary with CLAIMS_HELPER=1 to get independent processes.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("CLAIMS_HELPER") != "1" {
		t.Skip("helper process only")
	}
	dir := os.Getenv("CLAIMS_DIR")
	i := os.Getenv("CLAIMS_INDEX")
	// Start together: wait for the go file.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "helper: no go signal")
			os.Exit(3)
		}
		time.Sleep(2 * time.Millisecond)
	}
	s := New(filepath.Join(dir, "state"))
	_, err := s.Update(os.Getenv("CLAIMS_LEASE"), func(c *Claim, _ bool) error {
		time.Sleep(3 * time.Millisecond) // widen the read-modify-write window
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels["p"+i] = "done"
		c.RepoRoot = "/src/app"
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func TestConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	const n = 20
	dir := t.TempDir()
	s := New(filepath.Join(dir, "state"))

	var procs []*exec.Cmd
	var outs []*bytes.Buffer
	for i := range n {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(),
			"CLAIMS_HELPER=1",
			"CLAIMS_DIR="+dir,
			"CLAIMS_LEASE="+idA,
			"CLAIMS_INDEX="+strconv.Itoa(i),
		)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		outs = append(outs, &out)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v\n%s", i, err, outs[i])
		}
	}

	checkLabels(t, s, idA, n)
}

func TestConcurrentGoroutines(t *testing.T) {
	const n = 50
	s := New(filepath.Join(t.TempDir(), "state"))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A separate Store value per goroutine, as separate commands would have.
			st := New(s.Dir)
			_, err := st.Update(idA, func(c *Claim, _ bool) error {
				if c.Labels == nil {
					c.Labels = map[string]string{}
				}
				c.Labels[fmt.Sprintf("p%d", i)] = "done"
				c.RepoRoot = "/src/app"
				return nil
			})
			if err != nil {
				errs <- err
				return
			}
			// Concurrent readers never see a partial file.
			if _, err := st.Get(idA); err != nil {
				errs <- err
			}
			if _, problems, err := st.List(); err != nil || len(problems) != 0 {
				errs <- fmt.Errorf("List during writes: %v %v", problems, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkLabels(t, s, idA, n)
}

func checkLabels(t *testing.T, s *Store, id string, n int) {
	t.Helper()
	data, err := os.ReadFile(s.Path(id))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("claim is not valid JSON: %v\n%s", err, data)
	}
	c, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Labels) != n {
		t.Fatalf("%d labels, want %d: %v", len(c.Labels), n, c.Labels)
	}
	for i := range n {
		if c.Labels[fmt.Sprintf("p%d", i)] != "done" {
			t.Errorf("label p%d missing", i)
		}
	}
	entries, _ := os.ReadDir(s.ClaimsDir())
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("claims dir holds %v", names)
	}
}

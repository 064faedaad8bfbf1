package fsx

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockExcludesInProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lock := func() (func(), error) { return Lock(path) }
			if i%2 == 1 {
				lock = func() (func(), error) { return LockContext(context.Background(), path, nil) }
			}
			unlock, err := lock()
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
			inside.Add(-1)
			unlock()
			unlock() // a second call does nothing
		}()
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Errorf("%d holders at once", maxInside.Load())
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v %v", st, err)
	}
}

func TestLockContextTellsOnceAndGivesUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	told := 0
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if _, err := LockContext(ctx, path, func() { told++ }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("busy lock: %v", err)
	}
	if told != 1 {
		t.Errorf("waiting called %d times, want 1", told)
	}
	unlock()
	told = 0
	unlock2, err := LockContext(context.Background(), path, func() { told++ })
	if err != nil || told != 0 {
		t.Fatalf("free lock: %v, waiting called %d times", err, told)
	}
	unlock2()
}

// TestLockExcludesOtherProcesses holds the lock in a child process (this
// test binary, as helperHoldLock) and checks this process cannot take it
// until the child lets go.
func TestLockExcludesOtherProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	cmd.Env = append(os.Environ(), "FSX_HOLD_LOCK="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("child said %q, %v", line, err)
	}

	told := 0
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := LockContext(ctx, path, func() { told++ }); !errors.Is(err, context.DeadlineExceeded) || told != 1 {
		t.Fatalf("lock held by another process: %v, waiting called %d times", err, told)
	}

	stdin.Close() // the child unlocks and exits
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	unlock, err := LockContext(ctx2, path, nil)
	if err != nil {
		t.Fatalf("after the child let go: %v", err)
	}
	unlock()
}

func TestHelperHoldLock(t *testing.T) {
	path := os.Getenv("FSX_HOLD_LOCK")
	if path == "" {
		t.Skip("helper for TestLockExcludesOtherProcesses")
	}
	unlock, err := Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("locked\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	unlock()
}

func TestEnsurePrivateDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b")
	if err := EnsurePrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(root, "a"), dir} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", d, st, err)
		}
	}
	// An existing, too-open dir is tightened.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := EnsurePrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("mode %v after tightening", st.Mode().Perm())
	}
	// A file in its place is refused and left alone.
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := EnsurePrivateDir(file); err == nil {
		t.Fatal("a file was accepted as a directory")
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o644 {
		t.Errorf("file mode changed to %v", st.Mode().Perm())
	}
}

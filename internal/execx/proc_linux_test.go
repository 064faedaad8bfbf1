//go:build linux

package execx

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestHelperStartChild is not a test: TestChildDiesWithParent runs the
// test binary as a stand-in for crabbox, which starts a long child through
// OS.Run and blocks on it until it is killed.
func TestHelperStartChild(t *testing.T) {
	pidFile := os.Getenv("CRABBOX_EXECX_HELPER_PIDFILE")
	if pidFile == "" {
		t.Skip("helper process only")
	}
	OS{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", `echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 60`, pidFile}})
	os.Exit(0)
}

// TestChildDiesWithParent: SIGKILL the process that started a child with
// OS.Run; the child (in its own process group, so no group signal reaches
// it) must die too rather than run on as an orphan.
func TestChildDiesWithParent(t *testing.T) {
	needSh(t)
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperStartChild$", "-test.count=1")
	helper.Env = append(os.Environ(), "CRABBOX_EXECX_HELPER_PIDFILE="+pidFile)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { helper.Wait(); close(done) }()
	var child int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil {
			child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		if time.Now().After(deadline) {
			helper.Process.Kill()
			t.Fatal("the helper never started its child")
		}
	}
	// Positive control: the child runs while its parent does.
	time.Sleep(100 * time.Millisecond)
	if !alive(child) {
		t.Fatalf("child %d not running before its parent was killed", child)
	}
	helper.Process.Signal(syscall.SIGKILL)
	<-done
	for deadline := time.Now().Add(5 * time.Second); alive(child); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("child %d outlived its killed parent", child)
		}
	}
}

// TestChildSurvivesThreadChurn: Pdeathsig fires when the forking thread
// ends, and the Go runtime ends the threads of goroutines that exit while
// locked to them. Such churn must not kill a running child.
func TestChildSurvivesThreadChurn(t *testing.T) {
	needSh(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var inner sync.WaitGroup
			for range 8 {
				inner.Add(1)
				go func() {
					defer inner.Done()
					runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
				}()
			}
			inner.Wait()
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := range 5 {
		res, err := OS{}.Run(context.Background(), Cmd{Name: "sh", Args: []string{"-c", "sleep 0.3; echo ok"}})
		if err != nil || strings.TrimSpace(string(res.Stdout)) != "ok" {
			t.Fatalf("run %d: %v (exit %d): the child died under thread churn", i, err, res.ExitCode)
		}
	}
}

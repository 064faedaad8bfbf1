package portfwd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/sshx"
	"github.com/crabbox-dev/crabbox/internal/testsshd"
)

// masterPIDs are the ssh control masters whose command line holds marker.
func masterPIDs(t *testing.T, marker string) []int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(marker)) && bytes.Contains(b, []byte("ControlMaster=yes")) {
			out = append(out, pid)
		}
	}
	return out
}

// holders are the remote HoldCommand processes of sshd on sshdPort.
func holders(sshdPort int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if string(cmd) == "cat\x00" && bytes.Contains(env, []byte(fmt.Sprintf(" 127.0.0.1 %d\x00", sshdPort))) {
			out = append(out, pid)
		}
	}
	return out
}

// eventually polls cond (bounded) until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func get(port int) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Against a real sshd: the forward answers while a remote hold keeps the
// connection in use, survives its control master being killed (set up
// again over a new one), and is gone, hold included, when the tunnel
// ends.
func TestRealTunnel(t *testing.T) {
	d := testsshd.Start(t)
	known := filepath.Join(t.TempDir(), "kh", "known_hosts")
	tg := lease.Target{User: d.User, Host: d.Host, Port: d.Port, KnownHostsFile: known, IdentityFile: d.Key}
	s := sshx.NewSession(execx.OS{}, tg, sshx.SessionOptions{TempDir: t.TempDir(), ExtraArgs: []string{"-F", "none"}})
	defer s.Close()

	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "remote") }),
		ReadHeaderTimeout: 5 * time.Second}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	f := sshx.LocalForward{Local: freePort(t), Remote: l.Addr().(*net.TCPAddr).Port}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready, restored, done := make(chan struct{}, 1), make(chan struct{}, 1), make(chan error, 1)
	go func() {
		done <- Run(ctx, s, Options{Forwards: []sshx.LocalForward{f},
			Ready: func([]sshx.LocalForward) { ready <- struct{}{} }, Restored: func() { restored <- struct{}{} }})
	}()
	wait(t, ready, "ready")
	if body, err := get(f.Local); err != nil || body != "remote" {
		t.Fatalf("GET through the tunnel: %q, %v", body, err)
	}
	eventually(t, "the remote hold", func() bool { return len(holders(d.Port)) == 1 })

	// The master dies (as when its keepalives give up): the tunnel sets
	// the forward up again over a new one.
	pids := masterPIDs(t, known)
	if len(pids) != 1 {
		t.Fatalf("control masters %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	case <-restored:
	case <-time.After(60 * time.Second):
		t.Fatal("the forward was not set up again")
	}
	if body, err := get(f.Local); err != nil || body != "remote" {
		t.Errorf("GET after the master was replaced: %q, %v", body, err)
	}

	cancel()
	if err := wait(t, done, "the end"); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(f.Local), 2*time.Second); err == nil {
		c.Close()
		t.Error("the local port still answers after the tunnel ended")
	}
	// The hold never outlives the tunnel on the machine (nor the one of
	// the killed master).
	eventually(t, "the remote holds to end", func() bool { return len(holders(d.Port)) == 0 })
}

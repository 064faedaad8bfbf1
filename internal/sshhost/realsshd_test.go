package sshhost

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/sshx"
	"github.com/crabbox-dev/crabbox/internal/testsshd"
)

// realMachine is one crabbox process on one state dir, talking to real
// sshds through real OpenSSH.
type realMachine struct {
	*Provider
	pool *sshx.Pool
}

func newRealMachine(t *testing.T, stateDir, configDir string, hosts ...Host) *realMachine {
	t.Helper()
	// -F none: neither the user's nor the system's ssh config applies.
	pool := sshx.NewPool(execx.OS{}, sshx.SessionOptions{TempDir: t.TempDir(), ExtraArgs: []string{"-F", "none"}})
	t.Cleanup(func() { pool.Close() })
	return &realMachine{pool: pool, Provider: &Provider{
		Settings: Settings{Hosts: hosts, IdleTimeout: 30 * time.Minute},
		Claims:   claims.New(stateDir), StateDir: stateDir, ConfigDir: configDir,
		Runner: execx.OS{}, Tunnels: pool, Now: time.Now,
	}}
}

// ready is the warmup's readiness wait: the lease's ready check through
// the process's pool.
func (m *realMachine) ready(ctx context.Context, l *Lease) error {
	s, err := m.pool.Get(l.Target)
	if err != nil {
		return err
	}
	return s.WaitReady(ctx, 30*time.Second, nil)
}

func digest(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return "absent"
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestRealSSHDLifecycle: warmup-equivalent acquire on a real sshd writes
// the owner record and records the host key in crabbox's own file; with
// the only host held, a second acquire (this machine or another) exits 5;
// release drops the record and leaves sshd running; a replaced host key
// (same port) is refused with exit 7 naming the new fingerprint and the
// file to remove, and removing it lets the next acquire through.
func TestRealSSHDLifecycle(t *testing.T) {
	srv := testsshd.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	home, _ := os.UserHomeDir()
	userKnownHosts := filepath.Join(home, ".ssh", "known_hosts")
	before := digest(userKnownHosts)

	cfgDir, stateA, stateB := t.TempDir(), t.TempDir(), t.TempDir()
	workRoot := filepath.Join(t.TempDir(), "crabbox work")
	host := Host{Name: "lab", Host: srv.Host, User: srv.User, Port: srv.Port, IdentityFile: srv.Key, WorkRoot: workRoot}
	a := newRealMachine(t, stateA, cfgDir, host)

	l, err := a.Acquire(ctx, AcquireRequest{RepoRoot: repo, Slug: "real", Ready: a.ready})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if l.State != StateReady || l.Workspace != "lab" || l.WorkspaceID != fmt.Sprintf("%s@127.0.0.1:%d", srv.User, srv.Port) || l.Target.StrictHostKeys {
		t.Fatalf("lease %+v", l)
	}
	rec, err := os.ReadFile(filepath.Join(workRoot, ".crabbox-owner.json"))
	idA, _ := claims.MachineID(stateA)
	if err != nil || !strings.Contains(string(rec), l.ID) || !strings.Contains(string(rec), idA) {
		t.Fatalf("owner record %q, %v", rec, err)
	}
	kh := TOFUKnownHostsFile(cfgDir, srv.Host, srv.Port)
	khb, err := os.ReadFile(kh)
	fields := strings.Fields(srv.HostPub)
	if err != nil || !strings.Contains(string(khb), fields[1]) {
		t.Fatalf("known_hosts %s: %q, %v", kh, khb, err)
	}
	if fi, _ := os.Stat(kh); fi.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %o", fi.Mode().Perm())
	}

	// The only host is held: exit 5 from this machine and from another.
	if _, err := a.Acquire(ctx, AcquireRequest{RepoRoot: repo}); exitcode.Code(err) != exitcode.NotFound || !strings.Contains(err.Error(), "lab (claimed on this machine by lease "+l.ID) {
		t.Fatalf("second Acquire here = %v", err)
	}
	b := newRealMachine(t, stateB, cfgDir, host)
	_, err = b.Acquire(ctx, AcquireRequest{RepoRoot: repo, Ready: b.ready})
	if exitcode.Code(err) != exitcode.NotFound || !strings.Contains(err.Error(), "lab (owned by machine "+idA+" (lease "+l.ID) {
		t.Fatalf("Acquire from another machine = %v (exit %d)", err, exitcode.Code(err))
	}

	// Release: record gone, sshd untouched and still serving.
	pid := srv.PID()
	res, err := a.Release(ctx, l, ReleaseRequest{RepoRoot: repo})
	if err != nil || res.Action != provider.ActionForget || res.Skipped != "" {
		t.Fatalf("Release = %+v, %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(workRoot, ".crabbox-owner.json")); !os.IsNotExist(err) {
		t.Errorf("owner record after release: %v", err)
	}
	if !srv.Running() || srv.PID() != pid {
		t.Fatal("sshd stopped by release")
	}
	if c, err := net.DialTimeout("tcp", srv.Addr, 5*time.Second); err != nil {
		t.Fatalf("sshd not serving after release: %v", err)
	} else {
		c.Close()
	}
	// The other machine can take it now.
	lb, err := b.Acquire(ctx, AcquireRequest{RepoRoot: repo, Ready: b.ready})
	if err != nil {
		t.Fatalf("Acquire after release = %v", err)
	}
	if _, err := b.Release(ctx, lb, ReleaseRequest{}); err != nil {
		t.Fatal(err)
	}

	// The host is reinstalled: new host key on the same port.
	srv.Restart(t, true)
	fp := srv.Fingerprint(t)
	c := newRealMachine(t, stateA, cfgDir, host) // a new process
	_, err = c.Acquire(ctx, AcquireRequest{RepoRoot: repo, Ready: c.ready})
	he := sshx.AsHostKeyError(err)
	if exitcode.Code(err) != exitcode.Transport || he == nil || !he.Changed {
		t.Fatalf("Acquire after the host key changed = %v (exit %d)", err, exitcode.Code(err))
	}
	for _, want := range []string{fp, "remove " + kh + " and rerun", "lab (host key refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if cs, _ := c.sshClaims(); len(cs) != 0 {
		t.Errorf("claims after a refused host key: %+v", cs)
	}
	// The advice works: remove the file, rerun.
	if err := os.Remove(kh); err != nil {
		t.Fatal(err)
	}
	l2, err := c.Acquire(ctx, AcquireRequest{RepoRoot: repo, Ready: c.ready})
	if err != nil {
		t.Fatalf("Acquire after removing %s = %v", kh, err)
	}
	if _, err := c.Release(ctx, l2, ReleaseRequest{}); err != nil {
		t.Fatal(err)
	}

	// Doctor against the real host.
	r := c.Doctor(ctx)
	if !r.OK || r.Summary != "provider=ssh hosts=1 reachable=1 auth=ready tools=ready mutation=false" {
		t.Errorf("doctor = %+v", r)
	}
	if after := digest(userKnownHosts); after != before {
		t.Errorf("~/.ssh/known_hosts changed")
	}
}

// TestRealSSHDStrictKnownHosts: a given known_hosts file without the
// host's key is refused (exit 7, nothing recorded); with the key it works.
func TestRealSSHDStrictKnownHosts(t *testing.T) {
	srv := testsshd.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	khFile := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(khFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	host := Host{Name: "strict", Host: srv.Host, User: srv.User, Port: srv.Port, IdentityFile: srv.Key,
		KnownHostsFile: khFile, WorkRoot: filepath.Join(t.TempDir(), "w")}
	m := newRealMachine(t, t.TempDir(), t.TempDir(), host)
	_, err := m.Acquire(ctx, AcquireRequest{RepoRoot: repo, Ready: m.ready})
	if he := sshx.AsHostKeyError(err); exitcode.Code(err) != exitcode.Transport || he == nil || he.Changed || !strings.Contains(err.Error(), "is not in "+khFile) {
		t.Fatalf("unknown key under strict checking = %v", err)
	}
	if b, _ := os.ReadFile(khFile); len(b) != 0 {
		t.Fatalf("strict known_hosts written: %q", b)
	}
	line := fmt.Sprintf("[%s]:%d %s\n", srv.Host, srv.Port, srv.HostPub)
	if err := os.WriteFile(khFile, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	m2 := newRealMachine(t, m.StateDir, m.ConfigDir, host)
	l, err := m2.Acquire(ctx, AcquireRequest{RepoRoot: repo, Ready: m2.ready})
	if err != nil || !l.Target.StrictHostKeys || l.Target.KnownHostsFile != khFile {
		t.Fatalf("Acquire with the key known = %+v, %v", l, err)
	}
	if _, err := m2.Release(ctx, l, ReleaseRequest{}); err != nil {
		t.Fatal(err)
	}
}

package sshhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

const repo = "/src/app"

func acquire(t *testing.T, m *machine, slug string) *Lease {
	t.Helper()
	l, err := m.Acquire(context.Background(), AcquireRequest{Slug: slug, RepoRoot: repo})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return l
}

func TestAcquireClaimsFirstFreeHost(t *testing.T) {
	w := newWorld(t, 2)
	m := w.machine()
	var readied []*Lease
	l, err := m.Acquire(context.Background(), AcquireRequest{Slug: "Blue Crab", RepoRoot: repo, Ready: func(ctx context.Context, l *Lease) error {
		readied = append(readied, l)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := w.hosts[0]
	if !lease.IsLeaseID(l.ID) || l.Slug != "blue-crab" || l.Provider != "ssh" || l.Workspace != "h1" || l.Ref != "h1" ||
		l.WorkspaceID != "ci@h1.test:2201" || l.ServerType != "ssh-host" || l.State != StateReady || !l.Ready || l.Owner != "ci" {
		t.Fatalf("lease %+v", l)
	}
	kh := filepath.Join(w.cfg, "ssh", "known_hosts.d", "h1.test-2201")
	want := lease.Target{User: "ci", Host: "h1.test", Port: 2201, IdentityFile: "/keys/id_h1", KnownHostsFile: kh,
		WorkRoot: h.WorkRoot, ReadyCheck: ReadyCheck(h.WorkRoot)}
	if !reflect.DeepEqual(l.Target, want) {
		t.Fatalf("target\n got %+v\nwant %+v", l.Target, want)
	}
	if len(readied) != 1 || readied[0].ID != l.ID {
		t.Fatalf("Ready calls %v", readied)
	}
	// Crabbox's own known_hosts: dir 0700, file 0600 (made before ssh runs).
	for p, mode := range map[string]os.FileMode{kh: 0o600, filepath.Dir(kh): 0o700, filepath.Dir(filepath.Dir(kh)): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v, want mode %o", p, fi, err, mode)
		}
	}
	c, err := m.Claims.Get(l.ID)
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	if c.Provider != "ssh" || c.CloudID != "h1" || c.WorkspaceID != "ci@h1.test:2201" || c.SSHHost != "h1.test" || c.SSHPort != 2201 ||
		c.RepoRoot != repo || c.Labels["state"] != StateReady || c.Labels["work_root"] != h.WorkRoot || c.IdleTimeoutSeconds != 1800 {
		t.Fatalf("claim %+v", c)
	}
	rec := ownerRecord(t, h)
	if !strings.Contains(rec, `"leaseId":"`+l.ID+`"`) || !strings.Contains(rec, `"machineId":"`+m.id(t)+`"`) {
		t.Fatalf("owner record %q", rec)
	}
	if fi, err := os.Stat(h.WorkRoot); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("work root made %v %v, want 0700", fi, err)
	}

	l2 := acquire(t, m, "")
	if l2.Workspace != "h2" || l2.Slug == "" || l2.Slug == l.Slug {
		t.Fatalf("second lease %+v", l2)
	}
	// Both hosts held here: exit 5 naming the leases, slugs and repo.
	_, err = m.Acquire(context.Background(), AcquireRequest{RepoRoot: repo})
	if exitcode.Code(err) != exitcode.NotFound {
		t.Fatalf("third Acquire = %v (exit %d), want exit 5", err, exitcode.Code(err))
	}
	for _, want := range []string{"no free ssh host", "h1 (claimed on this machine by lease " + l.ID + " (slug blue-crab) for repo /src/app)", "h2 (claimed on this machine by lease " + l2.ID} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestAcquireNeedsHostsAndRepo(t *testing.T) {
	w := newWorld(t, 0)
	m := w.machine()
	if _, err := m.Acquire(context.Background(), AcquireRequest{RepoRoot: repo}); exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "--ssh-host") {
		t.Errorf("no hosts: %v", err)
	}
	w = newWorld(t, 1)
	if _, err := w.machine().Acquire(context.Background(), AcquireRequest{}); exitcode.Code(err) != exitcode.Usage {
		t.Errorf("no repo: %v", err)
	}
	if len(w.sim.Calls()) != 0 {
		t.Errorf("calls: %v", w.sim.Calls())
	}
}

// TestAcquireParallel: concurrent acquisitions from one state dir and
// from two state dirs never take the same host; the rest fail with exit 5.
func TestAcquireParallel(t *testing.T) {
	w := newWorld(t, 3)
	a, b := w.machine(), w.machine()
	a2 := &machine{Provider: &Provider{}, dir: a.dir} // a second process on machine a
	*a2.Provider = *a.Provider
	type res struct {
		l   *Lease
		err error
		m   string
	}
	var wg sync.WaitGroup
	out := make(chan res, 9)
	for i := 0; i < 9; i++ {
		m, name := a, "a"
		switch i % 3 {
		case 1:
			m, name = b, "b"
		case 2:
			m, name = a2, "a"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := m.Acquire(context.Background(), AcquireRequest{RepoRoot: repo})
			out <- res{l, err, name}
		}()
	}
	wg.Wait()
	close(out)
	hosts := map[string]string{}
	fails := 0
	for r := range out {
		if r.err != nil {
			if exitcode.Code(r.err) != exitcode.NotFound {
				t.Errorf("failure %v (exit %d), want exit 5", r.err, exitcode.Code(r.err))
			}
			for _, h := range []string{"h1 (", "h2 (", "h3 ("} {
				if !strings.Contains(r.err.Error(), h) {
					t.Errorf("all-busy error does not name %s: %v", h, r.err)
				}
			}
			fails++
			continue
		}
		if prev, dup := hosts[r.l.Workspace]; dup {
			t.Errorf("host %s taken twice (%s and %s)", r.l.Workspace, prev, r.m)
		}
		hosts[r.l.Workspace] = r.m
	}
	if len(hosts) != 3 || fails != 6 {
		t.Fatalf("hosts %v, %d failures", hosts, fails)
	}
	// Each host's owner record names the machine that holds it, and each
	// machine has exactly its hosts' claims.
	ids := map[string]string{"a": a.id(t), "b": b.id(t)}
	for _, h := range w.hosts {
		if rec := ownerRecord(t, h); !strings.Contains(rec, ids[hosts[h.Name]]) {
			t.Errorf("host %s held by %s, owner record %q", h.Name, hosts[h.Name], rec)
		}
	}
	for name, m := range map[string]*machine{"a": a, "b": b} {
		cs, _ := m.sshClaims()
		n := 0
		for _, v := range hosts {
			if v == name {
				n++
			}
		}
		if len(cs) != n {
			t.Errorf("machine %s has %d claims, holds %d hosts", name, len(cs), n)
		}
	}
}

func TestAcquireSkipsHostsOfOtherMachines(t *testing.T) {
	w := newWorld(t, 2)
	a, b := w.machine(), w.machine()
	lb := acquire(t, b, "theirs")
	if lb.Workspace != "h1" {
		t.Fatalf("b took %s", lb.Workspace)
	}
	la := acquire(t, a, "")
	if la.Workspace != "h2" {
		t.Fatalf("a took %s, want h2", la.Workspace)
	}
	if ws := a.warnings(); len(ws) != 1 || !strings.Contains(ws[0], "ssh host h1 is not available (owned by machine "+b.id(t)) {
		t.Errorf("warnings %q", ws)
	}
	if cs, _ := a.sshClaims(); len(cs) != 1 || cs[0].LeaseID != la.ID {
		t.Errorf("a's claims %+v", cs)
	}
	// a holds h2, b holds h1: b's next acquisition names a's machine.
	_, err := b.Acquire(context.Background(), AcquireRequest{RepoRoot: repo})
	if exitcode.Code(err) != exitcode.NotFound || !strings.Contains(err.Error(), "h2 (owned by machine "+a.id(t)+" (lease "+la.ID) ||
		!strings.Contains(err.Error(), "h1 (claimed on this machine by lease "+lb.ID+" (slug theirs)") || !strings.Contains(err.Error(), "--reclaim") {
		t.Fatalf("b's third Acquire = %v", err)
	}
	if cs, _ := b.sshClaims(); len(cs) != 1 {
		t.Errorf("b kept a claim of a refused host: %+v", cs)
	}
}

func TestAcquireUnreachableAndHostKeys(t *testing.T) {
	w := newWorld(t, 2)
	m := w.machine()
	w.sim.setDown("h1.test", "ssh: connect to host h1.test port 2201: Connection refused\n")
	l := acquire(t, m, "")
	if l.Workspace != "h2" {
		t.Fatalf("took %s", l.Workspace)
	}
	if ws := m.warnings(); len(ws) != 1 || !strings.Contains(ws[0], "h1 is not available (unreachable: ssh transport to h1.test failed: ssh: connect to host h1.test port 2201: Connection refused)") {
		t.Errorf("warnings %q", ws)
	}
	if ownerRecord(t, w.hosts[0]) != "" {
		t.Error("unreachable host got an owner record")
	}

	// Every host unreachable: exit 7.
	w2 := newWorld(t, 2)
	m2 := w2.machine()
	for _, h := range w2.hosts {
		w2.sim.setDown(h.Host, "ssh: connect to host "+h.Host+": No route to host\n")
	}
	_, err := m2.Acquire(context.Background(), AcquireRequest{RepoRoot: repo})
	if exitcode.Code(err) != exitcode.Transport || !strings.Contains(err.Error(), "No host could be reached") {
		t.Fatalf("all down = %v (exit %d)", err, exitcode.Code(err))
	}
	if cs, _ := m2.sshClaims(); len(cs) != 0 {
		t.Errorf("claims left: %+v", cs)
	}

	// A changed host key: exit 7 with the fingerprint and the real file.
	w3 := newWorld(t, 1)
	m3 := w3.machine()
	w3.sim.setDown("h1.test", changedKeyDiag)
	_, err = m3.Acquire(context.Background(), AcquireRequest{RepoRoot: repo})
	he := sshx.AsHostKeyError(err)
	kh := TOFUKnownHostsFile(w3.cfg, "h1.test", 2201)
	if exitcode.Code(err) != exitcode.Transport || he == nil || !strings.Contains(err.Error(), "SHA256:5VYpvvYzRPDOBhMI6AorucXhsEnDj7VTjGfAbGuK9hQ") ||
		!strings.Contains(err.Error(), "remove "+kh+" and rerun") {
		t.Fatalf("changed key = %v (exit %d)", err, exitcode.Code(err))
	}
	if cs, _ := m3.sshClaims(); len(cs) != 0 {
		t.Errorf("claims left: %+v", cs)
	}
}

const changedKeyDiag = `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
The fingerprint for the ED25519 key sent by the remote host is
SHA256:5VYpvvYzRPDOBhMI6AorucXhsEnDj7VTjGfAbGuK9hQ.
Host key for [h1.test]:2201 has changed and you have requested strict checking.
Host key verification failed.
`

func TestAcquireRollsBackAFailedReadyCheck(t *testing.T) {
	w := newWorld(t, 1)
	m := w.machine()
	boom := errors.New("not ready")
	_, err := m.Acquire(context.Background(), AcquireRequest{RepoRoot: repo, Ready: func(context.Context, *Lease) error { return boom }})
	if !errors.Is(err, boom) {
		t.Fatalf("= %v", err)
	}
	if cs, _ := m.sshClaims(); len(cs) != 0 || ownerRecord(t, w.hosts[0]) != "" {
		t.Errorf("not rolled back: claims %+v record %q", cs, ownerRecord(t, w.hosts[0]))
	}
	// --keep keeps both.
	_, err = m.Acquire(context.Background(), AcquireRequest{RepoRoot: repo, Keep: true, Ready: func(context.Context, *Lease) error { return boom }})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "--keep") {
		t.Fatalf("keep = %v", err)
	}
	if cs, _ := m.sshClaims(); len(cs) != 1 || ownerRecord(t, w.hosts[0]) == "" {
		t.Errorf("keep: claims %+v record %q", cs, ownerRecord(t, w.hosts[0]))
	}
}

func TestAcquireWorkRootNotWritable(t *testing.T) {
	w := newWorld(t, 1)
	file := filepath.Join(w.root, "file") // a file in the way stops even root
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w.hosts[0].WorkRoot = filepath.Join(file, "sub")
	m := w.machine()
	_, err := m.Acquire(context.Background(), AcquireRequest{RepoRoot: repo})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "work root "+w.hosts[0].WorkRoot+" on host h1 is not usable") ||
		!strings.Contains(err.Error(), "ssh.workRoot") {
		t.Fatalf("= %v", err)
	}
	if cs, _ := m.sshClaims(); len(cs) != 0 {
		t.Errorf("claims left: %+v", cs)
	}
}

// TestReleaseTouchesOnlyCrabboxState: release runs one script that removes
// the owner record (and, when asked, the lease's own work dir) and nothing
// else; the host keeps everything else.
func TestReleaseTouchesOnlyCrabboxState(t *testing.T) {
	for _, clean := range []bool{false, true} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			w := newWorld(t, 1)
			m := w.machine(func(s *Settings) { s.CleanWorkdir = clean })
			l := acquire(t, m, "")
			h := w.hosts[0]
			mine := filepath.Join(h.WorkRoot, l.ID, "app")
			other := filepath.Join(h.WorkRoot, "cbx_000000000000", "app")
			unrelated := filepath.Join(h.WorkRoot, "notes.txt")
			for _, d := range []string{mine, other} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(unrelated, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := len(w.sim.Calls())
			l, err := m.Resolve(context.Background(), ResolveRequest{Ident: l.ID, Mode: provider.ReleaseOnly})
			if err != nil {
				t.Fatal(err)
			}
			if len(w.sim.Calls()) != before {
				t.Fatal("ReleaseOnly resolve ran ssh")
			}
			res, err := m.Release(context.Background(), l, ReleaseRequest{RepoRoot: repo})
			if err != nil || res.Action != provider.ActionForget || res.Skipped != "" {
				t.Fatalf("Release = %+v, %v", res, err)
			}
			calls := w.sim.Calls()[before:]
			var scripts []string
			for _, c := range calls {
				if c.Name != "ssh" {
					t.Errorf("ran %s", c.Argv())
				}
				if i := indexOf(c.Args, "--"); i >= 0 {
					scripts = append(scripts, c.Args[i+1])
				}
			}
			if len(scripts) != 1 {
				t.Fatalf("release ran %d remote commands, want 1: %q", len(scripts), scripts)
			}
			for _, bad := range []string{"shutdown", "poweroff", "reboot", "halt", "kill", "systemctl"} {
				if strings.Contains(scripts[0], bad) {
					t.Errorf("release script mentions %s:\n%s", bad, scripts[0])
				}
			}
			if ownerRecord(t, h) != "" {
				t.Error("owner record left")
			}
			if c, _ := m.Claims.Get(l.ID); c != nil {
				t.Error("claim left")
			}
			if _, err := os.Stat(mine); (err == nil) == clean {
				t.Errorf("own work dir after release: %v (clean=%v)", err, clean)
			}
			for _, keep := range []string{other, unrelated, h.WorkRoot} {
				if _, err := os.Stat(keep); err != nil {
					t.Errorf("%s removed: %v", keep, err)
				}
			}
			if got := m.ReleaseFlags(l); clean != reflect.DeepEqual(got, []string{"--ssh-clean-workdir"}) || (!clean && got != nil) {
				t.Errorf("ReleaseFlags = %v", got)
			}
		})
	}
}

func TestReleaseRefusals(t *testing.T) {
	w := newWorld(t, 2)
	m := w.machine()
	l := acquire(t, m, "")
	free, err := m.Resolve(context.Background(), ResolveRequest{Ident: "h2", Mode: provider.ReleaseOnly})
	if err != nil || free.Claim != nil || free.State != StateFree {
		t.Fatalf("free host = %+v, %v", free, err)
	}
	before := len(w.sim.Calls())
	if _, err := m.Release(context.Background(), free, ReleaseRequest{RepoRoot: repo}); !exitcode.IsRefused(err) || exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("release of an unclaimed host = %v", err)
	}
	if _, err := m.Release(context.Background(), l, ReleaseRequest{RepoRoot: "/src/other"}); !exitcode.IsRefused(err) || !strings.Contains(err.Error(), "next: `crabbox stop --reclaim "+l.ID+"`") {
		t.Errorf("release from another repo = %v", err)
	}
	if len(w.sim.Calls()) != before || ownerRecord(t, w.hosts[0]) == "" {
		t.Fatal("a refused release changed something")
	}
	if c, _ := m.Claims.Get(l.ID); c == nil {
		t.Fatal("a refused release dropped the claim")
	}
	if _, err := m.Release(context.Background(), l, ReleaseRequest{RepoRoot: "/src/other", Reclaim: true}); err != nil {
		t.Errorf("release with reclaim = %v", err)
	}
}

func TestReleaseUnreachableStillDropsClaim(t *testing.T) {
	w := newWorld(t, 1)
	m := w.machine()
	l := acquire(t, m, "")
	m.pool.Close() // the next use opens a new master, which fails
	w.sim.setDown("h1.test", "ssh: connect to host h1.test port 2201: Connection timed out\n")
	res, err := m.Release(context.Background(), l, ReleaseRequest{RepoRoot: repo})
	if err != nil || res.Skipped != SkippedUnreachable {
		t.Fatalf("= %+v, %v", res, err)
	}
	if c, _ := m.Claims.Get(l.ID); c != nil {
		t.Error("claim kept")
	}
	if ws := m.warnings(); len(ws) != 1 || !strings.Contains(ws[0], "could not reach ssh host h1") || !strings.Contains(ws[0], "Connection timed out") {
		t.Errorf("warnings %q", ws)
	}
	// This machine takes the host over on its next claim (the record names it).
	w.sim.setDown("h1.test", "")
	if l2 := acquire(t, m, ""); l2.Workspace != "h1" || !strings.Contains(ownerRecord(t, w.hosts[0]), l2.ID) {
		t.Errorf("re-acquire %+v record %q", l2, ownerRecord(t, w.hosts[0]))
	}
}

// TestReclaimAndForeignRelease: another machine takes a host over with
// Prepare+Reclaim; this machine's release then drops only its own claim.
func TestReclaimAndForeignRelease(t *testing.T) {
	w := newWorld(t, 1)
	a, b := w.machine(), w.machine()
	la := acquire(t, a, "mine")
	_, err := b.Resolve(context.Background(), ResolveRequest{Ident: "h1", Mode: provider.Prepare, RepoRoot: repo})
	if !exitcode.IsRefused(err) || exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "host h1 belongs to another machine (machine "+a.id(t)) ||
		!strings.Contains(err.Error(), "next: `crabbox ssh --provider ssh --reclaim h1`") {
		t.Fatalf("b's Prepare = %v", err)
	}
	if cs, _ := b.sshClaims(); len(cs) != 0 {
		t.Fatalf("refused adoption kept its claim: %+v", cs)
	}
	lb, err := b.Resolve(context.Background(), ResolveRequest{Ident: "h1", Mode: provider.Prepare, RepoRoot: repo, Reclaim: true})
	if err != nil || !lb.Adopted || lb.State != StateReady || lb.Claim == nil {
		t.Fatalf("b's reclaim = %+v, %v", lb, err)
	}
	if ws := b.warnings(); len(ws) != 1 || !strings.Contains(ws[0], "took over lease") {
		t.Errorf("b warnings %q", ws)
	}
	res, err := a.Release(context.Background(), la, ReleaseRequest{RepoRoot: repo})
	if err != nil || res.Skipped != SkippedForeign {
		t.Fatalf("a's release = %+v, %v", res, err)
	}
	if rec := ownerRecord(t, w.hosts[0]); !strings.Contains(rec, b.id(t)) || !strings.Contains(rec, lb.ID) {
		t.Errorf("b's owner record changed: %q", rec)
	}
}

func TestResolve(t *testing.T) {
	w := newWorld(t, 2)
	m := w.machine()
	l := acquire(t, m, "blue-crab")
	before := len(w.sim.Calls())
	for _, ident := range []string{l.ID, "blue-crab", "Blue Crab", "h1", "H1", "ci@h1.test:2201", "h1.test:2201"} {
		got, err := m.Resolve(context.Background(), ResolveRequest{Ident: ident, Mode: provider.StatusOnly})
		if err != nil || got.ID != l.ID || got.Claim == nil {
			t.Errorf("Resolve(%q) = %+v, %v", ident, got, err)
		}
		if !m.ClaimMatches(*got.Claim, ident) {
			t.Errorf("ClaimMatches(%q) = false", ident)
		}
	}
	if got, err := m.Resolve(context.Background(), ResolveRequest{Ident: "ci@h2.test:2202", Mode: provider.StatusOnly}); err != nil || got.State != StateFree || got.ID != "" {
		t.Errorf("free host = %+v, %v", got, err)
	}
	for _, ident := range []string{"nope", "h3", "cbx_0123456789ab"} {
		if _, err := m.Resolve(context.Background(), ResolveRequest{Ident: ident, Mode: provider.StatusOnly}); exitcode.Code(err) != exitcode.NotFound {
			t.Errorf("Resolve(%q) = %v, want exit 5", ident, err)
		}
	}
	if _, err := m.Resolve(context.Background(), ResolveRequest{Ident: " ", Mode: provider.StatusOnly}); exitcode.Code(err) != exitcode.Usage {
		t.Errorf("empty ident = %v", err)
	}
	if len(w.sim.Calls()) != before {
		t.Errorf("StatusOnly resolves ran ssh: %v", w.sim.Calls()[before:])
	}

	// Prepare: by another repo refused; adopting the free host.
	if _, err := m.Resolve(context.Background(), ResolveRequest{Ident: l.ID, Mode: provider.Prepare, RepoRoot: "/src/other"}); exitcode.Code(err) != exitcode.Usage {
		t.Errorf("Prepare from another repo = %v", err)
	}
	var opened int
	got, err := m.Resolve(context.Background(), ResolveRequest{Ident: l.ID, Mode: provider.Prepare, RepoRoot: repo,
		Open: func(context.Context, *Lease) error { opened++; return nil }})
	if err != nil || got.ID != l.ID || got.State != StateReady || opened != 1 || got.Adopted {
		t.Fatalf("Prepare = %+v, %v (opened %d)", got, err, opened)
	}
	ad, err := m.Resolve(context.Background(), ResolveRequest{Ident: "h2", Mode: provider.Prepare, RepoRoot: repo})
	if err != nil || !ad.Adopted || !lease.IsLeaseID(ad.ID) || ad.Workspace != "h2" || ad.Slug == "" || ad.Slug == "blue-crab" {
		t.Fatalf("adopt = %+v, %v", ad, err)
	}
	if !strings.Contains(ownerRecord(t, w.hosts[1]), ad.ID) {
		t.Error("adoption wrote no owner record")
	}
	// Now h2 is claimed: resolving it by name finds the claim.
	if again, err := m.Resolve(context.Background(), ResolveRequest{Ident: "h2", Mode: provider.StatusOnly}); err != nil || again.ID != ad.ID {
		t.Errorf("after adoption = %+v, %v", again, err)
	}
}

func TestListAndUnconfiguredHosts(t *testing.T) {
	w := newWorld(t, 2)
	m := w.machine()
	l := acquire(t, m, "")
	ls, err := m.List(context.Background(), false)
	if err != nil || len(ls) != 2 || ls[0].ID != l.ID || ls[0].State != StateReady || ls[1].State != StateFree || ls[1].Claim != nil {
		t.Fatalf("List = %+v, %v", ls, err)
	}
	// The host leaves the config: the lease is still listed and releasable.
	m2 := w.machine()
	m2.Provider.Claims, m2.Provider.StateDir = m.Claims, m.StateDir
	m2.Settings.Hosts = m2.Settings.Hosts[1:]
	ls, err = m2.List(context.Background(), true)
	if err != nil || len(ls) != 2 || ls[1].State != StateUnconfigured || ls[1].Target.Host != "h1.test" || ls[1].Target.WorkRoot != w.hosts[0].WorkRoot {
		t.Fatalf("List after removal = %+v, %v", ls, err)
	}
	if _, err := m2.Resolve(context.Background(), ResolveRequest{Ident: l.ID, Mode: provider.Prepare, RepoRoot: repo}); exitcode.Code(err) != exitcode.Usage {
		t.Errorf("Prepare of an unconfigured host = %v", err)
	}
	gone, _ := m2.Resolve(context.Background(), ResolveRequest{Ident: l.ID, Mode: provider.ReleaseOnly})
	if _, err := m2.Release(context.Background(), gone, ReleaseRequest{}); err != nil || ownerRecord(t, w.hosts[0]) != "" {
		t.Errorf("release of an unconfigured host = %v, record %q", err, ownerRecord(t, w.hosts[0]))
	}
}

func TestCleanupExpiredClaims(t *testing.T) {
	w := newWorld(t, 3)
	m := w.machine()
	expired := acquire(t, m, "old")
	kept, err := m.Acquire(context.Background(), AcquireRequest{RepoRoot: repo, Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	w.now = w.now.Add(13 * time.Hour) // idle 30m + 12h grace passed for both
	fresh := acquire(t, m, "new")
	before := len(w.sim.Calls())
	ds, err := m.Cleanup(context.Background(), CleanupRequest{DryRun: true})
	if err != nil || len(ds) != 3 {
		t.Fatalf("dry run = %+v, %v", ds, err)
	}
	byID := map[string]CleanupDecision{}
	for _, d := range ds {
		byID[d.LeaseID] = d
	}
	if d := byID[expired.ID]; d.Action != provider.ActionForget || d.Reason != "claim expired" || d.Done {
		t.Errorf("expired: %+v", d)
	}
	if d := byID[kept.ID]; d.Action != "" || d.Reason != "keep=true" {
		t.Errorf("kept: %+v", d)
	}
	if d := byID[fresh.ID]; d.Action != "" || d.Reason != "claim active" {
		t.Errorf("fresh: %+v", d)
	}
	if len(w.sim.Calls()) != before || ownerRecord(t, w.hosts[0]) == "" {
		t.Fatal("dry run changed something")
	}
	ds, err = m.Cleanup(context.Background(), CleanupRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if (d.LeaseID == expired.ID) != d.Done {
			t.Errorf("decision %+v", d)
		}
	}
	if c, _ := m.Claims.Get(expired.ID); c != nil || ownerRecord(t, w.hosts[0]) != "" {
		t.Error("expired lease not released")
	}
	if _, err := os.Stat(w.hosts[0].WorkRoot); err != nil {
		t.Errorf("cleanup removed the work root: %v", err)
	}
	for _, l := range []*Lease{kept, fresh} {
		if c, _ := m.Claims.Get(l.ID); c == nil {
			t.Errorf("lease %s released", l.ID)
		}
	}
}

func TestDoctor(t *testing.T) {
	w := newWorld(t, 2)
	m := w.machine()
	r := m.Doctor(context.Background())
	if !r.OK || r.Summary != "provider=ssh hosts=2 reachable=2 auth=ready tools=ready mutation=false" || len(r.Checks) != 2 || r.Checks[0].Status != "pass" {
		t.Fatalf("doctor = %+v", r)
	}
	if !strings.Contains(r.Checks[0].Message, "work root "+w.hosts[0].WorkRoot+" creatable") {
		t.Errorf("check %+v", r.Checks[0])
	}
	for _, h := range w.hosts {
		if _, err := os.Stat(h.WorkRoot); err == nil {
			t.Errorf("doctor created %s", h.WorkRoot)
		}
	}
	w.sim.setDown("h2.test", "ssh: connect to host h2.test port 2202: Connection refused\n")
	m2 := w.machine()
	r = m2.Doctor(context.Background())
	if r.OK || r.Summary != "provider=ssh hosts=2 reachable=1 auth=failed tools=unchecked mutation=false" || r.Checks[1].Status != "failed" ||
		!strings.Contains(r.Checks[1].Message, "h2 (ci@h2.test:2202) is unreachable") {
		t.Fatalf("doctor with a host down = %+v", r)
	}
	w.sim.setDown("h2.test", "ci@h2.test: Permission denied (publickey).\n")
	r = w.machine().Doctor(context.Background())
	if r.OK || !strings.Contains(r.Summary, "reachable=2 auth=failed") || !strings.Contains(r.Checks[1].Message, "refused authentication with /keys/id_h2") {
		t.Fatalf("doctor with auth refused = %+v", r)
	}
	if r := newWorld(t, 0).machine().Doctor(context.Background()); r.OK || !strings.Contains(r.Summary, "hosts=0") {
		t.Errorf("no hosts: %+v", r)
	}
	// No mutation: only the check script ran, never the prelude.
	for _, s := range w.sim.scripts() {
		if strings.Contains(s, "mkdir") || strings.Contains(s, "flock") || strings.Contains(s, "rm ") {
			t.Errorf("doctor ran a mutating script:\n%s", s)
		}
	}
}

func TestDoctorFindsMissingTools(t *testing.T) {
	missing, wr := parseDoctor("motd\ncrabbox-doctor missing rsync\ncrabbox-doctor missing git\ncrabbox-doctor workroot unwritable\n")
	if !reflect.DeepEqual(missing, []string{"rsync", "git"}) || wr != "unwritable" {
		t.Fatalf("parseDoctor = %v %q", missing, wr)
	}
	// The script itself with an empty PATH: everything is missing, and the
	// work root walk ends (no dirname needed).
	out, err := runSh(t, doctorScript("/nonexistent/a/b"), "PATH=/nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	if m, wr := parseDoctor(out); len(m) != len(doctorTools) || wr == "" {
		t.Fatalf("doctor script with no tools: %q", out)
	}
}

// TestReleaseScriptHostile: the lease ID only names a work dir when it is
// a real lease ID; a work root with shell metacharacters stays one word.
func TestReleaseScriptHostile(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "w'r $(touch x) `id`")
	victim := filepath.Join(base, "victim")
	for _, d := range []string{root, victim} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"../victim", "..", "", "cbx_../../victim", "*"} {
		if _, err := runSh(t, releaseScript(root, "m1", id, true)); err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if _, err := os.Stat(victim); err != nil {
			t.Fatalf("lease id %q removed %s", id, victim)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "x")); err == nil {
		t.Fatal("the work root was evaluated by the shell")
	}
	if !strings.Contains(releaseScript(root, "m1", "cbx_0123456789ab", true), "clean=1") {
		t.Error("a real lease ID is not cleaned")
	}
}

func TestTOFUKnownHostsFile(t *testing.T) {
	for _, tt := range []struct {
		host string
		port int
		want string
	}{
		{"Build1.Example.com", 22, "build1.example.com-22"},
		{"::1", 2222, "__1-2222"},
		{"10.0.0.7", 2200, "10.0.0.7-2200"},
		{"..", 22, "_..-22"},
	} {
		if got := filepath.Base(TOFUKnownHostsFile("/cfg", tt.host, tt.port)); got != tt.want {
			t.Errorf("%s:%d -> %q, want %q", tt.host, tt.port, got, tt.want)
		}
	}
	if TOFUKnownHostsFile("", "h", 22) != "" {
		t.Error("no config dir should give no file")
	}
}

func TestSettingsFromAndRegistry(t *testing.T) {
	home := t.TempDir()
	cfg, err := config.Load(config.LoadOptions{Env: config.MapEnv(map[string]string{
		"HOME": home, "CRABBOX_SSH_HOSTS": "ci@a.test,b.test:2222", "CRABBOX_SSH_IDENTITY": "~/.ssh/cbx",
		"CRABBOX_SSH_KNOWN_HOSTS": "/etc/kh",
	}), Flags: map[string]string{"provider": "static", "ssh-clean-workdir": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	s := SettingsFrom(cfg)
	want := []Host{
		{Name: "a.test", Host: "a.test", User: "ci", Port: 22, IdentityFile: home + "/.ssh/cbx", KnownHostsFile: "/etc/kh", WorkRoot: "/var/tmp/crabbox"},
		{Name: "b.test:2222", Host: "b.test", Port: 2222, IdentityFile: home + "/.ssh/cbx", KnownHostsFile: "/etc/kh", WorkRoot: "/var/tmp/crabbox"},
	}
	if !reflect.DeepEqual(s.Hosts, want) || !s.CleanWorkdir || s.CleanOverride == nil || !*s.CleanOverride {
		t.Fatalf("settings %+v", s)
	}
	p, err := provider.New(cfg.Provider, provider.Deps{Config: cfg, StateDir: t.TempDir(), ConfigDir: t.TempDir(), Now: time.Now})
	if err != nil || p.Name() != "ssh" {
		t.Fatalf("provider.New = %v, %v", p, err)
	}
	for _, alias := range []string{"ssh", "static", "static-ssh"} {
		if provider.Canonical(alias) != "ssh" {
			t.Errorf("alias %s", alias)
		}
	}
	// Strict: the user's known_hosts file as it is.
	tg := p.(*Provider).target(s.Hosts[0], "/w")
	if tg.KnownHostsFile != "/etc/kh" || !tg.StrictHostKeys {
		t.Errorf("target %+v", tg)
	}
}

// TestCleanOverride: --ssh-clean-workdir=false on the command line wins
// over what a claim recorded; a config value does not.
func TestCleanOverride(t *testing.T) {
	w := newWorld(t, 1)
	m := w.machine(func(s *Settings) { s.CleanWorkdir = true })
	l := acquire(t, m, "")
	if !m.cleanWorkdir(l) {
		t.Fatal("claim recorded clean=true")
	}
	m.Settings.CleanWorkdir = false
	if !m.cleanWorkdir(l) || m.ReleaseFlags(l) == nil {
		t.Error("a config value overrode the claim")
	}
	f := false
	m.Settings.CleanOverride = &f
	if m.cleanWorkdir(l) || m.ReleaseFlags(l) != nil {
		t.Error("the flag did not override the claim")
	}
}

func runSh(t *testing.T, script string, env ...string) (string, error) {
	t.Helper()
	var out, errb strings.Builder
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, errb.String())
	}
	return out.String(), err
}

package owner

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/lease"
	"github.com/crabbox-dev/crabbox/internal/provider"
	"github.com/crabbox-dev/crabbox/internal/remotecmd"
)

// localRemote runs the owner script with the local bash, as sshd would.
type localRemote struct{}

func (localRemote) Run(ctx context.Context, remote string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	cmd := exec.CommandContext(ctx, "bash", "-c", remote)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

const leaseID = "cbx_0123456789ab"

func setup(t *testing.T) (*Checker, *provider.Lease, string) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	state, root := t.TempDir(), t.TempDir()
	c := &Checker{StateDir: state, Claims: claims.New(state), Now: time.Now, Warn: func(msg string) { t.Log(msg) }}
	l := &provider.Lease{ID: leaseID, Workspace: "crabbox-blue", Provider: "coder",
		Claim: &claims.Claim{LeaseID: leaseID}, Ready: true, Target: lease.Target{WorkRoot: root}}
	return c, l, root
}

func foreignRecord(t *testing.T, root string) {
	t.Helper()
	rec := `{"leaseId":"` + leaseID + `","machineId":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","createdAt":"2026-01-02T03:04:05Z"}` + "\n"
	if err := os.WriteFile(filepath.Join(root, remotecmd.OwnerFile), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
}

func takeOver(ident string) string { return "crabbox ssh --reclaim " + ident }

func wantRefusal(t *testing.T, err error, contains ...string) {
	t.Helper()
	if !exitcode.IsRefused(err) || exitcode.Code(err) != exitcode.Usage {
		t.Fatalf("err = %v (exit %d), want a refusal", err, exitcode.Code(err))
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not contain %q", err, s)
		}
	}
}

// TestClaimRefusals: another machine's owner record refuses, naming the
// next command in exitcode.Next's form.
func TestClaimRefusals(t *testing.T) {
	t.Run("taken over", func(t *testing.T) {
		c, l, root := setup(t)
		foreignRecord(t, root)
		err := c.Claim(context.Background(), localRemote{}, l, false, takeOver)
		wantRefusal(t, err, "was taken over by another machine", "`crabbox ssh --reclaim "+leaseID+"` would take it back",
			"to drop it: next: `crabbox stop "+leaseID+"`")
	})
	t.Run("adopted foreign", func(t *testing.T) {
		c, l, root := setup(t)
		foreignRecord(t, root)
		l.Adopted = true
		if _, err := c.Claims.Update(leaseID, func(cl *claims.Claim, _ bool) error { cl.RepoRoot = "/src/app"; return nil }); err != nil {
			t.Fatal(err)
		}
		err := c.Claim(context.Background(), localRemote{}, l, false, takeOver)
		wantRefusal(t, err, "workspace crabbox-blue belongs to another machine", "nothing was changed",
			"To take it over from here: next: `crabbox ssh --reclaim crabbox-blue`")
		if cl, _ := c.Claims.Get(leaseID); cl != nil {
			t.Errorf("the claim just made is still there: %+v", cl)
		}
	})
	t.Run("reclaim writes this machine", func(t *testing.T) {
		c, l, root := setup(t)
		foreignRecord(t, root)
		if err := c.Claim(context.Background(), localRemote{}, l, true, takeOver); err != nil {
			t.Fatal(err)
		}
		me, _ := c.MachineID()
		if b, _ := os.ReadFile(filepath.Join(root, remotecmd.OwnerFile)); !strings.Contains(string(b), me) {
			t.Errorf("owner record after reclaim: %s", b)
		}
	})
}

// TestStopGateBusy: a live run of another machine refuses a stop.
func TestStopGateBusy(t *testing.T) {
	c, l, root := setup(t)
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skip("no /proc: the owner script cannot see runs")
	}
	runs := filepath.Join(root, "lease", "repo", ".crabbox", "runs")
	if err := os.MkdirAll(runs, 0o700); err != nil {
		t.Fatal(err)
	}
	const runID = "run_0123456789ab"
	sleeper := exec.Command("sleep", "30")
	sleeper.Env = append(os.Environ(), "CRABBOX_RUN_ID="+runID, "CRABBOX_MACHINE_ID=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	if err := os.WriteFile(filepath.Join(runs, runID+".pid"), []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	drop, err := c.StopGate(context.Background(), localRemote{}, l, false)
	wantRefusal(t, err, "refusing to stop lease "+leaseID, "run "+runID, "nothing was changed",
		"To stop it anyway: next: `crabbox stop --reclaim "+leaseID+"`")
	if drop {
		t.Error("drop with a refusal")
	}
}

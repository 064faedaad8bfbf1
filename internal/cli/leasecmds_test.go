package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/claims"
	"github.com/crabbox-dev/crabbox/internal/config"
	"github.com/crabbox-dev/crabbox/internal/execx"
)

const (
	cliLease   = "cbx_0123456789ab"
	cliWS      = "crabbox-blue-0a1b2c"
	cliRef     = "alice/" + cliWS
	cliWhoami  = `[{"url":"https://coder.example.com","username":"alice","user_id":"u1"}]`
	cliRunning = `[{"id":"ws1","name":"` + cliWS + `","owner_name":"alice","template_name":"go-dev","latest_build":{"status":"running","transition":"start"}}]`
	cliStopped = `[{"id":"ws1","name":"` + cliWS + `","owner_name":"alice","template_name":"go-dev","latest_build":{"status":"stopped","transition":"stop"}}]`
)

// claimLease writes a coder claim on cliWS into te's state dir.
func (te *testEnv) claimLease(t *testing.T) *claims.Store {
	t.Helper()
	store := claims.New(config.StateDir(te.f.Env))
	_, err := store.Update(cliLease, func(c *claims.Claim, exists bool) error {
		c.Slug, c.Provider, c.CloudID, c.WorkspaceID = "blue", "coder", cliRef, "ws1"
		c.CoderURL, c.RepoRoot, c.TargetOS = "https://coder.example.com", te.repo, "linux"
		c.LastUsedAt = time.Now().UTC().Format(time.RFC3339)
		c.Labels = map[string]string{"provider": "coder", "lease": cliLease, "slug": "blue",
			"coder_workspace": cliWS, "coder_workspace_ref": cliRef, "coder_release_action": "stop"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// stop with a state dir where the claim cannot be removed: the workspace
// was stopped, and the message says so, names the claim file and the
// error, and gives a next step that works once the dir is writable; it
// does not claim "not released". The named step then works.
func TestStopReportsKeptClaimTruthfully(t *testing.T) {
	te := newTestEnv(t)
	store := te.claimLease(t)
	stopped := false
	te.fake.On("coder whoami -o json", execx.Reply{Stdout: cliWhoami}).
		On("coder list -o json", execx.Reply{Stdout: cliRunning}, execx.Reply{Stdout: cliStopped}).
		On("coder stop --yes "+cliRef, execx.Reply{Stdout: "==> Stopping\nTerraform output\n", Do: func(execx.Call) { stopped = true }})
	locks := store.LocksDir()
	if err := os.MkdirAll(filepath.Dir(locks), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(locks); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(locks, nil, 0o600); err != nil { // unusable, even for root
		t.Fatal(err)
	}
	code, _, errOut := te.run(t, "stop", "--provider", "coder", cliLease)
	if code != 1 || !stopped {
		t.Fatalf("exit %d stopped=%t\n%s", code, stopped, errOut)
	}
	for _, want := range []string{
		"stopped coder workspace " + cliWS + " (lease " + cliLease + "), but its local claim could not be removed",
		"is not a directory",
		store.Path(cliLease),
		"run `crabbox stop " + cliLease + "`",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if strings.Contains(errOut, "was not released") || strings.Contains(errOut, "Terraform") {
		t.Errorf("stderr:\n%s", errOut)
	}
	if _, err := os.Stat(store.Path(cliLease)); err != nil {
		t.Fatalf("claim file: %v", err)
	}
	// The named next step, once the state dir works again.
	if err := os.Remove(locks); err != nil {
		t.Fatal(err)
	}
	stopped = false
	code, _, errOut = te.run(t, "stop", "--provider", "coder", cliLease)
	if code != 0 || stopped || !strings.Contains(errOut, "workspace already stopped; claim removed") {
		t.Errorf("retry: exit %d stopped again=%t\n%s", code, stopped, errOut)
	}
	if _, err := os.Stat(store.Path(cliLease)); !os.IsNotExist(err) {
		t.Errorf("claim still there: %v", err)
	}
}

// Without a configured provider, lease-addressing commands and list use
// the provider the matching claims record; with no matching claim the
// usage error stays.
func TestProviderFromClaim(t *testing.T) {
	te := newTestEnv(t)
	te.fake.On("coder whoami -o json", execx.Reply{Stdout: cliWhoami}).
		On("coder list -o json", execx.Reply{Stdout: cliStopped})
	for _, args := range [][]string{{"status", cliLease}, {"list"}} {
		if code, _, errOut := te.run(t, args...); code != 2 || !strings.Contains(errOut, "no provider selected") {
			t.Errorf("%v without claims: exit %d\n%s", args, code, errOut)
		}
	}
	if len(te.fake.Calls()) > 1 { // only git rev-parse
		t.Errorf("calls without a provider: %q", te.fake.Argvs())
	}
	te.claimLease(t)
	for _, args := range [][]string{{"status", cliLease}, {"status", "blue"}, {"status", cliWS}, {"status", cliRef}, {"inspect", "--id", "blue"}, {"list"}, {"list", "--json"}} {
		code, out, errOut := te.run(t, args...)
		if code != 0 || !strings.Contains(out, cliLease) {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	if code, _, errOut := te.run(t, "status", "other-lease"); code != 2 || !strings.Contains(errOut, "no provider selected") {
		t.Errorf("status of an unclaimed lease: exit %d\n%s", code, errOut)
	}
	// Claims naming several providers: ask which.
	store := claims.New(config.StateDir(te.f.Env))
	if _, err := store.Update("cbx_ffffffffffff", func(c *claims.Claim, exists bool) error {
		c.Slug, c.Provider, c.RepoRoot = "other", "hetzner", te.repo
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := te.run(t, "list"); code != 2 || !strings.Contains(errOut, "coder, hetzner") {
		t.Errorf("list with two providers' claims: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := te.run(t, "status", "blue"); code != 0 {
		t.Errorf("status of the coder lease: exit %d\n%s", code, errOut)
	}
}

// Quiet provisioning: on a non-terminal stderr, stop prints crabbox's own
// step lines and none of Coder's build output, which lands in a 0600 log
// under <state>/coder/logs.
func TestStopIsQuietAndKeepsBuildLog(t *testing.T) {
	te := newTestEnv(t)
	te.claimLease(t)
	te.fake.On("coder whoami -o json", execx.Reply{Stdout: cliWhoami}).
		On("coder list -o json", execx.Reply{Stdout: cliRunning}).
		On("coder stop --yes "+cliRef, execx.Reply{Stdout: "==> ⧗ Queued\nTerraform 1.13.0\n", Stderr: "terraform_data.home: Destroying...\n"})
	code, out, errOut := te.run(t, "stop", "--provider", "coder", cliLease)
	if code != 0 || out != "" {
		t.Fatalf("exit %d stdout %q\n%s", code, out, errOut)
	}
	if strings.Contains(errOut, "Terraform") || strings.Contains(errOut, "==>") || strings.Contains(errOut, "terraform_data") {
		t.Errorf("stderr carries Coder's build output:\n%s", errOut)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^\d\d:\d\d:\d\d stopping workspace `+cliWS+`…$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^\d\d:\d\d:\d\d stopping workspace `+cliWS+` done in \S+$`).MatchString(lines[1]) ||
		lines[2] != "stopped coder workspace lease="+cliLease+" workspace="+cliWS {
		t.Errorf("stderr lines %q", lines)
	}
	logs, _ := filepath.Glob(filepath.Join(config.StateDir(te.f.Env), "coder", "logs", cliWS+"-stop-*.log"))
	if len(logs) != 1 {
		t.Fatalf("logs %v", logs)
	}
	b, _ := os.ReadFile(logs[0])
	fi, _ := os.Stat(logs[0])
	if fi.Mode().Perm() != 0o600 || !strings.Contains(string(b), "Terraform 1.13.0") || !strings.Contains(string(b), "Destroying") {
		t.Errorf("log %s (%v):\n%s", logs[0], fi.Mode(), b)
	}
}

// `coder stop` exiting 2 is coder's failure, not crabbox's refusal: stop
// exits with coder's code and says the claim is kept and how to retry. A
// refusal (a claim of another repo) still exits 2 without that line.
func TestStopCoderExit2IsNotARefusal(t *testing.T) {
	te := newTestEnv(t)
	te.claimLease(t)
	te.fake.On("coder whoami -o json", execx.Reply{Stdout: cliWhoami}).
		On("coder list -o json", execx.Reply{Stdout: cliRunning}).
		On("ssh", execx.Reply{ExitCode: 255, Stderr: "no route"}).
		On("coder stop --yes "+cliRef, execx.Reply{ExitCode: 2, Stderr: "error: unexpected flag\n"})
	code, _, errOut := te.run(t, "stop", "--provider", "coder", cliLease)
	if code != 2 || !strings.Contains(errOut, "its claim is kept: retry with `crabbox stop "+cliLease+"`") {
		t.Errorf("coder stop exit 2: crabbox exit %d\n%s", code, errOut)
	}
	if !te.hasCall("coder stop --yes " + cliRef) {
		t.Fatalf("coder stop never ran (positive control): %q", te.fake.Argvs())
	}
}

func (te *testEnv) hasCall(argv string) bool {
	for _, a := range te.fake.Argvs() {
		if a == argv {
			return true
		}
	}
	return false
}

//go:build e2e

package e2e

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/config"
)

// Coder's timing on the lab (coder v2.27.0 defaults; the lab's server
// sets none of them): the autostop executor runs once a minute
// (--autobuild-poll-interval), and an agent reports its connections every
// 30 s (--agent-stats-refresh-interval). A report that counts a
// connection with traffic in its window bumps the deadline to now +
// the template's activity_bump (docs/providers/coder.md, Autostop).
const (
	autostopTemplate  = "e2e-autostop"
	autostopTTL       = time.Minute // template default_ttl
	activityBump      = time.Minute // template activity_bump
	autobuildPoll     = time.Minute
	agentStatsRefresh = 30 * time.Second
)

// ensureAutostopTemplate pushes (once per lab) a copy of the lab's
// template named autostopTemplate and gives it a 1-minute default TTL and
// activity bump, so a workspace left idle stops within minutes. The lab's
// own template is left alone (other tests and users share the lab).
func ensureAutostopTemplate(t *testing.T) {
	t.Helper()
	env := labEnv(t)
	out, err := runCmd(cmdTimeout, lab.Root, env, lab.Coder, "templates", "list", "-o", "json")
	if err != nil {
		t.Fatalf("coder templates list: %v\n%s", err, out)
	}
	var rows []struct {
		Template struct {
			Name string `json:"name"`
		} `json:"Template"`
	}
	if len(out) > 0 {
		if err := json.Unmarshal(out, &rows); err != nil {
			t.Fatalf("templates list JSON: %v\n%s", err, out)
		}
	}
	have := false
	for _, r := range rows {
		have = have || r.Template.Name == autostopTemplate
	}
	if !have {
		out, err := runCmd(5*time.Minute, lab.Root, env, lab.Coder, "templates", "push", autostopTemplate,
			"--directory", filepath.Join(lab.Root, "scripts", "coder-lab", "template"), "--yes",
			"--variable", "lab_dir="+lab.State, "--variable", "coder_bin="+lab.Coder,
			"--message", "crabbox e2e: the lab template with a short autostop", "--ignore-lockfile")
		if err != nil {
			t.Fatalf("coder templates push %s: %v\n%s", autostopTemplate, err, out)
		}
	}
	if out, err := runCmd(cmdTimeout, lab.Root, env, lab.Coder, "templates", "edit", autostopTemplate,
		"--default-ttl", autostopTTL.String(), "--activity-bump", activityBump.String(), "--yes"); err != nil {
		t.Fatalf("coder templates edit %s: %v\n%s", autostopTemplate, err, out)
	}
}

// buildState is Coder's latest build of a workspace with its deadline.
type buildState struct {
	Number     int
	Transition string
	Status     string
	Reason     string
	Deadline   time.Time // zero: none
	CreatedAt  time.Time
}

func (w *world) buildState(name string) (buildState, bool) {
	w.t.Helper()
	out, err := runCmd(cmdTimeout, w.repo, w.env, lab.Coder, "list", "-o", "json")
	if err != nil {
		w.t.Fatalf("coder list: %v\n%s", err, out)
	}
	var rows []struct {
		Name        string `json:"name"`
		LatestBuild struct {
			BuildNumber int        `json:"build_number"`
			Transition  string     `json:"transition"`
			Status      string     `json:"status"`
			Reason      string     `json:"reason"`
			Deadline    *time.Time `json:"deadline"`
			CreatedAt   time.Time  `json:"created_at"`
		} `json:"latest_build"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		w.t.Fatalf("coder list JSON: %v\n%s", err, out)
	}
	for _, r := range rows {
		if r.Name == name {
			b := buildState{Number: r.LatestBuild.BuildNumber, Transition: r.LatestBuild.Transition, Status: r.LatestBuild.Status,
				Reason: r.LatestBuild.Reason, CreatedAt: r.LatestBuild.CreatedAt}
			if r.LatestBuild.Deadline != nil {
				b.Deadline = *r.LatestBuild.Deadline
			}
			return b, true
		}
	}
	return buildState{}, false
}

// Issue 13 item 5 (Coder-side cost of ssh.persist): a lease left idle
// with ssh.persist at its default lets Coder's autostop fire no more than
// ssh.persist (plus the lab's reporting and polling granularity) later
// than with ssh.persist 0. Two leases of a template with a 1-minute TTL
// and activity bump run one command each and are left idle; Coder's own
// records say when activity last bumped each deadline and when autostop
// stopped each workspace. Positive control: both do stop by autostop
// (the one without a persistent master within one report, its TTL and one
// poll of going idle).
func TestCoderAutostopWithPersistentTunnel(t *testing.T) {
	t.Parallel()
	ensureAutostopTemplate(t)
	persist := config.DefaultSSHPersist
	type side struct {
		name    string
		persist time.Duration
		w       *world
		l       warmed
		idle    time.Time // the end of the last run
		last    buildState
		stopped *buildState
		bump    time.Time // when activity last moved the deadline (deadline - activity bump)
	}
	sides := []*side{{name: "default", persist: persist}, {name: "persist-0", persist: 0}}
	for _, s := range sides {
		s.w = newWorld(t)
		s.w.write("crabbox.yaml", "provider: coder\ncoder:\n  template: "+autostopTemplate+"\n")
		if s.persist == 0 {
			s.w.setPersist("0s")
		}
		s.l = s.w.warmup("--slug", "e2e-autostop-"+s.name)
		s.w.must("run", "--id", s.l.id, "--", "true")
		s.idle = time.Now()
	}
	// Latest: the default side's deadline can be bumped until its master
	// ends (persist) plus one stats report, then the TTL, then one poll.
	limit := time.Now().Add(persist + agentStatsRefresh + activityBump + autobuildPoll + 2*time.Minute)
	for time.Now().Before(limit) {
		done := true
		for _, s := range sides {
			if s.stopped != nil {
				continue
			}
			b, ok := s.w.buildState(s.l.workspace)
			if !ok {
				t.Fatalf("%s: workspace %s gone", s.name, s.l.workspace)
			}
			if b.Transition == "stop" {
				s.stopped = &b
				continue
			}
			done = false
			s.last = b
		}
		if done {
			break
		}
		time.Sleep(3 * time.Second)
	}
	for _, s := range sides {
		if s.stopped == nil {
			t.Fatalf("%s: no stop build by %s; last build %+v", s.name, limit.Format(time.TimeOnly), s.last)
		}
		if s.stopped.Reason != "autostop" {
			t.Errorf("%s: stop build reason %q, want autostop", s.name, s.stopped.Reason)
		}
		if s.last.Deadline.IsZero() {
			t.Fatalf("%s: the start build had no deadline (template TTL not applied?): %+v", s.name, s.last)
		}
		s.bump = s.last.Deadline.Add(-activityBump)
		t.Logf("%s (ssh.persist %s): idle at %s; last activity bump %s (+%s); deadline %s; autostop build at %s (+%s)",
			s.name, s.persist, s.idle.Format(time.TimeOnly), s.bump.Format(time.TimeOnly), s.bump.Sub(s.idle).Round(time.Second),
			s.last.Deadline.Format(time.TimeOnly), s.stopped.CreatedAt.Format(time.TimeOnly), s.stopped.CreatedAt.Sub(s.idle).Round(time.Second))
		// Activity ends within the master's life plus one stats report.
		if d := s.bump.Sub(s.idle); d > s.persist+agentStatsRefresh+10*time.Second {
			t.Errorf("%s: activity bumped the deadline %s after the lease went idle, want at most ssh.persist %s + one report %s",
				s.name, d.Round(time.Second), s.persist, agentStatsRefresh)
		}
		// Autostop fires at the executor's first tick after the deadline;
		// on a loaded machine coderd's executor ran a tick late (1m26s
		// after the deadline in a CI run with a CPU hog), so two ticks are
		// allowed: this is Coder's schedule, not crabbox's.
		if d := s.stopped.CreatedAt.Sub(s.last.Deadline); d < -5*time.Second || d > 2*autobuildPoll+15*time.Second {
			t.Errorf("%s: autostop build %s after the deadline, want within two polls (%s each)", s.name, d.Round(time.Second), autobuildPoll)
		}
	}
	a, b := sides[0], sides[1]
	delay := a.stopped.CreatedAt.Sub(a.idle) - b.stopped.CreatedAt.Sub(b.idle)
	t.Logf("autostop with ssh.persist %s fired %s later (after going idle) than with ssh.persist 0", persist, delay.Round(time.Second))
	if slack := autobuildPoll + agentStatsRefresh + 10*time.Second; delay > persist+slack {
		t.Errorf("autostop fired %s later with ssh.persist %s than without, want at most ssh.persist + %s (one poll, one report)",
			delay.Round(time.Second), persist, slack)
	}
	if got := masterPIDs(a.l.workspace); len(got) != 0 {
		t.Errorf("masters of the autostopped workspace = %v, want none", got)
	}
	// The delete may meet the autostop build still running: crabbox
	// waits for it (it failed with "A workspace build is already active").
	for _, s := range sides {
		s.w.must("stop", "--coder-delete-on-release", s.l.id)
	}
}

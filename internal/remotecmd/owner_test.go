package remotecmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const (
	machineA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	machineB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func ownerRecordLine(lease, machine, at string) string {
	return `{"leaseId":"` + lease + `","machineId":"` + machine + `","createdAt":"` + at + `"}` + "\n"
}

// startRun starts a process that looks like a live run of machine (env
// CRABBOX_RUN_ID, CRABBOX_MACHINE_ID) and records its pid in the run's pid
// file under root/<lease>/<repo>/.crabbox/runs.
func startRun(t *testing.T, root, runID, machine string, pidOverride int) {
	t.Helper()
	runs := filepath.Join(root, "lease_1", "repo", ".crabbox", "runs")
	if err := os.MkdirAll(runs, 0o755); err != nil {
		t.Fatal(err)
	}
	pid := pidOverride
	if pid == 0 {
		cmd := exec.Command("sleep", "30")
		cmd.Env = append(os.Environ(), "CRABBOX_RUN_ID="+runID, "CRABBOX_MACHINE_ID="+machine)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		pid = cmd.Process.Pid
	}
	if err := os.WriteFile(filepath.Join(runs, runID+".pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOwnerScript: the owner record is written when absent or this
// machine's, refused (exit 80, unchanged) when another machine's unless
// reclaimed; a live run of another machine refuses (exit 81) unless
// reclaimed, a dead run's pid file or this machine's own run never does.
func TestOwnerScript(t *testing.T) {
	needBash(t)
	tests := []struct {
		name     string
		record   string // existing record ("" = none)
		run      string // "" none, "foreign", "own", "dead"
		reclaim  bool
		write    bool
		wantCode int
		wantRec  string // record after ("" = none)
		wantBusy int
	}{
		{"no record: written", "", "", false, true, 0, ownerRecordLine("lease_1", machineA, "T1"), 0},
		{"no record, check only: nothing written", "", "", false, false, 0, "", 0},
		{"own record: unchanged", ownerRecordLine("lease_1", machineA, "T0"), "", false, true, 0, ownerRecordLine("lease_1", machineA, "T0"), 0},
		{"own record, other lease: rewritten", ownerRecordLine("lease_0", machineA, "T0"), "", false, true, 0, ownerRecordLine("lease_1", machineA, "T1"), 0},
		{"foreign record: refused", ownerRecordLine("lease_1", machineB, "T0"), "", false, true, OwnerForeign, ownerRecordLine("lease_1", machineB, "T0"), 0},
		{"foreign record, check only: refused", ownerRecordLine("lease_1", machineB, "T0"), "", false, false, OwnerForeign, ownerRecordLine("lease_1", machineB, "T0"), 0},
		{"foreign record, reclaim: taken over", ownerRecordLine("lease_1", machineB, "T0"), "", true, true, 0, ownerRecordLine("lease_1", machineA, "T1"), 0},
		{"foreign live run: refused", ownerRecordLine("lease_1", machineA, "T0"), "foreign", false, true, OwnerBusy, ownerRecordLine("lease_1", machineA, "T0"), 1},
		{"foreign live run, reclaim: ok", ownerRecordLine("lease_1", machineA, "T0"), "foreign", true, true, 0, ownerRecordLine("lease_1", machineA, "T0"), 1},
		{"own live run: ok", ownerRecordLine("lease_1", machineA, "T0"), "own", false, true, 0, ownerRecordLine("lease_1", machineA, "T0"), 0},
		{"dead run's pid file: ok", ownerRecordLine("lease_1", machineA, "T0"), "dead", false, true, 0, ownerRecordLine("lease_1", machineA, "T0"), 0},
		{"reused pid (not the run): ok", ownerRecordLine("lease_1", machineA, "T0"), "reused", false, true, 0, ownerRecordLine("lease_1", machineA, "T0"), 0},
		{"garbage record: taken as absent", "not json\n", "", false, true, 0, ownerRecordLine("lease_1", machineA, "T1"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "work root")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(root, OwnerFile)
			if tt.record != "" {
				if err := os.WriteFile(f, []byte(tt.record), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			switch tt.run {
			case "foreign":
				startRun(t, root, "run_f00d", machineB, 0)
			case "own":
				startRun(t, root, "run_f00d", machineA, 0)
			case "dead":
				startRun(t, root, "run_f00d", machineB, 999999999)
			case "reused":
				startRun(t, root, "run_f00d", machineB, os.Getpid()) // alive, but not that run
			}
			out, stderr, code := runBash(t, OwnerScript(OwnerParams{
				WorkRoot: root, LeaseID: "lease_1", MachineID: machineA, Now: "T1", Reclaim: tt.reclaim, Write: tt.write,
			}), "")
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, stderr)
			}
			got, _ := os.ReadFile(f)
			if string(got) != tt.wantRec {
				t.Errorf("record %q, want %q", got, tt.wantRec)
			}
			if tt.wantRec != "" {
				if st, err := os.Stat(f); err == nil && st.Mode().Perm() != 0o600 && tt.record != tt.wantRec {
					t.Errorf("record mode %v, want 0600", st.Mode().Perm())
				}
			}
			rec, busy := ParseOwner(out)
			if len(busy) != tt.wantBusy {
				t.Errorf("busy %v, want %d entries", busy, tt.wantBusy)
			}
			if tt.record != "" && strings.HasPrefix(tt.record, "{") && rec.MachineID == "" {
				t.Errorf("record not reported: %q", out)
			}
			if matches, _ := filepath.Glob(f + ".tmp.*"); len(matches) > 0 {
				t.Errorf("temp files left: %v", matches)
			}
		})
	}
}

// TestOwnerScriptQuotesPaths: a hostile work root is one word.
func TestOwnerScriptQuotesPaths(t *testing.T) {
	needBash(t)
	root := filepath.Join(t.TempDir(), "a'b $(touch pwned) c")
	_, _, code := runBash(t, OwnerScript(OwnerParams{WorkRoot: root, LeaseID: "lease_1", MachineID: machineA, Now: "T1", Write: true}), "")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(root, OwnerFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("pwned"); err == nil {
		t.Fatal("work root was interpreted by the shell")
	}
}

func TestParseOwner(t *testing.T) {
	rec, busy := ParseOwner("motd noise\ncrabbox-owner owner m1 lease_1 2026-01-01T00:00:00Z\ncrabbox-owner busy - run_1\ncrabbox-owner bogus\n")
	if rec != (OwnerRecord{MachineID: "m1", LeaseID: "lease_1", CreatedAt: "2026-01-01T00:00:00Z"}) {
		t.Errorf("record %+v", rec)
	}
	if len(busy) != 1 || busy[0] != (BusyRun{RunID: "run_1"}) {
		t.Errorf("busy %+v", busy)
	}
	if rec, busy := ParseOwner("crabbox-owner owner - - -\n"); rec != (OwnerRecord{}) || busy != nil {
		t.Errorf("absent record: %+v %+v", rec, busy)
	}
}

// TestOwnerScriptReadsRecordFields: the record's fields are read by the
// shell itself, in bash and in a plain POSIX sh (the user's login shell
// runs the fast line): a value outside [A-Za-z0-9_.:+-] or a missing key
// reads as absent, and nothing in a value is ever run.
func TestOwnerScriptReadsRecordFields(t *testing.T) {
	shells := []string{"bash"}
	if _, err := exec.LookPath("dash"); err == nil {
		shells = append(shells, "dash")
	}
	tests := []struct {
		name, record string
		want         OwnerRecord
	}{
		{"ours", ownerRecordLine("cbx_1", machineB, "2026-12-02T19:00:00Z"), OwnerRecord{MachineID: machineB, LeaseID: "cbx_1", CreatedAt: "2026-12-02T19:00:00Z"}},
		{"other order", `{"createdAt":"T0","machineId":"m-1.a:b+c","leaseId":"l"}`, OwnerRecord{MachineID: "m-1.a:b+c", LeaseID: "l", CreatedAt: "T0"}},
		{"space in a value", `{"leaseId":"a b","machineId":"` + machineB + `"}`, OwnerRecord{MachineID: machineB}},
		{"command in a value", `{"machineId":"$(touch pwned)","leaseId":"` + "`touch pwned`" + `"}`, OwnerRecord{}},
		{"glob value", `{"machineId":"*"}`, OwnerRecord{}},
		{"empty value", `{"machineId":""}`, OwnerRecord{}},
		{"no keys", "garbage\n", OwnerRecord{}},
	}
	for _, sh := range shells {
		for _, tt := range tests {
			t.Run(sh+"/"+tt.name, func(t *testing.T) {
				dir := t.TempDir()
				root := filepath.Join(dir, "root")
				os.MkdirAll(root, 0o755)
				if err := os.WriteFile(filepath.Join(root, OwnerFile), []byte(tt.record), 0o600); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(sh, "-c", OwnerScript(OwnerParams{WorkRoot: root, LeaseID: "cbx_1", MachineID: machineA, Now: "T1"}))
				cmd.Dir = dir
				cmd.Env = bashEnv(t)
				out, _ := cmd.Output()
				if !strings.Contains(string(out), "crabbox-owner owner ") {
					t.Fatalf("no owner line: %q", out) // the positive control
				}
				if rec, _ := ParseOwner(string(out)); rec != tt.want {
					t.Errorf("record read as %+v, want %+v (output %q)", rec, tt.want, out)
				}
				if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
					t.Error("a value in the record was run")
				}
			})
		}
	}
}

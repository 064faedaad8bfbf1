package remotecmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/runs"
)

// The script, run by a real bash, reports this machine; tools answer
// with their first version line (whichever of --version, version or
// -version works), or "missing". Names are never run as shell text.
func TestPreflightScriptOnThisMachine(t *testing.T) {
	bin := t.TempDir()
	tool := func(name, body string) {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tool("onlyversion", `[ "$1" = version ] || { echo "bad flag $1" >&2; exit 2; }; echo; echo "onlyversion v1.2.3"`)
	tool("silent", `exit 0`)
	work := filepath.Join(t.TempDir(), "not", "made", "yet")
	tools := []string{"git", "onlyversion", "silent", "crabbox-no-such-tool", "$(touch pwned)"}
	cmd := exec.Command("bash", "-c", "echo profile noise; "+preflightBody(work, tools))
	cmd.Dir = bin
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	p := ParsePreflight(string(out))
	if p.OS == "" || !strings.HasPrefix(p.Kernel, "Linux ") || p.Arch == "" || p.CPUs < 1 || p.MemTotalBytes <= 0 ||
		p.MemAvailableBytes <= 0 || p.DiskFreeBytes <= 0 {
		t.Errorf("machine facts incomplete: %+v\n%s", p, out)
	}
	if !strings.HasPrefix(p.Tools["git"], "git version ") {
		t.Errorf("git = %q", p.Tools["git"])
	}
	want := map[string]string{"onlyversion": "onlyversion v1.2.3", "silent": "present (no version output)", "crabbox-no-such-tool": runs.ToolMissing}
	for k, v := range want {
		if p.Tools[k] != v {
			t.Errorf("tool %s = %q, want %q", k, p.Tools[k], v)
		}
	}
	if _, ok := p.Tools["$(touch pwned)"]; ok {
		t.Error("an invalid tool name made it into the snapshot")
	}
	if _, err := os.Stat(filepath.Join(bin, "pwned")); err == nil {
		t.Error("a tool name ran as a command")
	}
	if _, err := os.Stat(filepath.Dir(work)); err == nil {
		t.Error("the snapshot made the workdir's parents")
	}
}

func TestParsePreflight(t *testing.T) {
	out := "welcome!\n" +
		"crabbox-preflight os=Debian GNU/Linux 12 (bookworm)\r\n" +
		"crabbox-preflight kernel=Linux 6.1.0\x1b[31m\n" +
		"crabbox-preflight arch=x86_64\n" +
		"crabbox-preflight cpus=4\n" +
		"crabbox-preflight mem=8000000 6000000\n" +
		"crabbox-preflight disk=1048576\n" +
		"crabbox-preflight tool.git=git version 2.39.5\n" +
		"crabbox-preflight tool.node=missing\n" +
		"crabbox-preflight tool.../x=ignored\n" +
		"crabbox-preflight tool.big=" + strings.Repeat("x", 500) + "\n" +
		"crabbox-preflight cpus-ish\n" +
		"not crabbox-preflight os=spoofed\n"
	p := ParsePreflight(out)
	if p.OS != "Debian GNU/Linux 12 (bookworm)" || p.Kernel != "Linux 6.1.0[31m" || p.Arch != "x86_64" || p.CPUs != 4 ||
		p.MemTotalBytes != 8000000*1024 || p.MemAvailableBytes != 6000000*1024 || p.DiskFreeBytes != 1<<30 {
		t.Errorf("facts: %+v", p)
	}
	if len(p.Tools["big"]) > maxPreflightValue+len("…") {
		t.Errorf("long value kept whole (%d bytes)", len(p.Tools["big"]))
	}
	delete(p.Tools, "big")
	if want := map[string]string{"git": "git version 2.39.5", "node": "missing"}; !reflect.DeepEqual(p.Tools, want) {
		t.Errorf("tools %v, want %v", p.Tools, want)
	}
	if z := ParsePreflight("crabbox-preflight cpus=many\ncrabbox-preflight mem=-5\n"); z.CPUs != 0 || z.MemTotalBytes != 0 {
		t.Errorf("garbage numbers parsed: %+v", z)
	}
}

func TestPreflightTools(t *testing.T) {
	got := PreflightTools([]string{"node", "git", "-rf", "a/b", "go", "node"})
	if want := []string{"git", "rsync", "node", "go"}; !reflect.DeepEqual(got, want) {
		t.Errorf("PreflightTools = %q, want %q", got, want)
	}
}

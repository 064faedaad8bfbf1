package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// A command that declares a config flag's name itself would shadow the
// config layer: addConfigFlags refuses it instead of skipping the name.
func TestAddConfigFlagsRefusesADuplicate(t *testing.T) {
	cmd := &cobra.Command{Use: "run"}
	cmd.Flags().Bool("checksum", false, "")
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "--checksum") {
			t.Fatalf("recover() = %v, want a panic naming --checksum", r)
		}
	}()
	addConfigFlags(cmd)
}

// Run's sync and results flags are config flags: config show reports
// them with their source, and a repeated list flag keeps every value.
func TestRunFlagsAreConfigFlags(t *testing.T) {
	te := newTestEnv(t)
	code, out, errOut := te.run(t, "config", "show", "--junit", "a.xml", "--junit", "b.xml,c.xml", "--results-auto", "--force-sync-large")
	if code != 0 {
		t.Fatalf("config show: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"a.xml,b.xml,c.xml", "results.auto", "sync.allowLarge"} {
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, want) {
				line = l
			}
		}
		if !strings.HasSuffix(strings.TrimSpace(line), "flag") {
			t.Errorf("config show line for %s: %q, want source flag\n%s", want, line, out)
		}
	}
	// Scoped to run: stop does not take --junit.
	if code, _, errOut := te.run(t, "stop", "--junit", "x.xml", "blue"); code != 2 || !strings.Contains(errOut, "unknown flag") {
		t.Errorf("stop --junit: exit %d\n%s", code, errOut)
	}
}

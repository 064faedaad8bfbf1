package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSelected(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		want    []string
		wantErr bool
	}{
		{"", figureNames(), false},
		{"warm,sync", []string{"warm", "sync"}, false},
		{" procs ", []string{"procs"}, false},
		{"warm,nope", nil, true},
	} {
		got, err := selected(tc.spec)
		if (err != nil) != tc.wantErr {
			t.Errorf("selected(%q) error %v, want error %v", tc.spec, err, tc.wantErr)
			continue
		}
		var names []string
		for _, f := range got {
			names = append(names, f.name)
		}
		if !tc.wantErr && !reflect.DeepEqual(names, tc.want) {
			t.Errorf("selected(%q) = %v, want %v", tc.spec, names, tc.want)
		}
	}
}

func ms(v ...int) []time.Duration {
	var out []time.Duration
	for _, n := range v {
		out = append(out, time.Duration(n)*time.Millisecond)
	}
	return out
}

func TestRowVerdict(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    row
		want bool
	}{
		{"under target", row{floor: ms(500, 600, 700), crabbox: ms(100, 90, 300), target: 0.20}, true},
		{"over target", row{floor: ms(500, 600, 700), crabbox: ms(130, 125, 300), target: 0.20}, false},
		{"informational", row{floor: ms(1), crabbox: ms(9)}, true},
		{"counts at aim", row{counts: map[string]int{"ssh": 1, "git": 1}, aim: map[string]int{"coder": 0, "ssh": 1, "git": 1}}, true},
		{"counts above aim", row{counts: map[string]int{"ssh": 3, "git": 1, "coder": 1}, aim: map[string]int{"coder": 0, "ssh": 1, "git": 1}}, false},
		{"counts without aim", row{counts: map[string]int{"coder": 3}}, true},
	} {
		if got := tc.r.ok(); got != tc.want {
			t.Errorf("%s: ok() = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := spread(ms(30, 10, 20, 40)); got != "25 (10–40)" {
		t.Errorf("spread = %q", got)
	}
}

// The counting wrappers log each start and run the real program with its
// arguments and exit status.
func TestCounter(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"coder", "ssh", "rsync", "git"} {
		script := "#!/bin/sh\necho \"real " + name + " $*\"\n[ \"$1\" = fail ] && exit 3\nexit 0\n"
		if err := os.WriteFile(filepath.Join(real, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b := &bench{tmp: dir, coder: filepath.Join(real, "coder"), environ: []string{"PATH=" + real + ":/usr/bin:/bin", "HOME=" + dir}}
	c, err := b.counter()
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) (string, int) {
		var path string
		for _, e := range c.environ {
			if p, ok := strings.CutPrefix(e, "PATH="); ok {
				path = p
			}
		}
		lp, err := lookPath(name, path)
		if err != nil || !strings.HasPrefix(lp, filepath.Join(dir, "counting-bin")) {
			t.Fatalf("%s on the counting PATH: %q, %v", name, lp, err)
		}
		cmd := exec.Command(lp, args...)
		cmd.Env = c.environ
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	got, err := c.count(func() error {
		if out, code := run("ssh", "-o", "a b", "host"); out != "real ssh -o a b host\n" || code != 0 {
			t.Errorf("ssh wrapper: %q exit %d", out, code)
		}
		if _, code := run("git", "fail"); code != 3 {
			t.Errorf("git wrapper exit %d, want the real exit 3", code)
		}
		run("ssh", "-O", "check")
		run("ssh", "host", "line one\nline two\n") // one start, however many lines
		run("coder", "list")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"ssh": 3, "git": 1, "coder": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("counts = %v, want %v", got, want)
	}
	// A fresh count starts from zero.
	got, err = c.count(func() error { run("rsync", "-a"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"rsync": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("second count = %v, want %v", got, want)
	}
}

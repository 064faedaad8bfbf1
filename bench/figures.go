package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// figWarm: 1 and 1b, a warm no-change run within ssh.persist vs the floor.
func figWarm(b *bench) ([]row, error) {
	var rows []row
	for _, c := range []struct {
		name   string
		lease  func() (*lease, error)
		target float64
	}{
		{"1 warm no-change run vs list+ssh (small repo)", b.small, 0.20},
		{fmt.Sprintf("1b the same in the %d-file repo", *files), b.big, 0.30},
	} {
		l, err := c.lease()
		if err != nil {
			return nil, err
		}
		if _, err := b.warmRun(l, nil, nil)(); err != nil { // the master is up
			return nil, err
		}
		if b.liveMasters() == 0 {
			return nil, fmt.Errorf("no persistent ssh master after a run (ssh.persist 0?): figure %s needs one", c.name)
		}
		logf("%s", c.name)
		fl, cb, err := interleave(*pairs, b.floor(l), b.warmRun(l, nil, nil))
		if err != nil {
			return nil, err
		}
		rows = append(rows, row{name: c.name, floor: fl, crabbox: cb, target: c.target})
	}
	return rows, nil
}

// figExpired: 1c, a warm no-change run right after the lease's master
// ended (ssh.persist elapsed) vs the floor: today's path must not get
// slower.
func figExpired(b *bench) ([]row, error) {
	l, err := b.small()
	if err != nil {
		return nil, err
	}
	name := "1c the same after the ssh master ended (small repo)"
	logf("%s", name)
	fl, cb, err := interleave(*pairs, b.floor(l), b.warmRun(l, nil, b.endMasters))
	if err != nil {
		return nil, err
	}
	return []row{{name: name, floor: fl, crabbox: cb, target: 1.05}}, nil
}

// figSync: 2 and 3, crabbox's sync phase vs a raw rsync of the same
// manifest through the same ProxyCommand (a fresh connection each; the
// sync phase excludes the tunnel, which the lease phase opens). Figure 2
// is a first sync: before each sample (untimed) the destination, the raw
// copy or the lease's workdir, is moved aside, not deleted, and the disk
// flushed (`sync`). Deleting 20,000 files makes the next 20,000 creations
// on ext4 several times slower for a while (its inode allocator skips
// recently deleted inodes: `recently_deleted` in a kernel profile), which
// measured the order of the samples rather than either side.
func figSync(b *bench) ([]row, error) {
	l, err := b.big()
	if err != nil {
		return nil, err
	}
	manifest, err := sh(time.Minute, l.dir, b.environ, "git", "ls-files", "--cached", "--others", "--exclude-standard", "-z")
	if err != nil {
		return nil, err
	}
	raw := b.rawSSH(l.ref)
	rawDir := filepath.Join(b.home, "raw-copy")
	rawRsync := func() (time.Duration, error) {
		rsh := "ssh " + strings.Join(quoteAll(raw), " ")
		t0 := time.Now()
		out, err := shIn(10*time.Minute, l.dir, b.environ, manifest, "rsync", "-a", "--files-from=-", "--from0", "-e", rsh, l.dir+"/", "x:"+rawDir+"/")
		if err != nil {
			return 0, fmt.Errorf("raw rsync: %v\n%s", err, out)
		}
		return time.Since(t0), nil
	}
	syncRun := func(args ...string) ([]byte, error) {
		out, err := sh(10*time.Minute, l.dir, b.environ, b.crabbox, append([]string{"run", "--id", l.id, "--sync-only", "--timing-json"}, args...)...)
		if err != nil {
			return nil, fmt.Errorf("crabbox sync: %v\n%s", err, out)
		}
		return out, nil
	}
	syncPhase := func(args ...string) (time.Duration, error) {
		out, err := syncRun(args...)
		if err != nil {
			return 0, err
		}
		return timingMs(out, "syncMs")
	}
	out, err := syncRun()
	if err != nil {
		return nil, err
	}
	workdir, err := timingString(out, "workdir")
	if err != nil {
		return nil, err
	}
	aside := filepath.Join(b.home, "moved-aside")
	moved := 0
	empty := func(dir string) error {
		moved++
		q := quoteAll([]string{dir, filepath.Join(aside, fmt.Sprint(moved))})
		script := fmt.Sprintf("mkdir -p %s && if [ -e %s ]; then mv -- %s %s; fi && sync", quoteAll([]string{aside})[0], q[0], q[0], q[1])
		if out, err := sh(time.Minute, l.dir, b.environ, "ssh", append(append([]string{}, raw...), "x", script)...); err != nil {
			return fmt.Errorf("moving %s aside: %v\n%s", dir, err, out)
		}
		return nil
	}
	touch := 0
	change := func() error {
		touch++
		return os.WriteFile(filepath.Join(l.dir, "src", "d0", "f0.txt"), []byte(fmt.Sprintf("changed %d\n", touch)), 0o644)
	}

	first := fmt.Sprintf("2 first sync of %d files vs raw rsync", *files)
	logf("%s", first)
	f2a, f2b, err := interleave(max(3, *pairs/2),
		func() (time.Duration, error) {
			if err := empty(rawDir); err != nil {
				return 0, err
			}
			return rawRsync()
		},
		func() (time.Duration, error) {
			if err := empty(workdir); err != nil {
				return 0, err
			}
			out, err := syncRun()
			if err != nil {
				return 0, err
			}
			if skipped, _ := timingField(out, "syncSkipped"); skipped == true {
				return 0, fmt.Errorf("a sync into an emptied workdir was skipped:\n%s", out)
			}
			if phases, err := timingField(out, "syncPhases"); err == nil {
				logf("  crabbox sync phases: %v", phases)
			}
			return timingMs(out, "syncMs")
		})
	if err != nil {
		return nil, err
	}
	one := fmt.Sprintf("3 one-file change in %d files: sync vs raw rsync", *files)
	logf("%s", one)
	f3a, f3b, err := interleave(*pairs,
		func() (time.Duration, error) {
			if err := change(); err != nil {
				return 0, err
			}
			return rawRsync()
		},
		func() (time.Duration, error) {
			if err := change(); err != nil {
				return 0, err
			}
			return syncPhase()
		})
	if err != nil {
		return nil, err
	}
	return []row{
		{name: first, floor: f2a, crabbox: f2b, target: 1.05},
		{name: one, floor: f3a, crabbox: f3b, target: 1.05},
	}, nil
}

// figProcs: 4, the programs one warm no-change run starts, within
// ssh.persist (4) and right after the master ended (4b).
func figProcs(b *bench) ([]row, error) {
	l, err := b.small()
	if err != nil {
		return nil, err
	}
	c, err := b.counter()
	if err != nil {
		return nil, err
	}
	// One run to settle: the wrapped coder is another ProxyCommand, so
	// another master (and known_hosts entry).
	if _, err := c.count(func() error { _, err := b.warmRun(l, c.environ, nil)(); return err }); err != nil {
		return nil, err
	}
	warm, err := c.count(func() error { _, err := b.warmRun(l, c.environ, nil)(); return err })
	if err != nil {
		return nil, err
	}
	if err := b.endMasters(); err != nil {
		return nil, err
	}
	cold, err := c.count(func() error { _, err := b.warmRun(l, c.environ, nil)(); return err })
	if err != nil {
		return nil, err
	}
	aim := map[string]int{"coder": 0, "ssh": 1, "rsync": 0, "git": 1}
	return []row{
		{name: "4 programs per warm run (within ssh.persist)", counts: warm, aim: aim},
		{name: "4b programs per run after the master ended", counts: cold},
	}, nil
}

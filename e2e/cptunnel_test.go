//go:build e2e

package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// payloadTree writes a ~20 MB directory with varied modes and awkward
// names and returns it.
func payloadTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "payload")
	write := func(rel string, data []byte, mode os.FileMode) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		b := make([]byte, 1<<20)
		rand.Read(b)
		write(fmt.Sprintf("blobs/blob-%02d.bin", i), b, 0o644)
	}
	write("bin/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	write("private/key", []byte("not really a key\n"), 0o600)
	write("odd/it's a *star* file", []byte("literal\n"), 0o640)
	write("odd/it's a 1star1 file", []byte("decoy\n"), 0o644)
	write("odd/-dash", []byte("dash\n"), 0o644)
	if err := os.Chmod(filepath.Join(root, "private"), 0o700); err != nil {
		t.Fatal(err)
	}
	return root
}

// treeDigest maps every entry under root to its mode and content hash.
func treeDigest(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out[rel+"/"] = fi.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[rel] = fi.Mode().String() + " " + hex.EncodeToString(sum[:8])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d entries, want %d", what, len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q = %q, want %q", what, k, got[k], v)
		}
	}
}

// freeLocalPort is a 127.0.0.1 port nothing listens on just now.
func freeLocalPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// listeners are the local addresses (hex, as /proc/net/tcp{,6} writes
// them) of the sockets listening on port.
func listeners(t *testing.T, port int) []string {
	t.Helper()
	var out []string
	suffix := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ...; 0A is LISTEN.
			if len(fields) > 3 && fields[3] == "0A" && strings.HasSuffix(fields[1], suffix) {
				out = append(out, fields[1])
			}
		}
		fh.Close()
	}
	return out
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// crabbox cp, crabbox tunnel and run --preflight on a warm lease, for
// every provider.
func TestCpTunnelPreflight(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			w := b.world(t)
			id := b.warm(w, "e2e-cp-"+b.name)
			remote := b.remoteDir(w, id)
			t.Cleanup(func() { w.crabbox("stop", id) })

			// cp: a 20 MB directory to the lease (before any run: the
			// workdir is made) and back, content and modes kept.
			src := payloadTree(t)
			want := treeDigest(t, src)
			start := time.Now()
			w.must("cp", "-r", src, id+":incoming")
			t.Logf("20 MB to the lease in %s", time.Since(start).Round(time.Millisecond))
			sameTree(t, "on the lease", treeDigest(t, filepath.Join(remote, "incoming")), want)
			back := filepath.Join(t.TempDir(), "back")
			w.must("cp", "-r", "--id", id, ":incoming", back)
			sameTree(t, "back here", treeDigest(t, back), want)
			// A directory without -r is a usage error, nothing copied.
			r := w.crabbox("cp", id+":incoming", filepath.Join(t.TempDir(), "x"))
			wantCode(t, r, 2, "cp of a directory without -r")

			// cp from the lease: one file a command wrote, and one whose
			// name holds wildcards (its look-alike stays behind).
			w.must("run", "--id", id, "--", "sh", "-c", "echo made remotely > out.txt")
			got := filepath.Join(t.TempDir(), "got.txt")
			w.must("cp", id+":out.txt", got)
			if b, err := os.ReadFile(got); err != nil || string(b) != "made remotely\n" {
				t.Errorf("copied file %q, %v", b, err)
			}
			starDir := t.TempDir()
			w.must("cp", id+":incoming/odd/it's a *star* file", starDir)
			if ents, _ := os.ReadDir(starDir); len(ents) != 1 || ents[0].Name() != "it's a *star* file" {
				t.Errorf("copied %v, want only the literal name", ents)
			}

			// run --preflight: printed and recorded, the run unaffected.
			r = w.must("run", "--id", id, "--preflight", "--preflight-tools", "python3,crabbox-no-such-tool", "--", "echo", "after preflight")
			if !strings.Contains(r.stderr, "preflight: ") || !strings.Contains(r.stderr, "CPUs") ||
				!strings.Contains(r.stderr, "crabbox-no-such-tool missing") || !strings.Contains(r.stderr, "git ") {
				t.Errorf("no preflight snapshot in stderr:\n%s", r.stderr)
			}
			if strings.TrimSpace(r.stdout) != "after preflight" {
				t.Errorf("stdout %q", r.stdout)
			}
			runID := runID(t, r)
			type preRec struct {
				ID        string `json:"id"`
				Preflight *struct {
					CPUs          int               `json:"cpus"`
					DiskFreeBytes int64             `json:"diskFreeBytes"`
					Tools         map[string]string `json:"tools"`
				} `json:"preflight"`
			}
			recs := decodeJSON[[]preRec](t, w.must("history", "--json", "--lease", id).stdout)
			var rec *preRec
			for i := range recs {
				if recs[i].ID == runID {
					rec = &recs[i]
				}
			}
			if rec == nil || rec.Preflight == nil || rec.Preflight.CPUs < 1 || rec.Preflight.DiskFreeBytes <= 0 ||
				!strings.HasPrefix(rec.Preflight.Tools["python3"], "Python 3") || rec.Preflight.Tools["crabbox-no-such-tool"] != "missing" ||
				!strings.HasPrefix(rec.Preflight.Tools["rsync"], "rsync") {
				t.Errorf("recorded snapshot of %s: %+v", runID, rec)
			}

			// tunnel: an HTTP server on the lease's loopback, started by a
			// run, answers on 127.0.0.1:LP here and on nothing else.
			rp, lp := freeLocalPort(t), freeLocalPort(t)
			server := w.start("", nil, "run", "--id", id, "--", "python3", "-m", "http.server", "--bind", "127.0.0.1", strconv.Itoa(rp))
			waitUntil(t, 2*time.Minute, "the server on the lease", server, func() bool {
				c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(rp), time.Second)
				if err == nil {
					c.Close()
				}
				return err == nil
			})
			tun := w.start("", nil, "tunnel", "--id", id, fmt.Sprintf("%d:%d", lp, rp))
			waitUntil(t, 2*time.Minute, "the tunnel", tun, func() bool {
				return strings.Contains(tun.out.String(), fmt.Sprintf("forwarding 127.0.0.1:%d -> 127.0.0.1:%d", lp, rp))
			})
			if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/out.txt", lp)); err != nil || body != "made remotely\n" {
				t.Errorf("GET through the tunnel: %q, %v", body, err)
			}
			ls := listeners(t, lp)
			if len(ls) == 0 {
				t.Errorf("nothing listens on port %d while the tunnel runs", lp)
			}
			for _, a := range ls {
				if a != fmt.Sprintf("0100007F:%04X", lp) {
					t.Errorf("port %d listens on %s, want 127.0.0.1 only", lp, a)
				}
			}
			addrs, _ := net.InterfaceAddrs()
			for _, a := range addrs {
				ipn, ok := a.(*net.IPNet)
				if !ok || ipn.IP.IsLoopback() {
					continue
				}
				if c, err := net.DialTimeout("tcp", net.JoinHostPort(ipn.IP.String(), strconv.Itoa(lp)), 2*time.Second); err == nil {
					c.Close()
					t.Errorf("the tunnel answers on %s:%d", ipn.IP, lp)
				}
			}
			// The same local port again: refused at once.
			r = w.crabbox("tunnel", "--id", id, fmt.Sprintf("%d:%d", lp, rp))
			wantCode(t, r, 2, "tunnel on a port in use")
			if !strings.Contains(r.stderr, "already in use") {
				t.Errorf("no clear message:\n%s", r.stderr)
			}
			// Ctrl-C ends the tunnel (exit 0) and frees the port.
			tun.cmd.Process.Signal(syscall.SIGINT)
			wantCode(t, tun.wait(time.Minute), 0, "tunnel after Ctrl-C")
			if ls := listeners(t, lp); len(ls) != 0 {
				t.Errorf("port %d still listening after the tunnel ended: %v", lp, ls)
			}
			server.cmd.Process.Signal(syscall.SIGINT)
			wantCode(t, server.wait(time.Minute), 130, "server run after Ctrl-C")
		})
	}
}

// A tunnel nobody uses for longer than the control master's idle time
// (ControlPersist=60) still answers: its hold session keeps the
// connection in use.
func TestTunnelOutlivesIdleMaster(t *testing.T) {
	t.Parallel()
	var ssh backend
	for _, b := range backends {
		if b.name == "ssh" {
			ssh = b
		}
	}
	w := ssh.world(t)
	id := ssh.warm(w, "e2e-tunnel-idle")
	t.Cleanup(func() { w.crabbox("stop", id) })
	w.must("run", "--id", id, "--", "sh", "-c", "echo idle ok > idle.txt")
	rp, lp := freeLocalPort(t), freeLocalPort(t)
	server := w.start("", nil, "run", "--id", id, "--", "python3", "-m", "http.server", "--bind", "127.0.0.1", strconv.Itoa(rp))
	waitUntil(t, 2*time.Minute, "the server on the lease", server, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(rp), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	tun := w.start("", nil, "tunnel", "--id", id, fmt.Sprintf("%d:%d", lp, rp))
	waitUntil(t, 2*time.Minute, "the tunnel", tun, func() bool { return strings.Contains(tun.out.String(), "forwarding 127.0.0.1:") })
	time.Sleep(75 * time.Second) // past ControlPersist, no connection in between
	if tun.exited() {
		t.Fatalf("the tunnel ended while idle:\n%s", tun.errb.String())
	}
	if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/idle.txt", lp)); err != nil || body != "idle ok\n" {
		t.Errorf("GET after %s idle: %q, %v", 75*time.Second, body, err)
	}
	if strings.Contains(tun.errb.String(), "dropped") {
		t.Errorf("the connection dropped while idle:\n%s", tun.errb.String())
	}
	tun.cmd.Process.Signal(syscall.SIGINT)
	wantCode(t, tun.wait(time.Minute), 0, "tunnel after Ctrl-C")
	server.cmd.Process.Signal(syscall.SIGINT)
	wantCode(t, server.wait(time.Minute), 130, "server run after Ctrl-C")
}

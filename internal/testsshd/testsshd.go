// Package testsshd runs a private OpenSSH server on 127.0.0.1 for tests:
// temporary host and client keys, the current user, no PAM, agent and X11
// forwarding off. Only tests import it.
package testsshd

import (
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds waiting for sshd to listen; stopTimeout for it to exit.
const (
	startTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
)

// Server is one private sshd. Its fields are fixed for its lifetime, except
// HostPub, which Restart with a new host key changes.
type Server struct {
	Addr    string // 127.0.0.1:<port>
	Host    string // 127.0.0.1
	Port    int
	Key     string // client private key file (its public half is authorized)
	HostPub string // host public key line ("ssh-ed25519 AAAA... comment")
	HostKey string // host private key file
	User    string // the user sshd lets in (the current user)
	Dir     string // temp dir holding keys, config and logs

	bin string
	cfg string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func (s *Server) logPath() string { return filepath.Join(s.Dir, "sshd.log") }

// Logs is what sshd logged so far.
func (s *Server) Logs() string {
	b, _ := os.ReadFile(s.logPath())
	return string(b)
}

// Find returns the sshd binary or fails the test.
func Find(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("sshd"); err == nil {
		return p
	}
	t.Fatal("sshd not found: the real-OpenSSH tests need openssh-server (Debian: apt-get install -y openssh-server)")
	return ""
}

// Keygen writes a new passphrase-less ed25519 key pair to path and path.pub.
func Keygen(t testing.TB, path string) {
	t.Helper()
	_ = os.Remove(path)
	_ = os.Remove(path + ".pub")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "crabbox-test", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}

// Start starts sshd -D on a free 127.0.0.1 port and stops exactly that
// process (by its PID) when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Find(t)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd running as root insists on its privilege-separation dir.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatalf("sshd privilege separation dir: %v", err)
		}
	}
	dir := t.TempDir()
	s := &Server{Dir: dir, Host: "127.0.0.1", User: u.Username, bin: bin,
		HostKey: filepath.Join(dir, "host_ed25519"), Key: filepath.Join(dir, "id_ed25519")}
	Keygen(t, s.HostKey)
	Keygen(t, s.Key)
	pub, err := os.ReadFile(s.Key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(auth, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	s.cfg = filepath.Join(dir, "sshd_config")
	conf := strings.Join([]string{
		"HostKey " + s.HostKey,
		"AuthorizedKeysFile " + auth,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"PermitRootLogin yes",
		"StrictModes no",
		"UsePAM no",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AllowAgentForwarding no",
		"X11Forwarding no",
		"PrintMotd no",
		"PrintLastLog no",
		"LogLevel ERROR",
		"",
	}, "\n")
	if err := os.WriteFile(s.cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.Logs())
		}
	})
	s.start(t)
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	hostPub, err := os.ReadFile(s.HostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	s.HostPub = strings.TrimSpace(string(hostPub))
	cmd := exec.Command(s.bin, "-D", "-e", "-f", s.cfg, "-p", strconv.Itoa(s.Port), "-o", "ListenAddress=127.0.0.1")
	// A file, not a pipe: the per-connection sshd children inherit it, and
	// with a pipe Wait would wait for them (a client still connected)
	// rather than for the sshd this Server stops.
	logf, err := os.OpenFile(s.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("sshd exited early:\n%s", s.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd not listening on %s after %s: %v\n%s", s.Addr, startTimeout, err, s.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Running reports whether the sshd this Server started is still running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// PID is the running sshd's process ID (0 when stopped).
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop kills the sshd this Server started (by its PID) and waits for it.
// Connections it already accepted are served by their own children, which
// exit with their clients.
func (s *Server) Stop(t testing.TB) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill() // only the sshd we started
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		t.Errorf("sshd pid %d did not exit", cmd.Process.Pid)
	}
}

// Restart stops sshd and starts it again on the same port; with newHostKey
// it first replaces the host key (as a reinstalled host would).
func (s *Server) Restart(t testing.TB, newHostKey bool) {
	t.Helper()
	s.Stop(t)
	if newHostKey {
		Keygen(t, s.HostKey)
	}
	s.start(t)
}

// Fingerprint is the SHA256 fingerprint of the current host key
// ("SHA256:...").
func (s *Server) Fingerprint(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", s.HostKey+".pub").Output()
	if err != nil {
		t.Fatalf("ssh-keygen -l: %v", err)
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "SHA256:") {
			return f
		}
	}
	t.Fatalf("no fingerprint in %q", out)
	return ""
}

// ClientArgs are ssh options for tests that talk to the server directly:
// -F none (ignore the user's and the system ssh config) and the client key.
func (s *Server) ClientArgs() []string {
	return []string{"-F", "none", "-i", s.Key, "-o", "IdentitiesOnly=yes"}
}

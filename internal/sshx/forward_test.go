package sshx

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/execx"
	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

func TestLocalForwardSpec(t *testing.T) {
	if got := (LocalForward{Local: 8080, Remote: 3000}).Spec(); got != "127.0.0.1:8080:127.0.0.1:3000" {
		t.Errorf("Spec = %q", got)
	}
}

// freePort is a 127.0.0.1 port nothing listens on (just now).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// A forward on the master reaches a server on the target's loopback, and
// is gone after CancelForward; a taken local port is refused (exit 2).
func TestRealOpenSSHForward(t *testing.T) {
	d := startSSHD(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := t.TempDir()
	tg := d.proxyTarget(t, fmt.Sprintf("crabbox-fwd-test-%d", time.Now().UnixNano()), filepath.Join(base, "proxy.log"), filepath.Join(base, "kh", "known_hosts"))
	s := NewSession(execx.OS{}, tg, SessionOptions{TempDir: base, ExtraArgs: d.extraArgs()})
	defer s.Close()

	// The "remote" server: on this machine's loopback, as the target is.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "through the tunnel") }),
		ReadHeaderTimeout: 5 * time.Second}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	f := LocalForward{Local: freePort(t), Remote: l.Addr().(*net.TCPAddr).Port}

	if err := s.Forward(ctx, f); err != nil {
		t.Fatalf("Forward: %v", err)
	}
	if !s.alive(ctx) {
		t.Error("alive = false with the master up")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", f.Local))
	if err != nil {
		t.Fatalf("GET through the forward: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "through the tunnel" {
		t.Errorf("body %q", body)
	}

	// The same local port for another remote port: refused, the first forward unharmed.
	err = s.Forward(ctx, LocalForward{Local: f.Local, Remote: f.Remote + 1})
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), fmt.Sprint(f.Local)) {
		t.Errorf("second Forward on port %d = %v, want exit 2 naming the port", f.Local, err)
	}

	if err := s.CancelForward(ctx, f); err != nil {
		t.Fatalf("CancelForward: %v", err)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.Local), 2*time.Second); err == nil {
		c.Close()
		t.Error("the local port still answers after CancelForward")
	}
}

package portfwd

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
	"github.com/crabbox-dev/crabbox/internal/sshx"
)

func TestParseSpecs(t *testing.T) {
	got, err := ParseSpecs([]string{"8080", "9000:3000", "65535:1"})
	want := []sshx.LocalForward{{Local: 8080, Remote: 8080}, {Local: 9000, Remote: 3000}, {Local: 65535, Remote: 1}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseSpecs = %v, %v; want %v", got, err, want)
	}
	for _, bad := range [][]string{
		nil, {"0"}, {"65536"}, {"80:"}, {":80"}, {"a:80"}, {"+80"}, {"0.0.0.0:80:80"}, {"127.0.0.1:80"}, {"8080", "8080:81"},
	} {
		if _, err := ParseSpecs(bad); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("ParseSpecs(%q) = %v, want a usage error", bad, err)
		}
	}
}

func TestCheckFree(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	err = CheckFree(p)
	if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "in use") {
		t.Errorf("CheckFree(taken %d) = %v, want exit 2 'in use'", p, err)
	}
	l.Close()
	if err := CheckFree(p); err != nil {
		t.Errorf("CheckFree(free %d) = %v", p, err)
	}
}

// fakeFwd records forwards and answers Alive from a script.
type fakeFwd struct {
	mu       sync.Mutex
	calls    []string
	alive    []bool // Alive answers in order; true once exhausted
	failNext error  // the next Forward's error
}

func (f *fakeFwd) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeFwd) Forward(ctx context.Context, l sshx.LocalForward) error {
	f.record("forward " + l.Spec())
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.failNext
	f.failNext = nil
	return err
}

func (f *fakeFwd) CancelForward(ctx context.Context, l sshx.LocalForward) error {
	f.record("cancel " + l.Spec())
	return nil
}

func (f *fakeFwd) Alive(context.Context) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.alive) == 0 {
		return true
	}
	a := f.alive[0]
	f.alive = f.alive[1:]
	return a
}

func (f *fakeFwd) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// wait receives from c or fails the test (a bound, not a timing check).
func wait[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

// The tunnel sets every forward up, marks the lease used at the start
// and on each tick, sets a dropped connection up again, and removes the
// forwards when its context ends.
func TestRunLifecycle(t *testing.T) {
	fw := &fakeFwd{alive: []bool{true, false}}
	fa, fb := sshx.LocalForward{Local: freePort(t), Remote: 80}, sshx.LocalForward{Local: freePort(t), Remote: 81}
	tick := make(chan time.Time)
	touched, ready, restored := make(chan struct{}, 10), make(chan []sshx.LocalForward, 1), make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, fw, Options{Forwards: []sshx.LocalForward{fa, fb}, Tick: tick,
			Touch:    func() error { touched <- struct{}{}; return nil },
			Ready:    func(up []sshx.LocalForward) { ready <- up },
			Restored: func() { restored <- struct{}{} }})
	}()
	if up := wait(t, ready, "ready"); len(up) != 2 {
		t.Fatalf("ready with %v", up)
	}
	wait(t, touched, "touch at the start")
	tick <- time.Now() // alive: only a touch
	wait(t, touched, "touch on the first tick")
	tick <- time.Now() // dropped: both forwards again
	wait(t, touched, "touch on the second tick")
	wait(t, restored, "restore")
	cancel()
	if err := wait(t, done, "end"); err != nil {
		t.Fatalf("Run = %v, want nil after the context ended", err)
	}
	want := []string{"forward " + fa.Spec(), "forward " + fb.Spec(), "forward " + fa.Spec(), "forward " + fb.Spec(), "cancel " + fa.Spec(), "cancel " + fb.Spec()}
	if got := fw.got(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls %q\nwant %q", got, want)
	}
}

// A connection that cannot be set up again ends the tunnel with exit 7;
// a taken local port ends it with exit 2 before any forward.
func TestRunFailures(t *testing.T) {
	fw := &fakeFwd{alive: []bool{false}}
	tick := make(chan time.Time, 1)
	tick <- time.Now()
	f := sshx.LocalForward{Local: freePort(t), Remote: 80}
	err := Run(context.Background(), fw, Options{Forwards: []sshx.LocalForward{f}, Tick: tick,
		Ready: func([]sshx.LocalForward) { fw.failNext = errors.New("ssh: connection refused") }})
	if exitcode.Code(err) != exitcode.Transport {
		t.Errorf("Run after a lost connection = %v, want exit 7", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fw = &fakeFwd{}
	taken := sshx.LocalForward{Local: l.Addr().(*net.TCPAddr).Port, Remote: 80}
	err = Run(context.Background(), fw, Options{Forwards: []sshx.LocalForward{{Local: freePort(t), Remote: 1}, taken}})
	if exitcode.Code(err) != exitcode.Usage {
		t.Errorf("Run with a taken port = %v, want exit 2", err)
	}
	if calls := fw.got(); len(calls) != 0 {
		t.Errorf("forwards set up despite a taken port: %q", calls)
	}
}

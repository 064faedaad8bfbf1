package portfwd

import (
	"context"
	"errors"
	"io"
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

// fakeFwd records forwards; its hold session lasts until the context
// ends or the test drops the connection.
type fakeFwd struct {
	mu       sync.Mutex
	calls    []string
	failNext error // the next Forward's error
	holds    chan struct{}
	drop     chan error // a value ends the current hold with it
}

func newFake() *fakeFwd { return &fakeFwd{holds: make(chan struct{}, 10), drop: make(chan error)} }

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

func (f *fakeFwd) Run(ctx context.Context, remote string, stdin io.Reader, _, _ io.Writer) (int, error) {
	f.record("run " + remote)
	f.holds <- struct{}{}
	// The stdin stays open while the hold runs, and closes at the end.
	eof := make(chan struct{})
	go func() { io.Copy(io.Discard, stdin); close(eof) }()
	select {
	case <-ctx.Done():
		<-eof
		return -1, ctx.Err()
	case err := <-f.drop:
		if err == nil {
			return 0, nil
		}
		return 255, err
	}
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

var errDropped = exitcode.Errorf(exitcode.Transport, "ssh transport to h failed: Connection reset")

// The tunnel sets every forward up, holds the connection, marks the
// lease used at the start and on each tick, sets a dropped connection
// up again, and removes the forwards when its context ends.
func TestRunLifecycle(t *testing.T) {
	fw := newFake()
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
	wait(t, fw.holds, "the hold")
	tick <- time.Now()
	wait(t, touched, "touch on a tick")
	fw.drop <- errDropped // the connection drops: both forwards again, a new hold
	wait(t, restored, "restore")
	wait(t, fw.holds, "the new hold")
	tick <- time.Now()
	fw.drop <- errDropped // a drop after a tick is set up again too
	wait(t, restored, "second restore")
	wait(t, fw.holds, "the third hold")
	cancel()
	if err := wait(t, done, "end"); err != nil {
		t.Fatalf("Run = %v, want nil after the context ended", err)
	}
	hold := "run " + HoldCommand
	want := []string{"forward " + fa.Spec(), "forward " + fb.Spec(), hold,
		"forward " + fa.Spec(), "forward " + fb.Spec(), hold,
		"forward " + fa.Spec(), "forward " + fb.Spec(), hold,
		"cancel " + fa.Spec(), "cancel " + fb.Spec()}
	if got := fw.got(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls %q\nwant %q", got, want)
	}
}

// Exit 7: a connection that cannot be set up again, one that drops twice
// between ticks, a hold the machine ended. Exit 2: a taken local port,
// before any forward.
func TestRunFailures(t *testing.T) {
	run := func(fw *fakeFwd, during func()) error {
		done := make(chan error, 1)
		go func() {
			done <- Run(context.Background(), fw, Options{Forwards: []sshx.LocalForward{{Local: freePort(t), Remote: 80}}, Tick: make(chan time.Time)})
		}()
		during()
		return wait(t, done, "end")
	}
	fw := newFake()
	err := run(fw, func() {
		wait(t, fw.holds, "hold")
		fw.mu.Lock()
		fw.failNext = errors.New("ssh: connection refused")
		fw.mu.Unlock()
		fw.drop <- errDropped
	})
	if exitcode.Code(err) != exitcode.Transport || !strings.Contains(err.Error(), "could not be set up again") {
		t.Errorf("Run after a lost connection = %v, want exit 7", err)
	}
	fw = newFake()
	err = run(fw, func() {
		wait(t, fw.holds, "hold")
		fw.drop <- errDropped
		wait(t, fw.holds, "second hold")
		fw.drop <- errDropped
	})
	if exitcode.Code(err) != exitcode.Transport || !strings.Contains(err.Error(), "dropped again") {
		t.Errorf("Run after two drops = %v, want exit 7", err)
	}
	fw = newFake()
	err = run(fw, func() {
		wait(t, fw.holds, "hold")
		fw.drop <- nil // the hold ended with the connection up
	})
	if exitcode.Code(err) != exitcode.Transport || !strings.Contains(err.Error(), "kept open") {
		t.Errorf("Run after the hold ended = %v, want exit 7", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fw = newFake()
	taken := sshx.LocalForward{Local: l.Addr().(*net.TCPAddr).Port, Remote: 80}
	err = Run(context.Background(), fw, Options{Forwards: []sshx.LocalForward{{Local: freePort(t), Remote: 1}, taken}})
	if exitcode.Code(err) != exitcode.Usage {
		t.Errorf("Run with a taken port = %v, want exit 2", err)
	}
	if calls := fw.got(); len(calls) != 0 {
		t.Errorf("forwards set up despite a taken port: %q", calls)
	}
}

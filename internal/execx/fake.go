package execx

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Call is one invocation a Fake saw.
type Call struct {
	Name  string
	Args  []string
	Env   []string
	Dir   string
	Stdin string
}

// Argv returns "name arg1 arg2 ..." for assertions.
func (c Call) Argv() string { return strings.TrimSpace(c.Name + " " + strings.Join(c.Args, " ")) }

// Reply is a scripted outcome. A non-zero ExitCode makes Run return an
// *ExitError; Err, when set, is returned as is.
type Reply struct {
	Stdout   string
	Stderr   string
	ExitCode int
	Err      error
	// Do, when set, runs before the reply is returned (e.g. to mutate state
	// the next reply depends on).
	Do func(Call)
}

// Fake is a Runner that records calls and returns scripted replies.
//
// Replies are matched by argv prefix ("coder list -o json"): the longest
// matching prefix wins; each prefix holds a queue whose last entry repeats.
// A call with no matching reply returns an error naming it, so a test never
// silently gets empty output.
type Fake struct {
	mu      sync.Mutex
	calls   []Call
	replies map[string][]Reply
}

// NewFake returns an empty Fake.
func NewFake() *Fake { return &Fake{replies: map[string][]Reply{}} }

// On queues replies for calls whose argv starts with prefix.
func (f *Fake) On(prefix string, replies ...Reply) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[prefix] = append(f.replies[prefix], replies...)
	return f
}

// Calls returns a copy of the recorded calls.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Argvs returns the recorded calls as "name args..." strings.
func (f *Fake) Argvs() []string {
	var out []string
	for _, c := range f.Calls() {
		out = append(out, c.Argv())
	}
	return out
}

// Run records c and returns the scripted reply.
func (f *Fake) Run(ctx context.Context, c Cmd) (Result, error) {
	call := Call{Name: c.Name, Args: append([]string(nil), c.Args...), Env: append([]string(nil), c.Env...), Dir: c.Dir}
	if c.Stdin != nil {
		b, _ := io.ReadAll(c.Stdin)
		call.Stdin = string(b)
	}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	argv := call.Argv()
	best := ""
	found := false
	for p := range f.replies {
		if (argv == p || strings.HasPrefix(argv, p+" ")) && (!found || len(p) > len(best)) {
			best, found = p, true
		}
	}
	if !found {
		f.mu.Unlock()
		return Result{ExitCode: 127}, fmt.Errorf("execx.Fake: unexpected call: %s", argv)
	}
	q := f.replies[best]
	r := q[0]
	if len(q) > 1 {
		f.replies[best] = q[1:]
	}
	f.mu.Unlock()
	if r.Do != nil {
		r.Do(call)
	}
	if c.Stdout != nil {
		io.WriteString(c.Stdout, r.Stdout)
	}
	if c.Stderr != nil {
		io.WriteString(c.Stderr, r.Stderr)
	}
	res := Result{Stdout: []byte(r.Stdout), Stderr: []byte(r.Stderr), ExitCode: r.ExitCode}
	if r.Err != nil {
		return res, r.Err
	}
	if r.ExitCode != 0 {
		return res, &ExitError{Cmd: argv, Code: r.ExitCode, Output: res.Combined()}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

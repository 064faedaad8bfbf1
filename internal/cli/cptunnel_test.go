package cli

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cp and tunnel refuse bad command lines before any lease is looked up
// (the fake runner sees nothing but git).
func TestCpAndTunnelUsage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"cp", "a", "b"}, "no remote operand"},
		{[]string{"cp", "blue:a", "red:b"}, "two leases"},
		{[]string{"cp", "a", ":b"}, "names no lease"},
		{[]string{"tunnel", "8080"}, "which lease"},
		{[]string{"tunnel", "--id", "blue"}, "which ports"},
		{[]string{"tunnel", "--id", "blue", "0.0.0.0:8080:80"}, "not LOCALPORT"},
		{[]string{"tunnel", "--id", "blue", taken + ":80"}, "already in use"},
	} {
		te := newTestEnv(t)
		code, _, errOut := te.run(t, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("crabbox %s: exit %d, stderr %q; want exit 2 with %q", strings.Join(tt.args, " "), code, errOut, tt.want)
		}
		for _, a := range te.fake.Argvs() {
			if !strings.HasPrefix(a, "git ") {
				t.Errorf("crabbox %s ran %q", strings.Join(tt.args, " "), a)
			}
		}
	}
}

// rsync's progress shows only once a copy has run past the delay; a shown
// line is ended.
func TestDelayedWriter(t *testing.T) {
	var quick, slow strings.Builder
	q := newDelayedWriter(&quick, time.Hour)
	q.Write([]byte("\r 10%"))
	q.finish()
	s := newDelayedWriter(&slow, 0)
	s.Write([]byte("\r 10%"))
	s.Write([]byte("\r100%"))
	s.finish()
	if quick.String() != "" || slow.String() != "\r 10%\r100%\n" {
		t.Errorf("quick %q, slow %q", quick.String(), slow.String())
	}
}

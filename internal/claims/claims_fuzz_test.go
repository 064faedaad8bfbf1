package claims

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

// FuzzClaimFile: a fuzzed claim file never panics Get, List or the
// claim's own methods; an unusable file is an exit-2 refusal for Get and a
// problem (never an error, never a claim) for List; a usable file survives
// an Update round trip.
func FuzzClaimFile(f *testing.F) {
	const id = "cbx_0123456789ab"
	good, _ := json.Marshal(Claim{LeaseID: id, Revision: "r1", Slug: "blue-crab", Provider: "coder",
		CloudID: "alice/crabbox-blue-crab", WorkspaceID: "ws1", CoderURL: "https://coder.example.com",
		RepoRoot: "/repo", ClaimedAt: "2026-08-20T09:00:00Z", LastUsedAt: "2026-08-20T09:00:00Z",
		IdleTimeoutSeconds: 1800, TargetOS: "linux", SSHHost: "h", SSHPort: 22, Labels: map[string]string{"a": "b"}})
	for _, s := range []string{
		string(good),
		"",
		"   \n",
		"null",
		"[]",
		`"str"`,
		`{}`,
		`{"leaseID":"cbx_0123456789ab"}`,
		`{"leaseID":"cbx_ffffffffffff"}`,
		`{"leaseID":"cbx_0123456789ab","claimedAt":"yesterday"}`,
		`{"leaseID":"cbx_0123456789ab","lastUsedAt":"0001-01-01T00:00:00Z","idleTimeoutSeconds":9223372036854775807}`,
		`{"leaseID":"cbx_0123456789ab","lastUsedAt":"9999-12-31T23:59:59-23:59","idleTimeoutSeconds":1}`,
		`{"leaseID":"cbx_0123456789ab","sshPort":-1}`,
		`{"leaseID":"cbx_0123456789ab","sshPort":1e400}`,
		`{"leaseID":"cbx_0123456789ab","labels":{"a":1}}`,
		`{"leaseID":"cbx_0123456789ab","slug":"$(touch x)\n../..","repoRoot":"\u0000"}`,
		`{"leaseID":"cbx_0123456789ab","leaseID":"cbx_0123456789ab"}`,
		"{\"leaseID\":\"cbx_0123456789ab\",\"slug\":\"\xff\"}",
		`{"leaseID":"cbx_0123456789ab"} trailing`,
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data string) {
		state := filepath.Join(dir, "state")
		os.RemoveAll(state)
		s := New(state)
		if err := os.MkdirAll(s.ClaimsDir(), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.Path(id), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := s.Get(id)
		list, problems, lerr := s.List()
		if lerr != nil {
			t.Fatalf("List: %v", lerr)
		}
		out := ListOutput{Problems: problems}
		for _, c := range list {
			out.Claims = append(out.Claims, c.View())
		}
		if _, err := json.Marshal(out); err != nil {
			t.Fatalf("marshal list output: %v", err)
		}
		if err != nil {
			if code := exitcode.Code(err); code != exitcode.Usage {
				t.Fatalf("Get error %v has exit %d, want 2", err, code)
			}
			if len(list) != 0 || len(problems) != 1 {
				t.Fatalf("unusable claim: list %d problems %d", len(list), len(problems))
			}
			if strings.Contains(problems[0].Message, data) && len(data) > 80 {
				t.Fatalf("problem message repeats the whole file")
			}
			return
		}
		if c == nil || c.LeaseID != id {
			t.Fatalf("Get = %+v", c)
		}
		if len(list) != 1 || len(problems) != 0 {
			t.Fatalf("usable claim: list %d problems %d", len(list), len(problems))
		}
		_ = c.Expired(time.Now())
		_ = c.View()
		// A usable claim re-encodes to a claim that decodes the same (the
		// Update path, without its fsyncs).
		b, err := encodeClaim(c)
		if err != nil {
			t.Fatalf("encode a usable claim: %v", err)
		}
		c2, p := decodeClaim("x.json", id, b)
		if p != nil || c2 == nil || c2.RepoRoot != c.RepoRoot || c2.Slug != c.Slug || len(c2.Labels) != len(c.Labels) {
			t.Fatalf("re-decode: %+v %+v", c2, p)
		}
	})
}

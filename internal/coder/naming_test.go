package coder

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/crabbox-dev/crabbox/internal/exitcode"
)

const testLease = "cbx_4f1c2a9be310"

func sha6(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])[:6]
}

func TestCollisionSlug(t *testing.T) {
	h := sha6(testLease)
	if got := CollisionSlug("Blue Lobster", testLease); got != "blue-lobster-"+h {
		t.Errorf("got %q", got)
	}
	if got := CollisionSlug("!!!", testLease); got != h {
		t.Errorf("empty slug: got %q", got)
	}
	long := strings.Repeat("ab-", 20) // 60 chars
	got := CollisionSlug(long, testLease)
	if len(got) > 41 || !strings.HasSuffix(got, "-"+h) || strings.Contains(got, "--") {
		t.Errorf("long slug: got %q (%d)", got, len(got))
	}
	// Cut lands on a '-': trimmed.
	s := strings.Repeat("a", 33) + "-bbbb"
	if got := CollisionSlug(s, testLease); got != strings.Repeat("a", 33)+"-"+h {
		t.Errorf("cut on dash: got %q", got)
	}
}

func TestWorkspaceNameSpecExamples(t *testing.T) {
	cases := []struct{ prefix, base, want string }{
		{"crabbox-", "Blue Workspace", "crabbox-blue-workspace"},
		{"cbx-", "new", "cbx-cbx-new"},
		{"cbx", "new", "cbx-cbx-new"},
		{"crabbox-", "create", "crabbox-cbx-create"},
		{"", "new", "cbx-new"},
		{"", "blue", "blue"},
		{"team--dev-", "blue", "team-dev-blue"},
		{"Crabbox-", "blue", "crabbox-blue"},
	}
	for _, tc := range cases {
		got, err := WorkspaceName(tc.prefix, tc.base, testLease)
		if err != nil || got != tc.want {
			t.Errorf("WorkspaceName(%q, %q) = %q, %v; want %q", tc.prefix, tc.base, got, err, tc.want)
		}
	}
	// Empty base falls back to the lease ID.
	got, err := WorkspaceName("crabbox-", "!!!", testLease)
	if err != nil || got != "crabbox-cbx-4f1c2a9be310" {
		t.Errorf("fallback = %q, %v", got, err)
	}
	if _, err := WorkspaceName("crabbox-", "", ""); exitcode.Code(err) != exitcode.Usage {
		t.Errorf("no base, no lease: %v", err)
	}
}

func TestWorkspaceNameLongSlug(t *testing.T) {
	slug := "this-name-is-much-longer-than-allowed-xyz1"
	if len(slug) != 42 {
		t.Fatalf("slug is %d chars", len(slug))
	}
	re := regexp.MustCompile(`^crabbox-this-name-is-much-[0-9a-f]{6}$`)
	got, err := WorkspaceName("crabbox-", slug, testLease)
	if err != nil || !re.MatchString(got) || len(got) != 32 {
		t.Fatalf("WorkspaceName = %q (%d), %v", got, len(got), err)
	}
	if got != "crabbox-this-name-is-much-"+sha6(slug) {
		t.Errorf("hash must be taken over the whole base: %q", got)
	}
	// Via the collision slug too.
	got, err = UniqueWorkspaceName("crabbox-", slug, testLease)
	if err != nil || !re.MatchString(got) || len(got) != 32 {
		t.Errorf("UniqueWorkspaceName = %q (%d), %v", got, len(got), err)
	}
	// Differing only after the cut → different names.
	a, _ := WorkspaceName("crabbox-", "this-name-is-much-longer-than-allowed-aaaa", testLease)
	b, _ := WorkspaceName("crabbox-", "this-name-is-much-longer-than-allowed-bbbb", testLease)
	if a == b {
		t.Errorf("names collide: %q", a)
	}
	// The same long slug for two leases → different names (the lease hash
	// survives the second cut because it is hashed in, not cut off).
	a, _ = UniqueWorkspaceName("crabbox-", slug, testLease)
	b, _ = UniqueWorkspaceName("crabbox-", slug, "cbx_000000000001")
	if a == b {
		t.Errorf("unique names collide: %q", a)
	}
}

func TestUniqueWorkspaceName(t *testing.T) {
	got, err := UniqueWorkspaceName("crabbox-", "blue", testLease)
	if err != nil || got != "crabbox-blue-"+sha6(testLease) {
		t.Errorf("got %q, %v", got, err)
	}
	other, _ := UniqueWorkspaceName("crabbox-", "blue", "cbx_000000000001")
	if other == got {
		t.Errorf("two leases with slug blue share %q", got)
	}
}

var validName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// Every prefix length must give a valid name or a clean exit-2 error, never
// a panic (upstream panics when the prefix leaves exactly 7 chars).
func TestWorkspaceNameAllPrefixLengths(t *testing.T) {
	slugs := []string{
		"this-name-is-much-longer-than-allowed-by-coder-for-sure",
		"blue",
		"new",
		"a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t",
	}
	for n := 1; n <= 40; n++ {
		// Prefix of n chars ending in '-' (n == 1 is just "-", i.e. none).
		prefix := strings.Repeat("p", n-1) + "-"
		for _, slug := range slugs {
			for _, unique := range []bool{false, true} {
				var got string
				var err error
				if unique {
					got, err = UniqueWorkspaceName(prefix, slug, testLease)
				} else {
					got, err = WorkspaceName(prefix, slug, testLease)
				}
				if n > 32 || n == 32 {
					// maxBase = 32 - n < 1
					if exitcode.Code(err) != exitcode.Usage || !strings.Contains(err.Error(), "leaves no room for a workspace name") {
						t.Errorf("prefix len %d: got %q, %v; want exit 2", n, got, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("prefix len %d slug %q: %v", n, slug, err)
					continue
				}
				if len(got) < 1 || len(got) > 32 || !validName.MatchString(got) || strings.Contains(got, "--") {
					t.Errorf("prefix len %d slug %q: invalid name %q", n, slug, got)
				}
				if n > 1 && !strings.HasPrefix(got, prefix) {
					t.Errorf("prefix len %d: %q lost its prefix", n, got)
				}
			}
		}
	}
}

func TestWorkspaceNameMaxBaseSeven(t *testing.T) {
	prefix := strings.Repeat("p", 24) + "-" // 25 chars → maxBase 7
	got, err := WorkspaceName(prefix, "longer-than-seven", testLease)
	if err != nil || got != prefix+sha6("longer-than-seven") {
		t.Errorf("got %q, %v", got, err)
	}
	prefix = strings.Repeat("p", 28) + "-" // maxBase 3
	got, err = WorkspaceName(prefix, "longer", testLease)
	if err != nil || got != prefix+sha6("longer")[:3] {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestWorkspaceNameBadPrefix(t *testing.T) {
	for _, p := range []string{"crab box-", "crab_box-", "crabbox/"} {
		if _, err := WorkspaceName(p, "blue", testLease); exitcode.Code(err) != exitcode.Usage {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
	p := strings.Repeat("x", 31) + "-"
	_, err := WorkspaceName(p, "blue", testLease)
	if want := fmt.Sprintf("coder.workspacePrefix %q leaves no room for a workspace name", p); err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestValidateNewName(t *testing.T) {
	name, _ := UniqueWorkspaceName("crabbox-", "blue", testLease)
	inv := []Workspace{{Name: "crabbox-blue"}, {Name: "personal", Owner: "alice"}}
	if err := ValidateNewName(name, inv); err != nil {
		t.Errorf("unexpected %v", err)
	}
	inv = append(inv, Workspace{Name: strings.ToUpper(name), Owner: "bob"})
	err := ValidateNewName(name, inv)
	if err == nil || exitcode.Code(err) != exitcode.NotFound || !strings.Contains(err.Error(), "collides") {
		t.Fatalf("got %v", err)
	}
	if want := fmt.Sprintf("coder workspace name %q collides with existing inventory", name); err.Error() != want {
		t.Errorf("got %q", err)
	}
}

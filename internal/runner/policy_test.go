package runner

import "testing"

func TestShouldRelease(t *testing.T) {
	for _, tc := range []struct {
		p      Policy
		failed bool
		want   bool
	}{
		{Policy{Fresh: true}, false, true},
		{Policy{Fresh: true}, true, true},
		{Policy{Fresh: false}, false, false},
		{Policy{Fresh: true, Keep: true}, false, false},
		{Policy{Fresh: true, KeepOnFailure: true}, true, false},
		{Policy{Fresh: true, KeepOnFailure: true}, false, true},
		{Policy{StopAfter: "always"}, false, true},
		{Policy{StopAfter: "always", Keep: true}, true, true},
		{Policy{StopAfter: "never", Fresh: true}, false, false},
		{Policy{StopAfter: "success"}, false, true},
		{Policy{StopAfter: "success", Fresh: true}, true, false},
		{Policy{StopAfter: "failure"}, true, true},
		{Policy{StopAfter: "failure", Fresh: true}, false, false},
	} {
		if got := ShouldRelease(tc.p, tc.failed); got != tc.want {
			t.Errorf("ShouldRelease(%+v, failed=%v) = %v, want %v", tc.p, tc.failed, got, tc.want)
		}
	}
}

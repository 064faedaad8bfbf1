package cli

import (
	"testing"
	"time"
)

func TestParseAge(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: "7d", want: 7 * 24 * time.Hour},
		{in: "0s", want: 0},
		{in: "36h", want: 36 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: " 2d ", want: 48 * time.Hour},
		{in: "", bad: true},
		{in: "d", bad: true},
		{in: "-1d", bad: true},
		{in: "-5m", bad: true},
		{in: "7days", bad: true},
		{in: "soon", bad: true},
	}
	for _, tc := range cases {
		got, err := parseAge(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseAge(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

package runq

import (
	"errors"
	"slices"
	"testing"
)

func TestPinCPUs(t *testing.T) {
	two := []int{0, 1}
	tests := []struct {
		mode      string
		processes int
		allowed   []int
		want      []int
		err       bool
	}{
		{"auto", 2, two, []int{0, 1}, false},
		{"", 2, two, []int{0, 1}, false},
		{"auto", 1, two, nil, false}, // one process of two CPUs: others may share the machine
		{"auto", 3, two, nil, false},
		{"auto", 1, []int{3}, nil, false},
		{"auto", 2, nil, nil, false}, // unknown CPU set
		{"on", 1, two, []int{0, 1}, false},
		{"on", 4, []int{2, 5}, []int{2, 5}, false},
		{"off", 2, two, nil, false},
		{"1", 2, two, []int{1}, false},
		{"0-1", 1, two, []int{0, 1}, false},
		{"4-6,1,5", 2, []int{1, 4, 5, 6}, []int{4, 5, 6, 1}, false},
		{"2", 2, two, nil, true}, // not allowed here
		{"x", 2, two, nil, true},
		{"3-1", 2, []int{1, 2, 3}, nil, true},
		{"1,,2", 2, []int{1, 2}, nil, true},
		{"-1", 2, two, nil, true},
	}
	for _, tc := range tests {
		got, err := PinCPUs(tc.mode, tc.processes, tc.allowed)
		if tc.err {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("PinCPUs(%q, %d, %v) error = %v, want ErrInvalid", tc.mode, tc.processes, tc.allowed, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("PinCPUs(%q, %d, %v) = %v, %v; want %v", tc.mode, tc.processes, tc.allowed, got, err, tc.want)
		}
	}
}

func TestFormatCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{
		{[]int{0}, "0"}, {[]int{1, 0}, "0-1"}, {[]int{0, 1, 2, 5, 7, 8}, "0-2,5,7-8"}, {nil, ""},
	} {
		if got := FormatCPUList(tc.in); got != tc.want {
			t.Errorf("FormatCPUList(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if len(tc.in) > 0 {
			back, err := parseCPUList(tc.want)
			if err != nil || !slices.Equal(back, slices.Sorted(slices.Values(tc.in))) {
				t.Errorf("parseCPUList(%q) = %v, %v", tc.want, back, err)
			}
		}
	}
}

func TestAllowedCPUsIsThisProcesss(t *testing.T) {
	cpus := AllowedCPUs()
	if cpus == nil {
		t.Skip("no CPU set here (not Linux)")
	}
	if len(cpus) == 0 || slices.Min(cpus) < 0 {
		t.Fatalf("AllowedCPUs() = %v", cpus)
	}
}

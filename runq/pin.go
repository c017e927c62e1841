package runq

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// PinCPUs decides the CPU each Python worker process is pinned to: process
// i runs on CPUs[i % len(CPUs)]; nil pins none. mode is
//
//   - "auto" (the default): one CPU per process when the processes are as
//     many as the CPUs this worker may use (--processes auto), none
//     otherwise, so that two workers started on one machine never share
//     the same few CPUs;
//   - "on": the allowed CPUs in turn, whatever the number of processes;
//   - "off": none;
//   - a list of CPU numbers and ranges ("0,2", "4-7"), each one allowed.
//
// Pinning keeps each interpreter's threads on one CPU: every hand-off of
// the GIL then wakes a thread on the CPU whose caches hold the process's
// state, instead of one the kernel placed on another CPU (measured on a
// 2-CPU VM with CrewAI crews: CPU per run 29 -> 21 ms, two processes 47 ->
// 71 runs/s; docs/architecture.md, "Scaling and its limits").
//
// allowed is the worker's own CPU set ([AllowedCPUs]); when it is empty
// (not Linux, or unknown) nothing is pinned except by an explicit list.
func PinCPUs(mode string, processes int, allowed []int) ([]int, error) {
	switch mode {
	case "", "auto":
		if len(allowed) >= 2 && processes == len(allowed) {
			return slices.Clone(allowed), nil
		}
		return nil, nil
	case "off", "none":
		return nil, nil
	case "on":
		return slices.Clone(allowed), nil
	}
	cpus, err := parseCPUList(mode)
	if err != nil {
		return nil, fmt.Errorf("%w: --pin %q: %v (want auto, on, off or CPU numbers like 0,2 or 4-7)", ErrInvalid, mode, err)
	}
	if len(allowed) > 0 {
		for _, c := range cpus {
			if !slices.Contains(allowed, c) {
				return nil, fmt.Errorf("%w: --pin %q: CPU %d is not one this worker may use (%s)", ErrInvalid, mode, c, FormatCPUList(allowed))
			}
		}
	}
	return cpus, nil
}

// parseCPUList reads Linux's CPU list format ("0-3,8,10-11").
func parseCPUList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("empty item")
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("%q is not a CPU number", lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("%q is not a CPU range", part)
			}
		}
		if b-a > 4096 {
			return nil, fmt.Errorf("%q is too large a range", part)
		}
		for c := a; c <= b; c++ {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// FormatCPUList writes cpus in Linux's CPU list format ("0-3,8").
func FormatCPUList(cpus []int) string {
	s := slices.Sorted(slices.Values(cpus))
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", s[i], s[j])
		} else {
			fmt.Fprintf(&b, "%d", s[i])
		}
		i = j + 1
	}
	return b.String()
}

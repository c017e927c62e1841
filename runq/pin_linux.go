package runq

import (
	"bufio"
	"os"
	"strings"
)

// AllowedCPUs is the set of CPUs this process may run on
// (Cpus_allowed_list of /proc/self/status), nil when unknown.
func AllowedCPUs() []int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Cpus_allowed_list:"); ok {
			cpus, err := parseCPUList(v)
			if err != nil {
				return nil
			}
			return cpus
		}
	}
	return nil
}

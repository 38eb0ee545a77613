package sandbox

import (
	"context"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
)

// Benchmarks of one execution through the Go API. The bench/ command compares the
// paths and peers side by side; these are for profiling (go test -bench -cpuprofile).
func BenchmarkRun(b *testing.B) {
	workloads := []struct{ name, code string }{
		{"print", "print(1)"},
		{"numpy", "import numpy as np\na = np.random.rand(200, 200)\n(a @ a).sum()"},
	}
	for _, path := range paths {
		for _, wl := range workloads {
			b.Run(path+"/"+wl.name, func(b *testing.B) {
				r := newTestRunnerFor(b, path)
				req := &job.Request{Code: wl.code, Limits: job.DefaultLimits()}
				for b.Loop() {
					res, err := r.Run(context.Background(), req)
					if err != nil || res.Status != job.StatusOK {
						b.Fatalf("%v %+v", err, res)
					}
				}
			})
		}
	}
}

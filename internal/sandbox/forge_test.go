package sandbox

import (
	"strings"
	"testing"
	"time"

	"github.com/codeexec/codeexec/internal/job"
)

// forgeDone writes the child's "done" on fd 3, the channel to the server, which a
// Python program (running in the child) can reach.
const forgeDone = `import os, sys, time, threading, signal
print("before", flush=True)
def mark():
    with open("/work/marker", "w") as f:
        f.write("ran on")
    with open("/tmp/marker", "w") as f:
        f.write("ran on")
    print("after", flush=True)
`

// TestForgedDoneEndsTheRun: a warm one-shot Python run ends on its child's "done"
// without waiting for the child's exit (runOn freezes the execution instead). The
// program can forge that message, or run code of its own after a true one (a signal
// handler): either way nothing of it may run on after the reply — no output, no file
// in the Result, nothing the next execution sees. The forgers sleep far past the
// timeout: a server waiting for the child's exit would report a timeout instead.
func TestForgedDoneEndsTheRun(t *testing.T) {
	r := sharedRunnerFor(t, "warm")
	tests := []struct{ name, code string }{
		{"forged, then a thread", forgeDone + `
os.write(3, b'{"op": "done", "exit_code": 0}')
def later():
    time.sleep(1)
    mark()
threading.Thread(target=later).start()
time.sleep(60)
`},
		{"forged, then a process", forgeDone + `
os.write(3, b'{"op": "done", "exit_code": 0}')
if os.fork() == 0:
    os.setsid()
    time.sleep(1)
    mark()
    os._exit(0)
time.sleep(60)
`},
		{"forged, then stdout closed", forgeDone + `
os.write(3, b'{"op": "done", "exit_code": 0}')
os.close(1); os.close(2)
time.sleep(1)
mark()
time.sleep(60)
`},
		{"a signal handler after the true done", forgeDone + `
signal.signal(signal.SIGALRM, lambda *a: (mark(), time.sleep(60)))
signal.setitimer(signal.ITIMER_REAL, 0.5)
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, r, tt.code, func(req *job.Request) { req.Limits.Timeout = 5 * time.Second })
			if res.Status != job.StatusOK || res.ExitCode != 0 {
				t.Fatalf("got %s exit %d (stderr %q, error %+v), want ok exit 0: the run ends on done", res.Status, res.ExitCode, res.Stderr, res.Error)
			}
			if res.Stdout != "before\n" {
				t.Errorf("stdout = %q, want only what came before done", res.Stdout)
			}
			for _, f := range res.Files {
				if strings.Contains(f.Path, "marker") {
					t.Errorf("files = %+v: the program wrote after done", res.Files)
				}
			}
			// Past the program's own pause: had it run on, its marker would be there.
			time.Sleep(1500 * time.Millisecond)
			next := run(t, r, `import os
print(os.path.exists("/work/marker"), os.path.exists("/tmp/marker"), sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))`, nil)
			if next.Status != job.StatusOK || next.Stdout != "False False [1]\n" {
				t.Errorf("the next run saw %q (%s, stderr %q), want no marker and only its own pid 1", next.Stdout, next.Status, next.Stderr)
			}
		})
	}
}

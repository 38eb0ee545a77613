// Package cleanup collects undo steps so a constructor can release its partial work
// on every error path with one deferred call (the pattern of gVisor's pkg/cleanup).
package cleanup

// Cleanup runs its functions in reverse order of addition when Clean is called,
// unless Release was called first.
type Cleanup struct {
	fns []func()
}

// Make returns a Cleanup that will run f.
func Make(f func()) Cleanup {
	return Cleanup{fns: []func(){f}}
}

// Add adds f to run before the functions already added.
func (c *Cleanup) Add(f func()) {
	c.fns = append(c.fns, f)
}

// Clean runs the functions, last added first, and forgets them.
func (c *Cleanup) Clean() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}

// Release forgets the functions without running them and returns one function that
// runs them all, for the new owner of the resources.
func (c *Cleanup) Release() func() {
	fns := c.fns
	c.fns = nil
	return func() {
		for i := len(fns) - 1; i >= 0; i-- {
			fns[i]()
		}
	}
}

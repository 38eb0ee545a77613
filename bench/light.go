package main

import "github.com/codeexec/codeexec/internal/sandbox"

// lightPath is print(1) on a Runner with the light zygote: a stdlib-only program,
// which it runs in a child of the zygote that preloaded nothing.
const lightPath = "warm light"

// newLightRunner makes the warm Runner with a light zygote (Config.LightZygote), or
// nil with -light=false. The caller must Close it.
func newLightRunner(cfg config, rootfs string) (*sandbox.Runner, error) {
	if !cfg.light {
		return nil, nil
	}
	return sandbox.New(sandbox.Config{
		Rootfs:       rootfs,
		StateDir:     cfg.store + "/run",
		CgroupParent: cgroupParent,
		HostUID:      sandbox.DefaultHostUID,
		Warm:         true,
		LightZygote:  true,
		Prefork:      cfg.prefork,
	})
}

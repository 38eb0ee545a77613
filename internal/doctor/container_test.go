package doctor

import (
	"strings"
	"testing"

	"github.com/codeexec/codeexec/internal/container"
)

func TestContainerCheck(t *testing.T) {
	var all uint64
	for _, name := range containerCaps {
		all |= 1 << capBits[name]
	}
	// podman's default set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, NET_BIND_SERVICE,
	// SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT — everything but SYS_ADMIN.
	const podmanDefault = 0x800405fb
	tests := []struct {
		name      string
		f         containerFacts
		want      Status
		detail    []string
		fix       []string
		unwanted  []string // in the fix
		fixAbsent bool
	}{
		{name: "host", f: containerFacts{}, want: OK, detail: []string{"not in a container"}, fixAbsent: true},
		{name: "pod with what it needs", f: containerFacts{runtime: container.Kubernetes, capEff: all, apparmor: "unconfined"}, want: OK,
			detail: []string{"in a kubernetes container", "SYS_ADMIN, SETUID, SETGID, DAC_OVERRIDE", "/proc unmasked, cgroups writable", "AppArmor unconfined"}, fixAbsent: true},
		{name: "privileged podman", f: containerFacts{runtime: container.Podman, capEff: 1<<41 - 1}, want: OK, detail: []string{"in a podman container"}, fixAbsent: true},
		{name: "pod without SYS_ADMIN", f: containerFacts{runtime: container.Kubernetes, capEff: podmanDefault,
			masks: []string{"/proc/sys", "/proc/kcore"}, roCgroup: []string{"/sys/fs/cgroup"}}, want: Fail,
			detail:   []string{"lacks the capabilities SYS_ADMIN", "2 masks on /proc", "read-only cgroups (/sys/fs/cgroup)"},
			fix:      []string{"securityContext.capabilities.add: [SYS_ADMIN, SETUID, SETGID, DAC_OVERRIDE]", "codeexec container-init"},
			unwanted: []string{"--cap-add"}},
		{name: "docker without any", f: containerFacts{runtime: container.Docker}, want: Fail,
			detail: []string{"lacks the capabilities SYS_ADMIN, SETUID, SETGID, DAC_OVERRIDE"}, fix: []string{"--cap-add SYS_ADMIN,SETUID,SETGID,DAC_OVERRIDE"},
			unwanted: []string{"securityContext", "container-init"}},
		{name: "pod under the runtime's AppArmor profile", f: containerFacts{runtime: container.Kubernetes, capEff: all, apparmor: "cri-containerd.apparmor.d (enforce)"},
			want: Fail, detail: []string{`AppArmor profile "cri-containerd.apparmor.d"`}, fix: []string{"appArmorProfile.type: Unconfined"}},
		{name: "podman under docker-default", f: containerFacts{runtime: container.Podman, capEff: all, apparmor: "containers-default-0.50.1 (enforce)"},
			want: Fail, fix: []string{"--security-opt apparmor=unconfined"}},
		{name: "entrypoint skipped", f: containerFacts{runtime: container.Podman, capEff: all, masks: []string{"/proc/keys"}},
			want: Fail, detail: []string{"1 masks on /proc"}, fix: []string{"`codeexec container-init -- …`", "must start with it"}, unwanted: []string{"--cap-add"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := containerCheck(tt.f)
			if c.Name != "container" || c.Status != tt.want {
				t.Fatalf("containerCheck(%+v) = %+v, want status %q", tt.f, c, tt.want)
			}
			for _, d := range tt.detail {
				if !strings.Contains(c.Detail, d) {
					t.Errorf("containerCheck(%+v).Detail = %q, want it to contain %q", tt.f, c.Detail, d)
				}
			}
			for _, f := range tt.fix {
				if !strings.Contains(c.Fix, f) {
					t.Errorf("containerCheck(%+v).Fix = %q, want it to contain %q", tt.f, c.Fix, f)
				}
			}
			for _, f := range tt.unwanted {
				if strings.Contains(c.Fix, f) {
					t.Errorf("containerCheck(%+v).Fix = %q, want no %q (another runtime's terms)", tt.f, c.Fix, f)
				}
			}
			if tt.fixAbsent != (c.Fix == "") {
				t.Errorf("containerCheck(%+v).Fix = %q; a problem needs a fix and ok needs none", tt.f, c.Fix)
			}
		})
	}
}

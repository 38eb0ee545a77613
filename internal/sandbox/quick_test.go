package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	MaybeInit()
	os.Exit(m.Run())
}

func TestQuick(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o711)
	os.Chmod(dir+"/..", 0o711)
	r, err := New(Config{Rootfs: os.Getenv("CODEEXEC_TEST_ROOTFS"), StateDir: dir + "/state", CgroupParent: "codeexec-test", HostUID: DefaultHostUID})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.Run(context.Background(), &Request{Code: os.Getenv("CODE"), Limits: DefaultLimits()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(res, "", " ")
	t.Logf("%s", b)
}

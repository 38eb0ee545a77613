package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/codeexec/codeexec/internal/sandbox/harness"
)

// FuzzParseCtl feeds the decoder of zygote and child messages — bytes a compromised
// sandbox fully controls — anything at all: it must return a message or an error,
// and a message it accepts must survive a round trip.
func FuzzParseCtl(f *testing.F) {
	for _, s := range []string{
		`{"op": "ready"}`,
		`{"op": "exit", "id": 3, "status": 9}`,
		`{"op": "exit", "id": 3, "error": "fork: EAGAIN"}`,
		`{"op": "done", "exit_code": 1}`,
		`{"op": "exit", "id": 18446744073709551615, "status": -1}`,
		`{"op": "done", "exit_code": 1e400}`,
		`{"op": "exit", "status": null}`,
		`{"op":"spawn","seccomp":"!!","landlock":{"rules":[{"path":"/","access":-1}]}}`,
		`[]`, `"done"`, ``, "\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseCtl(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("an accepted message does not encode: %v", err)
		}
		if _, err := parseCtl(again); err != nil {
			t.Fatalf("an accepted message does not decode again: %v (%s)", err, again)
		}
	})
}

// FuzzResult feeds the report → Result conversion what a hostile program could write
// to its report pipe, with any exit code: the Result keeps within every cap of the
// report, names its figures itself, and takes nothing from a report it refused.
func FuzzResult(f *testing.F) {
	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n"))
	for _, s := range []string{
		`{"ok":true,"result":"1","result_truncated":false,"error":null,"images":[],"images_truncated":false,"exit_code":0}`,
		`{"ok":true,"images":[{"name":"../../etc/x.png","mime_type":"image/png","data":"` + png + `"}]}`,
		`{"ok":false,"error":{"name":"E","message":"m","traceback":"t","truncated":true},"exit_code":1}`,
		`{"ok":false}`, `{"ok":true,"error":{"name":"E"}}`, `{"ok":true}{"ok":true}`, ``, `null`,
	} {
		f.Add([]byte(s), 0)
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, report []byte, exitCode int) {
		w := newWatch(job.DefaultLimits())
		w.disarm()
		o := outcome{report: report, exitCode: exitCode}
		res := o.result(job.DefaultLimits(), w)
		if (res.Status == job.StatusError) != (res.Error != nil) {
			t.Fatalf("status %s with error %+v", res.Status, res.Error)
		}
		if res.Status != job.StatusOK && res.Status != job.StatusError {
			t.Fatalf("status %s from a report alone", res.Status)
		}
		refused := res.Error != nil && res.Error.Name == ReportErrorName
		if _, err := harness.Parse(report); refused != (err != nil && !errors.Is(err, harness.ErrEmpty)) {
			t.Fatalf("refused %v, but Parse says %v", refused, err)
		}
		if refused && (res.Result != nil || len(res.Images) > 0 || res.ExitCode == 0 || len(res.Error.Message) > 1000) {
			t.Fatalf("a refused report gave result %v, %d images, exit %d, message of %d bytes", res.Result != nil, len(res.Images), res.ExitCode, len(res.Error.Message))
		}
		total := 0
		for i, im := range res.Images {
			if im.Name != fmt.Sprintf("figure-%d.png", i+1) || im.MimeType != "image/png" {
				t.Fatalf("figure %d named %q (%s)", i+1, im.Name, im.MimeType)
			}
			total += len(im.Data)
		}
		if len(res.Images) > harness.MaxImages || total > harness.MaxImageBytes {
			t.Fatalf("%d figures of %d bytes", len(res.Images), total)
		}
		if res.Result != nil && len(*res.Result) > harness.MaxResultBytes {
			t.Fatalf("a result of %d bytes", len(*res.Result))
		}
		if e := res.Error; e != nil && !refused && (len(e.Name) > harness.MaxErrorNameBytes || len(e.Message) > harness.MaxErrorMessageBytes || len(e.Traceback) > harness.MaxTracebackBytes) {
			t.Fatalf("an error of %d+%d+%d bytes", len(e.Name), len(e.Message), len(e.Traceback))
		}
	})
}

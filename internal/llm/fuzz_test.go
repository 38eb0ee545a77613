package llm

// The fuzz targets: FuzzDecodeChatResponse, FuzzDecodeChatRequest and FuzzStream.
// For a short run, keep minimization short, or it takes most of the time:
//
//	go test -run '^$' -fuzz '^FuzzStream$' -fuzztime 20s -fuzzminimizetime 1s ./internal/llm

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// roundTripStable checks that encoding what was decoded is a fixed point: decoding
// and encoding it again gives the same bytes.
func roundTripStable[T any](t *testing.T, v *T, decode func([]byte) (*T, error)) {
	first, err := marshalNoEscape(v)
	if err != nil {
		t.Fatalf("encoding a decoded value: %v", err)
	}
	again, err := decode(first)
	if err != nil {
		t.Fatalf("decoding our own encoding %s: %v", first, err)
	}
	second, err := marshalNoEscape(again)
	if err != nil {
		t.Fatalf("encoding again: %v", err)
	}
	if !bytes.Equal(first, second) {
		t.Fatalf("encoding is not stable\nfirst:  %s\nsecond: %s", first, second)
	}
}

func FuzzDecodeChatResponse(f *testing.F) {
	f.Add([]byte(openAIResponse))
	f.Add([]byte(okCompletion))
	f.Add([]byte(`{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"x","x":1}]}}],"usage":null}`))
	f.Add([]byte(`{"choices":[{"message":{"tool_calls":[{"type":"code_execution","code_execution":{"code":"1","output":"<"}}]}}]}`))
	f.Add([]byte(`{"Model":"x","model":"y","model":"z"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"id":"\ud800"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeChatResponse(data)
		if err != nil {
			return
		}
		roundTripStable(t, r, DecodeChatResponse)
	})
}

func FuzzDecodeChatRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"code_execution"}],"x":[1,{"y":null}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":""},{"type":"file","file":{"file_data":"d","filename":"f"}}]}],"stream":true,"stream_options":{"include_usage":true}}`))
	f.Add([]byte(`{"messages":[{"content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}}]}],"temperature":1e308}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeChatRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		roundTripStable(t, r, func(b []byte) (*ChatRequest, error) { return DecodeChatRequest(bytes.NewReader(b)) })
	})
}

// FuzzStream feeds arbitrary upstream bytes to the SSE parser and chunk decoder:
// they must end with io.EOF or an error, never panic or loop.
func FuzzStream(f *testing.F) {
	f.Add([]byte("data: " + chunkData("a", "x") + "\n\ndata: [DONE]\n\n"))
	f.Add([]byte(": c\r\nevent: error\r\ndata: {\"error\":{\"message\":\"m\"}}\r\n\r\n"))
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}\rdata: [DONE]"))
	f.Add([]byte("data:" + strings.Repeat("x", 300) + "\n\n"))
	f.Add([]byte("\uFEFF\r\r\n\n:data\ndata"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newStream("fuzz", io.NopCloser(bytes.NewReader(data)), nil, 256)
		defer s.Close()
		var acc Accumulator
		for i := 0; ; i++ {
			if i > len(data)+1 {
				t.Fatalf("more chunks (%d) than input bytes (%d)", i, len(data))
			}
			c, err := s.Next()
			if err != nil {
				break
			}
			acc.Add(c)
		}
		if _, err := marshalNoEscape(acc.Response()); err != nil {
			t.Fatalf("encoding the accumulated response: %v", err)
		}
	})
}

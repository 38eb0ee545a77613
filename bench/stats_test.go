package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func msList(n ...int) []time.Duration {
	out := make([]time.Duration, len(n))
	for i, v := range n {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	twoHundred := make([]time.Duration, 200)
	for i := range twoHundred {
		twoHundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample p50", msList(7), 50, 7 * time.Millisecond},
		{"one sample p99", msList(7), 99, 7 * time.Millisecond},
		{"p50 of even count is the lower middle", msList(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p50 of odd count is the middle", msList(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"p50 of ten is the fifth", msList(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 50, 5 * time.Millisecond},
		{"p99 of twenty is the max", msList(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20), 99, 20 * time.Millisecond},
		{"p99 of 100 is the 99th", hundred, 99, 99 * time.Millisecond},
		{"p99 of 200 is the 198th", twoHundred, 99, 198 * time.Millisecond},
		{"p7 of 100 is the 7th, not pushed up by rounding", hundred, 7, 7 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the min", hundred, 0.001, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%d samples, %v) = %v, want %v", len(tt.sorted), tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	in := msList(5, 1, 4, 2, 3)
	got := summarize(in)
	want := summary{n: 5, min: 1 * time.Millisecond, p50: 3 * time.Millisecond, p99: 5 * time.Millisecond}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if in[0] != 5*time.Millisecond {
		t.Errorf("summarize sorted its input: %v", in)
	}
}

func TestRate(t *testing.T) {
	tests := []struct {
		n    int
		d    time.Duration
		want float64
	}{
		{400, time.Second, 400},
		{400, 500 * time.Millisecond, 800},
		{0, time.Second, 0},
		{10, 0, 0},
		{10, -time.Second, 0},
	}
	for _, tt := range tests {
		if got := rate(tt.n, tt.d); got != tt.want {
			t.Errorf("rate(%d, %v) = %v, want %v", tt.n, tt.d, got, tt.want)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		xs                      []int64
		wantMed, wantLo, wantHi int64
	}{
		{nil, 0, 0, 0},
		{[]int64{3}, 3, 3, 3},
		{[]int64{9, 1, 5}, 5, 1, 9},
		{[]int64{4, 1, 3, 2}, 2, 1, 4},
	}
	for _, tt := range tests {
		med, lo, hi := median(tt.xs)
		if med != tt.wantMed || lo != tt.wantLo || hi != tt.wantHi {
			t.Errorf("median(%v) = %d, %d, %d, want %d, %d, %d", tt.xs, med, lo, hi, tt.wantMed, tt.wantLo, tt.wantHi)
		}
	}
}

func TestThroughput(t *testing.T) {
	for _, conc := range []int{1, 3, 16} {
		var calls atomic.Int64
		run := func(ctx context.Context, w workload) (time.Duration, error) {
			calls.Add(1)
			return 0, nil
		}
		if _, err := throughput(context.Background(), run, workload{}, conc, 50); err != nil {
			t.Fatalf("concurrency %d: %v", conc, err)
		}
		if got := calls.Load(); got != 50 {
			t.Errorf("concurrency %d: %d executions, want 50", conc, got)
		}
	}

	boom := errors.New("boom")
	var calls atomic.Int64
	failing := func(ctx context.Context, w workload) (time.Duration, error) {
		if calls.Add(1) == 5 {
			return 0, boom
		}
		return 0, nil
	}
	if _, err := throughput(context.Background(), failing, workload{}, 4, 1000); !errors.Is(err, boom) {
		t.Errorf("a failed execution gave error %v, want %v", err, boom)
	}
	if got := calls.Load(); got >= 1000 {
		t.Errorf("%d executions after a failure; want the others stopped", got)
	}
}

package main

import (
	"math"
	"slices"
	"time"
)

// summary describes one set of latency samples.
type summary struct {
	n             int
	min, p50, p99 time.Duration
}

// summarize returns the min, p50 and p99 of samples. It does not modify samples.
func summarize(samples []time.Duration) summary {
	s := slices.Clone(samples)
	slices.Sort(s)
	if len(s) == 0 {
		return summary{}
	}
	return summary{n: len(s), min: s[0], p50: percentile(s, 50), p99: percentile(s, 99)}
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the nearest-rank
// method: the smallest sample with at least p% of the samples at or below it. It
// never interpolates, so with fewer than 100 samples p99 is the maximum. It returns 0
// for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// p*n before /100: for whole p the product is exact, so an exact rank (p50 of 10
	// samples is the 5th) is not pushed up by rounding as p/100*n can be (0.07*100 is
	// 7.000000000000001).
	n := len(sorted)
	rank := int(math.Ceil(p * float64(n) / 100))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// rate returns executions per second for n executions done in d; 0 if d is not
// positive.
func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// median returns the median of xs (the lower middle one for an even count) and its
// min and max; all 0 for no values.
func median(xs []int64) (med, lo, hi int64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2], s[0], s[len(s)-1]
}

package api

import (
	"time"

	"github.com/codeexec/codeexec/internal/job"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's Prometheus series.
type metrics struct {
	executions   *prometheus.CounterVec
	duration     prometheus.Histogram
	connsOpen    prometheus.Gauge
	connsRefused *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, s *Server) *metrics {
	m := &metrics{
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codeexec_executions_total",
			Help: "Executions by final status and language.",
		}, []string{"status", "language"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "codeexec_execution_duration_seconds",
			Help:    "Wall time of executions, including the wait for a sandbox.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "codeexec_connections_open",
			Help: "Client connections open on the server's limited listeners.",
		}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codeexec_connections_refused_total",
			Help: "Client connections refused at once, by the cap they met: per_client or total.",
		}, []string{"cap"}),
	}
	reg.MustRegister(m.executions, m.duration, m.connsOpen, m.connsRefused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "codeexec_queue_depth",
			Help: "Executions running or waiting for a turn.",
		}, func() float64 { return float64(s.queue.depth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "codeexec_sessions_active",
			Help: "Live sessions.",
		}, func() float64 { return float64(s.sessions.Len()) }),
		prometheus.NewGoCollector(),
		prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}),
	)
	if p, ok := s.exec.(interface{ PoolSize() int }); ok {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "codeexec_pool_ready",
			Help: "Warm interpreters forked and ready for an execution.",
		}, func() float64 { return float64(p.PoolSize()) }))
	}
	return m
}

func (m *metrics) observe(res *job.Result, language string, d time.Duration) {
	m.executions.WithLabelValues(string(res.Status), language).Inc()
	m.duration.Observe(d.Seconds())
}

// Pins prometheus-operator, whose CRDs (monitoring.coreos.com: ServiceMonitor, PodMonitor,
// PrometheusRule) the chart's optional objects are validated against in the tests. Nothing is built:
// scripts/prometheus-operator-crds.sh downloads the module (checked against go.sum) and prints where.
module github.com/patronus/patronus/tools/prometheus-operator

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.88.0

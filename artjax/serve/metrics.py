"""Prometheus metrics of one server (its own registry: no process-global state)."""

import prometheus_client as prom

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
  """requests, latency (s), batch sizes (samples per compiled call), queue depth, per model."""

  def __init__(self):
    self.registry = prom.CollectorRegistry()
    self.requests = prom.Counter("artjax_requests", "HTTP requests", ["endpoint", "model", "status"],
                                 registry=self.registry)
    self.latency = prom.Histogram("artjax_request_latency_seconds", "Request latency", ["endpoint", "model"],
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
    self.batch = prom.Histogram("artjax_batch_size", "Samples per coalesced sampling run", ["model"],
                                buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
    self.run = prom.Histogram("artjax_sampling_seconds", "Seconds per coalesced sampling run", ["model"],
                              buckets=LATENCY_BUCKETS, registry=self.registry)
    self.queue = prom.Gauge("artjax_queue_depth", "Requests waiting for a batch", ["model"], registry=self.registry)

  def request(self, endpoint: str, model, status: int, seconds: float):
    model = model or ""
    self.requests.labels(endpoint, model, str(status)).inc()
    self.latency.labels(endpoint, model).observe(seconds)

  def observe(self, model: str, batch_size=None, queue_depth=None, run_seconds=None):
    if batch_size is not None:
      self.batch.labels(model).observe(batch_size)
    if queue_depth is not None:
      self.queue.labels(model).set(queue_depth)
    if run_seconds is not None:
      self.run.labels(model).observe(run_seconds)

  def render(self):
    return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST

/** Process counters served on /metrics in the Prometheus text format. */
export class Metrics {
  private readonly byCode = new Map<number, number>();

  observe(status: number): void {
    this.byCode.set(status, (this.byCode.get(status) ?? 0) + 1);
  }

  render(gauges: { clusters: number; passes: number }): string {
    const lines = [
      "# HELP kpass_requests_total Requests answered by the API server, by HTTP code.",
      "# TYPE kpass_requests_total counter",
      ...[...this.byCode].map(([code, n]) => `kpass_requests_total{code="${code}"} ${n}`),
      "# TYPE kpass_clusters gauge",
      `kpass_clusters ${gauges.clusters}`,
      "# TYPE kpass_passes gauge",
      `kpass_passes ${gauges.passes}`,
      "# TYPE process_resident_memory_bytes gauge",
      `process_resident_memory_bytes ${process.memoryUsage().rss}`,
    ];
    return lines.join("\n") + "\n";
  }
}

/** Process counters served on /metrics in the Prometheus text format. */
export class Metrics {
  private readonly byCode = new Map<number, number>();
  private inFlight = 0;

  async count(response: Promise<Response>): Promise<Response> {
    this.inFlight++;
    try {
      const r = await response;
      this.byCode.set(r.status, (this.byCode.get(r.status) ?? 0) + 1);
      return r;
    } finally {
      this.inFlight--;
    }
  }

  render(gauges: { clusters: number; passes: number }): string {
    const lines = [
      "# HELP kpass_requests_total Requests answered by the API server, by HTTP code.",
      "# TYPE kpass_requests_total counter",
      ...[...this.byCode].map(([code, n]) => `kpass_requests_total{code="${code}"} ${n}`),
      "# HELP kpass_requests_in_flight Requests whose response head is not yet sent.",
      "# TYPE kpass_requests_in_flight gauge",
      `kpass_requests_in_flight ${this.inFlight}`,
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

#!/usr/bin/env bun
/**
 * Store benchmark (issue #14): kpass on etcd against kpass on files, in one run.
 *
 *   bun bench/store.ts [--quick]
 *
 * - small GET of one Cluster through kpass's API, 32 connections (bench/loadgen.ts in its own
 *   process): reads come from memory on both stores, so the ratio should be ~1;
 * - Cluster create latency p50/p99, one at a time (a create is acknowledged once durable: two
 *   fsyncs on files, a transaction plus the watch's echo on etcd);
 * - watch fan-out: an update made through replica A, seen as a watch event on replica B (p50/p99
 *   from sending the PUT to receiving the event).
 * Everything on 127.0.0.1; etcd and the kpass processes are stopped by pid at the end.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startEtcd } from "../test/harness/etcd.ts";
import { startKpass, type KpassProcess } from "../test/harness/kpass.ts";
import { newKeyLine } from "../src/store/encryption.ts";

const { values } = parseArgs({ options: { quick: { type: "boolean", default: false } } });
const CREATES = values.quick ? 50 : 300;
const UPDATES = values.quick ? 50 : 300;
const GET_SECONDS = values.quick ? 2 : 5;
const CLUSTERS = "/apis/cluster.kpass.dev/v1beta1/clusters";

function cluster(name: string): unknown {
  return { apiVersion: "cluster.kpass.dev/v1beta1", kind: "Cluster", metadata: { name }, spec: { access: { endpoint: "https://127.0.0.1:1", credential: { type: "ServiceAccountToken", serviceAccountToken: "bench-token" } } } };
}

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function smallGet(kpass: KpassProcess): Promise<{ rps: number; p50Ms: number; p99Ms: number }> {
  const ca = join(kpass.dataDir, "ca.crt");
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, "loadgen.ts"), "--url", `${kpass.url}${CLUSTERS}/bench-get`, "--token", kpass.adminToken, "--ca", ca, "--connections", "32", "--duration", String(GET_SECONDS)], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  return JSON.parse(out.trim().split("\n").pop()!);
}

async function createLatency(kpass: KpassProcess, tag: string): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < CREATES; i++) {
    const started = performance.now();
    const response = await kpass.api("POST", CLUSTERS, cluster(`bench-${tag}-${i}`));
    if (response.status !== 201) throw new Error(`create: ${response.status} ${await response.text()}`);
    samples.push(performance.now() - started);
  }
  return samples;
}

/** Update on `a`, event on `b`: the time from sending the PUT to the event's arrival. */
async function fanOut(a: KpassProcess, b: KpassProcess): Promise<number[]> {
  const name = "bench-fanout";
  await a.api("POST", CLUSTERS, cluster(name));
  const current = await (await a.api("GET", `${CLUSTERS}/${name}`)).json();
  const abort = new AbortController();
  const watch = await fetch(`${b.url}${CLUSTERS}?watch=1&fieldSelector=metadata.name%3D${name}&resourceVersion=${current.metadata.resourceVersion}`, { headers: { authorization: `Bearer ${b.adminToken}` }, tls: { ca: b.caPem }, signal: abort.signal });
  const reader = watch.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  const nextEvent = async (): Promise<{ type: string; object: { metadata: { labels?: Record<string, string> } } }> => {
    for (;;) {
      const newline = buffered.indexOf("\n");
      if (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        return JSON.parse(line);
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("watch ended");
      buffered += decoder.decode(value, { stream: true });
    }
  };
  const samples: number[] = [];
  for (let i = 0; i < UPDATES; i++) {
    const started = performance.now();
    // The prober's status writes are events too: wait for the one carrying this round.
    const seen = (async () => {
      for (;;) {
        const event = await nextEvent();
        if (event.object.metadata.labels?.round === String(i)) return event;
      }
    })();
    const response = await a.api("PATCH", `${CLUSTERS}/${name}`, { metadata: { labels: { round: String(i) } } }, { headers: { "content-type": "application/merge-patch+json" } });
    if (response.status !== 200) throw new Error(`patch: ${response.status}`);
    await seen;
    samples.push(performance.now() - started);
  }
  abort.abort();
  return samples;
}

const etcd = await startEtcd();
const keyFile = join(mkdtempSync(join(tmpdir(), "kpass-bench-key-")), "encryption.key");
writeFileSync(keyFile, `${newKeyLine()}\n`, { mode: 0o600 });
const etcdArgs = ["--store", "etcd", "--etcd-endpoints", etcd.endpoint, "--etcd-prefix", "/kpass-bench/", "--encryption-key-file", keyFile, "--audit", "off"];
const files = await startKpass({ args: ["--audit", "off"] });
const replicaA = await startKpass({ args: etcdArgs });
const replicaB = await startKpass({ args: etcdArgs });
try {
  await files.api("POST", CLUSTERS, cluster("bench-get"));
  await replicaA.api("POST", CLUSTERS, cluster("bench-get"));
  // Interleaved rounds, best of each: the two stores see the same machine noise.
  const rounds = { files: [] as Awaited<ReturnType<typeof smallGet>>[], etcd: [] as Awaited<ReturnType<typeof smallGet>>[] };
  for (let round = 0; round < (values.quick ? 1 : 3); round++) {
    rounds.files.push(await smallGet(files));
    rounds.etcd.push(await smallGet(replicaA));
  }
  const best = (runs: Awaited<ReturnType<typeof smallGet>>[]) => runs.reduce((a, b) => (b.rps > a.rps ? b : a));
  const getFiles = best(rounds.files);
  const getEtcd = best(rounds.etcd);
  const createFiles = await createLatency(files, "f");
  const createEtcd = await createLatency(replicaA, "e");
  const fan = await fanOut(replicaA, replicaB);
  const ms = (n: number) => n.toFixed(2);
  console.log(`kpass store benchmark, ${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), Bun ${Bun.version}, etcd at ${etcd.endpoint}`);
  console.log(`| measurement | file store | etcd | ratio (etcd/file) |`);
  console.log(`| --- | ---: | ---: | ---: |`);
  console.log(`| small GET req/s (32 conns, best of interleaved ${rounds.files.length}×${GET_SECONDS}s) | ${getFiles.rps.toFixed(0)} | ${getEtcd.rps.toFixed(0)} | ${(getEtcd.rps / getFiles.rps).toFixed(2)} |`);
  console.log(`| small GET p50 ms | ${ms(getFiles.p50Ms)} | ${ms(getEtcd.p50Ms)} | |`);
  console.log(`| Cluster create p50 ms (${CREATES}) | ${ms(percentile(createFiles, 50))} | ${ms(percentile(createEtcd, 50))} | ${(percentile(createEtcd, 50) / percentile(createFiles, 50)).toFixed(2)} |`);
  console.log(`| Cluster create p99 ms | ${ms(percentile(createFiles, 99))} | ${ms(percentile(createEtcd, 99))} | ${(percentile(createEtcd, 99) / percentile(createFiles, 99)).toFixed(2)} |`);
  console.log(`| watch fan-out A→B p50 / p99 ms (${UPDATES} updates) | | ${ms(percentile(fan, 50))} / ${ms(percentile(fan, 99))} | |`);
} finally {
  await Promise.allSettled([files.stop(), replicaA.stop(), replicaB.stop()]);
  await etcd.stop();
}

/**
 * One replica at a time runs a role (the health prober): it holds `<prefix>leader/<role>` under an
 * etcd lease and keeps the lease alive; when it dies the lease expires and another replica, which
 * keeps trying to create the key, takes over. Takeover is within TTL + RETRY of the death.
 */
import { logger } from "../core/log.ts";
import type { EtcdClient } from "./etcd-client.ts";

const TTL_SECONDS = 10;
const KEEPALIVE_MS = 3_000;
const RETRY_MS = 4_000;

export class EtcdLeader {
  private lease?: string;
  private timer?: ReturnType<typeof setTimeout>;
  private stopped = false;
  private leading = false;
  private renewedAt = 0;

  constructor(
    private readonly client: EtcdClient,
    private readonly key: string,
    private readonly identity: string,
    private readonly role: { start(): void; stop(): void },
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    void this.campaign();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.abdicate();
    // Let another replica take over at once rather than after the lease runs out.
    if (this.lease) await this.client.leaseRevoke(this.lease).catch(() => {});
  }

  private schedule(ms: number, step: () => Promise<void>): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void step(), ms);
  }

  private async campaign(): Promise<void> {
    try {
      this.lease ??= await this.client.leaseGrant(TTL_SECONDS);
      const result = await this.client.create(this.key, new TextEncoder().encode(this.identity), { lease: this.lease });
      if (result.ok) {
        this.renewedAt = Date.now();
        this.lead();
        this.schedule(KEEPALIVE_MS, () => this.keepAlive());
        return;
      }
    } catch (error) {
      logger.debug(`kpass: ${this.key}: campaign failed: ${(error as Error).message}`);
    }
    // Nobody keeps a follower's lease alive, so it would expire and every later create under it
    // fail ("requested lease not found"): let it go now, grant a fresh one at the next try.
    const unused = this.lease;
    this.lease = undefined;
    if (unused) await this.client.leaseRevoke(unused).catch(() => {});
    this.schedule(RETRY_MS, () => this.campaign());
  }

  private async keepAlive(): Promise<void> {
    try {
      const ttl = await this.client.leaseKeepAlive(this.lease!);
      if (ttl > 0) {
        this.renewedAt = Date.now();
        this.schedule(KEEPALIVE_MS, () => this.keepAlive());
        return;
      }
      this.lease = undefined;
    } catch (error) {
      logger.warn(`${this.key}: keeping the lease alive failed: ${(error as Error).message}`);
      // The lease may still be alive; another keep-alive before it expires keeps the role. Past its
      // TTL it is gone in etcd, and another replica may hold the role: stop before it starts.
      if (Date.now() - this.renewedAt < (TTL_SECONDS - 1) * 1000) {
        this.schedule(KEEPALIVE_MS, () => this.keepAlive());
        return;
      }
    }
    this.lease = undefined;
    this.abdicate();
    this.schedule(0, () => this.campaign());
  }

  private lead(): void {
    if (this.leading) return;
    this.leading = true;
    logger.info(`kpass: this replica now holds ${this.key}`);
    this.role.start();
  }

  private abdicate(): void {
    if (!this.leading) return;
    this.leading = false;
    logger.info(`kpass: this replica no longer holds ${this.key}`);
    this.role.stop();
  }
}

import net from "node:net";

export interface SlowLink {
  /** Every byte is held this long before it is forwarded, each way. */
  readonly latencyMs: number;
  /** Throughput cap each way, per connection; 0 for none. */
  readonly bytesPerSecond: number;
}

/** Held back per direction before the sender is paused, so TCP flow control reaches the sender. */
const HIGH_WATER = 64 * 1024;
const SLICE = 1024;

/**
 * A TCP proxy between a client and a broker that can cut the link the way real networks fail: `cut()`
 * destroys every connection (an abrupt loss), `freeze()` stops forwarding without closing anything (a
 * cable pulled, a silent partition), `refuse()` rejects new connections until `restore()`, and `slow()`
 * adds latency and a throughput cap (a congested uplink) while keeping order and pushing back on the
 * sender instead of buffering without bound.
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private frozen = false;
  private refusing = false;
  private link: SlowLink = { latencyMs: 0, bytesPerSecond: 0 };
  port = 0;

  constructor(private readonly target: number) {}

  async start(): Promise<this> {
    this.server = net.createServer((inbound) => {
      if (this.refusing) {
        inbound.destroy();
        return;
      }
      const outbound = net.connect(this.target, "127.0.0.1");
      const pair: [net.Socket, net.Socket] = [inbound, outbound];
      this.pairs.add(pair);
      inbound.setNoDelay(true);
      outbound.setNoDelay(true);
      const forward = (from: net.Socket, to: net.Socket) => {
        let nextFree = 0;
        let held = 0;
        from.on("data", (chunk: Buffer) => {
          if (this.frozen) return;
          const { latencyMs, bytesPerSecond } = this.link;
          if (latencyMs === 0 && bytesPerSecond === 0 && held === 0) {
            to.write(chunk);
            return;
          }
          for (let offset = 0; offset < chunk.length; offset += SLICE) {
            const slice = chunk.subarray(offset, offset + SLICE);
            const now = performance.now();
            // Slices leave in order: none before the previous one has gone through the cap.
            const at = Math.max(now + latencyMs, nextFree);
            nextFree = at + (bytesPerSecond > 0 ? (slice.length * 1000) / bytesPerSecond : 0);
            held += slice.length;
            setTimeout(() => {
              held -= slice.length;
              if (!to.destroyed && !this.frozen) to.write(slice);
              if (held < HIGH_WATER / 4 && from.isPaused()) from.resume();
            }, at - now);
          }
          if (held > HIGH_WATER) from.pause();
        });
      };
      forward(inbound, outbound);
      forward(outbound, inbound);
      const close = () => {
        inbound.destroy();
        outbound.destroy();
        this.pairs.delete(pair);
      };
      inbound.on("close", close).on("error", close);
      outbound.on("close", close).on("error", close);
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    const address = this.server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    return this;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get connections(): number {
    return this.pairs.size;
  }

  /** Abrupt loss: both sides see a reset, no DISCONNECT is sent. */
  cut(): void {
    for (const [a, b] of this.pairs) {
      a.resetAndDestroy();
      b.resetAndDestroy();
    }
    this.pairs.clear();
  }

  freeze(): void {
    this.frozen = true;
  }

  refuse(): void {
    this.refusing = true;
  }

  /** Latency and a throughput cap from now on, for existing and new connections. */
  slow(link: SlowLink): void {
    this.link = link;
  }

  restore(): void {
    this.frozen = false;
    this.refusing = false;
    this.link = { latencyMs: 0, bytesPerSecond: 0 };
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

import net from "node:net";

/**
 * A TCP proxy between a client and a broker that can cut the link the way real networks fail: `cut()`
 * destroys every connection (an abrupt loss), `freeze()` stops forwarding without closing anything (a
 * cable pulled, a silent partition), `refuse()` rejects new connections until `restore()`.
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private frozen = false;
  private refusing = false;
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
      const forward = (from: net.Socket, to: net.Socket) =>
        from.on("data", (chunk) => {
          if (!this.frozen) to.write(chunk);
        });
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

  restore(): void {
    this.frozen = false;
    this.refusing = false;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

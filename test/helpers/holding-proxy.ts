import net from "node:net";

/**
 * A node that holds each new connection's first bytes (the CONNECT) for `holdMs` and then processes
 * them anyway, as a NATS node does while JetStream loads after a restart: a TCP proxy in front of a real
 * broker that forwards what the client sent only after the hold, in order, and closes the broker side
 * only once that is through, even when the client left meanwhile. `sent` keeps every byte each client
 * sent, for a test to parse.
 */
export class HoldingProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  readonly sent: Buffer[] = [];
  port = 0;

  constructor(
    private readonly target: number,
    private readonly holdMs: number,
  ) {}

  async start(): Promise<this> {
    this.server = net.createServer((inbound) => {
      const outbound = net.connect(this.target, "127.0.0.1");
      this.sockets.add(inbound).add(outbound);
      const index = this.sent.push(Buffer.alloc(0)) - 1;
      const held: Buffer[] = [];
      let holding = true;
      let clientEnded = false;
      inbound.on("data", (chunk: Buffer) => {
        this.sent[index] = Buffer.concat([this.sent[index] as Buffer, chunk]);
        if (holding) held.push(chunk);
        else outbound.write(chunk);
      });
      inbound.on("end", () => {
        clientEnded = true;
        if (!holding) outbound.end();
      });
      setTimeout(() => {
        holding = false;
        for (const chunk of held) outbound.write(chunk);
        if (clientEnded) outbound.end();
      }, this.holdMs);
      outbound.on("data", (chunk: Buffer) => {
        if (!inbound.destroyed) inbound.write(chunk);
      });
      outbound.on("close", () => inbound.destroy());
      // A client that left is no reason to drop what it sent: the broker still gets it (see above).
      inbound.on("error", () => undefined);
      outbound.on("error", () => inbound.destroy());
      for (const socket of [inbound, outbound]) socket.on("close", () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    const address = this.server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    return this;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

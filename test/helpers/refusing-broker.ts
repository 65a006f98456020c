import net from "node:net";
import mqttPacket, { type Packet } from "mqtt-packet";

/**
 * A scripted MQTT broker that accepts the connection and every publish but refuses every subscription,
 * the way HiveMQ, EMQX or VerneMQ answer a subscription their ACL denies: SUBACK 0x87 "not authorized"
 * in MQTT 5, 0x80 "failure" in 3.1.1. Mosquitto 2.0 cannot be used for this: it grants a denied
 * subscription and silently drops the messages instead. With `silent`, it never answers a SUBSCRIBE at
 * all, as a NATS node was seen to do at a cluster's start. With `qos0-only`, it answers a connection's
 * SUBSCRIBEs one after another, as NATS does, and with a node of its cluster down: a QoS 1 one is
 * refused after `slowMs` (NATS: 4 s, the JetStream consumer it could not create), a QoS 0 one granted,
 * and a PINGREQ answered only once the SUBSCRIBEs before it are.
 */
export class RefusingBroker {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  /** Every packet type each connection sent, in order, one list per connection. */
  readonly received: Packet["cmd"][][] = [];
  port = 0;

  constructor(
    private readonly mode: "refuse" | "silent" | "qos0-only" = "refuse",
    private readonly slowMs = 0,
  ) {}

  async start(): Promise<this> {
    this.server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      socket.on("error", () => socket.destroy());
      let protocolVersion: 4 | 5 = 4;
      const parser = mqttPacket.parser({ protocolVersion: 5 });
      const received: Packet["cmd"][] = [];
      this.received.push(received);
      const send = (packet: Packet) => {
        if (!socket.destroyed) socket.write(mqttPacket.generate(packet, { protocolVersion }));
      };
      /** When the last SUBSCRIBE queued on this connection is answered (qos0-only). */
      let queueFreeAt = 0;
      parser.on("packet", (packet: Packet) => {
        received.push(packet.cmd);
        switch (packet.cmd) {
          case "connect":
            protocolVersion = packet.protocolVersion === 5 ? 5 : 4;
            send({ cmd: "connack", returnCode: 0, reasonCode: 0, sessionPresent: false });
            break;
          case "subscribe":
            if (this.mode === "silent") break;
            if (this.mode === "qos0-only") {
              const qos1 = packet.subscriptions.some((sub) => sub.qos > 0);
              queueFreeAt = Math.max(queueFreeAt, Date.now()) + (qos1 ? this.slowMs : 0);
              const granted = packet.subscriptions.map((sub) => (sub.qos > 0 ? 0x80 : 0));
              setTimeout(
                () => send({ cmd: "suback", messageId: packet.messageId, granted }),
                queueFreeAt - Date.now(),
              );
              break;
            }
            send({
              cmd: "suback",
              messageId: packet.messageId,
              granted: packet.subscriptions.map(() => (protocolVersion === 5 ? 0x87 : 0x80)),
            });
            break;
          case "publish":
            if (packet.qos === 1) send({ cmd: "puback", messageId: packet.messageId });
            break;
          case "pingreq":
            // NATS reads a connection's packets one after another: a PINGREQ behind SUBSCRIBEs it is
            // still refusing waits its turn.
            if (this.mode === "qos0-only")
              setTimeout(() => send({ cmd: "pingresp" }), Math.max(0, queueFreeAt - Date.now()));
            else send({ cmd: "pingresp" });
            break;
          case "disconnect":
            socket.end();
            break;
          default:
            break;
        }
      });
      socket.on("data", (chunk) => parser.parse(chunk));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    const address = this.server.address();
    this.port = typeof address === "object" && address ? address.port : 0;
    return this;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

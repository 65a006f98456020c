// The floor: the least an MQTT.js lamp can do. Same session, Will, presence and QoS as the agent, but
// every command is republished as-is on `changed`: no parsing, no state, no pins. Whatever the agent
// costs above this is the agent's own doing.
//   MQTT_URL=mqtt://127.0.0.1:1883 LAMP_ID=x node bench/floor-echo.mjs
import mqtt from "mqtt";

const id = process.env.LAMP_ID ?? "floor";
const base = `lamp/${id}`;
const presence = `state/${id}`;
const client = mqtt.connect(process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883", {
  clientId: `floor-${id}`,
  protocolVersion: 5,
  clean: false,
  properties: { sessionExpiryInterval: 3600 },
  will: { topic: presence, payload: Buffer.from("0"), qos: 1, retain: true },
});
client.on("connect", () => {
  // MQTT.js leaves Nagle on; a fair floor turns it off, as the broker does (set_tcp_nodelay).
  client.stream.setNoDelay?.(true);
  client.publish(presence, "1", { qos: 1, retain: true });
  client.subscribe(`${base}/set_config`, { qos: 1, nl: true });
});
client.on("message", (_topic, payload) => {
  client.publish(`${base}/changed`, payload, { qos: 1, retain: true });
});
client.on("error", (error) => process.stderr.write(`floor-echo: ${error.message}\n`));
process.on("SIGTERM", () => {
  if (!client.connected) process.exit(0);
  // Bounded, like the agent: a broker that never acknowledges must not keep us alive.
  setTimeout(() => process.exit(0), 2000).unref();
  client.publish(presence, "0", { qos: 1, retain: true }, () => client.end(() => process.exit(0)));
});

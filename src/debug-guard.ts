/**
 * Imported first by the entry points, before any package reads DEBUG: mqtt-packet logs every string it
 * writes through the `debug` package, the CONNECT packet's password included, when DEBUG names it
 * (`DEBUG=*` does). Nothing of ours may print a secret, so its namespaces are always excluded; MQTT.js's
 * own debug output goes through our logger, scrubbed (mqtt/connection.ts).
 */
if (process.env.DEBUG) process.env.DEBUG = `${process.env.DEBUG},-mqtt-packet:*`;

export {};

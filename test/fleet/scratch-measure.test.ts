import mqtt from "mqtt";
import { test } from "vitest";
import { startNatsCluster } from "../helpers/nats-cluster.js";
import { startAedesCluster } from "../helpers/aedes-cluster.js";
for (const eng of ["nats", "aedes"] as const)
test(`measure ${eng}`, async () => {
  let t = Date.now();
  const c = eng === "nats" ? await startNatsCluster() : await startAedesCluster();
  console.log(eng, "start", Date.now() - t);
  for (let round = 0; round < 3; round++) for (let i = 0; i < 3; i++) {
    const id = `m-${round}-${i}`;
    const a = await mqtt.connectAsync(c.url(i), { protocolVersion: 4, clientId: id, clean: false, reconnectPeriod: 0 });
    await a.subscribeAsync(`m/${id}`, { qos: 1 }); a.on("error", () => {});
    t = Date.now();
    await c.kill(i);
    const j = (i + 1) % 3;
    const t1 = Date.now();
    let res = "";
    try {
      const b = await Promise.race([mqtt.connectAsync(c.url(j), { protocolVersion: 4, clientId: id, clean: false, reconnectPeriod: 0, connectTimeout: 30000 }), new Promise<never>((_, r) => setTimeout(() => r(new Error("30s")), 30000))]);
      const t2 = Date.now();
      const g = await b.subscribeAsync(`m/${id}/x`, { qos: 1 }).then((g) => g[0]?.qos, (e) => `err ${e.packet?.granted}`);
      res = `connect ${t2 - t1} ms, new QoS1 sub -> ${g} (${Date.now() - t2} ms)`;
      b.end(true);
    } catch (e) { res = String(e); }
    a.end(true);
    const t3 = Date.now();
    await c.start(i);
    console.log(eng, `kill n${i}:`, res, `; restart n${i} ready in ${Date.now() - t3} ms`);
  }
  t = Date.now(); await c.restartAll(); console.log(eng, "restartAll", Date.now() - t);
  await c.close();
}, 600_000);
